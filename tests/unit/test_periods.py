"""UTC time, days and months (app.periods): the one calendar every part of hubmeter uses, and
the one way every command reads the dates, months and times people type."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from app.errors import UsageError
from app.periods import (
    EARLIEST,
    INVOICE_MONTH_CLOSE_DAYS,
    LATEST,
    Window,
    as_utc,
    day_start,
    days_in_month,
    floor_hour,
    iso,
    month_start,
    next_month,
    parse_day,
    parse_month,
    parse_time,
    parse_window,
    previous_month,
    read_utc_time,
    require_after,
    with_open_invoice_month,
)

INDIA = timezone(timedelta(hours=5, minutes=30))  # an offset that is not whole hours
DAYS = st.dates(min_value=EARLIEST, max_value=LATEST - timedelta(days=1))


# --- instants -----------------------------------------------------------------------------


def test_a_naive_time_is_utc_and_an_aware_one_is_converted() -> None:
    naive = datetime(2026, 10, 1, 6)  # noqa: DTZ001  # what SQLite hands back
    assert as_utc(naive) == datetime(2026, 10, 1, 6, tzinfo=UTC)
    converted = as_utc(datetime(2026, 10, 1, 6, tzinfo=INDIA))
    assert converted.tzinfo is UTC
    assert converted == datetime(2026, 10, 1, 0, 30, tzinfo=UTC)


def test_the_hour_is_the_utc_hour_whatever_the_offset() -> None:
    # 12:45 in India is 07:15 UTC: the hour starts at 07:00 UTC, not at 12:00 India time.
    assert floor_hour(datetime(2026, 10, 1, 12, 45, tzinfo=INDIA)) == datetime(
        2026, 10, 1, 7, tzinfo=UTC
    )
    assert floor_hour(datetime(2026, 10, 1, 7, 0, 0, 1, tzinfo=UTC)) == datetime(
        2026, 10, 1, 7, tzinfo=UTC
    )
    naive = datetime(2026, 10, 1, 7, 59)  # noqa: DTZ001  # naive means UTC
    assert floor_hour(naive) == datetime(2026, 10, 1, 7, tzinfo=UTC)


def test_days_start_at_midnight_utc_and_times_are_written_in_utc() -> None:
    assert day_start(date(2026, 10, 3)) == datetime(2026, 10, 3, tzinfo=UTC)
    assert iso(datetime(2026, 10, 1, 12, 45, tzinfo=INDIA)) == "2026-10-01T07:15:00Z"


def test_a_window_is_half_open_aware_and_never_empty() -> None:
    start, end = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 2, tzinfo=UTC)
    window = Window(start, end)
    assert window.contains(start)
    assert not window.contains(end)
    assert window.covers(Window(start, start + timedelta(hours=1)))
    assert not window.covers(Window(start, end + timedelta(hours=1)))
    assert str(window) == "[2026-10-01T00:00:00Z, 2026-10-02T00:00:00Z)"
    with pytest.raises(ValueError, match="timezone-aware"):
        Window(start.replace(tzinfo=None), end)
    with pytest.raises(ValueError, match="empty window"):
        Window(start, start)


# --- calendar months ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "first", "following", "before", "length"),
    [
        (date(2026, 10, 15), date(2026, 10, 1), date(2026, 11, 1), date(2026, 9, 1), 31),
        (date(2026, 12, 31), date(2026, 12, 1), date(2027, 1, 1), date(2026, 11, 1), 31),
        (date(2027, 1, 1), date(2027, 1, 1), date(2027, 2, 1), date(2026, 12, 1), 31),
        (date(2028, 2, 29), date(2028, 2, 1), date(2028, 3, 1), date(2028, 1, 1), 29),
        (date(2026, 2, 10), date(2026, 2, 1), date(2026, 3, 1), date(2026, 1, 1), 28),
    ],
)
def test_calendar_months(
    day: date, first: date, following: date, before: date, length: int
) -> None:
    assert month_start(day) == first
    assert next_month(day) == following
    assert previous_month(day) == before
    assert days_in_month(day) == length


@given(DAYS)
def test_months_tile_the_calendar(day: date) -> None:
    first = month_start(day)
    assert first <= day < next_month(day)
    assert (next_month(day) - first).days == days_in_month(day)
    assert next_month(previous_month(day)) == first
    assert previous_month(next_month(day)) == first


@pytest.mark.parametrize(
    ("today", "start", "expected"),
    [
        # While the previous month's invoice is open, its first day...
        (date(2026, 11, 1), date(2026, 10, 27), date(2026, 10, 1)),
        (date(2026, 11, INVOICE_MONTH_CLOSE_DAYS), date(2026, 10, 31), date(2026, 10, 1)),
        (date(2027, 1, 2), date(2026, 12, 28), date(2026, 12, 1)),
        # ...unless the start is earlier still;
        (date(2026, 11, 2), date(2026, 9, 20), date(2026, 9, 20)),
        # once it has closed, the start as it is.
        (date(2026, 11, INVOICE_MONTH_CLOSE_DAYS + 1), date(2026, 11, 1), date(2026, 11, 1)),
        (date(2026, 10, 20), date(2026, 10, 15), date(2026, 10, 15)),
    ],
)
def test_the_previous_month_is_reopened_until_its_invoice_closes(
    today: date, start: date, expected: date
) -> None:
    assert with_open_invoice_month(start, today) == expected


# --- values people type --------------------------------------------------------------------


def test_a_month_is_yyyy_mm() -> None:
    assert parse_month("2026-10") == date(2026, 10, 1)
    assert parse_month(" 2026-12 ") == date(2026, 12, 1)
    assert parse_month("2000-01") == EARLIEST
    assert parse_month("2099-12") == date(2099, 12, 1)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-13", "expected YYYY-MM such as 2026-10, got '2026-13'"),
        ("2026-00", "expected YYYY-MM"),
        ("2026-1", "expected YYYY-MM"),
        ("26-10", "expected YYYY-MM"),
        ("2026-10-01", "expected YYYY-MM"),
        ("october", "expected YYYY-MM"),
        ("２０２６-１０", "expected YYYY-MM"),  # other digits than 0-9
        ("0000-01", "expected a month from 2000-01 to 2099-12, got '0000-01'"),
        ("1999-12", "expected a month from 2000-01 to 2099-12"),
        ("2100-01", "expected a month from 2000-01 to 2099-12"),
    ],
)
def test_a_month_that_cannot_be_read_names_the_option(text: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_month(text)
    assert caught.value.field == "--month"
    assert str(caught.value) == f"--month: {caught.value.message}"
    assert says in caught.value.message
    with pytest.raises(UsageError) as named:
        parse_month(text, "month")
    assert named.value.field == "month"


def test_a_day_is_yyyy_mm_dd() -> None:
    assert parse_day("2026-10-03", "--day") == date(2026, 10, 3)
    with pytest.raises(UsageError, match=r"^--day: expected a date like 2026-10-01, got '3/10'$"):
        parse_day("3/10", "--day")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-10-01", datetime(2026, 10, 1, tzinfo=UTC)),
        ("2026-10-01T06:00:00Z", datetime(2026, 10, 1, 6, tzinfo=UTC)),
        ("2026-10-01T06:00z", datetime(2026, 10, 1, 6, tzinfo=UTC)),
        ("2026-10-01T06:00", datetime(2026, 10, 1, 6, tzinfo=UTC)),  # no offset: UTC
        ("2026-10-01T08:00:00+02:00", datetime(2026, 10, 1, 6, tzinfo=UTC)),
        ("2026-10-01 06:00:00 UTC", datetime(2026, 10, 1, 6, tzinfo=UTC)),  # as BigQuery writes
        (" 2026-10-01T06:00Z\n", datetime(2026, 10, 1, 6, tzinfo=UTC)),
    ],
)
def test_a_time_is_a_date_or_an_iso_time_in_utc(text: str, expected: datetime) -> None:
    moment = parse_time(text, "--start")
    assert moment == expected
    assert moment.tzinfo is UTC
    assert read_utc_time(text) == expected


@pytest.mark.parametrize("text", ["", "tomorrow", "2026-10-32", "2026-10-01T25:00", "1e9"])
def test_a_time_that_cannot_be_read_names_the_option(text: str) -> None:
    assert read_utc_time(text) is None
    with pytest.raises(UsageError) as caught:
        parse_time(text, "--end")
    assert str(caught.value) == (
        f"--end: expected a date like 2026-10-01 or a time like 2026-10-01T06:00:00Z, got {text!r}"
    )


def test_a_window_from_the_command_line_ends_after_it_starts() -> None:
    assert parse_window("2026-10-01", "2026-10-02T06:00Z") == Window(
        datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 2, 6, tzinfo=UTC)
    )
    for start, end in (("2026-10-02", "2026-10-01"), ("2026-10-01", "2026-10-01")):
        with pytest.raises(UsageError) as caught:
            parse_window(start, end)
        assert caught.value.field == "--end"
        assert "must be after --start" in str(caught.value)
    with pytest.raises(UsageError, match=r"^--start: expected a date"):
        parse_window("nope", "2026-10-01")
    moment = datetime(2026, 10, 1, tzinfo=UTC)
    require_after(moment, moment + timedelta(microseconds=1))
    with pytest.raises(UsageError, match=r"^--end: must be after --start 2026-10-01T00:00:00Z"):
        require_after(moment, moment)


# --- the commands read them the same way ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # `costs` refused a bad time with click's own usage screen, not one line.
        (
            ["costs", "show", "--start", "yesterday", "--end", "2026-10-02"],
            "--start: expected a date like 2026-10-01 or a time like 2026-10-01T06:00:00Z, "
            "got 'yesterday'",
        ),
        (
            ["costs", "show", "--start", "2026-10-02", "--end", "2026-10-01"],
            "--end: must be after --start 2026-10-02T00:00:00Z: the end is exclusive",
        ),
        (
            ["usage", "show", "--start", "2026-10-01", "--end", "later"],
            "--end: expected a date like 2026-10-01 or a time like 2026-10-01T06:00:00Z, "
            "got 'later'",
        ),
        (
            ["usage", "show", "--start", "2026-10-02", "--end", "2026-10-01"],
            "--end: must be after --start 2026-10-02T00:00:00Z: the end is exclusive",
        ),
        (
            ["ingest", "usage", "--start", "2026-10-01T06:30Z"],
            "--start 2026-10-01T06:30:00Z is not on a whole hour",
        ),
        (
            ["attribute", "--start", "2026-10-01", "--end", "10/02"],
            "--end: expected a date like 2026-10-01, got '10/02'",
        ),
        (["attribute", "--month", "2026-13"], "--month: expected YYYY-MM such as 2026-10"),
        (["demo", "--month", "2026-13", "--no-serve"], "--month: expected YYYY-MM"),
    ],
)
def test_every_command_refuses_a_bad_date_the_same_way(args: list[str], message: str) -> None:
    from app.cli import cli

    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, UsageError), result.output
    assert message in str(result.exception)


def test_the_command_prints_a_usage_error_as_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from app import cli

    monkeypatch.setattr("sys.argv", ["hubmeter", "costs", "show", "--start", "x", "--end", "y"])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 2
    printed = capsys.readouterr().err.strip()
    assert printed.startswith("error: --start: expected a date like 2026-10-01")
    assert "\n" not in printed
