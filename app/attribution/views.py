"""The attribution API: find allocations, explain one ("why is my bill this?"), and, for
finance, the runs and what each changed.

A community's token sees its own allocations only; another community's allocation, and any
unattributed one (it belongs to no community), answers 404 exactly like a missing id. Its
explanations are trimmed to what is its own (`for_viewer`): a shared allocation is split from
the whole cluster's cost, and those cost lines also carry other namespaces' labels and the
operator's projects.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from app.attribution import service
from app.attribution.schemas import (
    AllocationExplanation,
    AllocationList,
    AllocationOut,
    CostLineOut,
    PoolOut,
    RunDetail,
    RunOut,
)
from app.auth.deps import CurrentPrincipal, FinancePrincipal, ensure_community_access
from app.costapi.schemas import Page
from app.costapi.tabular import OffsetParam
from app.costs.models import Component
from app.deps import SessionDep
from app.problems import Problem

router = APIRouter(prefix="/api/v1", tags=["attribution"])


@router.get(
    "/allocations",
    summary="Allocations in force, to find the one to explain",
    response_model=AllocationList,
)
def list_allocations(
    session: SessionDep,
    principal: CurrentPrincipal,
    day: Annotated[date, Query(description="The day (UTC).")],
    hub_id: int | None = None,
    user_id: int | None = None,
    component: Component | None = None,
    community_id: Annotated[
        str | None, Query(description="Finance only; a community token sees its own.")
    ] = None,
    unattributed: Annotated[
        bool, Query(description="Finance only: the allocations no hub gets.")
    ] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: OffsetParam = 0,
) -> AllocationList:
    """The allocations in force for a day, optionally of one hub, user or component, a page
    at a time (ordered by day, hub, user, component and id)."""
    if not principal.reads_everything:
        if unattributed or (community_id is not None and community_id != principal.community_id):
            return AllocationList(allocations=[], page=Page.of(limit=limit, offset=offset, total=0))
        community_id = principal.community_id
    views, total = service.find_allocations(
        session=session,
        day=day,
        hub_id=hub_id,
        user_id=user_id,
        component=component.value if component else None,
        community_id=community_id,
        unattributed=unattributed,
        limit=limit,
        offset=offset,
    )
    allocations = [
        AllocationOut(
            id=v.id,
            run_id=v.run_id,
            day=v.day,
            cluster=v.cluster,
            community_id=v.community_id,
            hub_id=v.hub_id,
            hub=v.hub,
            user_id=v.user_id,
            user=v.user,
            component=v.component,
            rule=v.rule,
            amount=v.amount,
            currency=v.currency,
            estimated=v.estimated,
        )
        for v in views
    ]
    return AllocationList(
        allocations=allocations, page=Page.of(limit=limit, offset=offset, total=total)
    )


@router.get(
    "/allocations/{allocation_id}/explanation",
    summary="Why an allocation is what it is",
    response_model=AllocationExplanation,
    responses={404: {"description": "no such allocation (or not yours)"}},
)
def explain_allocation(
    allocation_id: int,
    session: SessionDep,
    principal: CurrentPrincipal,
    lines: Annotated[
        int, Query(ge=0, le=10_000, description="How many of its cost lines to list.")
    ] = 20,
) -> AllocationExplanation:
    """The cost lines the allocation came from, the rule, and the usage shares that made it,
    charge period by charge period, recomputed with the policy of its run."""
    view = service.get_allocation(session=session, allocation_id=allocation_id)
    if view is None:
        raise Problem(404, "Not found", "no such allocation")
    ensure_community_access(principal, view.community_id, "allocation")
    explanation = service.explain_allocation(
        session=session, allocation_id=allocation_id, line_limit=lines
    )
    if explanation is None:  # pragma: no cover - it existed a moment ago, in this transaction
        raise Problem(404, "Not found", "no such allocation")
    return explanation if principal.reads_everything else for_viewer(explanation)


def for_viewer(explanation: AllocationExplanation) -> AllocationExplanation:
    """An explanation as a community's viewer may read it.

    Kept: the amounts, the rule, the charge periods with the viewer's own hub's and users'
    shares and the totals they are shares of (pool cost, driver units), and each cost line's
    id, service, SKU, charge period and cost, enough to check the arithmetic. Removed: where
    the bill comes from (each line's source and source row), the project and labels of lines
    that are not direct to the viewer's hub (a shared pool holds the whole cluster's lines,
    with other namespaces' labels), the cluster's cost-matching configuration, and the run's
    free-text note. Finance and admin read explanations whole.
    """
    pool = explanation.pool
    own_lines = (
        pool is not None
        and pool.kind == "direct"
        and pool.hub_id is not None
        and pool.hub_id == explanation.allocation.hub_id
    )
    return explanation.model_copy(
        update={
            "run": explanation.run.model_copy(update={"note": None}),
            "pool": _viewer_pool(pool, own_lines) if pool is not None else None,
            "cost_line_filter": (
                _viewer_filter(pool, explanation.run.id) if pool is not None else ""
            ),
            "cost_lines": [_viewer_line(line, own_lines) for line in explanation.cost_lines],
        }
    )


def _viewer_pool(pool: PoolOut, own: bool) -> PoolOut:
    return pool if own else pool.model_copy(update={"detail": None})


def _viewer_line(line: CostLineOut, own: bool) -> CostLineOut:
    hidden: dict[str, object] = {"source": "", "source_row": ""}
    if not own:
        hidden.update(project=None, labels={})
    return line.model_copy(update=hidden)


def _viewer_filter(pool: PoolOut, run_id: int) -> str:
    """Which cost lines the pool holds, without the cluster's cost-matching configuration."""
    kind = {
        "direct": f"classified as direct to this hub ({pool.how})",
        "shared": f"classified as shared by cluster {pool.cluster}",
    }.get(pool.kind, f"classified as {pool.kind}")
    return (
        f"cost lines whose charge period overlaps {pool.day}, component {pool.component}, "
        f"currency {pool.currency}, {'estimated' if pool.estimated else 'billed'}, split by "
        f"{pool.driver}, {kind}: {pool.cost_line_count} line(s) with ids "
        f"{pool.first_cost_line_id}..{pool.last_cost_line_id} when run {run_id} was made"
    )


@router.get(
    "/attribution/runs",
    summary="Attribution runs, newest first (finance)",
    response_model=list[RunOut],
)
def list_runs(
    session: SessionDep,
    principal: FinancePrincipal,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[RunOut]:
    """Every run is kept: invoices name the run they used, and re-runs say what they changed."""
    return service.run_summaries(session=session, limit=limit)


@router.get(
    "/attribution/runs/{run_id}",
    summary="One attribution run: totals and what it changed (finance)",
    response_model=RunDetail,
    responses={404: {"description": "no such run"}},
)
def get_run(run_id: int, session: SessionDep, principal: FinancePrincipal) -> RunDetail:
    """Totals per community and unattributed reason, and the differences per hub, community
    and reason against the runs it replaced."""
    detail = service.run_detail(session=session, run_id=run_id)
    if detail is None:
        raise Problem(404, "Not found", "no such attribution run")
    return detail
