"""Queries behind the cost API: costs from the allocations in force, usage from usage hours.

The allocations in force for a day are those of the run `attribution_day` names for it; every
cost query joins through that table, so the older runs kept for comparison are never counted.
Amounts are summed exactly with `money_sum`; anything ordered by amount is ordered in Python,
because SQLite stores amounts as text.

A scope with a community reads only that community's rows: allocations by their own
`community_id` (the hub's community when they were made), and usage, which has no community of
its own, only from after the last day on which the hub's allocations name another community
(see `usage`). Hubs with history never change community (`app.hubs.service.sync_from_config`),
so this only matters for a database changed by hand; it keeps such a hub's past from showing
to its new community all the same.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar, TypeVarTuple

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select
from sqlalchemy.orm import Session

from app.attribution.models import Allocation, AttributionDay
from app.attribution.rules import Period
from app.costapi.forecast import MonthForecast, forecast_month
from app.costapi.ranges import Interval, clip_period
from app.costapi.sql import month_of, utc_day_of
from app.costs.models import ChargeCategory, CostLine
from app.costs.service import billed_through
from app.db import money_sum
from app.hubs.models import Community, Hub, HubUser
from app.money import ZERO
from app.periods import DAY, INVOICE_MONTH_CLOSE_DAYS, Window, as_utc, day_start, next_month
from app.usage.metering import QUANTITY_NAMES, Quantities
from app.usage.models import UsageHour

T = TypeVar("T")
Columns = TypeVarTuple("Columns")

log = logging.getLogger(__name__)


class Dimension(StrEnum):
    """What cost rows can be grouped by, besides the period."""

    community = "community"
    hub = "hub"
    user = "user"
    component = "component"


_DIMENSION_COLUMNS: dict[Dimension, Any] = {
    Dimension.community: Allocation.community_id,
    Dimension.hub: Allocation.hub_id,
    Dimension.user: Allocation.user_id,
    Dimension.component: Allocation.component,
}


@dataclass(frozen=True)
class CostScope:
    """Which allocations a query reads. A user scope names the hub too (ids are per hub).
    With a community as well as a hub, only the hub's rows of that community are read (what a
    community's viewer may see of its hub)."""

    community_id: str | None = None
    hub_id: int | None = None
    user_id: int | None = None


@dataclass(frozen=True)
class CostRow:
    period_start: date
    period_end: date
    currency: str
    amount: Decimal
    estimated: bool
    community_id: str | None = None
    hub_id: int | None = None
    user_id: int | None = None
    component: str | None = None


@dataclass
class CostPage:
    rows: list[CostRow]
    total_rows: int
    # Over the whole range, not just this page; one entry per currency.
    totals: dict[str, Decimal]


def _in_force(query: Select[*Columns], period: Period) -> Select[*Columns]:
    """Restrict to the allocations of the run in force for each day of the range."""
    return query.join(
        AttributionDay,
        and_(AttributionDay.run_id == Allocation.run_id, AttributionDay.day == Allocation.day),
    ).where(
        AttributionDay.day >= period.start,
        AttributionDay.day < period.end,
        Allocation.day >= period.start,
        Allocation.day < period.end,
    )


def _scope_filters(scope: CostScope) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if scope.community_id is not None:
        filters.append(Allocation.community_id == scope.community_id)
    if scope.hub_id is not None:
        filters.append(Allocation.hub_id == scope.hub_id)
    if scope.user_id is not None:
        filters.append(Allocation.user_id == scope.user_id)
    return filters


def _period_column(interval: Interval) -> Any:
    if interval == Interval.day:
        return Allocation.day
    if interval == Interval.month:
        return month_of(Allocation.day)
    return None


def _single_period(period: Period, interval: Interval) -> bool:
    if interval == Interval.total:
        return True
    if interval == Interval.month:
        return next_month(period.start) >= period.end
    return period.end - period.start == DAY


def _nulls_first(column: Any) -> Any:
    # PostgreSQL sorts NULL last and SQLite first; say which, so pages are the same on both.
    return case((column.is_(None), 0), else_=1)


