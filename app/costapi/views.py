"""The cost API routes: thin wrappers that check access, call the service and shape the answer.

Every route reads through `VisibleHub` / `VisibleCommunity` (404 for another community's ids)
or needs a finance token (403 otherwise), and answers JSON or, for tables, CSV. A viewer's hub
routes also read only its community's rows of the hub (`rows_community`): should a hub ever
have changed community, its earlier costs, usage and users stay with the earlier community.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.attribution.rules import Period
from app.auth.deps import CurrentPrincipal, FinancePrincipal
from app.clock import utcnow
from app.costapi import service
from app.costapi.cache import CostCache
from app.costapi.forecast import AlertState
from app.costapi.ranges import Interval, check_range, clip_period, default_range
from app.costapi.schemas import (
    CommunityMonthOut,
    CommunityRef,
    CostBreakdown,
    CostReport,
    CostRowOut,
    HubMonthOut,
    HubRef,
    Money,
    MonthOverview,
    Page,
    TopUserOut,
    TopUsersReport,
    UsageOut,
    UsageReport,
    UsageRowOut,
    UserHistory,
    UserPeriodOut,
    UserRef,
)
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
from app.costs.models import Component
from app.deps import SessionDep
from app.errors import UsageError
from app.hubs import service as hub_service
from app.hubs.models import Community, Hub
from app.hubs.views import VisibleCommunity, VisibleHub, VisibleHubUser, rows_community
from app.money import ZERO
from app.periods import month_start, parse_month
from app.problems import invalid, problem_responses
from app.usage.metering import Quantities

router = APIRouter(
    prefix="/api/v1", tags=["costs"], responses=problem_responses(401, 403, 404, 422)
)


async def get_today() -> date:
    """Today's UTC day; a dependency so that tests can pin it."""
    return utcnow().date()


async def get_cost_cache(request: Request) -> CostCache:
    """The process's cache of cost pages (disabled when its size is 0)."""
    cache: CostCache | None = getattr(request.app.state, "cost_cache", None)
    if cache is None:
        cache = request.app.state.cost_cache = CostCache(max_rows=0)
    return cache


Today = Annotated[date, Depends(get_today)]
Cache = Annotated[CostCache, Depends(get_cost_cache)]

StartParam = Annotated[
    date | None,
    Query(
        description="First day of the range (YYYY-MM-DD, UTC, inclusive). Give start and end "
        "together, or neither for the current calendar month.",
        examples=["2026-10-01"],
    ),
]
EndParam = Annotated[
    date | None,
    Query(
        description="Day after the range (YYYY-MM-DD, UTC, exclusive): [start, end). At most "
        "366 days with interval=day, 1096 days otherwise.",
        examples=["2026-11-01"],
    ),
]
IntervalParam = Annotated[
    Interval,
    Query(
        description="Periods to report: `day`, calendar `month` (cut to the range), or one "
        "`total` period for the whole range."
    ),
]
MonthParam = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{4}-[0-9]{2}$",
        description="The month (YYYY-MM, UTC); the current month by default.",
        examples=["2026-10"],
    ),
]


# The dependencies that only compute are `async def`: FastAPI runs every plain `def` one in a
# worker thread, and those hops (not the queries) were most of a cached answer's time.
async def report_range(
    today: Today,
    start: StartParam = None,
    end: EndParam = None,
    interval: IntervalParam = Interval.day,
) -> tuple[Period, Interval]:
    """The checked range and interval of a report, or 422 saying what to change."""
    if start is None and end is None:
        return default_range(today), interval
    if start is None or end is None:
        missing = "start" if start is None else "end"
        raise invalid(
            f"query.{missing}",
            "give start and end together (or neither, for the current month)",
        )
    try:
        return check_range(start, end, interval), interval
    except UsageError as exc:
        raise invalid(f"query.{exc.field}", exc.message) from None


ReportRange = Annotated[tuple[Period, Interval], Depends(report_range)]


