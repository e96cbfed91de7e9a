"""Usage in display units: one conversion for the `hubmeter usage` commands and the cost API."""

from __future__ import annotations

from decimal import Decimal

from app.costapi.schemas import UsageOut
from app.usage.metering import QUANTITY_NAMES, Quantities
from app.usage.units import DISPLAY_UNITS, GIB, in_display_units

GIB_HOUR = GIB * 3600


def test_hours_gib_hours_and_core_hours_from_base_units() -> None:
    quantities = Quantities(
        server_seconds=Decimal(600),  # ten minutes
        memory_request_byte_seconds=Decimal(2 * GIB_HOUR),
        cpu_request_core_seconds=Decimal(1800),
        memory_usage_byte_seconds=Decimal(GIB_HOUR // 4),
        cpu_usage_core_seconds=Decimal("0.0018"),  # 5e-7 core-hours: half-even, to 0
        gpu_request_seconds=Decimal("0.0054"),  # 1.5e-6 GPU-hours: half-even, to 2e-6
        home_storage_byte_seconds=Decimal(10 * GIB_HOUR),
    )
    assert in_display_units(quantities, 6) == {
        "server_hours": Decimal("0.166667"),
        "memory_request_gib_hours": Decimal("2.000000"),
        "cpu_request_core_hours": Decimal("0.500000"),
        "memory_usage_gib_hours": Decimal("0.250000"),
        "cpu_usage_core_hours": Decimal("0.000000"),
        "gpu_hours": Decimal("0.000002"),
        "home_storage_gib_hours": Decimal("10.000000"),
    }
    assert in_display_units(quantities, 2)["server_hours"] == Decimal("0.17")


def test_every_quantity_has_one_display_unit() -> None:
    bases = [base for base, _display, _unit, _divisor in DISPLAY_UNITS]
    assert sorted(bases) == sorted(QUANTITY_NAMES)


def test_the_cost_api_shows_usage_in_the_same_units() -> None:
    # Every display unit is a field of the API's usage, and nothing else is.
    assert set(UsageOut.model_fields) == {display for _b, display, _u, _d in DISPLAY_UNITS}
    quantities = Quantities(server_seconds=Decimal(5400), home_storage_byte_seconds=Decimal(GIB))
    shown = UsageOut.of(quantities)
    fields = {name: getattr(shown, name) for name in UsageOut.model_fields}
    assert fields == in_display_units(quantities, 6)
    assert shown.server_hours == Decimal("1.500000")
    assert shown.home_storage_gib_hours == Decimal("0.000278")


def test_large_figures_convert_exactly() -> None:
    # 3.6e29 server-seconds: 1e26 hours, 33 significant digits at 6 places, none lost.
    huge = Quantities(server_seconds=Decimal(36) * 10**28 + Decimal("0.0036"))
    assert UsageOut.of(huge).server_hours == Decimal(10**26) + Decimal("0.000001")
