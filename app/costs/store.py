"""Writing cost lines in bulk, inside the caller's transaction.

PostgreSQL gets them through `COPY ... FROM STDIN` on the session's own connection (so the rows
are part of the import's one transaction); SQLite through executemany in chunks. Amounts go in as
`Decimal` and come back exactly; labels and extra as JSON text.
"""

from __future__ import annotations

from contextlib import ExitStack, suppress
from operator import attrgetter
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from app.costs.models import CostLine
from app.costs.records import STORED_COLUMNS, CostRecord, flat_json, labels_json

SQLITE_CHUNK_ROWS = 2_000

# Labels and extra go last: they are the two columns written as JSON text, the rest as they are.
_PLAIN_COLUMNS = tuple(name for name in STORED_COLUMNS if name not in ("labels", "extra"))
_plain_columns = attrgetter(*_PLAIN_COLUMNS)
_COPY_SQL = (
    f"COPY {CostLine.__tablename__} "
    f"(batch_id, {', '.join(_PLAIN_COLUMNS)}, labels, extra) FROM STDIN"
)


class CostLineWriter:
    """Appends cost lines. `pause()` ends a running COPY so the session can run other statements
    (a new batch, a DELETE); the next `add` starts a new one. `close()` flushes everything."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.postgres = session.get_bind().dialect.name == "postgresql"
        self.written = 0
        self._stack: ExitStack | None = None
        self._copy: Any = None
        self._pending: list[dict[str, Any]] = []
        self._table: Table = CostLine.__table__  # type: ignore[assignment]

    def add(self, record: CostRecord, batch_id: int) -> None:
        if self.postgres:
            if self._copy is None:
                self._start_copy()
            self._copy.write_row(
                (
                    batch_id,
                    *_plain_columns(record),
                    labels_json(record.labels),
                    flat_json(record.extra),
                )
            )
        else:
            row = {name: getattr(record, name) for name in STORED_COLUMNS}
            row["batch_id"] = batch_id
            self._pending.append(row)
            if len(self._pending) >= SQLITE_CHUNK_ROWS:
                self._flush_sqlite()
        self.written += 1

    def pause(self) -> None:
        """Finish what is in flight so other statements can run on the session."""
        if self._stack is not None:
            stack, self._stack, self._copy = self._stack, None, None
            stack.close()
        if self._pending:
            self._flush_sqlite()

    close = pause

    def abort(self) -> None:
        """Drop what is in flight; the caller rolls the transaction back."""
        self._pending.clear()
        if self._stack is not None:
            stack, self._stack, self._copy = self._stack, None, None
            # The transaction is being rolled back anyway; a failing COPY must not hide why.
            with suppress(Exception):
                stack.close()

    def _start_copy(self) -> None:
        connection = self.session.connection().connection.dbapi_connection
        assert connection is not None
        from psycopg.copy import QueuedLibpqWriter

        stack = ExitStack()
        cursor: Any = stack.enter_context(connection.cursor())  # type: ignore[arg-type]
        # A writer thread sends the rows while this one parses the next: the server's half of
        # COPY runs on the other core instead of after ours.
        self._copy = stack.enter_context(cursor.copy(_COPY_SQL, writer=QueuedLibpqWriter(cursor)))
        self._stack = stack

    def _flush_sqlite(self) -> None:
        rows, self._pending = self._pending, []
        self.session.execute(insert(self._table), rows)
