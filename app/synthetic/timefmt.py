"""Times as the files write them. Everything is UTC epoch seconds inside the generator."""

from __future__ import annotations

import datetime as dt


def utc(epoch_seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_seconds, dt.UTC)


def iso_utc(epoch_seconds: int) -> str:
    """`2026-10-01T00:00:00Z`, as the truth files and FOCUS write times."""
    return utc(epoch_seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_day(epoch_seconds: int) -> str:
    return utc(epoch_seconds).strftime("%Y-%m-%d")


def bigquery_timestamp(epoch_seconds: int, microseconds: int | None = None) -> str:
    """`2026-10-01 00:00:00 UTC`, or with `.123456` before the zone, as `bq extract` writes."""
    text = utc(epoch_seconds).strftime("%Y-%m-%d %H:%M:%S")
    if microseconds is not None:
        text += f".{microseconds:06d}"
    return text + " UTC"


def first_grid_time(at_or_after: int, step: int) -> int:
    """The first multiple of `step` that is not before `at_or_after`."""
    return -(-at_or_after // step) * step


def month_start(epoch_seconds: int) -> int:
    moment = utc(epoch_seconds)
    return int(dt.datetime(moment.year, moment.month, 1, tzinfo=dt.UTC).timestamp())


def next_month_start(epoch_seconds: int) -> int:
    moment = utc(epoch_seconds)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return int(dt.datetime(year, month, 1, tzinfo=dt.UTC).timestamp())


def invoice_month(epoch_seconds: int) -> str:
    return utc(epoch_seconds).strftime("%Y%m")