async def report_month(today: Today, month: MonthParam = None) -> date:
    """The month of a month-to-date report: not after the current one."""
    if month is None:
        return month_start(today)
    try:
        first = parse_month(month, "month")
    except UsageError as exc:
        raise invalid(f"query.{exc.field}", exc.message) from None
    if first > month_start(today):
        raise invalid("query.month", f"{month} has not started yet; ask for {today:%Y-%m}")
    return first


ReportMonth = Annotated[date, Depends(report_month)]


def _dimensions(values: Sequence[str] | None) -> list[service.Dimension]:
    seen: list[service.Dimension] = []
    for value in values or []:
        dimension = service.Dimension(value)
        if dimension not in seen:
            seen.append(dimension)
    return seen


def _hub_ref(hub: Hub) -> HubRef:
    return HubRef(id=hub.id, name=hub.name, cluster=hub.cluster_name, community_id=hub.community_id)


def _community_ref(community: Community) -> CommunityRef:
    return CommunityRef(id=community.id, name=community.name)


def _money(amounts: dict[str, Decimal]) -> list[Money]:
    return [Money(currency=c, amount=a) for c, a in sorted(amounts.items())]


# --- costs grouped by period and dimension ------------------------------------------------


def _cost_rows(
    session: Session, cache: CostCache, rows: Iterable[service.CostRow]
) -> list[CostRowOut]:
    rows = list(rows)
    names = cache.usernames(session=session, user_ids=[r.user_id for r in rows if r.user_id])
    hubs = service.hubs_by_id(session=session, hub_ids=[r.hub_id for r in rows if r.hub_id])
    communities = hub_service.community_names(
        session=session, community_ids=[r.community_id for r in rows if r.community_id]
    )
    out = []
    for row in rows:
        hub = hubs.get(row.hub_id) if row.hub_id is not None else None
        out.append(
            CostRowOut(
                period_start=row.period_start,
                period_end=row.period_end,
                community_id=row.community_id,
                community_name=communities.get(row.community_id) if row.community_id else None,
                hub_id=row.hub_id,
                hub_name=hub.name if hub else None,
                cluster=hub.cluster_name if hub else None,
                user_id=row.user_id,
                username=names.get(row.user_id) if row.user_id is not None else None,
                component=row.component,
                currency=row.currency,
                amount=row.amount,
                estimated=row.estimated,
            )
        )
    return out


_DIMENSION_CSV_COLUMNS = {
    service.Dimension.community: ["community_id", "community_name"],
    service.Dimension.hub: ["hub_id", "hub_name", "cluster"],
    service.Dimension.user: ["user_id", "username"],
    service.Dimension.component: ["component"],
}