def costs(
    *,
    session: Session,
    scope: CostScope,
    period: Period,
    interval: Interval,
    dimensions: Sequence[Dimension] = (),
    limit: int | None = None,
    offset: int = 0,
) -> CostPage:
    """Costs over `period` by period and `dimensions`, one row per group and currency, in a
    stable order (period, then each dimension with the not-tied-to-any rows first)."""
    # A range inside one period needs no period grouping: the label is the range itself.
    period_column = None if _single_period(period, interval) else _period_column(interval)
    group: list[Any] = [] if period_column is None else [period_column]
    order: list[Any] = list(group)
    for dimension in dimensions:
        column = _DIMENSION_COLUMNS[dimension]
        group.append(column)
        order.extend([_nulls_first(column), column])
    group.append(Allocation.currency)
    order.append(Allocation.currency)
    query = select(
        *group,
        money_sum(Allocation.amount),
        func.max(case((Allocation.estimated, 1), else_=0)),
        func.count().over(),
    ).select_from(Allocation)
    query = _in_force(query, period).where(*_scope_filters(scope))
    query = query.group_by(*group).order_by(*order).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    keyed = [d.value for d in dimensions]
    rows: list[CostRow] = []
    total_rows = 0
    for record in session.execute(query).all():
        # Positional: period?, each dimension, currency, amount, estimated, groups.
        values = list(record)
        total_rows = int(values[-1])
        first = values.pop(0) if period_column is not None else period.start
        period_start, period_end = clip_period(first, interval, period)
        ids = dict(zip(keyed, values, strict=False))
        rows.append(
            CostRow(
                period_start=period_start,
                period_end=period_end,
                currency=values[len(keyed)],
                amount=values[len(keyed) + 1],
                estimated=bool(values[len(keyed) + 2]),
                community_id=ids.get("community"),
                hub_id=ids.get("hub"),
                user_id=ids.get("user"),
                component=ids.get("component"),
            )
        )
    complete = offset == 0 and (limit is None or len(rows) < limit)
    if complete:
        totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
        for row in rows:
            totals[row.currency] += row.amount
        return CostPage(rows=rows, total_rows=len(rows), totals=dict(totals))
    totals = cost_totals(session=session, scope=scope, period=period)
    if not rows:
        total_rows = count_cost_groups(
            session=session, scope=scope, period=period, interval=interval, dimensions=dimensions
        )
    return CostPage(rows=rows, total_rows=total_rows, totals=totals)


def cost_totals(*, session: Session, scope: CostScope, period: Period) -> dict[str, Decimal]:
    """The total over the range, per currency."""
    query = select(Allocation.currency, money_sum(Allocation.amount)).select_from(Allocation)
    query = _in_force(query, period).where(*_scope_filters(scope)).group_by(Allocation.currency)
    return dict(session.execute(query).all())


def count_cost_groups(
    *,
    session: Session,
    scope: CostScope,
    period: Period,
    interval: Interval,
    dimensions: Sequence[Dimension],
) -> int:
    """How many rows `costs` has for these groups, over all pages."""
    period_column = _period_column(interval)
    group = [] if period_column is None else [period_column]
    group += [_DIMENSION_COLUMNS[d] for d in dimensions] + [Allocation.currency]
    inner = _in_force(select(*group).select_from(Allocation), period)
    inner = inner.where(*_scope_filters(scope)).group_by(*group)
    return int(session.scalar(select(func.count()).select_from(inner.subquery())) or 0)


# --- top users ------------------------------------------------------------------------------


@dataclass
class UserCost:
    user_id: int
    currency: str
    amount: Decimal
    components: dict[str, Decimal]
    estimated: bool


@dataclass
class TopUsers:
    users: list[UserCost]
    total_users: int
    hub_totals: dict[str, Decimal]  # the whole hub, hub-level (shared) costs included


