"""Bad rows: stop the import at the first one, or (with --quarantine) set them aside and go on."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.errors import InputError, InputProblem

# A quarantine report keeps the first problems in full; the rest are counted.
KEPT_PROBLEMS = 200


@dataclass
class RowProblems:
    """Where a parser reports a bad row. Strict (the default) raises at once, so nothing of the
    import is written; quarantine keeps the problem and lets the parser skip the row."""

    quarantine: bool = False
    problems: list[InputProblem] = field(default_factory=list)
    count: int = 0

    def report(self, problem: InputProblem) -> None:
        """Refuse the row: raise in strict mode, remember it in quarantine mode."""
        if not self.quarantine:
            raise InputError(problem)
        self.count += 1
        if len(self.problems) < KEPT_PROBLEMS:
            self.problems.append(problem)

    def as_stats(self) -> dict[str, object]:
        """What a batch records about the rows it set aside."""
        return {
            "quarantined_rows": self.count,
            "quarantined": [
                {
                    "source": p.source,
                    "line": p.line,
                    "column": p.column,
                    "field": p.field,
                    "expected": p.expected,
                    "got": p.got,
                }
                for p in self.problems
            ],
        }