def _cost_answer(
    *,
    request: Request,
    session: Session,
    cache: CostCache,
    scope: service.CostScope,
    period: Period,
    interval: Interval,
    dimensions: list[service.Dimension],
    limit: int | None,
    offset: int,
    format: Any,
    filename: str,
    hub: Hub | None = None,
    community: Community | None = None,
) -> Any:
    csv_wanted = wants_csv(request, format)
    size = page_limit(limit, csv_wanted)
    query = ("costs", scope, period, interval, tuple(dimensions), size, offset)

    def compute() -> service.CostPage:
        return service.costs(
            session=session,
            scope=scope,
            period=period,
            interval=interval,
            dimensions=dimensions,
            limit=size,
            offset=offset,
        )

    if csv_wanted:
        result = cache.get_or_compute(
            session=session, key=query, period=period, compute=compute, rows=_page_rows
        )
        rows = _cost_rows(session, cache, result.rows)
        page = Page.of(limit=size, offset=offset, total=result.total_rows)
        columns = ["period_start", "period_end"]
        for dimension in dimensions:
            columns += _DIMENSION_CSV_COLUMNS[dimension]
        columns += ["currency", "amount", "estimated"]
        return csv_response(
            header=columns,
            rows=([getattr(row, c) for c in columns] for row in rows),
            filename=f"{filename}-costs-{period.start}-{period.end}.csv",
            total=page.total,
            next_offset=page.next_offset,
        )

    def report() -> tuple[bytes, int]:
        result = compute()
        body = CostReport(
            hub=_hub_ref(hub) if hub else None,
            community=_community_ref(community) if community else None,
            start=period.start,
            end=period.end,
            interval=interval,
            by=list(dimensions),
            totals=_money(result.totals),
            rows=_cost_rows(session, cache, result.rows),
            page=Page.of(limit=size, offset=offset, total=result.total_rows),
        )
        return body.model_dump_json().encode(), len(result.rows)

    # The answer is remembered whole, so a repeated question costs no rows or JSON; the hub's
    # and community's names are part of the key because the answer shows them.
    hub_key = (hub.id, hub.name, hub.cluster_name, hub.community_id) if hub else None
    community_key = (community.id, community.name) if community else None
    body, _ = cache.get_or_compute(
        session=session,
        key=(*query, "json", hub_key, community_key),
        period=period,
        compute=report,
        rows=lambda answer: answer[1],
    )
    return Response(body, media_type="application/json")


def _page_rows(page: service.CostPage) -> int:
    return len(page.rows)


_COST_DESCRIPTION = (
    "Costs from the allocations in force, over `[start, end)`, one row per period, group and "
    "currency, in a stable order (period, then each `by` dimension, with the rows tied to no "
    "user/hub/community first). Amounts are exact decimal strings. Paginated with "
    "`limit`/`offset`; `totals` always cover the whole range."
)


@router.get(
    "/hubs/{hub_id}/costs",
    summary="A hub's costs by day or month, by component or user",
    description=_COST_DESCRIPTION,
    response_model=CostReport,
    responses=CSV_RESPONSE,
)
def hub_costs(
    request: Request,
    hub: VisibleHub,
    principal: CurrentPrincipal,
    session: SessionDep,
    cache: Cache,
    report: ReportRange,
    by: Annotated[
        list[Literal["component", "user"]] | None,
        Query(description="Group by component and/or user (repeat the parameter for both)."),
    ] = None,
    limit: LimitParam = None,
    offset: OffsetParam = 0,
    format: FormatParam = None,
) -> Any:
    period, interval = report
    return _cost_answer(
        request=request,
        session=session,
        cache=cache,
        scope=service.CostScope(hub_id=hub.id, community_id=rows_community(principal)),
        period=period,
        interval=interval,
        dimensions=_dimensions(by),
        limit=limit,
        offset=offset,
        format=format,
        filename=f"hub-{hub.name}",
        hub=hub,
    )


@router.get(
    "/communities/{community_id}/costs",
    summary="A community's costs by day or month, by hub, component or user",
    description=_COST_DESCRIPTION,
    response_model=CostReport,
    responses=CSV_RESPONSE,
)
def community_costs(
    request: Request,
    community: VisibleCommunity,
    session: SessionDep,
    cache: Cache,
    report: ReportRange,
    by: Annotated[
        list[Literal["hub", "component", "user"]] | None,
        Query(description="Group by hub, component and/or user (repeat the parameter)."),
    ] = None,
    limit: LimitParam = None,
    offset: OffsetParam = 0,
    format: FormatParam = None,
) -> Any:
    period, interval = report
    return _cost_answer(
        request=request,
        session=session,
        cache=cache,
        scope=service.CostScope(community_id=community.id),
        period=period,
        interval=interval,
        dimensions=_dimensions(by),
        limit=limit,
        offset=offset,
        format=format,
        filename=f"community-{community.id}",
        community=community,
    )


