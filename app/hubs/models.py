"""The tenants: clusters, communities (who pays), hubs (what they run) and hub users."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, Exact, UTCDateTime


class Cluster(Base):
    __tablename__ = "cluster"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Community(Base):
    __tablename__ = "community"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    billing_email: Mapped[str] = mapped_column(String(320))
    currency: Mapped[str] = mapped_column(String(3))
    plan: Mapped[str] = mapped_column(String(63))
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    hubs: Mapped[list[Hub]] = relationship(back_populates="community")


class Hub(Base):
    __tablename__ = "hub"
    __table_args__ = (
        UniqueConstraint("cluster_name", "name"),
        UniqueConstraint("cluster_name", "namespace"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    cluster_name: Mapped[str] = mapped_column(ForeignKey("cluster.name"))
    name: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    community_id: Mapped[str] = mapped_column(ForeignKey("community.id"), index=True)
    monthly_budget: Mapped[Decimal | None] = mapped_column(Exact())
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    community: Mapped[Community] = relationship(back_populates="hubs")


class HubUser(Base):
    """One person on one hub, under the canonical (raw, unescaped) username."""

    __tablename__ = "hub_user"
    __table_args__ = (UniqueConstraint("hub_id", "username"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hub_id: Mapped[int] = mapped_column(ForeignKey("hub.id", ondelete="CASCADE"))
    username: Mapped[str] = mapped_column(String(512))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
