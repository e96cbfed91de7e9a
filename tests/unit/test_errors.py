"""Errors a person can fix say what to change, in one form:
`where: field: expected ..., got ...`."""

from __future__ import annotations

import pytest

from app.errors import BadValue, InputError, InputProblem, UsageError


def test_a_problem_says_where_what_was_expected_and_what_was_there() -> None:
    problem = InputProblem("bill.csv", 3, 12, "BilledCost", "a decimal number", "lots")
    assert str(problem) == "bill.csv:3:12: BilledCost: expected a decimal number, got 'lots'"
    assert str(InputProblem("bill.csv", None, 4, None, "a header row")) == (
        "bill.csv: expected a header row"
    )
    assert str(InputError(problem, more=2)) == f"{problem} (and 2 more problem(s))"


def test_a_bad_value_reads_the_same_before_and_after_it_is_placed() -> None:
    bad = BadValue("cost", "a number", "lots")
    assert isinstance(bad, ValueError)
    assert str(bad) == "cost: expected a number, got 'lots'"
    assert str(BadValue(None, "a finite number")) == "expected a finite number"
    placed = bad.at("export.jsonl", 2)
    assert placed == InputProblem("export.jsonl", 2, None, "cost", "a number", "lots")
    assert str(placed) == f"export.jsonl:2: {bad}"


def test_a_bad_value_keeps_its_column_unless_the_reader_knows_better() -> None:
    bad = BadValue("labels", "a label name", "9x", column=17)
    assert bad.at("usage.om", 4).column == 17
    assert bad.at("usage.om", 4, column=3).column == 3
    assert str(bad.at("usage.om", 4)) == "usage.om:4:17: labels: expected a label name, got '9x'"


def test_a_usage_error_names_the_option_it_is_about() -> None:
    error = UsageError("expected YYYY-MM, got 'x'", field="--month")
    assert str(error) == "--month: expected YYYY-MM, got 'x'"
    assert (error.field, error.message) == ("--month", "expected YYYY-MM, got 'x'")
    plain = UsageError("give --start and --end")
    assert (str(plain), plain.field) == ("give --start and --end", None)


def test_the_command_line_raises_the_one_usage_error() -> None:
    from app import cli

    assert cli.UsageError is UsageError
    with pytest.raises(UsageError):
        raise cli.UsageError("re-exported, not redefined")
