"""Communities, hubs and their users, as far as the caller may see them.

`VisibleCommunity`, `VisibleHub` and `VisibleHubUser` load a path's object or answer 404 (also
for another community's objects, so a viewer cannot tell those from missing ones); the cost
routes use them too.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from sqlalchemy.orm import Session

from app.auth.deps import CurrentPrincipal, Principal, ensure_community_access
from app.config import SLUG
from app.costapi import service as cost_service
from app.costapi.schemas import Page
from app.costapi.tabular import (
    CSV_RESPONSE,
    FormatParam,
    LimitParam,
    OffsetParam,
    csv_response,
    json_response,
    page_limit,
    wants_csv,
)
from app.deps import SessionDep
from app.hubs.models import Community, Hub, HubUser
from app.hubs.schemas import (
    CommunityDetail,
    CommunityList,
    CommunityOut,
    HubList,
    HubOut,
    HubUserList,
    HubUserOut,
)
from app.problems import Problem, problem_responses

MAX_ID = 2**31 - 1  # ids are 32-bit integers in the database
# Free-text filters: any printable text, but never a NUL (PostgreSQL refuses it in text).
TEXT_FILTER = r"^[^\x00]*$"
COMMUNITY = "community visible to this token"
HUB = "hub visible to this token"

CommunityIdPath = Annotated[
    str,
    Path(
        pattern=SLUG,
        max_length=63,
        description="The community's id (a slug).",
        examples=["ocean-lab"],
    ),
]
HubIdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="The hub's id.", examples=[1])]
UserIdPath = Annotated[
    int, Path(ge=1, le=MAX_ID, description="The user's id (per hub).", examples=[17])
]

router = APIRouter(
    prefix="/api/v1",
    tags=["communities and hubs"],
    responses=problem_responses(401, 403, 404, 422),
)


def _not_visible(what: str) -> Problem:
    # The same words as ensure_community_access, for missing and foreign objects alike.
    return Problem(404, "Not found", f"no such {what}")


def visible_community(
    community_id: CommunityIdPath, principal: CurrentPrincipal, session: SessionDep
) -> Community:
    """The path's community, if the caller may read it; 404 otherwise."""
    community = session.get(Community, community_id)
    if community is None:
        raise _not_visible(COMMUNITY)
    ensure_community_access(principal, community.id, COMMUNITY)
    return community


def visible_hub(hub_id: HubIdPath, principal: CurrentPrincipal, session: SessionDep) -> Hub:
    """The path's hub, if the caller may read its community; 404 otherwise."""
    hub = session.get(Hub, hub_id)
    if hub is None:
        raise _not_visible(HUB)
    ensure_community_access(principal, hub.community_id, HUB)
    return hub


def rows_community(principal: Principal) -> str | None:
    """Whose rows of a visible hub the caller reads: a viewer only its own community's (the
    hub's history from before it joined that community stays hidden); finance all of them."""
    return None if principal.reads_everything else principal.community_id


def hub_users_since(hub: Hub, principal: Principal, session: Session) -> date | None:
    """For a viewer, the first day the hub's users can be its community's (None: all of
    them); see `app.costapi.service.tenure_start`."""
    community_id = rows_community(principal)
    if community_id is None:
        return None
    return cost_service.tenure_start(session=session, hub_id=hub.id, community_id=community_id)


def visible_hub_user(
    hub: Annotated[Hub, Depends(visible_hub)],
    user_id: UserIdPath,
    principal: CurrentPrincipal,
    session: SessionDep,
) -> HubUser:
    """The path's user of the path's hub; 404 if it is another hub's or missing, or, for a
    viewer, only known from before the hub was its community's."""
    user = session.get(HubUser, user_id)
    if user is None or user.hub_id != hub.id:
        raise _not_visible("user on this hub")
    since = hub_users_since(hub, principal, session)
    if since is not None and not cost_service.user_seen_since(
        session=session, user_id=user.id, since=since
    ):
        raise _not_visible("user on this hub")
    return user


VisibleCommunity = Annotated[Community, Depends(visible_community)]
VisibleHub = Annotated[Hub, Depends(visible_hub)]
VisibleHubUser = Annotated[HubUser, Depends(visible_hub_user)]


def scope_community(principal: Principal, requested: str | None) -> str | None:
    """The community a listing is limited to: the viewer's own, or what finance asked for."""
    if requested is not None:
        ensure_community_access(principal, requested, COMMUNITY)
        return requested
    return None if principal.reads_everything else principal.community_id


def hub_out(hub: Hub, currency: str) -> HubOut:
    return HubOut(
        id=hub.id,
        name=hub.name,
        cluster=hub.cluster_name,
        namespace=hub.namespace,
        community_id=hub.community_id,
        currency=currency,
        monthly_budget=hub.monthly_budget,
        active=hub.active,
    )


def _community_out(community: Community, hub_count: int) -> CommunityOut:
    return CommunityOut(
        id=community.id,
        name=community.name,
        currency=community.currency,
        plan=community.plan,
        billing_email=community.billing_email,
        active=community.active,
        hub_count=hub_count,
    )


_HUB_COLUMNS = [
    "id",
    "name",
    "cluster",
    "namespace",
    "community_id",
    "currency",
    "monthly_budget",
    "active",
]


