"""What was imported, from where, for which window, and how far each source has got."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime


class BatchKind(StrEnum):
    usage = "usage"
    costs = "costs"


class BatchStatus(StrEnum):
    complete = "complete"
    superseded = "superseded"


class IngestionBatch(Base):
    """One import of one source's window. Written in the same transaction as its rows, so a
    batch that exists is complete; a later import of the same window marks it superseded."""

    __tablename__ = "ingestion_batch"
    __table_args__ = (Index(None, "kind", "source", "window_start"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(300))
    window_start: Mapped[datetime] = mapped_column(UTCDateTime())
    window_end: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.complete)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime())
    row_count: Mapped[int] = mapped_column(default=0)
    rows_superseded: Mapped[int] = mapped_column(default=0)
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    superseded_by_id: Mapped[int | None] = mapped_column()
    stats: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    note: Mapped[str | None] = mapped_column(Text)


class Watermark(Base):
    """How far a scheduled ingestion of one source has got: data before `through` is in."""

    __tablename__ = "watermark"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    source: Mapped[str] = mapped_column(String(300), primary_key=True)
    through: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
