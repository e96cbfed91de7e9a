"""Who is calling, and what they may read: the dependencies every API route declares.

A community viewer reads its own community and nothing else; finance reads every community;
admin can do what finance can and manage tokens and runs. Routes load tenant-owned objects
through `ensure_community_access`, which answers 404 (not 403) for another community's objects
so that ids, names and counts never leak.

Callers authenticate with a bearer token. A deployment behind an authenticating proxy may also
set `HUBMETER_TRUSTED_IDENTITY_HEADER`: a request without a bearer token is then the identity the
proxy names in that header, with the role and community of that identity's grant
(`hubmeter tokens create --identity ...`). A bearer token, when sent, always decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.auth import service as token_service
from app.auth.models import ApiToken, Role
from app.clock import utcnow
from app.config import Settings
from app.deps import SessionDep
from app.problems import Problem

bearer = HTTPBearer(auto_error=False, description="An API token from `hubmeter tokens create`.")


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    community_id: str | None
    # The token (or identity grant) the caller authenticated with.
    token_id: int | None = None

    @property
    def reads_everything(self) -> bool:
        return self.role in (Role.finance, Role.admin)

    def can_read(self, community_id: str | None) -> bool:
        """May this caller read objects of `community_id` (None: not tied to any community)?"""
        if self.reads_everything:
            return True
        return community_id is not None and community_id == self.community_id


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def get_principal(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The caller, from the bearer token or, where configured, the proxy's identity header."""
    # Read from the app, not through another dependency: each plain dependency costs a hop
    # to a worker thread on every request.
    settings: Settings = request.app.state.settings
    now = utcnow()
    if credentials is not None:
        row = token_service.verify_token(session=session, token=credentials.credentials, now=now)
        if row is None:
            raise _unauthorized("the token is unknown, revoked or expired")
        principal = Principal(
            subject=f"token:{row.id}",
            role=Role(row.role),
            community_id=row.community_id,
            token_id=row.id,
        )
        _note_use(request, session, row, now)
        return principal
    header = settings.trusted_identity_header
    sent = request.headers.getlist(header) if header else []
    if len(sent) > 1:
        # A proxy that appends its header to the client's instead of replacing it would
        # otherwise let the client's own copy, the first, speak for the caller.
        raise _unauthorized(f"the identity header {header} came more than once")
    identity = sent[0].strip() if sent else ""
    if not identity:
        how = " or sign in through the proxy" if header else ""
        raise _unauthorized(f"send an API token as `Authorization: Bearer <token>`{how}")
    grant = token_service.verify_identity(session=session, identity=identity, now=now)
    if grant is None:
        # The proxy has authenticated the caller; what is missing is a grant, so 403, and
        # the caller's own identity is all the message repeats.
        raise Problem(
            403,
            "Forbidden",
            f"{identity[:320]!r} has no live hubmeter access; an admin can grant it with "
            "`hubmeter tokens create --identity ... --role ...`",
        )
    principal = Principal(
        subject=f"identity:{grant.identity}",
        role=Role(grant.role),
        community_id=grant.community_id,
        token_id=grant.id,
    )
    _note_use(request, session, grant, now)
    return principal


def _note_use(request: Request, session: Session, row: ApiToken, now: datetime) -> None:
    """Note the token's use (once a minute) on a connection of its own. The request's read
    so far (the token) is committed first: on SQLite a transaction that has read cannot write
    after another connection has, and the request may go on to write."""
    if token_service.use_is_due(row=row, now=now):
        token_id = row.id
        session.commit()
        token_service.record_use(
            session_factory=request.app.state.session_factory, token_id=token_id, now=now
        )


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


async def require_finance(principal: CurrentPrincipal) -> Principal:
    if not principal.reads_everything:
        raise Problem(403, "Forbidden", "this needs a finance or admin token")
    return principal


async def require_admin(principal: CurrentPrincipal) -> Principal:
    if principal.role != Role.admin:
        raise Problem(403, "Forbidden", "this needs an admin token")
    return principal


FinancePrincipal = Annotated[Principal, Depends(require_finance)]
AdminPrincipal = Annotated[Principal, Depends(require_admin)]


def ensure_community_access(principal: Principal, community_id: str | None, what: str) -> None:
    """404 unless the caller may read `community_id`'s objects; the same answer as a missing
    object, so a viewer learns nothing about other communities."""
    if not principal.can_read(community_id):
        raise Problem(404, "Not found", f"no such {what}")
