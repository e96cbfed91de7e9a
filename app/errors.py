"""Errors about input a person can fix, each saying what to change.

- `InputError(InputProblem(...))`: a file hubmeter refuses as a whole: which file, line, column
  and field, what was expected and what was there.
- `BadValue`: one value that is not what was expected, raised where the value is read, by code
  that does not know which file or line it came from; the reader that does adds that with
  `BadValue.at(...)`.
- `UsageError`: a mistake in how a command (or an API parameter) was given.

The `hubmeter` command prints an InputError or a UsageError as one line and exits with status 2.
"""

from __future__ import annotations

from dataclasses import dataclass


def _what(field: str | None, expected: str, got: str | None) -> str:
    """`field: expected ..., got '...'`: the part of a problem that does not say where."""
    what = f"{field}: " if field else ""
    got_text = f", got {got!r}" if got is not None else ""
    return f"{what}expected {expected}{got_text}"


@dataclass
class InputProblem:
    """One bad spot in an input file."""

    source: str
    line: int | None
    column: int | None
    field: str | None
    expected: str
    got: str | None = None

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {_what(self.field, self.expected, self.got)}"


class InputError(Exception):
    """Input that hubmeter refuses as a whole; nothing of it was written."""

    def __init__(self, problem: InputProblem | str, *, more: int = 0) -> None:
        self.problem = problem
        self.more = more
        text = str(problem)
        if more:
            text += f" (and {more} more problem(s))"
        super().__init__(text)


class BadValue(ValueError):
    """One value that is not what was expected: its field, what was expected, what was there,
    and where known the column it starts at (1-based). Raised by the pure readers of bills and
    metrics; the caller that knows the file and line turns it into an `InputProblem`."""

    def __init__(
        self,
        field: str | None,
        expected: str,
        got: str | None = None,
        *,
        column: int | None = None,
    ) -> None:
        super().__init__(_what(field, expected, got))
        self.field = field
        self.expected = expected
        self.got = got
        self.column = column

    def at(self, source: str, line: int | None, column: int | None = None) -> InputProblem:
        """The problem in `source` at `line` (and `column`, else the value's own column)."""
        return InputProblem(
            source,
            line,
            column if column is not None else self.column,
            self.field,
            self.expected,
            self.got,
        )


class UsageError(Exception):
    """A mistake in how a command was called, or in one of its values; the message says what
    to change. `field` names the option or parameter at fault (`--month`, `start`) when there
    is one; the message then starts with it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
