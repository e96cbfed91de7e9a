"""Estimates at list price, and the window the scheduled re-pull covers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app.costs.estimates import (
    Driver,
    EstimateTarget,
    HourUsage,
    Price,
    PriceError,
    estimate_cost,
    estimate_records,
)
from app.periods import Window
from jobs.ingest_costs import trailing_window

GIB = 2**30
HOUR = datetime(2026, 10, 5, 13, tzinfo=UTC)
CPU = Price(
    "CPU", "N2 Instance Core", "Compute Engine", "h", "s", Decimal(3600), Decimal("0.031611"), "USD"
)
RAM = Price(
    "RAM",
    "N2 Instance Ram",
    "Compute Engine",
    "GiBy.h",
    "By.s",
    Decimal(3600 * GIB),
    Decimal("0.004237"),
    "USD",
)
FILESTORE = Price(
    "FS",
    "Filestore Basic HDD Capacity",
    "Cloud Filestore",
    "GiBy.mo",
    "By.s",
    Decimal(730 * 3600 * GIB),
    Decimal("0.16"),
    "USD",
)
TARGET = EstimateTarget(
    cluster="atlantic",
    provider="gcp",
    sub_account_id="atlantic-project",
    labels={"goog-k8s-cluster-name": "atlantic"},
)


def usage(cpu: str = "0", memory: str = "0", storage: str = "0") -> HourUsage:
    return HourUsage(HOUR, Decimal(cpu), Decimal(memory), Decimal(storage))


def test_the_estimate_is_usage_at_list_price_to_ten_decimals() -> None:
    assert estimate_cost(Decimal(7200), CPU) == Decimal("0.063222")  # two core-hours
    assert estimate_cost(Decimal(3600 * GIB * 3), RAM) == Decimal("0.012711")
    # 100 GiB for an hour of a 730-hour month: 0.16 x 100 / 730, rounded half-even at 1e-10
    assert estimate_cost(Decimal(100 * GIB * 3600), FILESTORE) == Decimal("0.0219178082")


def test_one_marked_line_per_hour_and_priced_driver_with_usage() -> None:
    records = estimate_records(
        [usage(cpu="1800", memory=str(3600 * GIB), storage="0")],
        prices={Driver.cpu: CPU, Driver.memory: RAM, Driver.home_storage: FILESTORE},
        target=TARGET,
    )
    assert [(r.sku_id, r.net_cost, r.component) for r in records] == [
        ("CPU", Decimal("0.0158055"), "compute"),
        ("RAM", Decimal("0.004237"), "compute"),
    ]
    line = records[0]
    assert line.estimated
    assert line.source == "estimate:atlantic"
    assert line.charge_period_start == HOUR
    assert line.charge_period_end == HOUR + timedelta(hours=1)
    assert line.sub_account_id == "atlantic-project"
    assert line.labels == {"goog-k8s-cluster-name": "atlantic"}
    assert line.extra["unit_price"] == "0.031611"
    assert line.billed_cost == line.net_cost == line.list_cost


def test_a_sku_sold_in_other_units_is_refused() -> None:
    with pytest.raises(PriceError, match=r"choose a SKU priced in By\.s"):
        estimate_records([usage(memory="1")], prices={Driver.memory: CPU}, target=TARGET)


@pytest.mark.parametrize(
    ("now", "start"),
    [
        # The trailing five days, to the end of the current hour.
        (datetime(2026, 10, 20, 12, 30, tzinfo=UTC), datetime(2026, 10, 15, tzinfo=UTC)),
        # Early in a month, the whole previous month too, until its invoice closes.
        (datetime(2026, 11, 3, 8, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC)),
        (datetime(2026, 11, 6, 8, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)),
        (datetime(2027, 1, 2, 0, 5, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)),
    ],
)
def test_the_scheduled_re_pull_window(now: datetime, start: datetime) -> None:
    window = trailing_window(now, trailing_days=5)
    assert window == Window(start, now.replace(minute=0) + timedelta(hours=1))


def test_the_re_pull_window_is_in_utc_hours_whatever_the_clock_says() -> None:
    # 00:45 on the 6th in India is 19:15 UTC on the 5th: the previous month is still open,
    # and the window ends at the end of the UTC hour (20:00), not of India's (01:00 = 19:30 UTC).
    india = timezone(timedelta(hours=5, minutes=30))
    window = trailing_window(datetime(2026, 11, 6, 0, 45, tzinfo=india), trailing_days=5)
    assert window == Window(
        datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 5, 20, tzinfo=UTC)
    )
