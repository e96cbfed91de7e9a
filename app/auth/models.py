"""API tokens. Only a SHA-256 hash of each token is stored; the token is shown once.

A token may instead be bound to an identity that an authenticating proxy vouches for (see
`Settings.trusted_identity_header`): the row then grants that identity its role and community,
with the same expiry and revocation, and its own secret is never shown to anyone.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, text
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
        # One live grant per identity, so a proxy-vouched caller never has two roles to pick
        # from. Revoked rows stay for the record and do not count.
        Index(
            None,
            "identity",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
            sqlite_where=text("revoked_at IS NULL"),
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
    # Lower-cased identity (e-mail, login) this grant is for, when it is used through a trusted
    # authenticating proxy rather than as a bearer token.
    identity: Mapped[str | None] = mapped_column(String(320))
