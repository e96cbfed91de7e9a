"""The date ranges a cost report accepts, and the periods it cuts them into. Pure.

Every range is half-open `[start, end)` of whole UTC days (an `app.attribution.rules.Period`).
A report by month labels each period with the part of the month that lies inside the range, so
a range that starts on the 15th has a first period of [15th, 1st of next month).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from app.attribution.rules import Period
from app.errors import UsageError
from app.periods import DAY, EARLIEST, LATEST, month_start, next_month


class Interval(StrEnum):
    """How a range is cut into periods."""

    day = "day"
    month = "month"
    total = "total"


# The longest range one request may cover: a year of days, or three years of months.
MAX_RANGE_DAYS = {Interval.day: 366, Interval.month: 1096, Interval.total: 1096}


def check_range(start: date, end: date, interval: Interval) -> Period:
    """The range, or UsageError whose `field` says which end to move and why."""
    for field, value in (("start", start), ("end", end)):
        if not EARLIEST <= value <= LATEST:
            raise UsageError(
                f"must be between {EARLIEST} and {LATEST}, got {value.isoformat()}", field=field
            )
    if end <= start:
        raise UsageError(
            f"must be after start ({start.isoformat()}); periods are half-open [start, end), "
            f"so one day is start={start.isoformat()}&end={start + DAY}",
            field="end",
        )
    limit = MAX_RANGE_DAYS[interval]
    length = (end - start).days
    if length > limit:
        hint = " (interval=month covers up to 1096 days)" if interval == Interval.day else ""
        raise UsageError(
            f"the range covers {length} days; at most {limit} days with interval={interval}{hint}",
            field="end",
        )
    return Period(start, end)


def default_range(today: date) -> Period:
    """The current calendar month: what a caller who names no range usually means."""
    return Period(month_start(today), next_month(today))


def clip_period(period_start: date, interval: Interval, within: Period) -> tuple[date, date]:
    """The [start, end) of the period that begins at `period_start`, cut to the range."""
    if interval == Interval.day:
        return period_start, period_start + DAY
    if interval == Interval.month:
        return max(period_start, within.start), min(next_month(period_start), within.end)
    return within.start, within.end