@router.get(
    "/costs",
    summary="Every community's costs, the unattributed bucket included (finance)",
    description=_COST_DESCRIPTION
    + " Needs a finance or admin token. With by=community (or hub), the row with a null "
    "community (hub) is the explicit unattributed bucket.",
    response_model=CostReport,
    responses=CSV_RESPONSE,
)
def all_costs(
    request: Request,
    principal: FinancePrincipal,
    session: SessionDep,
    cache: Cache,
    report: ReportRange,
    by: Annotated[
        list[Literal["community", "hub", "component", "user"]] | None,
        Query(description="Group by community, hub, component and/or user (repeat it)."),
    ] = None,
    limit: LimitParam = None,
    offset: OffsetParam = 0,
    format: FormatParam = None,
) -> Any:
    period, interval = report
    return _cost_answer(
        request=request,
        session=session,
        cache=cache,
        scope=service.CostScope(),
        period=period,
        interval=interval,
        dimensions=_dimensions(by),
        limit=limit,
        offset=offset,
        format=format,
        filename="all",
    )


# --- top users ------------------------------------------------------------------------------

_COMPONENTS = [c.value for c in Component]
_USAGE_COLUMNS = list(UsageOut.model_fields)


@router.get(
    "/hubs/{hub_id}/top-users",
    summary="A hub's most expensive users over a range",
    description="Users ranked by their cost over `[start, end)` (ties by user id), with "
    "their components, usage and share of the hub's whole cost. 10 per page by default.",
    response_model=TopUsersReport,
    responses=CSV_RESPONSE,
)
def top_users(
    request: Request,
    hub: VisibleHub,
    principal: CurrentPrincipal,
    session: SessionDep,
    report: ReportRange,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Users per page.")] = 10,
    offset: OffsetParam = 0,
    format: FormatParam = None,
) -> Any:
    period, _ = report
    community_id = rows_community(principal)
    result = service.top_users(
        session=session,
        hub_id=hub.id,
        period=period,
        limit=limit,
        offset=offset,
        community_id=community_id,
    )
    ids = [u.user_id for u in result.users]
    names = service.usernames(session=session, user_ids=ids)
    usage = service.usage(
        session=session,
        scope=service.CostScope(hub_id=hub.id, community_id=community_id),
        period=period,
        interval=Interval.total,
        dimensions=[service.Dimension.user],
        user_ids=ids,
    )
    users = []
    for rank, entry in enumerate(result.users, start=offset + 1):
        total = result.hub_totals.get(entry.currency, ZERO)
        share = (entry.amount * 100 / total).quantize(Decimal("0.01")) if total else None
        users.append(
            TopUserOut(
                rank=rank,
                user_id=entry.user_id,
                username=names.get(entry.user_id, ""),
                currency=entry.currency,
                amount=entry.amount,
                share_percent=share,
                components=dict(sorted(entry.components.items())),
                estimated=entry.estimated,
                usage=UsageOut.of(usage.get((period.start, None, entry.user_id), Quantities())),
            )
        )
    page = Page.of(limit=limit, offset=offset, total=result.total_users)
    if wants_csv(request, format):
        header = ["rank", "user_id", "username", "currency", "amount", "share_percent"]
        return csv_response(
            header=header + _COMPONENTS + _USAGE_COLUMNS,
            rows=(
                [getattr(u, c) for c in header]
                + [u.components.get(c) for c in _COMPONENTS]
                + [getattr(u.usage, c) for c in _USAGE_COLUMNS]
                for u in users
            ),
            filename=f"hub-{hub.name}-top-users-{period.start}-{period.end}.csv",
            total=page.total,
            next_offset=page.next_offset,
        )
    return json_response(
        TopUsersReport(
            hub=_hub_ref(hub),
            start=period.start,
            end=period.end,
            hub_totals=_money(result.hub_totals),
            users=users,
            page=page,
        )
    )


# --- one user's history -----------------------------------------------------------------------


