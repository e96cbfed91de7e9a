"""Which days the scheduled attribution covers, and what it reports."""

from __future__ import annotations

from datetime import date

import pytest

from app.attribution.rules import Period
from app.errors import UsageError
from jobs.attribute import month_period, trailing_period


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        # The trailing days through today...
        (date(2026, 10, 20), Period(date(2026, 10, 15), date(2026, 10, 21))),
        # ...widened to the whole previous month while its invoice is still open,
        (date(2026, 11, 3), Period(date(2026, 10, 1), date(2026, 11, 4))),
        (date(2026, 1, 2), Period(date(2025, 12, 1), date(2026, 1, 3))),
        # ...and no longer once it has closed.
        (date(2026, 11, 6), Period(date(2026, 11, 1), date(2026, 11, 7))),
    ],
)
def test_the_trailing_window(today: date, expected: Period) -> None:
    assert trailing_period(today, 5) == expected


def test_a_month_is_its_calendar_days() -> None:
    assert month_period("2026-12") == Period(date(2026, 12, 1), date(2027, 1, 1))
    assert len(month_period("2028-02").days()) == 29
    with pytest.raises(UsageError, match="expected YYYY-MM"):
        month_period("2026-13")
