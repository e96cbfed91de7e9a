"""API tokens: create (shown once), verify by hash, list, revoke."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.models import ApiToken, Role

TOKEN_PREFIX = "hm_"  # noqa: S105 - a public prefix that marks hubmeter tokens, not a secret


def hash_token(token: str) -> str:
    """SHA-256 of the token. Tokens are 256-bit random values, so a fast hash is enough: there
    is nothing to brute-force that a slow password hash would protect."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    *,
    session: Session,
    name: str,
    role: Role,
    community_id: str | None,
    created_by: str,
    now: datetime,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token; returns the row and the token itself, which is never stored."""
    if role == Role.viewer and community_id is None:
        raise ValueError("a viewer token belongs to one community: give --community")
    if role != Role.viewer and community_id is not None:
        raise ValueError(f"a {role} token reads every community; do not give --community")
    if expires_at is not None and expires_at <= now:
        raise ValueError("the expiry must be in the future")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        token_sha256=hash_token(token),
        display_prefix=token[:10],
        name=name,
        role=role.value,
        community_id=community_id,
        created_at=now,
        created_by=created_by,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, token


def verify_token(*, session: Session, token: str, now: datetime) -> ApiToken | None:
    """The live token matching `token`, or None if unknown, revoked or expired."""
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_sha256 == hash_token(token))
    ).one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    if row.expires_at is not None and row.expires_at <= now:
        return None
    return row


def list_tokens(*, session: Session) -> list[ApiToken]:
    """Every token, newest first (hashes are never shown)."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.id.desc())))


def revoke_token(*, session: Session, token_id: int, now: datetime) -> ApiToken | None:
    """Revoke a token by id; revoking twice keeps the first revocation time."""
    row = session.get(ApiToken, token_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = now
        session.flush()
    return row
