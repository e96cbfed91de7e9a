"""Usage in display units: hours, GiB-hours and core-hours from the exact base units. Pure.

One conversion for every place usage is shown (the `hubmeter usage` commands and the cost API),
so a figure reads the same everywhere: hours = seconds / 3600, GiB-hours = byte-seconds /
(2^30 x 3600), core-hours = core-seconds / 3600, each rounded half-even to DISPLAY_PLACES
(or the places asked).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from app.money import EXACT
from app.usage.metering import SECONDS_PER_HOUR, Quantities

GIB = 2**30
# Places of a figure people or scripts read exactly (the API, csv and json); tables may round
# further for reading.
DISPLAY_PLACES = 6

# (base field of Quantities, display name, unit, divisor from the base unit)
DISPLAY_UNITS: tuple[tuple[str, str, str, int], ...] = (
    ("server_seconds", "server_hours", "h", SECONDS_PER_HOUR),
    ("memory_request_byte_seconds", "memory_request_gib_hours", "GiB-h", GIB * SECONDS_PER_HOUR),
    ("memory_usage_byte_seconds", "memory_usage_gib_hours", "GiB-h", GIB * SECONDS_PER_HOUR),
    ("cpu_request_core_seconds", "cpu_request_core_hours", "core-h", SECONDS_PER_HOUR),
    ("cpu_usage_core_seconds", "cpu_usage_core_hours", "core-h", SECONDS_PER_HOUR),
    ("gpu_request_seconds", "gpu_hours", "GPU-h", SECONDS_PER_HOUR),
    ("home_storage_byte_seconds", "home_storage_gib_hours", "GiB-h", GIB * SECONDS_PER_HOUR),
)


def in_display_units(quantities: Quantities, places: int = DISPLAY_PLACES) -> dict[str, Decimal]:
    """Hours, GiB-hours and core-hours from base units, rounded half-even to `places`."""
    quantum = Decimal(1).scaleb(-places)
    out: dict[str, Decimal] = {}
    with localcontext(EXACT):
        for base, display, _unit, divisor in DISPLAY_UNITS:
            value = getattr(quantities, base) / divisor
            out[display] = value.quantize(quantum, rounding=ROUND_HALF_EVEN)
    return out
