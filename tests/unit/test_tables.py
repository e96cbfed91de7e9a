"""CSV exports: exact amounts, and no formulas smuggled in through usernames."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal

from app.tables import write_csv


def test_cells_are_exact_plain_and_safe_to_open() -> None:
    stream = io.StringIO()
    count = write_csv(
        stream,
        ["day", "user", "amount", "estimated", "at", "note"],
        [
            [date(2026, 10, 1), "=HYPERLINK(\"http://x\")", Decimal("8.0000E-7"), True,
             datetime(2026, 10, 1, tzinfo=UTC), None],
            [date(2026, 10, 2), "@alice", Decimal("-0.5"), False, None, "-1+1"],
        ],
    )  # fmt: skip
    assert count == 2
    assert stream.getvalue().splitlines() == [
        "day,user,amount,estimated,at,note",
        '2026-10-01,"\'=HYPERLINK(""http://x"")",0.00000080000,true,2026-10-01T00:00:00+00:00,',
        "2026-10-02,'@alice,-0.5,false,,'-1+1",
    ]