def top_users(
    *,
    session: Session,
    hub_id: int,
    period: Period,
    limit: int,
    offset: int = 0,
    community_id: str | None = None,
) -> TopUsers:
    """The hub's users by cost over the range, most expensive first (ties by user id); with
    `community_id`, only the hub's allocations of that community count."""
    query = select(
        Allocation.user_id,
        Allocation.component,
        Allocation.currency,
        money_sum(Allocation.amount),
        func.max(case((Allocation.estimated, 1), else_=0)),
    ).select_from(Allocation)
    query = _in_force(query, period).where(Allocation.hub_id == hub_id)
    if community_id is not None:
        query = query.where(Allocation.community_id == community_id)
    query = query.group_by(Allocation.user_id, Allocation.component, Allocation.currency)
    by_user: dict[tuple[int, str], UserCost] = {}
    hub_totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for user_id, component, currency, amount, estimated in session.execute(query).all():
        hub_totals[currency] += amount
        if user_id is None:
            continue
        entry = by_user.setdefault(
            (user_id, currency), UserCost(user_id, currency, ZERO, {}, False)
        )
        entry.amount += amount
        entry.components[component] = entry.components.get(component, ZERO) + amount
        entry.estimated = entry.estimated or bool(estimated)
    ranked = sorted(by_user.values(), key=lambda u: (-u.amount, u.user_id, u.currency))
    return TopUsers(
        users=ranked[offset : offset + limit],
        total_users=len(ranked),
        hub_totals=dict(hub_totals),
    )


# --- usage ----------------------------------------------------------------------------------

# (period start, hub id or None, user id or None)
UsageKey = tuple[date, int | None, int | None]


def usage(
    *,
    session: Session,
    scope: CostScope,
    period: Period,
    interval: Interval,
    dimensions: Sequence[Dimension] = (),
    user_ids: Iterable[int] | None = None,
) -> dict[UsageKey, Quantities]:
    """Usage over the range by period (start) and, where asked, hub and user.

    Only usage attributed to a hub is read: namespaces no hub names are nobody's to show.
    `user_ids` narrows a user-scoped read to those users (the page of a report). With a
    community in the scope, each hub's usage starts after the last day of the range on which
    its allocations in force name another community (`foreign_days`).
    """
    if interval == Interval.day:
        period_column: Any = utc_day_of(UsageHour.hour)
    elif interval == Interval.month:
        period_column = month_of(utc_day_of(UsageHour.hour))
    else:
        period_column = None
    by_hub = Dimension.hub in dimensions
    by_user = Dimension.user in dimensions
    columns: list[Any] = []
    if period_column is not None:
        columns.append(period_column)
    if by_hub:
        columns.append(UsageHour.hub_id)
    if by_user:
        columns.append(UsageHour.user_id)
    sums = [money_sum(getattr(UsageHour, name)) for name in QUANTITY_NAMES]
    query = select(*columns, *sums).select_from(UsageHour)
    query = query.where(
        UsageHour.hour >= period.start_datetime,
        UsageHour.hour < period.end_datetime,
        UsageHour.hub_id.is_not(None),
    )
    if scope.community_id is not None:
        query = query.join(Hub, Hub.id == UsageHour.hub_id).where(
            Hub.community_id == scope.community_id
        )
        hub_ids = (
            [scope.hub_id]
            if scope.hub_id is not None
            else list(session.scalars(select(Hub.id).where(Hub.community_id == scope.community_id)))
        )
        foreign = foreign_days(
            session=session, community_id=scope.community_id, hub_ids=hub_ids, period=period
        )
        if foreign:
            query = query.where(_usage_after(foreign))
    if scope.hub_id is not None:
        query = query.where(UsageHour.hub_id == scope.hub_id)
    if scope.user_id is not None:
        query = query.where(UsageHour.user_id == scope.user_id)
    if user_ids is not None:
        query = query.where(UsageHour.user_id.in_(list(user_ids)))
    if columns:
        query = query.group_by(*columns)
    result: dict[UsageKey, Quantities] = {}
    for record in session.execute(query).all():
        values = list(record)
        start = values.pop(0) if period_column is not None else period.start
        hub_id = values.pop(0) if by_hub else None
        user_id = values.pop(0) if by_user else None
        if all(v is None for v in values):
            continue
        result[(start, hub_id, user_id)] = Quantities(*[ZERO if v is None else v for v in values])
    return result