@router.get(
    "/hubs/{hub_id}/users/{user_id}/costs",
    summary="One user's cost and usage history",
    description="For each period of `[start, end)`: the user's cost by component and their usage.",
    response_model=UserHistory,
    responses=CSV_RESPONSE,
)
def user_history(
    request: Request,
    hub: VisibleHub,
    user: VisibleHubUser,
    principal: CurrentPrincipal,
    session: SessionDep,
    report: ReportRange,
    format: FormatParam = None,
) -> Any:
    period, interval = report
    scope = service.CostScope(
        hub_id=hub.id, user_id=user.id, community_id=rows_community(principal)
    )
    costs = service.costs(
        session=session,
        scope=scope,
        period=period,
        interval=interval,
        dimensions=[service.Dimension.component],
    )
    usage = service.usage(session=session, scope=scope, period=period, interval=interval)
    by_period: dict[tuple[date, date], dict[str, list[service.CostRow]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for row in costs.rows:
        by_period[(row.period_start, row.period_end)][row.currency].append(row)
    spans = {(r.period_start, r.period_end) for r in costs.rows}
    for start, _, _ in usage:
        spans.add(_period_span(start, interval, period))
    periods = []
    for span in sorted(spans):
        breakdown = [
            CostBreakdown(
                currency=currency,
                amount=sum((r.amount for r in rows), ZERO),
                components={r.component or "other": r.amount for r in rows},
                estimated=any(r.estimated for r in rows),
            )
            for currency, rows in sorted(by_period[span].items())
        ]
        usage_key = (_usage_start(span[0], interval, period), None, None)
        periods.append(
            UserPeriodOut(
                period_start=span[0],
                period_end=span[1],
                costs=breakdown,
                usage=UsageOut.of(usage.get(usage_key, Quantities())),
            )
        )
    if wants_csv(request, format):
        header = ["period_start", "period_end", "currency", "amount"]
        return csv_response(
            header=header + _COMPONENTS + _USAGE_COLUMNS,
            rows=_user_history_csv(periods),
            filename=f"hub-{hub.name}-user-{user.id}-{period.start}-{period.end}.csv",
        )
    return json_response(
        UserHistory(
            hub=_hub_ref(hub),
            user=UserRef(id=user.id, username=user.username),
            start=period.start,
            end=period.end,
            interval=interval,
            totals=_money(costs.totals),
            periods=periods,
        )
    )


def _period_span(start: date, interval: Interval, period: Period) -> tuple[date, date]:
    return clip_period(start, interval, period)


def _usage_start(period_start: date, interval: Interval, period: Period) -> date:
    """The key usage() gives the period that starts at `period_start` (months by their 1st)."""
    if interval == Interval.month:
        return month_start(period_start)
    if interval == Interval.total:
        return period.start
    return period_start


def _user_history_csv(periods: list[UserPeriodOut]) -> Iterable[list[object]]:
    for p in periods:
        usage = [getattr(p.usage, c) for c in _USAGE_COLUMNS]
        if not p.costs:
            yield [p.period_start, p.period_end, None, None] + [None] * len(_COMPONENTS) + usage
        for cost in p.costs:
            yield (
                [p.period_start, p.period_end, cost.currency, cost.amount]
                + [cost.components.get(c) for c in _COMPONENTS]
                + usage
            )


# --- usage next to cost ---------------------------------------------------------------------


def _usage_answer(
    *,
    request: Request,
    session: Session,
    scope: service.CostScope,
    period: Period,
    interval: Interval,
    dimensions: list[service.Dimension],
    limit: int | None,
    offset: int,
    format: Any,
    filename: str,
    hub: Hub | None = None,
    community: Community | None = None,
) -> Any:
    csv_wanted = wants_csv(request, format)
    size = page_limit(limit, csv_wanted)
    usage = service.usage(
        session=session, scope=scope, period=period, interval=interval, dimensions=dimensions
    )
    costs = service.costs(
        session=session, scope=scope, period=period, interval=interval, dimensions=dimensions
    )
    by_user = service.Dimension.user in dimensions
    by_hub = service.Dimension.hub in dimensions
    # Both sources keyed alike: (period start, hub, user); a month by its first day.
    cost_by_key: dict[tuple[date, int | None, int | None], dict[str, Decimal]] = defaultdict(dict)
    for row in costs.rows:
        key = (
            _usage_start(row.period_start, interval, period),
            row.hub_id if by_hub else None,
            row.user_id if by_user else None,
        )
        cost_by_key[key][row.currency] = cost_by_key[key].get(row.currency, ZERO) + row.amount
    keys = sorted(
        set(usage) | set(cost_by_key),
        key=lambda k: (k[0], k[1] is not None, k[1] or 0, k[2] is not None, k[2] or 0),
    )
    page_keys = keys[offset : offset + size]
    names = service.usernames(session=session, user_ids=[k[2] for k in page_keys if k[2]])
    hubs = service.hubs_by_id(session=session, hub_ids=[k[1] for k in page_keys if k[1]])
    rows = []
    for key in page_keys:
        span = _period_span(key[0], interval, period)
        key_hub = hubs.get(key[1]) if key[1] is not None else None
        rows.append(
            UsageRowOut(
                period_start=span[0],
                period_end=span[1],
                hub_id=key[1],
                hub_name=key_hub.name if key_hub else None,
                user_id=key[2],
                username=names.get(key[2]) if key[2] is not None else None,
                usage=UsageOut.of(usage.get(key, Quantities())),
                costs=_money(cost_by_key.get(key, {})),
            )
        )
    page = Page.of(limit=size, offset=offset, total=len(keys))
    if csv_wanted:
        header = ["period_start", "period_end"]
        if by_hub:
            header += ["hub_id", "hub_name"]
        if by_user:
            header += ["user_id", "username"]
        return csv_response(
            header=header + _USAGE_COLUMNS + ["currency", "amount"],
            rows=_usage_csv(rows, header),
            filename=f"{filename}-usage-{period.start}-{period.end}.csv",
            total=page.total,
            next_offset=page.next_offset,
        )
    return json_response(
        UsageReport(
            hub=_hub_ref(hub) if hub else None,
            community=_community_ref(community) if community else None,
            start=period.start,
            end=period.end,
            interval=interval,
            by=list(dimensions),
            rows=rows,
            page=page,
        )
    )


def _usage_csv(rows: list[UsageRowOut], header: list[str]) -> Iterable[list[object]]:
    for row in rows:
        lead = [getattr(row, c) for c in header] + [getattr(row.usage, c) for c in _USAGE_COLUMNS]
        if not row.costs:
            yield [*lead, None, None]
        for cost in row.costs:
            yield [*lead, cost.currency, cost.amount]


_USAGE_DESCRIPTION = (
    "Usage over `[start, end)` in hours, GiB-hours and core-hours (from exact base units, "
    "rounded half-even to 6 places), with the cost of the same period and group beside it. "
    "Ordered by period, then hub and user (the rows tied to no user first); paginated with "
    "`limit`/`offset`."
)


@router.get(
    "/hubs/{hub_id}/usage",
    summary="A hub's usage next to its cost",
    description=_USAGE_DESCRIPTION,
    response_model=UsageReport,
    responses=CSV_RESPONSE,
)
def hub_usage(
    request: Request,
    hub: VisibleHub,
    principal: CurrentPrincipal,
    session: SessionDep,
    report: ReportRange,
    by: Annotated[
        list[Literal["user"]] | None, Query(description="`user` for one row per user.")
    ] = None,
    limit: LimitParam = None,
    offset: OffsetParam = 0,
    format: FormatParam = None,
) -> Any:
    period, interval = report
    return _usage_answer(
        request=request,
        session=session,
        scope=service.CostScope(hub_id=hub.id, community_id=rows_community(principal)),
        period=period,
        interval=interval,
        dimensions=_dimensions(by),
        limit=limit,
        offset=offset,
        format=format,
        filename=f"hub-{hub.name}",
        hub=hub,
    )


@router.get(
    "/communities/{community_id}/usage",
    summary="A community's usage next to its cost",
    description=_USAGE_DESCRIPTION,
    response_model=UsageReport,
    responses=CSV_RESPONSE,
)
def community_usage(
    request: Request,
    community: VisibleCommunity,
    session: SessionDep,
    report: ReportRange,
    by: Annotated[
        list[Literal["hub", "user"]] | None,
        Query(description="`hub` and/or `user` (repeat the parameter)."),
    ] = None,
    limit: LimitParam = None,
    offset: OffsetParam = 0,
    format: FormatParam = None,
) -> Any:
    period, interval = report
    dimensions = _dimensions(by)
    if service.Dimension.user in dimensions and service.Dimension.hub not in dimensions:
        # User ids belong to one hub; a row per user always says which hub.
        dimensions.insert(0, service.Dimension.hub)
    return _usage_answer(
        request=request,
        session=session,
        scope=service.CostScope(community_id=community.id),
        period=period,
        interval=interval,
        dimensions=dimensions,
        limit=limit,
        offset=offset,
        format=format,
        filename=f"community-{community.id}",
        community=community,
    )


# --- month to date, forecast and budget -----------------------------------------------------

_MTD_DESCRIPTION = (
    "The month-to-date cost, a month-end forecast and, where the hub has a monthly budget, "
    "budget used, projected overrun and an alert state. A day counts as attributed when it is "
    "before today, has allocations in force, the cloud bill has reached its end (every billing "
    "account's billed usage lines), and the hub's allocations that day are not list-price "
    "estimates. month_to_date sums the attributed days; forecast = month_to_date + run_rate x "
    "(days in month - days attributed), where run_rate is the mean daily cost of the last (up "
    "to) 7 attributed days, so days the bill has not reached yet are forecast at the run rate. "
    "`estimated` is the list-price estimate of the days before today that are not attributed "
    "yet, for information: it is not part of month_to_date. Alert states, worst first: "
    "over_budget (month_to_date > budget), forecast_over_budget (forecast > budget), at_risk "
    "(forecast >= 90% of budget), ok; no_data before the first attributed day; no_budget when "
    "none is configured."
)


def _hub_month_out(hub: Hub, entry: service.HubMonth) -> HubMonthOut:
    f = entry.forecast
    return HubMonthOut(
        hub=_hub_ref(hub),
        month=f"{f.month:%Y-%m}",
        currency=f.currency,
        days_in_month=f.days_in_month,
        days_attributed=f.days_attributed,
        last_attributed_day=f.last_attributed_day,
        month_to_date=f.month_to_date,
        estimated=f.estimated,
        run_rate_per_day=f.run_rate_per_day,
        forecast=f.forecast,
        budget=f.budget,
        budget_used_percent=f.budget_used_percent,
        budget_remaining=f.budget_remaining,
        projected_overrun=f.projected_overrun,
        alert_state=f.alert_state,
        other_currencies=_money(entry.other_currencies),
    )


@router.get(
    "/hubs/{hub_id}/month-to-date",
    summary="A hub's month so far, its month-end forecast and its budget",
    description=_MTD_DESCRIPTION,
    response_model=HubMonthOut,
)
def hub_month_to_date(
    hub: VisibleHub,
    principal: CurrentPrincipal,
    session: SessionDep,
    cache: Cache,
    month: ReportMonth,
    today: Today,
) -> Any:
    (entry,) = service.month_to_date(
        session=session,
        hubs=[hub],
        month=month,
        today=today,
        community_id=rows_community(principal),
        bill_reach=cache.billed_until,
    )
    return json_response(_hub_month_out(hub, entry))


_ALERT_ORDER = list(AlertState)


@router.get(
    "/communities/{community_id}/month-to-date",
    summary="A community's month so far, forecast and budgets, hub by hub",
    description=_MTD_DESCRIPTION
    + " The community's figures are the sums over its hubs; its alert state is the worst "
    "of its hubs'.",
    response_model=CommunityMonthOut,
)
def community_month_to_date(
    community: VisibleCommunity,
    session: SessionDep,
    cache: Cache,
    month: ReportMonth,
    today: Today,
) -> Any:
    hubs = list(session.scalars(select(Hub).where(Hub.community_id == community.id)))
    hubs.sort(key=lambda h: h.id)
    entries = service.month_to_date(
        session=session,
        hubs=hubs,
        month=month,
        today=today,
        community_id=community.id,
        bill_reach=cache.billed_until,
    )
    outs = [_hub_month_out(hub, entry) for hub, entry in zip(hubs, entries, strict=True)]
    forecasts = [e.forecast.forecast for e in entries]
    budgets = [e.forecast.budget for e in entries if e.forecast.budget is not None]
    states = [e.forecast.alert_state for e in entries]
    worst = min(states, key=_ALERT_ORDER.index) if states else AlertState.no_budget
    return json_response(
        CommunityMonthOut(
            community=_community_ref(community),
            month=f"{month:%Y-%m}",
            currency=community.currency,
            month_to_date=sum((e.forecast.month_to_date for e in entries), ZERO),
            forecast=(
                sum((f for f in forecasts if f is not None), ZERO)
                if any(f is not None for f in forecasts)
                else None
            ),
            budget=sum(budgets, ZERO) if budgets else None,
            alert_state=worst,
            hubs=outs,
        )
    )


_MTD_CSV = [
    "month",
    "currency",
    "days_in_month",
    "days_attributed",
    "last_attributed_day",
    "month_to_date",
    "estimated",
    "run_rate_per_day",
    "forecast",
    "budget",
    "budget_used_percent",
    "budget_remaining",
    "projected_overrun",
    "alert_state",
]


@router.get(
    "/month-to-date",
    summary="Every hub's month so far, forecast and budget state (finance)",
    description=_MTD_DESCRIPTION + " Needs a finance or admin token. Ordered by hub id.",
    response_model=MonthOverview,
    responses=CSV_RESPONSE,
)
def all_month_to_date(
    request: Request,
    principal: FinancePrincipal,
    session: SessionDep,
    cache: Cache,
    month: ReportMonth,
    today: Today,
    alert_state: Annotated[
        list[AlertState] | None, Query(description="Only hubs in these states (repeat it).")
    ] = None,
    limit: LimitParam = None,
    offset: OffsetParam = 0,
    format: FormatParam = None,
) -> Any:
    csv_wanted = wants_csv(request, format)
    size = page_limit(limit, csv_wanted)
    hubs = list(session.scalars(select(Hub).order_by(Hub.id)))
    entries = service.month_to_date(
        session=session, hubs=hubs, month=month, today=today, bill_reach=cache.billed_until
    )
    outs = [_hub_month_out(hub, entry) for hub, entry in zip(hubs, entries, strict=True)]
    if alert_state:
        wanted = set(alert_state)
        outs = [o for o in outs if o.alert_state in wanted]
    page = Page.of(limit=size, offset=offset, total=len(outs))
    outs = outs[offset : offset + size]
    if csv_wanted:
        header = ["hub_id", "hub_name", "cluster", "community_id", *_MTD_CSV]
        return csv_response(
            header=header,
            rows=(
                [o.hub.id, o.hub.name, o.hub.cluster, o.hub.community_id]
                + [getattr(o, c) for c in _MTD_CSV]
                for o in outs
            ),
            filename=f"month-to-date-{month:%Y-%m}.csv",
            total=page.total,
            next_offset=page.next_offset,
        )
    return json_response(MonthOverview(month=f"{month:%Y-%m}", hubs=outs, page=page))
