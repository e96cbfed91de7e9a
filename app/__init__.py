"""hubmeter: usage metering, cost attribution and billing for hosted JupyterHubs."""

__version__ = "0.1.0"