def foreign_days(
    *,
    session: Session,
    community_id: str,
    hub_ids: Sequence[int],
    period: Period | None = None,
) -> dict[int, date]:
    """For each of the hubs whose allocations in force (over `period`, or on any day) name a
    community other than `community_id`, the last such day: until then the hub's rows may be
    another community's."""
    if not hub_ids:
        return {}
    query = (
        select(Allocation.hub_id, func.max(Allocation.day))
        .select_from(Allocation)
        .join(
            AttributionDay,
            and_(AttributionDay.run_id == Allocation.run_id, AttributionDay.day == Allocation.day),
        )
        .where(Allocation.hub_id.in_(list(hub_ids)), Allocation.community_id != community_id)
        .group_by(Allocation.hub_id)
    )
    if period is not None:
        query = query.where(
            AttributionDay.day >= period.start,
            AttributionDay.day < period.end,
            Allocation.day >= period.start,
            Allocation.day < period.end,
        )
    return {hub_id: day for hub_id, day in session.execute(query).all() if hub_id is not None}


def _day_after(day: date) -> datetime:
    return day_start(day + DAY)


def _usage_after(foreign: dict[int, date]) -> ColumnElement[bool]:
    """Usage rows of hubs without foreign days, and of the others after their last one."""
    return or_(
        UsageHour.hub_id.not_in(list(foreign)),
        *(
            and_(UsageHour.hub_id == hub_id, UsageHour.hour >= _day_after(day))
            for hub_id, day in foreign.items()
        ),
    )


def tenure_start(*, session: Session, hub_id: int, community_id: str) -> date | None:
    """The first day the hub's rows can be `community_id`'s: the day after the last day on
    which its allocations in force name another community; None if there is no such day."""
    foreign = foreign_days(session=session, community_id=community_id, hub_ids=[hub_id])
    last = foreign.get(hub_id)
    return last + timedelta(days=1) if last is not None else None


# --- month to date --------------------------------------------------------------------------


@dataclass
class HubMonth:
    hub_id: int
    forecast: MonthForecast
    # Amounts in currencies other than the community's: never added to it, never dropped.
    other_currencies: dict[str, Decimal] = field(default_factory=dict)


def attributed_days(*, session: Session, period: Period) -> list[date]:
    """The days of the range that have allocations in force."""
    return list(
        session.scalars(
            select(AttributionDay.day)
            .where(AttributionDay.day >= period.start, AttributionDay.day < period.end)
            .order_by(AttributionDay.day)
        )
    )


# How far behind the others a billing account's export may lag and still hold the month to
# date back: the clouds deliver within a day or two.
BILLING_LAG_DAYS = 3


def billed_until(*, session: Session, period: Period) -> date | None:
    """The first day of the range that the bill has not wholly reached, or None if no billing
    account has billed usage in the range.

    Each billing account (or, for lines without one, provider) is billed up to where its
    non-estimated usage lines reach (`app.costs.service.billed_through`); a day counts as
    billed when every account still billing has reached its end. An account more than
    BILLING_LAG_DAYS behind the furthest has stopped billing (a cluster shut down), rather
    than lagging, and holds nobody's days back.
    """
    window = Window(period.start_datetime, period.end_datetime)
    accounts = session.execute(
        select(CostLine.provider, CostLine.billing_account_id)
        .where(
            CostLine.estimated.is_(False),
            CostLine.charge_category == ChargeCategory.usage.value,
            CostLine.charge_period_start >= window.start,
            CostLine.charge_period_start < window.end,
        )
        .distinct()
    ).all()
    reached: list[date] = []
    reached_by: list[date | None] = []
    for provider, account in accounts:
        through = billed_through(
            session=session,
            provider=provider,
            billing_account_id=account,
            sub_account_id=None,
            window=window,
        )
        day = None if through is None else as_utc(through).date()
        reached_by.append(day)
        if day is not None:
            # The end of the last billed hour: its day counts only when that is midnight.
            reached.append(day)
    if not reached:
        return None
    furthest = max(reached)
    still = furthest - timedelta(days=BILLING_LAG_DAYS)
    stopped = [
        f"{provider}:{account}"
        for (provider, account), d in zip(accounts, reached_by, strict=True)
        if d is not None and d < still
    ]
    if stopped:
        # Visible in the log: an export that is merely late by this much would be mistaken
        # for a stopped account, and its missing days counted as billed.
        log.info(
            "month to date %s: billing account(s) %s stopped billing (more than %d days "
            "behind the furthest, %s); not waited for",
            period, ", ".join(stopped), BILLING_LAG_DAYS, furthest,
        )  # fmt: skip
    return min(d for d in reached if d >= still)


