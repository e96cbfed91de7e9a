"""UTC time, days and calendar months: the one place hubmeter does calendar arithmetic. Pure.

Time is UTC and every range is half-open `[start, end)` (DESIGN rule 7). Two range types, because
two units:

- `Window` (here): instants, to the microsecond: what a bill, an import or an ingest covers.
- `app.attribution.rules.Period`: whole UTC days (dates): what attribution and the cost API
  count in. It knows its days and its bounds as datetimes (`start_datetime`, `end_datetime`),
  so a day range never needs a Window of its own, and a Window never needs to know about days.

Values people type (command options, query parameters) are parsed here too, and refused with
`app.errors.UsageError` naming the option, which the `hubmeter` command prints as one line
(exit status 2) and the API answers as a 422 about that parameter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from app.errors import UsageError

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)

# Calendar arithmetic stays far from date.min/date.max, and a typo such as 0206-10-01 is
# refused instead of scanning two thousand years of nothing.
EARLIEST = date(2000, 1, 1)
LATEST = date(2100, 1, 1)

# GCP closes an invoice month a few days into the next month; until then its late rows and
# credits still change it, so the scheduled jobs keep re-pulling and re-attributing it.
INVOICE_MONTH_CLOSE_DAYS = 5

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


# --- instants -------------------------------------------------------------------------------


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC. A naive time is taken to be UTC already: that is what the databases
    hand back (SQLite keeps no zone) and what a time written without an offset means here."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def floor_hour(moment: datetime) -> datetime:
    """The start of the UTC hour `moment` falls in."""
    return as_utc(moment).replace(minute=0, second=0, microsecond=0)


def day_start(day: date) -> datetime:
    """Midnight UTC at the start of `day`."""
    return datetime.combine(day, time(0), tzinfo=UTC)


def read_utc_time(text: str) -> datetime | None:
    """`text` as an aware UTC datetime, or None if it is not a time. ISO 8601: a date alone is
    midnight, a time without an offset is UTC; `Z`, `z` and a trailing ` UTC` (as BigQuery
    writes times) mean UTC."""
    value = text.strip()
    if value.endswith(" UTC"):
        value = value[:-4]
    elif value.endswith("z"):
        value = value[:-1] + "Z"
    try:
        return as_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def iso(moment: datetime) -> str:
    """`2026-10-01T00:00:00Z`: how hubmeter writes a UTC time."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Window:
    """A half-open UTC interval of instants `[start, end)`, never empty."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a window's bounds must be timezone-aware UTC times")
        if self.end <= self.start:
            raise ValueError(f"empty window: end {self.end:%Y-%m-%dT%H:%MZ} is not after start")

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def covers(self, other: Window) -> bool:
        return self.start <= other.start and other.end <= self.end

    def __str__(self) -> str:
        return f"[{iso(self.start)}, {iso(self.end)})"


# --- calendar months ------------------------------------------------------------------------


def month_start(day: date) -> date:
    """The first day of `day`'s month."""
    return day.replace(day=1)


def next_month(day: date) -> date:
    """The first day of the month after `day`'s."""
    if day.month == 12:
        return date(day.year + 1, 1, 1)
    return date(day.year, day.month + 1, 1)


def previous_month(day: date) -> date:
    """The first day of the month before `day`'s."""
    if day.month == 1:
        return date(day.year - 1, 12, 1)
    return date(day.year, day.month - 1, 1)


def days_in_month(day: date) -> int:
    return (next_month(day) - month_start(day)).days


def with_open_invoice_month(start: date, today: date) -> date:
    """`start`, moved back to the first day of the previous month while that month's invoice
    is still open (the first INVOICE_MONTH_CLOSE_DAYS days of `today`'s month)."""
    if today < month_start(today) + timedelta(days=INVOICE_MONTH_CLOSE_DAYS):
        return min(start, previous_month(today))
    return start


# --- values people type ---------------------------------------------------------------------


def parse_month(text: str, field: str = "--month") -> date:
    """`YYYY-MM` as the first day of that month, or UsageError naming `field`."""
    match = _MONTH.fullmatch(text.strip())
    if match is None or not 1 <= int(match[2]) <= 12:
        raise UsageError(f"expected YYYY-MM such as 2026-10, got {text!r}", field=field)
    # There is no year 0000: read it as 0001, which the bounds below refuse.
    first = date(max(int(match[1]), 1), int(match[2]), 1)
    if not EARLIEST <= first < LATEST:
        raise UsageError(
            f"expected a month from {EARLIEST:%Y-%m} to {LATEST - DAY:%Y-%m}, got {text!r}",
            field=field,
        )
    return first


def parse_day(text: str, field: str) -> date:
    """`YYYY-MM-DD` as a date, or UsageError naming `field`."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"expected a date like 2026-10-01, got {text!r}", field=field) from None


def parse_time(text: str, field: str) -> datetime:
    """A date (`2026-10-01`, midnight UTC) or an ISO time (`2026-10-01T06:00:00Z`, with an
    offset or without one, meaning UTC) as an aware UTC datetime, or UsageError naming
    `field`."""
    moment = read_utc_time(text)
    if moment is None:
        raise UsageError(
            f"expected a date like 2026-10-01 or a time like 2026-10-01T06:00:00Z, got {text!r}",
            field=field,
        )
    return moment


def require_after(start: datetime, end: datetime) -> None:
    """UsageError unless `end` (the --end option) is after `start` (--start)."""
    if end <= start:
        raise UsageError(f"must be after --start {iso(start)}: the end is exclusive", field="--end")


def parse_window(start: str, end: str) -> Window:
    """`--start` and `--end` (each as `parse_time` reads it) as a Window, or UsageError."""
    window_start, window_end = parse_time(start, "--start"), parse_time(end, "--end")
    require_after(window_start, window_end)
    return Window(window_start, window_end)