@router.get(
    "/communities",
    summary="Communities visible to the caller",
    description="A viewer sees its own community; finance and admin see every community. "
    "Ordered by id.",
    response_model=CommunityList,
    responses=CSV_RESPONSE,
)
def list_communities(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    limit: LimitParam = None,
    offset: OffsetParam = 0,
    format: FormatParam = None,
) -> Any:
    csv_wanted = wants_csv(request, format)
    size = page_limit(limit, csv_wanted)
    listing = cost_service.list_communities(
        session=session,
        community_id=scope_community(principal, None),
        limit=size,
        offset=offset,
    )
    communities = [_community_out(c, n) for c, n in listing.items]
    page = Page.of(limit=size, offset=offset, total=listing.total)
    if csv_wanted:
        columns = ["id", "name", "currency", "plan", "billing_email", "active", "hub_count"]
        return csv_response(
            header=columns,
            rows=([getattr(c, col) for col in columns] for c in communities),
            filename="communities.csv",
            total=page.total,
            next_offset=page.next_offset,
        )
    return json_response(CommunityList(communities=communities, page=page))


@router.get(
    "/communities/{community_id}",
    summary="One community and its hubs",
    response_model=CommunityDetail,
)
def get_community(community: VisibleCommunity, session: SessionDep) -> Any:
    listing = cost_service.list_hubs(
        session=session, community_id=community.id, limit=MAX_ID, offset=0
    )
    hubs = [hub_out(hub, currency) for hub, currency in listing.items]
    base = _community_out(community, len(hubs))
    return json_response(CommunityDetail(**base.model_dump(), hubs=hubs))


@router.get(
    "/hubs",
    summary="Hubs visible to the caller",
    description="A viewer sees its own community's hubs; finance and admin see every hub. "
    "Ordered by id.",
    response_model=HubList,
    responses=CSV_RESPONSE,
)
def list_hubs(
    request: Request,
    principal: CurrentPrincipal,
    session: SessionDep,
    community_id: Annotated[
        str | None, Query(pattern=SLUG, max_length=63, description="Only this community's.")
    ] = None,
    cluster: Annotated[
        str | None, Query(pattern=SLUG, max_length=63, description="Only this cluster's.")
    ] = None,
    name: Annotated[
        str | None, Query(pattern=SLUG, max_length=63, description="Only hubs of this name.")
    ] = None,
    active: Annotated[
        bool | None, Query(description="Only active (true) or retired (false) hubs.")
    ] = None,
    limit: LimitParam = None,
    offset: OffsetParam = 0,
    format: FormatParam = None,
) -> Any:
    csv_wanted = wants_csv(request, format)
    size = page_limit(limit, csv_wanted)
    listing = cost_service.list_hubs(
        session=session,
        community_id=scope_community(principal, community_id),
        cluster=cluster,
        name=name,
        active=active,
        limit=size,
        offset=offset,
    )
    hubs = [hub_out(hub, currency) for hub, currency in listing.items]
    page = Page.of(limit=size, offset=offset, total=listing.total)
    if csv_wanted:
        return csv_response(
            header=_HUB_COLUMNS,
            rows=([getattr(h, col) for col in _HUB_COLUMNS] for h in hubs),
            filename="hubs.csv",
            total=page.total,
            next_offset=page.next_offset,
        )
    return json_response(HubList(hubs=hubs, page=page))


@router.get("/hubs/{hub_id}", summary="One hub", response_model=HubOut)
def get_hub(hub: VisibleHub, session: SessionDep) -> Any:
    currency = cost_service.community_currency(session=session, community_id=hub.community_id)
    return json_response(hub_out(hub, currency))


@router.get(
    "/hubs/{hub_id}/users",
    summary="A hub's users",
    description="Everyone hubmeter has seen use the hub, ordered by id. A viewer sees those of "
    "its community's time on the hub (see docs/api.md, Access).",
    response_model=HubUserList,
    responses=CSV_RESPONSE,
)
def list_hub_users(
    request: Request,
    hub: VisibleHub,
    principal: CurrentPrincipal,
    session: SessionDep,
    username: Annotated[
        str | None,
        Query(max_length=512, pattern=TEXT_FILTER, description="Only the user of this name."),
    ] = None,
    limit: LimitParam = None,
    offset: OffsetParam = 0,
    format: FormatParam = None,
) -> Any:
    csv_wanted = wants_csv(request, format)
    size = page_limit(limit, csv_wanted)
    listing = cost_service.list_users(
        session=session,
        hub_id=hub.id,
        username=username,
        limit=size,
        offset=offset,
        since=hub_users_since(hub, principal, session),
    )
    users = [HubUserOut.model_validate(user) for user in listing.items]
    page = Page.of(limit=size, offset=offset, total=listing.total)
    if csv_wanted:
        return csv_response(
            header=["id", "username", "first_seen_at"],
            rows=([u.id, u.username, u.first_seen_at] for u in users),
            filename=f"hub-{hub.id}-users.csv",
            total=page.total,
            next_offset=page.next_offset,
        )
    return json_response(HubUserList(hub_id=hub.id, users=users, page=page))