class BillReach(Protocol):
    """`billed_until`, or a cache of it."""

    def __call__(self, *, session: Session, period: Period) -> date | None: ...


@dataclass
class _HubDays:
    """One hub's allocations in force, per currency and day: billed and estimated amounts."""

    amounts: dict[str, dict[date, Decimal]] = field(default_factory=lambda: defaultdict(dict))
    estimated: dict[str, dict[date, Decimal]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, day: date, currency: str, amount: Decimal, is_estimate: bool) -> None:
        target = self.estimated if is_estimate else self.amounts
        per_day = target[currency]
        per_day[day] = per_day.get(day, ZERO) + amount


def month_to_date(
    *,
    session: Session,
    hubs: Sequence[Hub],
    month: date,
    today: date,
    community_id: str | None = None,
    bill_reach: BillReach = billed_until,
) -> list[HubMonth]:
    """Month-to-date amount, forecast and budget state of each hub, in the order given.

    A day counts (is "attributed") for a hub when it has allocations in force, lies before
    today, the bill has reached its end (`billed_until`), and none of the hub's allocations
    that day are list-price estimates. The other days of the month are forecast at the run
    rate of the counted ones; the estimates of days before today are reported beside the
    month-to-date amount, not in it. The budget is in the community's currency, so only
    allocations in that currency count towards it; any others are reported beside it. With
    `community_id`, only allocations of that community are read. `bill_reach` finds where the
    bill reaches (a cache of it, in the API).
    """
    if not hubs:
        return []
    # The days of the month before today; none on its first day (or before it starts).
    window_end = min(next_month(month), max(today, month))
    by_hub: dict[int, _HubDays] = defaultdict(_HubDays)
    billed: list[date] = []
    if window_end > month:
        window = Period(month, window_end)
        if today >= next_month(month) + timedelta(days=INVOICE_MONTH_CLOSE_DAYS):
            # The month's invoice has closed: whatever is billed is all there will be.
            billed = attributed_days(session=session, period=window)
        else:
            reached = bill_reach(session=session, period=window)
            if reached is not None:
                in_force = attributed_days(session=session, period=window)
                billed = [d for d in in_force if d < reached]
        query = select(
            Allocation.hub_id,
            Allocation.day,
            Allocation.currency,
            Allocation.estimated,
            money_sum(Allocation.amount),
        ).select_from(Allocation)
        query = _in_force(query, window)
        hub_ids = [hub.id for hub in hubs]
        if len(hub_ids) <= 500:
            query = query.where(Allocation.hub_id.in_(hub_ids))
        else:
            query = query.where(Allocation.hub_id.is_not(None))
        if community_id is not None:
            query = query.where(Allocation.community_id == community_id)
        query = query.group_by(
            Allocation.hub_id, Allocation.day, Allocation.currency, Allocation.estimated
        )
        for hub_id, day, currency, is_estimate, amount in session.execute(query).all():
            if hub_id is None:
                continue  # not reachable: the query names hubs
            by_hub[hub_id].add(day, currency, amount, bool(is_estimate))
    currencies = dict(
        session.execute(
            select(Community.id, Community.currency).where(
                Community.id.in_({hub.community_id for hub in hubs})
            )
        ).all()
    )
    result = []
    for hub in hubs:
        currency = currencies[hub.community_id]
        days = by_hub.get(hub.id, _HubDays())
        # A day with estimates is not billed for this hub yet, whatever the bill's reach says
        # (the run in force was made before the bill arrived).
        estimated_days = {d for per_day in days.estimated.values() for d in per_day}
        counted = [d for d in billed if d not in estimated_days]
        counted_set = set(counted)
        others: dict[str, Decimal] = {}
        for other, per_day in days.amounts.items():
            kept = [amount for d, amount in per_day.items() if d in counted_set]
            if other != currency and kept:
                others[other] = sum(kept, ZERO)
        # Never in month_to_date: a day with estimates does not count (above).
        not_billed = sum(days.estimated.get(currency, {}).values(), ZERO)
        result.append(
            HubMonth(
                hub_id=hub.id,
                forecast=forecast_month(
                    month=month,
                    today=today,
                    currency=currency,
                    daily=days.amounts.get(currency, {}),
                    attributed_days=counted,
                    budget=hub.monthly_budget,
                    estimated=not_billed,
                    active_from=min(
                        (d for per_day in days.amounts.values() for d in per_day),
                        default=None,
                    ),
                ),
                other_currencies=others,
            )
        )
    return result


