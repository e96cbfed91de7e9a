"""Hourly usage per hub and user, in exact base units (seconds, bytes, cores).

Base units keep every figure exact: a server that ran ten minutes is 600 server-seconds, not
0.1666... hours. Hours, GiB-hours and core-hours are derived for display.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Exact, UTCDateTime


class UsageHour(Base):
    """Usage of one user (or, for a namespace that matches no hub, of the namespace) in one hour.

    `hub_id` and `user_id` are empty for namespaces no configured hub names: their usage is kept
    so shared cluster cost is split honestly and their share shows as unattributed.
    """

    __tablename__ = "usage_hour"
    __table_args__ = (
        Index(None, "cluster_name", "hour"),
        UniqueConstraint("hub_id", "hour", "user_id"),
        Index(None, "user_id", "hour"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("ingestion_batch.id"), index=True)
    cluster_name: Mapped[str] = mapped_column(ForeignKey("cluster.name"))
    namespace: Mapped[str] = mapped_column(String(63))
    hub_id: Mapped[int | None] = mapped_column(ForeignKey("hub.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("hub_user.id"))
    hour: Mapped[datetime] = mapped_column(UTCDateTime())
    server_seconds: Mapped[Decimal] = mapped_column(Exact())
    memory_request_byte_seconds: Mapped[Decimal] = mapped_column(Exact())
    cpu_request_core_seconds: Mapped[Decimal] = mapped_column(Exact())
    memory_usage_byte_seconds: Mapped[Decimal] = mapped_column(Exact())
    cpu_usage_core_seconds: Mapped[Decimal] = mapped_column(Exact())
    gpu_request_seconds: Mapped[Decimal] = mapped_column(Exact())
    home_storage_byte_seconds: Mapped[Decimal] = mapped_column(Exact())
