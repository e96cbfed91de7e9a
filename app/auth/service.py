"""API tokens: create (shown once), bind to a proxy-vouched identity, verify, list, revoke.

Every creation and revocation is written to the audit log in the caller's transaction.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent
from app.auth.models import ApiToken, Role
from app.hubs.models import Community
from app.periods import as_utc

TOKEN_PREFIX = "hm_"  # noqa: S105 - a public prefix that marks hubmeter tokens, not a secret
IDENTITY_PREFIX = "identity"  # what listings show instead of a token prefix for identity grants
# Recording every use would turn each read into a write; a minute is fine enough to tell a
# token in use from a forgotten one.
log = logging.getLogger(__name__)
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_EXPIRY = timedelta(days=3660)

_DURATION = re.compile(r"^\s*(\d{1,5})\s*([hdwy])\s*$")
_DURATION_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_IDENTITY = re.compile(r"^[^\s\x00-\x1f\x7f]{1,320}$")


class TokenStatus(StrEnum):
    active = "active"
    expired = "expired"
    revoked = "revoked"


class TokenError(ValueError):
    """A token request that cannot be granted as asked; the message says what to change."""


def hash_token(token: str) -> str:
    """SHA-256 of the token. Tokens are 256-bit random values, so a fast hash is enough: there
    is nothing to brute-force that a slow password hash would protect."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_duration(text: str) -> timedelta | None:
    """`90d`, `12h`, `2w` or `1y` (365 days) as a timedelta; `never` as None."""
    if text.strip().lower() == "never":
        return None
    match = _DURATION.match(text.lower())
    if match is None:
        raise TokenError(
            f"expected a duration such as 90d, 12h, 2w or 1y, or 'never'; got {text!r}"
        )
    count, unit = int(match.group(1)), match.group(2)
    duration = count * (timedelta(days=365) if unit == "y" else _DURATION_UNITS[unit])
    if duration <= timedelta(0):
        raise TokenError(f"the expiry must be in the future; got {text!r}")
    if duration > MAX_EXPIRY:
        raise TokenError(f"at most 10 years; got {text!r} (use 'never' for no expiry)")
    return duration


def normalize_identity(identity: str) -> str:
    """Identities (e-mail addresses, logins) compare without regard to case or outer spaces."""
    cleaned = identity.strip().lower()
    if not _IDENTITY.match(cleaned):
        raise TokenError(
            f"expected an identity such as an e-mail address or login (at most 320 characters, "
            f"no spaces), got {identity!r}"
        )
    return cleaned


def token_status(row: ApiToken, now: datetime) -> TokenStatus:
    """Whether a token can be used now."""
    if row.revoked_at is not None:
        return TokenStatus.revoked
    if row.expires_at is not None and row.expires_at <= now:
        return TokenStatus.expired
    return TokenStatus.active


def _check_grant(
    session: Session,
    role: Role,
    community_id: str | None,
    now: datetime,
    expires_at: datetime | None,
) -> None:
    if role == Role.viewer and community_id is None:
        raise TokenError("a viewer token belongs to one community: give --community")
    if role != Role.viewer and community_id is not None:
        raise TokenError(f"a {role} token reads every community; do not give --community")
    if expires_at is not None and expires_at <= now:
        raise TokenError("the expiry must be in the future")
    if community_id is not None and session.get(Community, community_id) is None:
        known = sorted(session.scalars(select(Community.id)))
        raise TokenError(
            f"no community {community_id!r}; expected one of {known} "
            "(run `hubmeter config apply` after adding it to the configuration)"
        )


def _audit(session: Session, *, actor: str, action: str, row: ApiToken, now: datetime) -> None:
    session.add(
        AuditEvent(
            occurred_at=now,
            actor=actor[:200],
            action=action,
            entity_type="api_token",
            entity_id=str(row.id),
            community_id=row.community_id,
            detail={
                "name": row.name,
                "role": row.role,
                "identity": row.identity,
                "expires_at": row.expires_at.isoformat() if row.expires_at else None,
            },
        )
    )


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
    """Create a bearer token; returns the row and the token itself, which is never stored."""
    _check_grant(session, role, community_id, now, expires_at)
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
    _audit(session, actor=created_by, action="token.create", row=row, now=now)
    session.flush()
    return row, token


