"""UTC days, calendar months and the periods a date range is reported in. Pure.

Every range is half-open `[start, end)` of whole UTC days. A report by month labels each
period with the part of the month that lies inside the range, so a range that starts on the
15th has a first period of [15th, 1st of next month).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

# Calendar arithmetic stays far from date.min/date.max, and a typo such as 0206-10-01 is
# refused instead of scanning two thousand years of nothing.
EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 1, 1)


class Interval(StrEnum):
    """How a range is cut into periods."""

    day = "day"
    month = "month"
    total = "total"


# The longest range one request may cover: a year of days, or three years of months.
MAX_RANGE_DAYS = {Interval.day: 366, Interval.month: 1096, Interval.total: 1096}


class RangeError(ValueError):
    """A date range that cannot be reported; `field` names the parameter to change."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def month_start(day: date) -> date:
    return day.replace(day=1)


def next_month(day: date) -> date:
    first = day.replace(day=1)
    return (first + timedelta(days=32)).replace(day=1)


def days_in_month(day: date) -> int:
    return (next_month(day) - month_start(day)).days


def check_range(start: date, end: date, interval: Interval) -> DateRange:
    """The range, or RangeError saying which end to move and why."""
    for field, value in (("start", start), ("end", end)):
        if not EARLIEST <= value <= LATEST:
            raise RangeError(
                field, f"must be between {EARLIEST} and {LATEST}, got {value.isoformat()}"
            )
    if end <= start:
        raise RangeError(
            "end",
            f"must be after start ({start.isoformat()}); periods are half-open [start, end), "
            f"so one day is start={start.isoformat()}&end={(start + timedelta(days=1))}",
        )
    limit = MAX_RANGE_DAYS[interval]
    length = (end - start).days
    if length > limit:
        hint = " (interval=month covers up to 1096 days)" if interval == Interval.day else ""
        raise RangeError(
            "end",
            f"the range covers {length} days; at most {limit} days with interval={interval}{hint}",
        )
    return DateRange(start, end)


def default_range(today: date) -> DateRange:
    """The current calendar month: what a caller who names no range usually means."""
    return DateRange(month_start(today), next_month(today))


def clip_period(period_start: date, interval: Interval, within: DateRange) -> tuple[date, date]:
    """The [start, end) of the period that begins at `period_start`, cut to the range."""
    if interval == Interval.day:
        return period_start, period_start + timedelta(days=1)
    if interval == Interval.month:
        return max(period_start, within.start), min(next_month(period_start), within.end)
    return within.start, within.end


def parse_month(text: str) -> date:
    """`YYYY-MM` as the first day of that month, or RangeError."""
    try:
        year, month = text.split("-")
        first = date(int(year), int(month), 1)
    except ValueError:
        raise RangeError("month", f"expected a month as YYYY-MM, got {text!r}") from None
    if not EARLIEST <= first < LATEST:
        raise RangeError("month", f"must be between 2000-01 and 2099-12, got {text!r}")
    return first
