"""Who am I, and token management for admins."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, status

from app.auth import service as token_service
from app.auth.deps import AdminPrincipal, CurrentPrincipal
from app.auth.models import ApiToken, Role
from app.auth.schemas import Me, TokenCreate, TokenCreated, TokenList, TokenOut
from app.clock import utcnow
from app.config import SLUG
from app.costapi.schemas import Page
from app.deps import SessionDep
from app.problems import Problem, invalid, problem_responses

router = APIRouter(
    prefix="/api/v1", tags=["access"], responses=problem_responses(400, 401, 403, 422)
)

MAX_ID = 2**31 - 1


def _token_out(row: ApiToken, model: type[TokenOut] = TokenOut, **extra: Any) -> Any:
    return model(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        community_id=row.community_id,
        display_prefix=row.display_prefix,
        identity=row.identity,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        status=token_service.token_status(row, utcnow()),
        **extra,
    )


@router.get("/me", summary="The caller: role, community and token", response_model=Me)
def me(principal: CurrentPrincipal, session: SessionDep) -> Me:
    row = (
        token_service.get_token(session=session, token_id=principal.token_id)
        if principal.token_id is not None
        else None
    )
    return Me(
        subject=principal.subject,
        role=principal.role,
        community_id=principal.community_id,
        token_id=principal.token_id,
        token_name=row.name if row else None,
        expires_at=row.expires_at if row else None,
    )


@router.get(
    "/tokens",
    summary="API tokens and identity grants (admin)",
    description="Newest first. Hashes are never shown, only each token's first characters.",
    response_model=TokenList,
)
def list_tokens(
    principal: AdminPrincipal,
    session: SessionDep,
    community_id: Annotated[
        str | None, Query(pattern=SLUG, max_length=63, description="Only this community's.")
    ] = None,
    active: Annotated[
        bool, Query(description="Only tokens that can be used now (not expired or revoked).")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> TokenList:
    now = utcnow()
    rows = token_service.list_tokens(
        session=session,
        community_id=community_id,
        now=now,
        active_only=active,
        limit=limit,
        offset=offset,
    )
    total = token_service.count_tokens(
        session=session, community_id=community_id, now=now, active_only=active
    )
    return TokenList(
        tokens=[_token_out(row) for row in rows],
        page=Page.of(limit=limit, offset=offset, total=total),
    )


@router.post(
    "/tokens",
    summary="Create a token, or grant an identity (admin)",
    description="The bearer token is in the answer once and never again; only its hash is "
    "stored. With `identity`, no token is issued: the identity is granted the role, for use "
    "behind the trusted authenticating proxy.",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenCreated,
)
def create_token(principal: AdminPrincipal, session: SessionDep, body: TokenCreate) -> Any:
    now = utcnow()
    try:
        duration = token_service.parse_duration(body.expires_in)
        expires_at = now + duration if duration is not None else None
        if body.identity is not None:
            row = token_service.grant_identity(
                session=session,
                identity=body.identity,
                name=body.name,
                role=body.role,
                community_id=body.community_id,
                created_by=principal.subject,
                now=now,
                expires_at=expires_at,
            )
            session.commit()  # stored before the admin is told so
            return _token_out(row, TokenCreated, token=None)
        row, token = token_service.create_token(
            session=session,
            name=body.name,
            role=body.role,
            community_id=body.community_id,
            created_by=principal.subject,
            now=now,
            expires_at=expires_at,
        )
    except token_service.TokenError as exc:
        raise invalid("body", str(exc)) from None
    session.commit()  # stored before the token is handed out
    return _token_out(row, TokenCreated, token=token)


@router.post(
    "/tokens/{token_id}/revoke",
    summary="Revoke a token or identity grant (admin)",
    description="Revoked tokens stay listed. Revoking twice keeps the first time. The token "
    "making the request cannot revoke itself (use another admin token or the CLI), so the "
    "last admin cannot lock everyone out by accident.",
    response_model=TokenOut,
    responses=problem_responses(404, 409),
)
def revoke_token(
    principal: AdminPrincipal,
    session: SessionDep,
    token_id: Annotated[int, Path(ge=1, le=MAX_ID)],
) -> Any:
    if token_id == principal.token_id:
        raise Problem(
            409,
            "Conflict",
            "a token cannot revoke itself; use another admin token or "
            f"`hubmeter tokens revoke {token_id}`",
        )
    row = token_service.revoke_token(
        session=session, token_id=token_id, now=utcnow(), actor=principal.subject
    )
    if row is None:
        raise Problem(404, "Not found", "no such token")
    session.commit()  # revoked for good before the admin is told so
    return _token_out(row)
