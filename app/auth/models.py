"""API tokens. Only a SHA-256 hash of each token is stored; the token is shown once."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class Role(StrEnum):
    viewer = "viewer"  # reads one community's hubs, users, costs and invoices
    finance = "finance"  # reads every community; reviews and approves invoices
    admin = "admin"  # everything finance can, and manages tokens and runs


class ApiToken(Base):
    __tablename__ = "api_token"
    __table_args__ = (
        CheckConstraint(
            "role != 'viewer' OR community_id IS NOT NULL", name="viewer_has_community"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the token, so people can tell their tokens apart in listings.
    display_prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    community_id: Mapped[str | None] = mapped_column(ForeignKey("community.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
