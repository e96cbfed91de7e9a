"""hubmeter: usage metering, cost attribution and billing for hosted JupyterHubs."""

from app.money import use_exact_decimal_defaults

__version__ = "0.1.0"

# Python's default decimal context rounds at 28 significant digits, and sums of cloud amounts
# need more (see app.money): raise the default for this process before any module adds money.
use_exact_decimal_defaults()