def grant_identity(
    *,
    session: Session,
    identity: str,
    name: str,
    role: Role,
    community_id: str | None,
    created_by: str,
    now: datetime,
    expires_at: datetime | None = None,
) -> ApiToken:
    """Grant a proxy-vouched identity a role (and community). No secret is issued: the
    identity signs in through the proxy. An expired grant for the same identity is revoked
    and replaced; a live one must be revoked first, so nobody holds two roles at once."""
    _check_grant(session, role, community_id, now, expires_at)
    identity = normalize_identity(identity)
    for existing in session.scalars(
        select(ApiToken).where(ApiToken.identity == identity, ApiToken.revoked_at.is_(None))
    ):
        if token_status(existing, now) == TokenStatus.active:
            raise TokenError(
                f"{identity} already has live grant {existing.id} ({existing.role}); revoke it "
                f"first with `hubmeter tokens revoke {existing.id}`"
            )
        revoke_token(session=session, token_id=existing.id, now=now, actor=created_by)
    row = ApiToken(
        # A random secret nobody is given: the row can never be used as a bearer token.
        token_sha256=hash_token(secrets.token_urlsafe(32)),
        display_prefix=IDENTITY_PREFIX,
        name=name,
        role=role.value,
        community_id=community_id,
        created_at=now,
        created_by=created_by,
        expires_at=expires_at,
        identity=identity,
    )
    session.add(row)
    session.flush()
    _audit(session, actor=created_by, action="token.create", row=row, now=now)
    session.flush()
    return row


def verify_token(*, session: Session, token: str, now: datetime) -> ApiToken | None:
    """The live token matching `token`, or None if unknown, revoked or expired."""
    row = session.scalars(
        select(ApiToken).where(ApiToken.token_sha256 == hash_token(token))
    ).one_or_none()
    if row is None or row.identity is not None:
        return None
    if token_status(row, now) != TokenStatus.active:
        return None
    return row


def verify_identity(*, session: Session, identity: str, now: datetime) -> ApiToken | None:
    """The live grant for a proxy-vouched identity, or None."""
    try:
        identity = normalize_identity(identity)
    except TokenError:
        return None
    row = session.scalars(
        select(ApiToken).where(ApiToken.identity == identity, ApiToken.revoked_at.is_(None))
    ).one_or_none()
    if row is None or token_status(row, now) != TokenStatus.active:
        return None
    return row


def use_is_due(*, row: ApiToken, now: datetime) -> bool:
    """Whether a use of the token at `now` is worth noting (at most once per
    LAST_USED_RESOLUTION)."""
    return row.last_used_at is None or now - as_utc(row.last_used_at) >= LAST_USED_RESOLUTION


def record_use(*, session_factory: Callable[[], Session], token_id: int, now: datetime) -> None:
    """Note that the token was used, in a short transaction of its own: a request that only
    reads writes nothing in its own, and a busy database costs the note, never the answer."""
    try:
        with session_factory() as session, session.begin():
            session.execute(
                update(ApiToken)
                .where(
                    ApiToken.id == token_id,
                    or_(
                        ApiToken.last_used_at.is_(None),
                        ApiToken.last_used_at <= now - LAST_USED_RESOLUTION,
                    ),
                )
                .values(last_used_at=now)
            )
    except SQLAlchemyError as exc:
        log.warning("could not note the use of token %s (%s)", token_id, type(exc).__name__)


def get_token(*, session: Session, token_id: int) -> ApiToken | None:
    """One token by id."""
    return session.get(ApiToken, token_id)


def list_tokens(
    *,
    session: Session,
    community_id: str | None = None,
    now: datetime | None = None,
    active_only: bool = False,
    limit: int | None = None,
    offset: int = 0,
) -> list[ApiToken]:
    """Tokens, newest first (hashes are never shown); `active_only` needs `now`."""
    query = select(ApiToken).order_by(ApiToken.id.desc())
    if community_id is not None:
        query = query.where(ApiToken.community_id == community_id)
    if active_only:
        if now is None:
            raise ValueError("active_only needs now")
        query = query.where(
            ApiToken.revoked_at.is_(None),
            (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now),
        )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query.offset(offset)))


def count_tokens(
    *,
    session: Session,
    community_id: str | None = None,
    now: datetime | None = None,
    active_only: bool = False,
) -> int:
    """How many tokens `list_tokens` would list without a limit."""
    query = select(func.count()).select_from(ApiToken)
    if community_id is not None:
        query = query.where(ApiToken.community_id == community_id)
    if active_only:
        if now is None:
            raise ValueError("active_only needs now")
        query = query.where(
            ApiToken.revoked_at.is_(None),
            (ApiToken.expires_at.is_(None)) | (ApiToken.expires_at > now),
        )
    return int(session.scalar(query) or 0)


def revoke_token(
    *, session: Session, token_id: int, now: datetime, actor: str = "unknown"
) -> ApiToken | None:
    """Revoke a token by id; revoking twice keeps the first revocation time."""
    row = session.get(ApiToken, token_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = now
        session.flush()
        _audit(session, actor=actor, action="token.revoke", row=row, now=now)
        session.flush()
    return row