# --- names for ids --------------------------------------------------------------------------


def usernames(*, session: Session, user_ids: Iterable[int]) -> dict[int, str]:
    """Usernames by user id."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    return dict(
        session.execute(select(HubUser.id, HubUser.username).where(HubUser.id.in_(ids))).all()
    )


def hubs_by_id(*, session: Session, hub_ids: Iterable[int]) -> dict[int, Hub]:
    """Hubs by id."""
    ids = sorted(set(hub_ids))
    if not ids:
        return {}
    return {hub.id: hub for hub in session.scalars(select(Hub).where(Hub.id.in_(ids)))}


# --- the directory: communities, hubs and users a caller may list ---------------------------


@dataclass
class Listing(Generic[T]):
    items: list[T]
    total: int


def list_communities(
    *, session: Session, community_id: str | None, limit: int, offset: int
) -> Listing[tuple[Community, int]]:
    """Communities (all, or just `community_id`) by id, each with its number of hubs."""
    hub_count = (
        select(func.count())
        .select_from(Hub)
        .where(Hub.community_id == Community.id)
        .correlate(Community)
        .scalar_subquery()
    )
    query = select(Community, hub_count)
    count = select(func.count()).select_from(Community)
    if community_id is not None:
        query = query.where(Community.id == community_id)
        count = count.where(Community.id == community_id)
    rows = session.execute(query.order_by(Community.id).limit(limit).offset(offset)).all()
    return Listing(items=list(rows), total=int(session.scalar(count) or 0))


def list_hubs(
    *,
    session: Session,
    community_id: str | None,
    cluster: str | None = None,
    name: str | None = None,
    active: bool | None = None,
    limit: int,
    offset: int,
) -> Listing[tuple[Hub, str]]:
    """Hubs by id, each with its community's currency; every filter optional."""
    filters: list[ColumnElement[bool]] = []
    if community_id is not None:
        filters.append(Hub.community_id == community_id)
    if cluster is not None:
        filters.append(Hub.cluster_name == cluster)
    if name is not None:
        filters.append(Hub.name == name)
    if active is not None:
        filters.append(Hub.active.is_(active))
    query = (
        select(Hub, Community.currency)
        .join(Community, Community.id == Hub.community_id)
        .where(*filters)
        .order_by(Hub.id)
        .limit(limit)
        .offset(offset)
    )
    total = session.scalar(select(func.count()).select_from(Hub).where(*filters))
    return Listing(items=list(session.execute(query).all()), total=int(total or 0))


def list_users(
    *,
    session: Session,
    hub_id: int,
    username: str | None,
    limit: int,
    offset: int,
    since: date | None = None,
) -> Listing[HubUser]:
    """A hub's users by id, or the one with `username`; with `since`, only those first seen,
    or with usage, on or after that day."""
    filters = [HubUser.hub_id == hub_id]
    if username is not None:
        filters.append(HubUser.username == username)
    if since is not None:
        filters.append(_seen_since(since))
    query = select(HubUser).where(*filters).order_by(HubUser.id).limit(limit).offset(offset)
    total = session.scalar(select(func.count()).select_from(HubUser).where(*filters))
    return Listing(items=list(session.scalars(query)), total=int(total or 0))


def _seen_since(day: date) -> ColumnElement[bool]:
    moment = day_start(day)
    used = exists().where(UsageHour.user_id == HubUser.id, UsageHour.hour >= moment)
    return or_(HubUser.first_seen_at >= moment, used)


def user_seen_since(*, session: Session, user_id: int, since: date) -> bool:
    """Was the user first seen, or did they use their hub, on or after `since`?"""
    query = select(HubUser.id).where(HubUser.id == user_id, _seen_since(since))
    return session.scalar(query) is not None


def community_currency(*, session: Session, community_id: str) -> str:
    """The currency a community is billed (and budgets) in."""
    return session.get_one(Community, community_id).currency
