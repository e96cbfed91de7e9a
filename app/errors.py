"""Errors about input a person can fix: which file, which line, which column, what was expected."""

from __future__ import annotations

from dataclasses import dataclass


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
        what = f"{self.field}: " if self.field else ""
        got = f", got {self.got!r}" if self.got is not None else ""
        return f"{where}: {what}expected {self.expected}{got}"


class InputError(Exception):
    """Input that hubmeter refuses as a whole; nothing of it was written."""

    def __init__(self, problem: InputProblem | str, *, more: int = 0) -> None:
        self.problem = problem
        self.more = more
        text = str(problem)
        if more:
            text += f" (and {more} more problem(s))"
        super().__init__(text)
