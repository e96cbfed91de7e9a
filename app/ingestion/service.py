"""Ingestion batches and watermarks: the bookkeeping every import shares.

An import runs in one transaction: it takes its source's lock, creates its batch, marks the
batches it replaces as superseded, writes its rows, and commits once. A killed import therefore
leaves nothing behind, and a repeated one replaces, never adds.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import take_sqlite_write_lock
from app.ingestion.models import BatchStatus, IngestionBatch, Watermark


def lock_source(*, session: Session, kind: str, source: str) -> None:
    """Make imports of one source take turns: hold its lock until this transaction ends.

    Take it before the import reads anything. Without it, two imports of the same window run
    side by side: on PostgreSQL (READ COMMITTED) each one's DELETE misses the other's new rows,
    both sets stay, and neither batch is superseded. With it, the second waits for the first to
    commit, and then replaces its rows.

    PostgreSQL: a transaction-level advisory lock on a stable 64-bit hash of kind and source
    (taking it again in the same transaction is harmless). SQLite has one writer at a time, and
    a transaction that has read before it writes cannot wait for that writer (its snapshot is
    stale, so SQLite refuses at once with "database is locked"); so on SQLite this takes the
    database's write lock with a statement that writes nothing, waiting (busy_timeout) for a
    running import to commit; everything read afterwards includes what it wrote.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(source_lock_key(kind, source))))
    else:
        take_sqlite_write_lock(session)


def source_lock_key(kind: str, source: str) -> int:
    """The advisory lock key of a source: the same in every process and release (Python's
    `hash()` is salted per process), as a signed 64-bit integer, PostgreSQL's bigint."""
    digest = hashlib.blake2b(f"{kind}\x00{source}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def start_batch(
    *,
    session: Session,
    kind: str,
    source: str,
    window_start: datetime,
    window_end: datetime,
    now: datetime,
    content_sha256: str | None = None,
) -> IngestionBatch:
    """Create the batch an import writes its rows under (in the caller's transaction)."""
    if window_end <= window_start:
        raise ValueError(f"empty window [{window_start}, {window_end})")
    batch = IngestionBatch(
        kind=kind,
        source=source,
        window_start=window_start,
        window_end=window_end,
        status=BatchStatus.complete,
        started_at=now,
        finished_at=now,
        row_count=0,
        rows_superseded=0,
        content_sha256=content_sha256,
        stats={},
    )
    session.add(batch)
    session.flush()
    return batch


def overlapping_batches(
    *, session: Session, kind: str, source: str, window_start: datetime, window_end: datetime
) -> list[IngestionBatch]:
    """Current batches of the same source whose window overlaps `[window_start, window_end)`."""
    return list(
        session.scalars(
            select(IngestionBatch)
            .where(
                IngestionBatch.kind == kind,
                IngestionBatch.source == source,
                IngestionBatch.status == BatchStatus.complete,
                IngestionBatch.window_start < window_end,
                IngestionBatch.window_end > window_start,
            )
            .order_by(IngestionBatch.id)
        )
    )


def finish_batch(
    *,
    session: Session,
    batch: IngestionBatch,
    row_count: int,
    rows_superseded: int,
    stats: dict[str, Any],
    now: datetime,
) -> IngestionBatch:
    """Record what the import did; still inside the caller's transaction."""
    batch.row_count = row_count
    batch.rows_superseded = rows_superseded
    batch.stats = stats
    batch.finished_at = now
    session.flush()
    return batch


def mark_superseded(*, session: Session, old: IngestionBatch, by: IngestionBatch) -> None:
    """`old` is replaced by `by` (only where it was wholly covered; partial overlaps stay
    current for the part of their window `by` did not cover)."""
    if by.window_start <= old.window_start and old.window_end <= by.window_end:
        old.status = BatchStatus.superseded
        old.superseded_by_id = by.id
    session.flush()


def get_watermark(*, session: Session, kind: str, source: str) -> datetime | None:
    """How far a source's scheduled ingestion has got, if it has run before."""
    mark = session.get(Watermark, (kind, source))
    return mark.through if mark else None


def advance_watermark(
    *, session: Session, kind: str, source: str, through: datetime, now: datetime
) -> None:
    """Move the watermark forward to `through` (never backward: re-ingesting an old window
    must not make the schedule forget newer data)."""
    mark = session.get(Watermark, (kind, source))
    if mark is None:
        session.add(Watermark(kind=kind, source=source, through=through, updated_at=now))
    elif through > mark.through:
        mark.through = through
        mark.updated_at = now
    session.flush()
