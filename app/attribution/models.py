"""Attribution runs and the daily allocations they produce."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Exact, JSONType, UTCDateTime


class AttributionRun(Base):
    """One attribution of a period. Kept for ever: invoices name the run they used, and a
    re-run after late data is a new run that reports what changed against the previous one."""

    __tablename__ = "attribution_run"
    __table_args__ = (Index(None, "period_start", "period_end"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType)
    inputs_sha256: Mapped[str] = mapped_column(String(64))
    previous_run_id: Mapped[int | None] = mapped_column(ForeignKey("attribution_run.id"))
    currency: Mapped[str] = mapped_column(String(3))
    cost_total: Mapped[Decimal] = mapped_column(Exact())
    allocated_total: Mapped[Decimal] = mapped_column(Exact())
    unattributed_total: Mapped[Decimal] = mapped_column(Exact())
    estimated_total: Mapped[Decimal] = mapped_column(Exact())
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    note: Mapped[str | None] = mapped_column(Text)


class AttributionDay(Base):
    """Which run is in force for each day: the latest run whose period covers it. Every query
    of "the" allocations joins through this table, so older runs stay for comparison without
    ever being counted twice."""

    __tablename__ = "attribution_day"

    day: Mapped[date] = mapped_column(Date(), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("attribution_run.id"), index=True)


class AllocationPool(Base):
    """The cost of one day that a run split one way: the cost lines of one classification
    (direct to a hub, shared by a cluster, or unattributed with a reason), component, driver,
    estimated flag and currency. Allocations point back to it, so "which cost lines?" has an
    answer that can be re-queried: the lines of `day` that match this key, `cost_line_count`
    of them, with ids from `first_cost_line_id` to `last_cost_line_id`, adding up to
    `net_cost` when the run was made."""

    __tablename__ = "allocation_pool"
    __table_args__ = (Index(None, "run_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("attribution_run.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date())
    kind: Mapped[str] = mapped_column(String(16))
    cluster_name: Mapped[str | None] = mapped_column(String(63))
    # Set for costs direct to one hub (the pool is that hub's); shared and unattributed pools
    # belong to no hub.
    hub_id: Mapped[int | None] = mapped_column(ForeignKey("hub.id"))
    how: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    component: Mapped[str] = mapped_column(String(32))
    driver: Mapped[str] = mapped_column(String(32))
    estimated: Mapped[bool] = mapped_column(default=False)
    currency: Mapped[str] = mapped_column(String(3))
    net_cost: Mapped[Decimal] = mapped_column(Exact())
    cost_line_count: Mapped[int] = mapped_column(Integer)
    # No foreign keys: cost lines are replaced when late or revised data arrives, and the pool
    # must keep saying what the run saw.
    first_cost_line_id: Mapped[int | None] = mapped_column(Integer)
    last_cost_line_id: Mapped[int | None] = mapped_column(Integer)
    charge_periods: Mapped[int] = mapped_column(Integer)
    driver_units: Mapped[Decimal] = mapped_column(Exact())
    capacity_units: Mapped[Decimal | None] = mapped_column(Exact())


class Allocation(Base):
    """Part of the bill for one day, assigned to a hub (and a user, or the hub as a whole), or
    to the explicit unattributed bucket (no hub, no community).

    `basis` says how it was made: the driver and the units of the share (the user's, the hub's,
    the pool's); `pool_id` names the cost it was split from.
    """

    __tablename__ = "allocation"
    __table_args__ = (
        Index(None, "run_id", "day"),
        Index(None, "run_id", "hub_id", "day"),
        Index(None, "run_id", "community_id", "day"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("attribution_run.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date())
    cluster_name: Mapped[str | None] = mapped_column(String(63))
    community_id: Mapped[str | None] = mapped_column(ForeignKey("community.id"))
    hub_id: Mapped[int | None] = mapped_column(ForeignKey("hub.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("hub_user.id"))
    component: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Exact())
    currency: Mapped[str] = mapped_column(String(3))
    estimated: Mapped[bool] = mapped_column(default=False)
    basis: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Not a foreign key: pools and their allocations are written together by one run in one
    # transaction, and PostgreSQL would otherwise check every one of a million rows against a
    # pool table it planned for while still empty.
    pool_id: Mapped[int | None] = mapped_column(Integer)
