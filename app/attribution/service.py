"""Attribution runs on a session: load the period's cost lines and usage, divide them with the
pure core (`rules.allocate`) day by day, keep the run, its pools and allocations, put the run in
force for its days, and say what changed against the runs it replaces.

A run is written in the caller's transaction; nothing here commits. Re-running a period whose
inputs (cost lines, usage, policy) have not changed writes nothing and says so: the runs in
force stay in force, so a scheduled job can run as often as it likes without piling up copies.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import itertools
import json
import logging
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import (
    Connection,
    String,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.orm import Session

from app.attribution.models import Allocation, AllocationPool, AttributionDay, AttributionRun
from app.attribution.rules import (
    DRIVERS,
    REASONS,
    RULE_IDLE,
    UNATTRIBUTED_PREFIX,
    AllocationResult,
    Classifier,
    CostItem,
    HubRecord,
    Period,
    Policy,
    Pool,
    TracePart,
    UsageColumn,
    UsageRow,
    UsageTable,
    allocate,
    describe_rule,
    driver_for,
    policy_from_config,
    readable_units,
    sliced_cost_by_day,
    usage_fields,
)
from app.attribution.schemas import (
    AllocationExplanation,
    AllocationOut,
    ChargePeriodShare,
    CostLineOut,
    PoolOut,
    RunBrief,
    RunDetail,
    RunOut,
    ShareStep,
)
from app.config import ConfigError, HubmeterConfig
from app.costs.models import CostLine
from app.db import money_sum, take_sqlite_write_lock
from app.hubs.models import Hub, HubUser
from app.money import EXACT_SUM, ZERO, exact_difference, exact_sum, format_amount
from app.periods import DAY, day_start
from app.usage.models import UsageHour

log = logging.getLogger(__name__)

# Attribution takes turns on PostgreSQL by locking the table only it writes, in a mode that
# conflicts with itself and not with readers (see `_isolate`).
_TURN_LOCK = "LOCK TABLE attribution_day IN SHARE ROW EXCLUSIVE MODE"


class AttributionError(ValueError):
    """A period that cannot be attributed as asked (the message says why and what to do)."""


# --- what a run reports ---------------------------------------------------------------------


@dataclass
class DayCheck:
    """One day's conservation check, both sides read from the database: the net cost of its
    cost lines (`cost_lines_by_day`) and the allocations in force for it (`allocated_by_day`)."""

    day: date
    cost: Decimal
    allocated: Decimal
    estimated: Decimal

    @property
    def difference(self) -> Decimal:
        return exact_difference(self.allocated, self.cost)


@dataclass
class Change:
    """Before and after for one hub, community or reason, over the days that changed."""

    key: str
    label: str
    before: Decimal
    after: Decimal

    @property
    def difference(self) -> Decimal:
        return exact_difference(self.after, self.before)

    def to_json(self) -> dict[str, str]:
        return {
            "key": self.key,
            "label": self.label,
            "before": format_amount(self.before),
            "after": format_amount(self.after),
            "difference": format_amount(self.difference),
        }


@dataclass
class RunReport:
    """What `attribute_period` did: the run in force, the totals, the checks and the changes."""

    period: Period
    run_id: int | None  # the new run, or None when nothing changed
    runs_in_force: list[int]
    currency: str
    cost_total: Decimal
    allocated_total: Decimal  # to hubs
    unattributed_total: Decimal  # to nobody (including idle capacity)
    estimated_total: Decimal
    by_community: dict[str, Decimal]
    unattributed_by_reason: dict[str, Decimal]
    days: list[DayCheck]
    allocation_rows: int
    previous_run_ids: list[int]
    days_with_new_inputs: list[date]
    hub_changes: list[Change] = field(default_factory=list)
    community_changes: list[Change] = field(default_factory=list)
    reason_changes: list[Change] = field(default_factory=list)
    # Cost lines or allocations of the period in another currency than the run's (never
    # balanced: a run has one currency).
    other_currencies: list[str] = field(default_factory=list)
    # Days whose inputs had not changed but whose allocations in force did not add up to their
    # cost lines: recomputed rather than copied.
    days_rebalanced: list[date] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.run_id is not None

    @property
    def allocations_total(self) -> Decimal:
        """Σ of the allocations in force over the period, as the database sums them."""
        return exact_sum(check.allocated for check in self.days)

    @property
    def balanced(self) -> bool:
        """Every day's allocations in the database add up to its cost lines in the database,
        and so do the totals per community and reason the run reports and keeps."""
        return not self.imbalances()

    def imbalances(self) -> list[str]:
        """What does not add up, for people (empty when balanced)."""
        problems = [
            f"{check.day}: allocations {format_amount(check.allocated)}, cost lines "
            f"{format_amount(check.cost)}"
            for check in self.days
            if check.difference
        ]
        reported = exact_sum([self.allocated_total, self.unattributed_total])
        if reported != self.cost_total:
            problems.append(
                f"totals: attributed {format_amount(self.allocated_total)} + unattributed "
                f"{format_amount(self.unattributed_total)} = {format_amount(reported)}, cost "
                f"lines {format_amount(self.cost_total)}"
            )
        return problems + self.other_currencies


class ConservationError(RuntimeError):
    """A run whose allocations do not add up to the cost lines in the database. It was refused:
    nothing of it was stored. `report` is what it would have reported."""

    def __init__(self, report: RunReport) -> None:
        self.report = report
        problems = report.imbalances()
        shown = "; ".join(problems[:5])
        if len(problems) > 5:
            shown += f"; and {len(problems) - 5} more"
        super().__init__(
            f"the allocations of {report.period.start}..{report.period.end} do not add up to "
            f"the net cost of the cost lines in the database ({shown}); the run was refused "
            "and nothing was stored. If cost lines were being imported meanwhile, attribute "
            "again; otherwise this is a bug in hubmeter: please report it with this message"
        )


# --- inputs -----------------------------------------------------------------------------------


def hub_records(*, session: Session) -> list[HubRecord]:
    """Every hub the database knows, active or not."""
    rows = session.execute(
        select(Hub.id, Hub.cluster_name, Hub.name, Hub.namespace, Hub.community_id, Hub.active)
    )
    return [HubRecord(*row) for row in rows]


def build_policy(*, session: Session, config: HubmeterConfig) -> Policy:
    """The configuration's policy with the database's hub ids; refuses a configuration whose
    hubs are not in the database yet (their costs would otherwise look unattributable)."""
    records = hub_records(session=session)
    known = {(r.cluster, r.name) for r in records}
    missing = sorted(
        f"{h.cluster}/{h.name}" for h in config.hubs if (h.cluster, h.name) not in known
    )
    if missing:
        raise ConfigError(
            f"hub(s) {', '.join(missing)} of the configuration are not in the database: "
            "run `hubmeter config apply` first"
        )
    return policy_from_config(config, records)


def load_cost_items(
    *, session: Session, policy: Policy, period: Period
) -> dict[date, list[CostItem]]:
    """The cost lines overlapping `period`, summed over the lines that agree on everything
    attribution looks at, and listed under each day they overlap."""
    grouped = _grouping_columns(policy)
    start, end = period.start_datetime, period.end_datetime
    overlapping = (
        CostLine.charge_period_start < end,
        or_(CostLine.charge_period_end > start, CostLine.charge_period_start >= start),
    )
    if session.get_bind().dialect.name == "sqlite":
        groups = _group_on_sqlite(session, grouped, overlapping, policy.match_label_keys())
    else:
        groups = _group_in_sql(session, grouped, overlapping)
    by_day: dict[date, list[CostItem]] = defaultdict(list)
    for item in _items_of_groups(policy, groups):
        for day in _days_overlapped(item.charge_period_start, item.charge_period_end):
            if period.start <= day < period.end:
                by_day[day].append(item)
    return by_day


def _grouping_columns(policy: Policy) -> list[Any]:
    """What cost lines are grouped by before attribution: everything classification, drivers
    and cells look at (the label values of `policy.match_label_keys()` last)."""
    gpu = case(
        (func.lower(func.coalesce(CostLine.sku_description, "")).like("%gpu%"), True),
        else_=False,
    )
    return [
        CostLine.charge_period_start,
        CostLine.charge_period_end,
        CostLine.component,
        CostLine.currency,
        CostLine.estimated,
        CostLine.sub_account_id,
        CostLine.billing_account_id,
        CostLine.consumed_unit,
        gpu,
        *(CostLine.labels[key].as_string() for key in policy.match_label_keys()),
    ]


def _group_in_sql(
    session: Session, grouped: Sequence[Any], where: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """The cost lines matching `where`, grouped by `grouped` and summed by the database."""
    query = (
        select(
            *grouped,
            func.count(),
            money_sum(CostLine.net_cost),
            money_sum(CostLine.consumed_quantity),
            func.min(CostLine.id),
            func.max(CostLine.id),
        )
        .where(*where)
        .group_by(*grouped)
    )
    return [tuple(row) for row in session.execute(query)]


def _items_of_groups(policy: Policy, groups: Iterable[Sequence[Any]]) -> Iterator[CostItem]:
    """Rows shaped like `_group_in_sql`'s as cost items."""
    keys = policy.match_label_keys()
    label_count = len(keys)
    for row in groups:
        (cps, cpe, component, currency, estimated, sub_account, account, unit, is_gpu) = row[:9]
        values = row[9 : 9 + label_count]
        count, net, quantity, first_id, last_id = row[9 + label_count :]
        yield CostItem(
            charge_period_start=cps,
            charge_period_end=cpe,
            net_cost=net,
            currency=currency,
            component=component,
            estimated=bool(estimated),
            sub_account_id=sub_account,
            billing_account_id=account,
            labels={k: v for k, v in zip(keys, values, strict=True) if v is not None},
            gpu=bool(is_gpu),
            consumed_quantity=quantity,
            consumed_unit=unit,
            line_count=count,
            first_line_id=first_id,
            last_line_id=last_id,
        )


def _group_on_sqlite(
    session: Session, grouped: Sequence[Any], where: Sequence[Any], label_keys: Sequence[str]
) -> list[tuple[Any, ...]]:
    """The GROUP BY of `load_cost_items`, done here: SQLite sorts half a million lines to group
    them, and adds decimal text through a Python callback, slower than one pass in Python.
    Returns rows shaped like the grouped query's, with the same types.

    The lines are read with their labels as the stored JSON text, not one `json_extract` per
    label key and line: they are grouped by that text first, each distinct text is parsed
    once, and the groups whose labels agree on the keys looked at are merged."""
    width = len(grouped) - len(label_keys)  # the label values are the last grouping columns
    query = select(
        *grouped[:width],
        CostLine.labels,
        CostLine.net_cost,
        CostLine.consumed_quantity,
        CostLine.id,
    ).where(*where)
    result = session.connection().execute(query)
    raw = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    sums: dict[tuple[Any, ...], list[Any]] = {}
    # Exact sums (the default context would round at 28 significant digits), as money_sum.
    with localcontext(EXACT_SUM):
        _sum_groups(raw, width + 1, sums)
        values: dict[str | None, tuple[Any, ...]] = {}
        merged: dict[tuple[Any, ...], list[Any]] = {}
        for key, group in sums.items():
            labels = key[width]
            label_values = values.get(labels)
            if label_values is None:
                label_values = values[labels] = _label_values(labels, label_keys)
            merged_key = (*key[:width], *label_values)
            into = merged.get(merged_key)
            if into is None:
                merged[merged_key] = group
                continue
            into[0] += group[0]
            into[1] += group[1]
            if group[2] is not None:
                into[2] = group[2] if into[2] is None else into[2] + group[2]
            into[3] = min(into[3], group[3])
            into[4] = max(into[4], group[4])
    times: dict[str, datetime] = {}

    def instant(text: str) -> datetime:
        moment = times.get(text)
        if moment is None:
            moment = times[text] = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return moment

    return [(instant(key[0]), instant(key[1]), *key[2:], *group) for key, group in merged.items()]


def _label_values(labels: str | None, keys: Sequence[str]) -> tuple[Any, ...]:
    """The values of `keys` in a cost line's stored labels, as SQLite's `json_extract` gives
    them (what the grouped query reads on SQLite): text as text, missing or null as None,
    numbers as numbers, true and false as 1 and 0, arrays and objects as compact JSON."""
    parsed = json.loads(labels) if labels else None
    if not isinstance(parsed, dict):
        return (None,) * len(keys)
    out: list[Any] = []
    for key in keys:
        value = parsed.get(key)
        if isinstance(value, bool):
            value = int(value)
        elif isinstance(value, dict | list):
            value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        out.append(value)
    return tuple(out)


def _sum_groups(raw: Sequence[Any], width: int, sums: dict[tuple[Any, ...], list[Any]]) -> None:
    """[count, net cost, consumed quantity, first id, last id] per group of `raw` rows (the
    first `width` values are the group's key), in the current decimal context."""
    for row in raw:
        key = row[:width]
        group = sums.get(key)
        line_id = row[width + 2]
        if group is None:
            quantity = None if row[width + 1] is None else Decimal(row[width + 1])
            sums[key] = [1, Decimal(row[width]), quantity, line_id, line_id]
            continue
        group[0] += 1
        group[1] += Decimal(row[width])
        if row[width + 1] is not None:
            quantity = Decimal(row[width + 1])
            group[2] = quantity if group[2] is None else group[2] + quantity
        if line_id < group[3]:
            group[3] = line_id
        elif line_id > group[4]:
            group[4] = line_id


def _days_overlapped(start: datetime, end: datetime) -> Iterator[date]:
    day = start.astimezone(UTC).date()
    if end <= start:
        yield day
        return
    while day_start(day) < end:
        yield day
        day += DAY


def load_usage(
    *, session: Session, policy: Policy, day: date, clusters: Iterable[str] | None = None
) -> tuple[UsageTable, str]:
    """One day's usage rows of the policy's clusters, as columns, and a fingerprint of exactly
    what was read (so a re-run can tell whether anything changed).

    Only the quantities the policy's drivers read are read (`rules.usage_fields`): the others
    cannot change an allocation, and a policy that reads others has another fingerprint."""
    fields = usage_fields(policy.options)
    # As text on both databases: parsed here once (hours once per distinct value), and cheap to
    # fingerprint. PostgreSQL writes a timestamptz as text in the session's time zone, with its
    # offset, so the parsed instant is the same whatever that zone is.
    columns = [cast(getattr(UsageHour, name), String) for name in fields]
    digest = hashlib.sha256(f"{','.join(fields)}\n".encode())
    table = UsageTable([], [], [], [], [], {})
    texts: list[list[str]] = [[] for _ in fields]
    start = day_start(day)
    hours: dict[Any, datetime] = {}
    connection = session.connection()
    for cluster in sorted(clusters if clusters is not None else (c.name for c in policy.clusters)):
        query = (
            select(
                UsageHour.hub_id,
                UsageHour.user_id,
                UsageHour.namespace,
                cast(UsageHour.hour, String),
                *columns,
            )
            .where(
                UsageHour.cluster_name == cluster,
                UsageHour.hour >= start,
                UsageHour.hour < start + DAY,
            )
            # Every column: the same rows always come in the same order, so the fingerprint
            # can be taken as they come.
            .order_by(
                UsageHour.hour,
                UsageHour.hub_id,
                UsageHour.user_id,
                UsageHour.namespace,
                *(getattr(UsageHour, name) for name in fields),
            )
        )
        # The database's own values, bypassing the column types' per-value processing: for a
        # month of rows it would cost more than attributing them.
        result = connection.execute(query)
        fetched = result.cursor.fetchall() if result.cursor is not None else []
        result.close()
        digest.update(f"{cluster}:{len(fetched)}\n".encode())
        if not fetched:
            continue
        hub_ids, user_ids, namespaces, raw_hours, *values = zip(*fetched, strict=True)
        # Column by column. Ids and namespaces as Python writes lists (a value cannot run into
        # the next); hours and quantities, which are digits and signs, joined by a separator.
        digest.update(f"{list(hub_ids)!r}\n{list(user_ids)!r}\n".encode())
        digest.update(f"{list(namespaces)!r}\n".encode())
        for column in (raw_hours, *values):
            digest.update("\x1f".join(column).encode())
            digest.update(b"\n")
        table.clusters.extend([cluster] * len(fetched))
        table.namespaces.extend(namespaces)
        table.hub_ids.extend(hub_ids)
        table.user_ids.extend(user_ids)
        for raw_hour in set(raw_hours) - hours.keys():
            hours[raw_hour] = _utc_hour(raw_hour)
        table.hours.extend(map(hours.__getitem__, raw_hours))
        for column_texts, column in zip(texts, values, strict=True):
            column_texts.extend(column)
    table.quantities = {
        name: _quantities(column) for name, column in zip(fields, texts, strict=True)
    }
    return table, digest.hexdigest()


def _quantities(texts: Sequence[Any]) -> UsageColumn:
    """Exact quantities from the database's decimal text: integers as they are (nearly always),
    anything else through Decimal."""
    try:
        return UsageColumn([int(text) for text in texts])
    except ValueError:
        return UsageColumn.of([Decimal(text) for text in texts])


def _utc_hour(value: Any) -> datetime:
    # PostgreSQL gives a datetime; SQLite the naive UTC text UTCDateTime writes.
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _items_digest(items: Sequence[CostItem]) -> str:
    canonical = sorted(
        repr(
            (
                i.charge_period_start.isoformat(),
                i.charge_period_end.isoformat(),
                i.component,
                i.currency,
                i.estimated,
                i.sub_account_id,
                i.billing_account_id,
                sorted(i.labels.items()),
                i.gpu,
                i.consumed_unit,
                str(i.consumed_quantity),
                str(i.net_cost),
                i.line_count,
                i.first_line_id,
                i.last_line_id,
            )
        )
        for i in items
    )
    return hashlib.sha256("\n".join(canonical).encode()).hexdigest()


# --- a run ------------------------------------------------------------------------------------


@dataclass
class _DayTotals:
    """What the summary keeps per day, so later runs can report their differences cheaply."""

    inputs_sha256: str
    cost: Decimal = ZERO
    estimated: Decimal = ZERO
    allocations: int = 0
    hubs: dict[int, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    reasons: dict[str, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))

    @property
    def allocated(self) -> Decimal:
        return exact_sum(self.reasons.values(), exact_sum(self.hubs.values()))

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs_sha256": self.inputs_sha256,
            "cost": format_amount(self.cost),
            "estimated": format_amount(self.estimated),
            "allocations": self.allocations,
            "hubs": {str(k): format_amount(v) for k, v in sorted(self.hubs.items())},
            "unattributed": {k: format_amount(v) for k, v in sorted(self.reasons.items())},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _DayTotals:
        totals = cls(inputs_sha256=data["inputs_sha256"])
        totals.cost = Decimal(data["cost"])
        totals.estimated = Decimal(data["estimated"])
        totals.allocations = int(data["allocations"])
        for key, value in data["hubs"].items():
            totals.hubs[int(key)] = Decimal(value)
        for key, value in data["unattributed"].items():
            totals.reasons[key] = Decimal(value)
        return totals


def reason_of(rule: str) -> str:
    """The reason an allocation without a hub has one (its rule without the prefix)."""
    return rule.removeprefix(UNATTRIBUTED_PREFIX)


def attribute_period(
    *,
    session: Session,
    config: HubmeterConfig,
    period: Period,
    now: datetime,
    created_by: str,
    note: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> RunReport:
    """Attribute `period` and put the result in force, unless nothing changed since the runs in
    force; report the totals, the per-day check and what changed per hub and community.

    Refuses (ConservationError, nothing stored) a run whose allocations, summed by the database,
    do not add up to the net cost of the cost lines, summed by the database, day by day."""
    # Every sum of money here is exact: the default context would round at 28 digits.
    with localcontext(EXACT_SUM):
        return _attribute_period(
            session=session,
            config=config,
            period=period,
            now=now,
            created_by=created_by,
            note=note,
            progress=progress,
        )


def _attribute_period(
    *,
    session: Session,
    config: HubmeterConfig,
    period: Period,
    now: datetime,
    created_by: str,
    note: str | None,
    progress: Callable[[str], None] | None,
) -> RunReport:
    if session.get_bind().dialect.name == "postgresql":
        _isolate(session)
    else:
        take_sqlite_write_lock(session)
    policy = build_policy(session=session, config=config)
    policy_json = policy.to_json()
    policy_sha = policy.sha256()
    items_by_day = load_cost_items(session=session, policy=policy, period=period)
    currencies = {item.currency for items in items_by_day.values() for item in items}
    if len(currencies) > 1:
        raise AttributionError(
            f"the cost lines of {period.start}..{period.end} are in several currencies "
            f"({', '.join(sorted(currencies))}); hubmeter attributes one currency per run: "
            "attribute the periods separately or convert the costs at ingestion"
        )
    currency = currencies.pop() if currencies else _default_currency(config)
    previous = _in_force(session=session, period=period)
    previous_days = _previous_day_totals(session=session, previous=previous)
    hubs = {h.id: h for h in policy.hubs}
    # One side of the conservation check, read on its own: each day's net cost of the cost
    # lines, summed by the database.
    cost = cost_lines_by_day(session=session, policy=policy, period=period)

    # Everything the run writes is inside this savepoint, released only once the run adds up.
    savepoint = session.begin_nested()
    run = AttributionRun(
        period_start=period.start_datetime,
        period_end=period.end_datetime,
        created_at=now,
        created_by=created_by,
        policy=policy_json,
        inputs_sha256="",
        previous_run_id=max(previous.values()) if previous else None,
        currency=currency,
        cost_total=ZERO,
        allocated_total=ZERO,
        unattributed_total=ZERO,
        estimated_total=ZERO,
        summary={},
        note=note,
    )
    session.add(run)
    session.flush()
    writer = _AllocationWriter(session, run.id)
    day_totals: dict[date, _DayTotals] = {}
    inputs: dict[date, str] = {}
    reused: dict[date, int] = {}  # day -> the run in force whose allocations stay right
    rebalanced: list[date] = []  # unchanged days whose allocations in force did not add up

    def compute(day: date, usage: UsageTable) -> None:
        # The previous day's rows go to the database while this day is computed: the split
        # needs no connection, and the database works without holding the GIL.
        with writer.writing_meanwhile():
            result = allocate(items_by_day.get(day, []), usage, policy, Period(day, day + DAY))
        day_totals[day] = _totals_of(result, inputs[day])
        writer.queue(result)
        if progress:
            progress(f"{day}: {len(result.allocations)} allocations")

    def recompute(days: list[date]) -> None:
        """Days whose inputs had not changed, but whose allocations do not add up to their
        cost lines (made by an older hubmeter, or changed behind its back): never copied."""
        log.warning(
            "attribution: the allocations in force for %s do not add up to the cost lines; "
            "recomputing them",
            ", ".join(map(str, days)),
        )
        with _gc_paused():
            for day in days:
                del reused[day]
                rebalanced.append(day)
                compute(day, load_usage(session=session, policy=policy, day=day)[0])
            writer.flush()

    with _gc_paused():
        for day in period.days():
            usage, usage_sha = load_usage(session=session, policy=policy, day=day)
            items_sha = _items_digest(items_by_day.get(day, []))
            inputs[day] = hashlib.sha256(
                f"{policy_sha}|{day}|{items_sha}|{usage_sha}".encode()
            ).hexdigest()
            before = previous_days.get(day)
            if before is not None and before.inputs_sha256 == inputs[day]:
                # The same policy, cost lines and usage as when the run in force attributed this
                # day: the allocations would be the very same, so they are copied, not recomputed
                # (once they are checked to add up, below).
                day_totals[day] = before
                reused[day] = previous[day]
                continue
            compute(day, usage)
        writer.flush()

    if len(reused) == len(day_totals):
        allocated = allocated_by_day(session=session, period=period)  # the runs in force
        unbalanced = [day for day in reused if not _adds_up(day, cost, allocated)]
        if not unbalanced:
            # Nothing changed, and every day in force adds up: nothing is written.
            savepoint.rollback()
            in_force = sorted(set(reused.values()))
            checks, foreign = _day_checks(period, currency, cost, allocated, day_totals)
            report = _report(period, None, in_force, currency, day_totals, hubs, checks, foreign)
            report.previous_run_ids = in_force
            if not report.balanced:  # another currency than the run's, in force
                raise ConservationError(report)
            return report
        recompute(unbalanced)

    _copy_allocations(session=session, run_id=run.id, days=reused)
    session.execute(
        delete(AttributionDay).where(
            AttributionDay.day >= period.start, AttributionDay.day < period.end
        )
    )
    session.execute(
        insert(AttributionDay), [{"day": day, "run_id": run.id} for day in period.days()]
    )
    # The check that counts: what is now in force (this run's rows, computed and copied),
    # summed by the database, against the cost lines, summed by the database.
    allocated = allocated_by_day(session=session, period=period)
    unbalanced = [day for day in reused if not _adds_up(day, cost, allocated)]
    if unbalanced:
        # Copied days that do not add up: replaced by recomputed ones, and checked again.
        session.execute(
            delete(Allocation).where(Allocation.run_id == run.id, Allocation.day.in_(unbalanced))
        )
        recompute(unbalanced)
        allocated = allocated_by_day(session=session, period=period)
    checks, foreign = _day_checks(period, currency, cost, allocated, day_totals)
    report = _report(period, run.id, [run.id], currency, day_totals, hubs, checks, foreign)
    if not report.balanced:
        # A run that does not add up is never stored.
        savepoint.rollback()
        raise ConservationError(report)
    for check in checks:
        # The summary keeps each day's cost as the database summed it.
        day_totals[check.day].cost = check.cost
    report.previous_run_ids = sorted(set(previous.values()))
    report.days_rebalanced = sorted(rebalanced)
    _compare(report, day_totals, previous_days, hubs, recomputed=set(day_totals) - set(reused),
             session=session)  # fmt: skip
    run.inputs_sha256 = hashlib.sha256(
        "".join(t.inputs_sha256 for _, t in sorted(day_totals.items())).encode()
    ).hexdigest()
    run.cost_total = report.cost_total
    run.allocated_total = report.allocated_total
    run.unattributed_total = report.unattributed_total
    run.estimated_total = report.estimated_total
    run.summary = _summary_json(report, day_totals, hubs)
    session.flush()
    savepoint.commit()
    return report


def _isolate(session: Session) -> None:
    """On PostgreSQL: run the attribution's transaction at REPEATABLE READ, and take turns.

    Every read of the run (the cost lines and usage it splits, the runs in force, and both
    sides of the conservation check) then sees one snapshot, so a cost import that commits
    while the run is under way is either wholly seen or not at all. Under READ COMMITTED the
    check would sum lines the split never saw and refuse the run. The level can only be set
    before the transaction's first statement: a caller that has already begun the transaction
    keeps its own (the check still guards it; at worst a run is refused and stores nothing).

    The turn: attribution_day (only attribution writes it) locked in a mode that conflicts
    with itself, not with readers, so two attributions never race for the same days. It is
    taken before any query because a REPEATABLE READ snapshot is taken by the first query, and
    a run that waited for another must see what the other stored: LOCK TABLE takes no
    snapshot (`SELECT pg_advisory_xact_lock(...)` would).
    """
    bind = session.get_bind()
    begun = session.in_transaction() or (isinstance(bind, Connection) and bind.in_transaction())
    if not begun:
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    session.execute(text(_TURN_LOCK))


# --- the conservation check -----------------------------------------------------------------


def cost_lines_by_day(
    *, session: Session, policy: Policy, period: Period
) -> dict[tuple[date, str], Decimal]:
    """Each day's (and currency's) net cost of the cost lines in the database, summed by the
    database (`money_sum`), apart from what attribution loaded and added.

    Days are sliced as attribution slices charge periods. A line within one UTC day (or an
    instant) counts whole on the day it starts: those are summed per day in SQL. A line that
    crosses midnight is cut into the days it overlaps in proportion to the seconds, by largest
    remainder, after the lines attribution splits together (a cell: same classification,
    component, driver, estimated flag, currency and charge period) are summed, since that sum is
    what attribution cuts; cutting each line on its own could differ by a unit of 1e-11 per
    line. So those lines are read grouped and summed in SQL too, and cut with
    `rules.sliced_cost_by_day`, the function attribution's own cut is made of.
    """
    out: dict[tuple[date, str], Decimal] = {}
    crossing = [
        and_(
            CostLine.charge_period_start < period.start_datetime,
            CostLine.charge_period_end > period.start_datetime,
        )
    ]
    for day in period.days():
        start = day_start(day)
        end = start + DAY
        starts_today = (CostLine.charge_period_start >= start, CostLine.charge_period_start < end)
        within = (
            select(CostLine.currency, money_sum(CostLine.net_cost))
            .where(*starts_today, CostLine.charge_period_end <= end)
            .group_by(CostLine.currency)
        )
        for currency, amount in session.execute(within):
            out[(day, currency)] = amount
        crossing.append(and_(*starts_today, CostLine.charge_period_end > end))
    grouped = _grouping_columns(policy)
    groups: list[tuple[Any, ...]] = []
    # A few hundred days per query: SQLite refuses expressions nested a thousand deep.
    for first in range(0, len(crossing), _DAYS_PER_QUERY):
        terms = crossing[first : first + _DAYS_PER_QUERY]
        groups.extend(_group_in_sql(session, grouped, [or_(*terms)]))
    sliced = sliced_cost_by_day(_items_of_groups(policy, groups), policy, period)
    for key, amount in sliced.items():
        out[key] = exact_sum([amount], out.get(key, ZERO))
    return out


_DAYS_PER_QUERY = 200


def allocated_by_day(*, session: Session, period: Period) -> dict[tuple[date, str], Decimal]:
    """Each day's (and currency's) allocations in force, summed by the database."""
    out: dict[tuple[date, str], Decimal] = {}
    days = period.days()
    for first in range(0, len(days), _DAYS_PER_QUERY):
        # The days named, not a range of them: given a range, SQLite carries it over the join to
        # allocation.day and reads every allocation of the run once for each day.
        query = (
            select(Allocation.day, Allocation.currency, money_sum(Allocation.amount))
            .join(
                AttributionDay,
                and_(
                    AttributionDay.day == Allocation.day,
                    AttributionDay.run_id == Allocation.run_id,
                ),
            )
            .where(AttributionDay.day.in_(days[first : first + _DAYS_PER_QUERY]))
            .group_by(Allocation.day, Allocation.currency)
        )
        out.update(((day, currency), amount) for day, currency, amount in session.execute(query))
    return out


def _adds_up(
    day: date,
    cost: Mapping[tuple[date, str], Decimal],
    allocated: Mapping[tuple[date, str], Decimal],
) -> bool:
    """Do the day's allocations add up to its cost lines, in every currency?"""
    currencies = {c for d, c in cost if d == day} | {c for d, c in allocated if d == day}
    return all(cost.get((day, c), ZERO) == allocated.get((day, c), ZERO) for c in currencies)


def _day_checks(
    period: Period,
    currency: str,
    cost: Mapping[tuple[date, str], Decimal],
    allocated: Mapping[tuple[date, str], Decimal],
    totals: Mapping[date, _DayTotals],
) -> tuple[list[DayCheck], list[str]]:
    """Every day of `period` in the run's `currency`: the net cost of its cost lines and its
    allocations in force (`cost_lines_by_day`, `allocated_by_day`); and, for people, any cost
    or allocation in another currency (a run has one: that cannot add up)."""
    checks = [
        DayCheck(
            day,
            cost.get((day, currency), ZERO),
            allocated.get((day, currency), ZERO),
            totals[day].estimated if day in totals else ZERO,
        )
        for day in period.days()
    ]
    foreign = [
        f"{day}: cost lines {format_amount(cost.get((day, other), ZERO))} {other}, allocations "
        f"{format_amount(allocated.get((day, other), ZERO))} {other}, in a run in {currency}"
        for day, other in sorted(cost.keys() | allocated.keys())
        if other != currency and (cost.get((day, other), ZERO) or allocated.get((day, other), ZERO))
    ]
    return checks, foreign


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a day's rows are loaded and split.

    Tens of thousands of usage rows and parts are alive at once, and every full collection
    walks all of them again: pausing it takes about a third off the time. What attribution
    allocates holds no reference cycles, so nothing accumulates meanwhile; the collector
    resumes (and runs once) when the days are done, even if they fail.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
            gc.collect()


def _copy_allocations(*, session: Session, run_id: int, days: Mapping[date, int]) -> None:
    """Copy the allocations of days whose inputs did not change into the new run, in the
    database. They keep pointing at the pools the earlier run recorded: the same cost."""
    by_run: dict[int, list[date]] = defaultdict(list)
    for day, old_run in days.items():
        by_run[old_run].append(day)
    copied = [column for column in _ALLOCATION_COLUMNS if column != "run_id"]
    for old_run, old_days in sorted(by_run.items()):
        source = select(literal(run_id), *(getattr(Allocation, column) for column in copied)).where(
            Allocation.run_id == old_run, Allocation.day.in_(sorted(old_days))
        )
        session.execute(insert(Allocation).from_select(["run_id", *copied], source))


def read_inputs(*, session: Session, config: HubmeterConfig, period: Period) -> dict[str, int]:
    """Read and fingerprint exactly what `attribute_period` reads, and nothing else: the floor
    its time is measured against (benchmarks), and a dry look at a period's inputs."""
    policy = build_policy(session=session, config=config)
    items_by_day = load_cost_items(session=session, policy=policy, period=period)
    usage_rows = 0
    with _gc_paused():
        for day in period.days():
            usage, _ = load_usage(session=session, policy=policy, day=day)
            _items_digest(items_by_day.get(day, []))
            usage_rows += len(usage)
    items = {id(item) for day_items in items_by_day.values() for item in day_items}
    return {"usage_rows": usage_rows, "cost_groups": len(items)}


def _default_currency(config: HubmeterConfig) -> str:
    currencies = {c.currency for c in config.communities}
    return currencies.pop() if len(currencies) == 1 else "USD"


def _in_force(*, session: Session, period: Period) -> dict[date, int]:
    rows = session.execute(
        select(AttributionDay.day, AttributionDay.run_id).where(
            AttributionDay.day >= period.start, AttributionDay.day < period.end
        )
    )
    return dict(rows.all())


def _previous_day_totals(
    *, session: Session, previous: Mapping[date, int]
) -> dict[date, _DayTotals]:
    """Per-day totals of the runs in force, from their summaries (or, for a run whose summary
    lacks a day, from its allocations)."""
    out: dict[date, _DayTotals] = {}
    for run_id in sorted(set(previous.values())):
        run = session.get_one(AttributionRun, run_id)
        days = (run.summary or {}).get("days", {})
        for day, in_force_run in previous.items():
            if in_force_run != run_id:
                continue
            data = days.get(day.isoformat())
            out[day] = (
                _DayTotals.from_json(data)
                if data
                else _totals_from_allocations(session=session, run_id=run_id, day=day)
            )
    return out


def _totals_from_allocations(*, session: Session, run_id: int, day: date) -> _DayTotals:
    totals = _DayTotals(inputs_sha256="")
    rows = session.execute(
        select(
            Allocation.hub_id,
            Allocation.rule,
            Allocation.estimated,
            money_sum(Allocation.amount),
            func.count(),
        )
        .where(Allocation.run_id == run_id, Allocation.day == day)
        .group_by(Allocation.hub_id, Allocation.rule, Allocation.estimated)
    )
    for hub_id, rule, estimated, amount, count in rows:
        totals.cost += amount
        totals.allocations += count
        if estimated:
            totals.estimated += amount
        if hub_id is None:
            totals.reasons[reason_of(rule)] += amount
        else:
            totals.hubs[hub_id] += amount
    return totals


def _totals_of(result: AllocationResult, inputs_sha256: str) -> _DayTotals:
    totals = _DayTotals(inputs_sha256=inputs_sha256)
    totals.cost = exact_sum(result.cost_by_day.values())
    for allocation in result.allocations:
        totals.allocations += 1
        if allocation.estimated:
            totals.estimated += allocation.amount
        if allocation.hub_id is None:
            totals.reasons[reason_of(allocation.rule)] += allocation.amount
        else:
            totals.hubs[allocation.hub_id] += allocation.amount
    return totals


def _report(
    period: Period,
    run_id: int | None,
    runs_in_force: list[int],
    currency: str,
    day_totals: Mapping[date, _DayTotals],
    hubs: Mapping[int, Any],
    checks: list[DayCheck],
    other_currencies: list[str],
) -> RunReport:
    """The report: totals per community and reason from the days' totals, and the days' cost
    and allocations from the database (`check_days`)."""
    by_community: dict[str, Decimal] = defaultdict(lambda: ZERO)
    by_reason: dict[str, Decimal] = defaultdict(lambda: ZERO)
    with localcontext(EXACT_SUM):
        for _, totals in sorted(day_totals.items()):
            for hub_id, amount in totals.hubs.items():
                by_community[hubs[hub_id].community_id] += amount
            for reason, amount in totals.reasons.items():
                by_reason[reason] += amount
    return RunReport(
        period=period,
        run_id=run_id,
        runs_in_force=runs_in_force,
        currency=currency,
        cost_total=exact_sum(d.cost for d in checks),
        allocated_total=exact_sum(by_community.values()),
        unattributed_total=exact_sum(by_reason.values()),
        estimated_total=exact_sum(d.estimated for d in checks),
        by_community=dict(sorted(by_community.items())),
        unattributed_by_reason=dict(sorted(by_reason.items())),
        days=checks,
        allocation_rows=sum(t.allocations for t in day_totals.values()),
        previous_run_ids=[],
        days_with_new_inputs=[],
        other_currencies=other_currencies,
    )


def _compare(
    report: RunReport,
    new: Mapping[date, _DayTotals],
    old: Mapping[date, _DayTotals],
    hubs: Mapping[int, Any],
    *,
    recomputed: set[date],
    session: Session,
) -> None:
    """Differences per hub, community and reason over the days recomputed: those whose inputs
    changed, and any rebalanced (days copied have, by determinism, the very same allocations)."""
    changed = sorted(recomputed)
    report.days_with_new_inputs = [
        day for day in changed if day not in old or old[day].inputs_sha256 != new[day].inputs_sha256
    ]
    before_hub: dict[int, Decimal] = defaultdict(lambda: ZERO)
    after_hub: dict[int, Decimal] = defaultdict(lambda: ZERO)
    before_reason: dict[str, Decimal] = defaultdict(lambda: ZERO)
    after_reason: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for day in changed:
        for hub_id, amount in new[day].hubs.items():
            after_hub[hub_id] += amount
        for reason, amount in new[day].reasons.items():
            after_reason[reason] += amount
        if day in old:
            for hub_id, amount in old[day].hubs.items():
                before_hub[hub_id] += amount
            for reason, amount in old[day].reasons.items():
                before_reason[reason] += amount
    all_hubs = dict(hubs)
    unknown = (set(before_hub) | set(after_hub)) - set(all_hubs)
    if unknown:
        for hub in session.scalars(select(Hub).where(Hub.id.in_(unknown))):
            all_hubs[hub.id] = HubRecord(
                hub.id, hub.cluster_name, hub.name, hub.namespace, hub.community_id, hub.active
            )
    hub_changes = []
    before_community: dict[str, Decimal] = defaultdict(lambda: ZERO)
    after_community: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for hub_id in sorted(set(before_hub) | set(after_hub)):
        hub = all_hubs[hub_id]
        before, after = before_hub.get(hub_id, ZERO), after_hub.get(hub_id, ZERO)
        before_community[hub.community_id] += before
        after_community[hub.community_id] += after
        if before != after:
            hub_changes.append(Change(str(hub_id), f"{hub.cluster}/{hub.name}", before, after))
    report.hub_changes = hub_changes
    report.community_changes = [
        Change(c, c, before_community.get(c, ZERO), after_community.get(c, ZERO))
        for c in sorted(set(before_community) | set(after_community))
        if before_community.get(c, ZERO) != after_community.get(c, ZERO)
    ]
    report.reason_changes = [
        Change(r, REASONS.get(r, r), before_reason.get(r, ZERO), after_reason.get(r, ZERO))
        for r in sorted(set(before_reason) | set(after_reason))
        if before_reason.get(r, ZERO) != after_reason.get(r, ZERO)
    ]


def _summary_json(
    report: RunReport, day_totals: Mapping[date, _DayTotals], hubs: Mapping[int, Any]
) -> dict[str, Any]:
    return {
        "totals": {
            "cost": format_amount(report.cost_total),
            "allocated": format_amount(report.allocated_total),
            "unattributed": format_amount(report.unattributed_total),
            "estimated": format_amount(report.estimated_total),
            "allocations": report.allocation_rows,
            "by_community": {k: format_amount(v) for k, v in report.by_community.items()},
            "unattributed_by_reason": {
                k: format_amount(v) for k, v in report.unattributed_by_reason.items()
            },
        },
        "changes": {
            "against_runs": report.previous_run_ids,
            "days_with_new_inputs": [d.isoformat() for d in report.days_with_new_inputs],
            "days_rebalanced": [d.isoformat() for d in report.days_rebalanced],
            "hubs": [c.to_json() for c in report.hub_changes],
            "communities": [c.to_json() for c in report.community_changes],
            "unattributed": [c.to_json() for c in report.reason_changes],
        },
        "days": {day.isoformat(): totals.to_json() for day, totals in sorted(day_totals.items())},
    }


# --- writing allocations fast -----------------------------------------------------------------

_ALLOCATION_COLUMNS = (
    "run_id",
    "day",
    "cluster_name",
    "community_id",
    "hub_id",
    "user_id",
    "component",
    "rule",
    "amount",
    "currency",
    "estimated",
    "basis",
    "pool_id",
)


# Basis keys whose values are a driver name (a fixed vocabulary) or decimal text the core
# wrote (`format(..., "f")`): nothing in them needs escaping in JSON or in COPY's text format.
_PLAIN_BASIS_KEYS = frozenset(
    ("driver", "user_units", "hub_units", "hub_level_units", "units", "of_units")
)


def _basis_json(basis: Mapping[str, Any]) -> str:
    """A basis as JSON. Most are a driver name and digit strings, written directly: json.dumps
    on half a million small dicts is a noticeable part of a month's run. Any other key (a
    namespace or label in `detail`, `origins`) goes through json.dumps."""
    if basis.keys() <= _PLAIN_BASIS_KEYS:
        return "{" + ", ".join([f'"{key}": "{value}"' for key, value in basis.items()]) + "}"
    return json.dumps(basis)


# COPY's text format: a backslash starts an escape, tab separates columns, newline ends a row.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def _copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES)


class _CopyTexts(dict[Any, str]):
    """Values as COPY text (None as NULL), each escaped once: cluster, community, component,
    rule and currency names and ids repeat on every row."""

    def __missing__(self, value: Any) -> str:
        text = "\\N" if value is None else _copy_text(str(value))
        self[value] = text
        return text


_COPY_ALLOCATIONS = f"COPY allocation ({', '.join(_ALLOCATION_COLUMNS)}) FROM STDIN"
_POOL_COLUMNS = (
    "id",
    "run_id",
    "day",
    "kind",
    "cluster_name",
    "hub_id",
    "how",
    "detail",
    "component",
    "driver",
    "estimated",
    "currency",
    "net_cost",
    "cost_line_count",
    "first_cost_line_id",
    "last_cost_line_id",
    "charge_periods",
    "driver_units",
    "capacity_units",
)
_COPY_POOLS = f"COPY allocation_pool ({', '.join(_POOL_COLUMNS)}) FROM STDIN"
_RESERVE_POOL_IDS = (
    "SELECT nextval(pg_get_serial_sequence('allocation_pool', 'id')) FROM generate_series(1, %s)"
)


def _copy_pool_rows(run_id: int, pools: Sequence[Pool], pool_ids: Sequence[int]) -> str:
    """The pools as the text of `COPY allocation_pool (_POOL_COLUMNS) FROM STDIN`, with the ids
    given, the values exactly as the ORM types would write them."""
    texts = _CopyTexts()
    lines = []
    for pool_id, pool in zip(pool_ids, pools, strict=True):
        key = pool.key
        capacity = "\\N" if pool.capacity_units is None else f"{pool.capacity_units:f}"
        lines.append(
            f"{pool_id}\t{run_id}\t{key.day}\t{texts[key.kind]}\t{texts[key.cluster]}\t"
            f"{texts[key.hub_id]}\t{texts[key.how]}\t{texts[key.detail]}\t"
            f"{texts[key.component]}\t{texts[key.driver]}\t{'t' if key.estimated else 'f'}\t"
            f"{texts[key.currency]}\t{pool.net_cost:f}\t{pool.cost_line_count}\t"
            f"{texts[pool.first_line_id]}\t{texts[pool.last_line_id]}\t{pool.charge_periods}\t"
            f"{pool.driver_units:f}\t{capacity}\n"
        )
    return "".join(lines)


def _copy_rows(run_id: int, allocations: Sequence[Any], pool_ids: Sequence[int]) -> str:
    """The allocations as the text of `COPY allocation (_ALLOCATION_COLUMNS) FROM STDIN`, the
    values exactly as the ORM types would write them (amounts in plain decimal notation)."""
    texts = _CopyTexts()
    lines = []
    for a in allocations:
        basis = a.basis
        basis_text = (
            _basis_json(basis)
            if basis.keys() <= _PLAIN_BASIS_KEYS
            else _copy_text(json.dumps(basis))
        )
        lines.append(
            f"{run_id}\t{a.day}\t{texts[a.cluster]}\t{texts[a.community_id]}\t"
            f"{texts[a.hub_id]}\t{texts[a.user_id]}\t{texts[a.component]}\t{texts[a.rule]}\t"
            f"{a.amount:f}\t{texts[a.currency]}\t{'t' if a.estimated else 'f'}\t{basis_text}\t"
            f"{pool_ids[a.pool]}\n"
        )
    return "".join(lines)


# Rows per INSERT statement on SQLite (13 parameters each; SQLite allows 32766 by default).
_SQLITE_ROWS_PER_INSERT = 1000


@functools.cache
def _sqlite_insert(rows: int) -> str:
    """An INSERT of `rows` allocations, as one statement."""
    values = "(" + ", ".join("?" for _ in _ALLOCATION_COLUMNS) + ")"
    return (
        f"INSERT INTO allocation ({', '.join(_ALLOCATION_COLUMNS)}) "  # noqa: S608 - fixed column names
        f"VALUES {', '.join([values] * rows)}"
    )


def _insert_on_sqlite(raw: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert rows a thousand at a time, one statement each, not one `executemany` step per
    row: SQLite releases the GIL around each step, and while the attribution computes the next
    day in the other thread every reacquisition waits for its switch interval (5 ms), which
    would make a day's rows take minutes. One statement runs a thousand rows in C."""
    per_statement = min(
        _SQLITE_ROWS_PER_INSERT,
        raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(_ALLOCATION_COLUMNS),
    )
    for first in range(0, len(rows), per_statement):
        chunk = rows[first : first + per_statement]
        raw.execute(_sqlite_insert(len(chunk)), list(itertools.chain.from_iterable(chunk)))


class _AllocationWriter:
    """Writes pools and then allocations in bulk. On PostgreSQL both are copied (COPY), the
    pools with ids reserved from their sequence; on SQLite the pools are inserted returning
    their ids, the allocations a thousand rows per statement. The values are exactly what the
    ORM types would write.

    A day's result is queued, and written while the next day is computed (`writing_meanwhile`)
    in a second thread, or by `flush`. Only one thread uses the session at any time: the
    caller does not touch it inside `writing_meanwhile`, and the block ends only once the
    write has (and any error of it is raised there).
    """

    def __init__(self, session: Session, run_id: int) -> None:
        self.session = session
        self.run_id = run_id
        self.dialect = session.get_bind().dialect.name
        self.pending: AllocationResult | None = None

    def queue(self, result: AllocationResult) -> None:
        self.flush()
        self.pending = result

    def flush(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            self.write(pending)

    @contextmanager
    def writing_meanwhile(self) -> Iterator[None]:
        pending, self.pending = self.pending, None
        if pending is None:
            yield
            return
        failure: list[BaseException] = []

        def write() -> None:
            try:
                self.write(pending)
            except BaseException as exc:  # re-raised in the caller's thread below
                failure.append(exc)

        thread = threading.Thread(target=write, name="hubmeter-allocation-writer")
        thread.start()
        try:
            yield
        finally:
            thread.join()
        if failure:
            raise failure[0]

    def write(self, result: AllocationResult) -> None:
        if not result.pools:
            return
        connection = self.session.connection()
        raw: Any = connection.connection.dbapi_connection
        run_id = self.run_id
        if self.dialect == "postgresql":
            with raw.cursor() as cursor:
                # Ids from the pools' own sequence, so the pools can be copied like the
                # allocations: an INSERT ... RETURNING of a month's pools costs seconds.
                cursor.execute(_RESERVE_POOL_IDS, (len(result.pools),))
                pool_ids = [row[0] for row in cursor.fetchall()]
                with cursor.copy(_COPY_POOLS) as copy:
                    copy.write(_copy_pool_rows(run_id, result.pools, pool_ids))
                if result.allocations:
                    with cursor.copy(_COPY_ALLOCATIONS) as copy:
                        copy.write(_copy_rows(run_id, result.allocations, pool_ids))
            return
        pool_rows = [
            {
                "run_id": self.run_id,
                "day": pool.key.day,
                "kind": pool.key.kind,
                "cluster_name": pool.key.cluster,
                "hub_id": pool.key.hub_id,
                "how": pool.key.how,
                "detail": pool.key.detail,
                "component": pool.key.component,
                "driver": pool.key.driver,
                "estimated": pool.key.estimated,
                "currency": pool.key.currency,
                "net_cost": pool.net_cost,
                "cost_line_count": pool.cost_line_count,
                "first_cost_line_id": pool.first_line_id,
                "last_cost_line_id": pool.last_line_id,
                "charge_periods": pool.charge_periods,
                "driver_units": pool.driver_units,
                "capacity_units": pool.capacity_units,
            }
            for pool in result.pools
        ]
        pool_ids = list(
            self.session.scalars(
                insert(AllocationPool).returning(AllocationPool.id, sort_by_parameter_order=True),
                pool_rows,
            )
        )
        if not result.allocations:
            return
        _insert_on_sqlite(
            raw,
            [
                (
                    run_id,
                    a.day.isoformat(),
                    a.cluster,
                    a.community_id,
                    a.hub_id,
                    a.user_id,
                    a.component,
                    a.rule,
                    format(a.amount, "f"),
                    a.currency,
                    1 if a.estimated else 0,
                    _basis_json(a.basis),
                    pool_ids[a.pool],
                )
                for a in result.allocations
            ],
        )


# --- reading allocations ----------------------------------------------------------------------


def get_run(*, session: Session, run_id: int) -> AttributionRun | None:
    """A run by id."""
    return session.get(AttributionRun, run_id)


def list_runs(*, session: Session, limit: int = 50) -> list[AttributionRun]:
    """The latest runs, newest first."""
    return list(
        session.scalars(select(AttributionRun).order_by(AttributionRun.id.desc()).limit(limit))
    )


def runs_in_force(*, session: Session) -> set[int]:
    """Ids of the runs some day is attributed by."""
    return set(session.scalars(select(AttributionDay.run_id).distinct()))


def days_without_attribution(*, session: Session, period: Period) -> list[date]:
    """The days of `period` no run covers yet."""
    covered = set(
        session.scalars(
            select(AttributionDay.day).where(
                AttributionDay.day >= period.start, AttributionDay.day < period.end
            )
        )
    )
    return [day for day in period.days() if day not in covered]


@dataclass(frozen=True)
class AllocationView:
    """An allocation with the names people know it by."""

    id: int
    run_id: int
    day: date
    cluster: str | None
    community_id: str | None
    hub_id: int | None
    hub: str | None
    user_id: int | None
    user: str | None
    component: str
    rule: str
    amount: Decimal
    currency: str
    estimated: bool
    basis: dict[str, Any]
    pool_id: int | None


def find_allocations(
    *,
    session: Session,
    day: date | None = None,
    hub_id: int | None = None,
    user_id: int | None = None,
    component: str | None = None,
    community_id: str | None = None,
    run_id: int | None = None,
    unattributed: bool = False,
    limit: int = 200,
    offset: int = 0,
) -> tuple[list[AllocationView], int]:
    """A page of the allocations in force (or of one run) matching the filters, in a stable
    order (day, hub, user, component, id), and how many match in all."""
    query = _view_query()
    if run_id is None:
        query = query.join(
            AttributionDay,
            and_(AttributionDay.day == Allocation.day, AttributionDay.run_id == Allocation.run_id),
        )
    else:
        query = query.where(Allocation.run_id == run_id)
    if day is not None:
        query = query.where(Allocation.day == day)
    if hub_id is not None:
        query = query.where(Allocation.hub_id == hub_id)
    if user_id is not None:
        query = query.where(Allocation.user_id == user_id)
    if component is not None:
        query = query.where(Allocation.component == component)
    if community_id is not None:
        query = query.where(Allocation.community_id == community_id)
    if unattributed:
        query = query.where(Allocation.hub_id.is_(None))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    query = (
        query.order_by(
            Allocation.day,
            Allocation.hub_id,
            Allocation.user_id,
            Allocation.component,
            Allocation.id,
        )
        .limit(limit)
        .offset(offset)
    )
    return [AllocationView(*row) for row in session.execute(query)], total


def get_allocation(*, session: Session, allocation_id: int) -> AllocationView | None:
    """One allocation by id, in force or not."""
    row = session.execute(_view_query().where(Allocation.id == allocation_id)).one_or_none()
    return AllocationView(*row) if row is not None else None


def _view_query() -> Any:
    return (
        select(
            Allocation.id,
            Allocation.run_id,
            Allocation.day,
            Allocation.cluster_name,
            Allocation.community_id,
            Allocation.hub_id,
            Hub.name,
            Allocation.user_id,
            HubUser.username,
            Allocation.component,
            Allocation.rule,
            Allocation.amount,
            Allocation.currency,
            Allocation.estimated,
            Allocation.basis,
            Allocation.pool_id,
        )
        .outerjoin(Hub, Hub.id == Allocation.hub_id)
        .outerjoin(HubUser, HubUser.id == Allocation.user_id)
    )


def resolve_hub(*, session: Session, name: str, cluster: str | None = None) -> Hub:
    """A hub by name (and cluster, where several clusters have a hub of that name)."""
    query = select(Hub).where(Hub.name == name)
    if cluster is not None:
        query = query.where(Hub.cluster_name == cluster)
    hubs = list(session.scalars(query))
    if not hubs:
        raise AttributionError(
            f"no hub named {name!r}" + (f" in cluster {cluster!r}" if cluster else "")
        )
    if len(hubs) > 1:
        clusters = ", ".join(sorted(h.cluster_name for h in hubs))
        raise AttributionError(f"hub {name!r} exists in clusters {clusters}: give --cluster")
    return hubs[0]


def resolve_user(*, session: Session, hub_id: int, username: str) -> HubUser:
    """A hub's user by canonical username."""
    user = session.scalars(
        select(HubUser).where(HubUser.hub_id == hub_id, HubUser.username == username)
    ).one_or_none()
    if user is None:
        raise AttributionError(f"no user {username!r} on that hub")
    return user


def hub_labels(*, session: Session) -> dict[int, str]:
    """`cluster/name` of every hub, by id."""
    return {
        hub_id: f"{cluster}/{name}"
        for hub_id, cluster, name in session.execute(select(Hub.id, Hub.cluster_name, Hub.name))
    }


def is_idle(rule: str) -> bool:
    return rule == RULE_IDLE


__all__ = [
    "AllocationView",
    "AttributionError",
    "Change",
    "ConservationError",
    "DayCheck",
    "RunReport",
    "allocated_by_day",
    "attribute_period",
    "build_policy",
    "cost_lines_by_day",
    "find_allocations",
    "get_allocation",
    "load_cost_items",
    "load_usage",
]


# --- explaining an allocation -----------------------------------------------------------------


def explain_allocation(
    *, session: Session, allocation_id: int, line_limit: int | None = 20
) -> AllocationExplanation | None:
    """Why an allocation is what it is: its pool of cost lines, the rule, and, charge period by
    charge period, the shares that made it, recomputed from the data now in the database with
    the policy the run used (and whether that still gives the stored amount)."""
    view = get_allocation(session=session, allocation_id=allocation_id)
    if view is None:
        return None
    run = session.get_one(AttributionRun, view.run_id)
    in_force = (
        session.scalar(select(AttributionDay.run_id).where(AttributionDay.day == view.day))
        == view.run_id
    )
    policy = Policy.from_json(run.policy)
    pool = session.get(AllocationPool, view.pool_id) if view.pool_id is not None else None
    allocation_out = _allocation_out(view)
    run_brief = RunBrief(
        id=run.id,
        created_at=run.created_at,
        created_by=run.created_by,
        in_force=in_force,
        note=run.note,
    )
    notes: list[str] = []
    if not in_force:
        notes.append(f"run {run.id} is no longer in force for {view.day}: a later run replaced it")
    if pool is None:
        return AllocationExplanation(
            allocation=allocation_out,
            run=run_brief,
            rule_description=describe_rule(view.rule),
            summary=f"{view.amount} {view.currency} by rule {view.rule}",
            pool=None,
            basis=view.basis,
            periods=[],
            cost_line_filter="",
            cost_lines=[],
            cost_lines_now=0,
            cost_lines_net_cost_now=ZERO,
            recomputed_amount=None,
            reproducible=False,
            notes=[*notes, "this allocation names no pool, so it cannot be recomputed"],
        )

    lines = _pool_lines(session=session, policy=policy, pool=pool)
    items = [_item_of(line) for line in lines]
    cluster = pool.cluster_name
    usage: UsageTable | list[UsageRow] = []
    if pool.kind != "unattributed" and cluster is not None:
        usage, _ = load_usage(session=session, policy=policy, day=pool.day, clusters=[cluster])
    parts: list[TracePart] = []

    def keep(part: TracePart) -> None:
        if part.hub_id == view.hub_id:
            parts.append(part)

    allocate(items, usage, policy, Period(pool.day, pool.day + DAY), tracer=keep)
    own = [part for part in parts if _is_own_part(part, view)]
    recomputed = exact_sum(part.amount for part in own)
    periods = _periods(parts, own, view, pool.driver)
    # The pool holds the day's share of its lines (a monthly fee's thirtieth, say): compare
    # like with like.
    net_now = sliced_cost_by_day(items, policy, Period(pool.day, pool.day + DAY)).get(
        (pool.day, pool.currency), ZERO
    )
    if len(lines) != pool.cost_line_count or net_now != pool.net_cost:
        notes.append(
            f"the cost lines have changed since run {run.id}: it saw {pool.cost_line_count} "
            f"line(s) adding up to {format_amount(pool.net_cost)} {pool.currency}, there are "
            f"now {len(lines)} adding up to {format_amount(net_now)}; a new "
            "`hubmeter attribute` run will reflect them"
        )
    reproducible = recomputed == view.amount
    if not reproducible:
        notes.append(
            f"recomputing with the data now in the database gives {format_amount(recomputed)} "
            f"instead of {format_amount(view.amount)}: usage or cost lines changed after run "
            f"{run.id}"
        )
    shown = sorted(lines, key=lambda line: line.id)
    if line_limit is not None:
        shown = shown[:line_limit]
    return AllocationExplanation(
        allocation=allocation_out,
        run=run_brief,
        rule_description=describe_rule(view.rule),
        summary=_summary_text(view, pool, policy),
        pool=_pool_out(pool),
        basis=view.basis,
        periods=periods,
        cost_line_filter=_filter_text(pool, policy),
        cost_lines=[_line_out(line) for line in shown],
        cost_lines_now=len(lines),
        cost_lines_net_cost_now=net_now,
        recomputed_amount=recomputed,
        reproducible=reproducible,
        notes=notes,
    )


def _is_own_part(part: TracePart, view: AllocationView) -> bool:
    """Is this step of the split (part of) the allocation itself?"""
    if view.hub_id is None:
        return (
            part.stage == "hub"
            and part.rule == view.rule
            and part.detail == view.basis.get("detail")
        )
    return part.stage == "user" and part.user_id == view.user_id and part.rule == view.rule


def _periods(
    parts: list[TracePart], own: list[TracePart], view: AllocationView, driver: str
) -> list[ChargePeriodShare]:
    by_period: dict[tuple[datetime, datetime], list[TracePart]] = defaultdict(list)
    for part in parts:
        by_period[(part.charge_period_start, part.charge_period_end)].append(part)
    own_ids = {id(part) for part in own}
    out = []
    for (start, end), period_parts in sorted(by_period.items()):
        mine = [p for p in period_parts if id(p) in own_ids]
        if not mine:
            continue
        steps = [
            p
            for p in period_parts
            if id(p) in own_ids or (p.stage == "hub" and view.hub_id is not None)
        ]
        first = period_parts[0]
        out.append(
            ChargePeriodShare(
                charge_period_start=start,
                charge_period_end=end,
                net_cost=first.slice_net_cost,
                cost_lines=first.cell_line_count,
                first_cost_line_id=first.cell_first_line_id,
                last_cost_line_id=first.cell_last_line_id,
                steps=[
                    ShareStep(
                        stage=p.stage,
                        rule=p.rule,
                        whole=p.stage_whole,
                        amount=p.amount,
                        units=p.units,
                        of_units=p.of_units,
                        units_readable=readable_units(driver, p.units),
                        of_units_readable=readable_units(driver, p.of_units),
                    )
                    for p in steps
                ],
                amount=exact_sum(p.amount for p in mine),
            )
        )
    return out


def _pool_lines(*, session: Session, policy: Policy, pool: AllocationPool) -> list[CostLine]:
    """The cost lines now in the database that fall in `pool`: those of its day, component,
    currency and estimated flag that the run's policy classifies the same way."""
    start = day_start(pool.day)
    candidates = session.scalars(
        select(CostLine)
        .where(
            CostLine.charge_period_start < start + DAY,
            or_(CostLine.charge_period_end > start, CostLine.charge_period_start >= start),
            CostLine.component == pool.component,
            CostLine.currency == pool.currency,
            CostLine.estimated == pool.estimated,
        )
        .order_by(CostLine.id)
    )
    classifier = Classifier(policy)
    wanted = (pool.kind, pool.cluster_name, pool.hub_id, pool.how, pool.detail)
    out = []
    for line in candidates:
        item = _item_of(line)
        target = classifier.classify(item)
        key = (target.kind, target.cluster, target.hub_id, target.how, target.detail)
        if key == wanted and driver_for(item.component, item.gpu, policy.options) == pool.driver:
            out.append(line)
    return out


def _item_of(line: CostLine) -> CostItem:
    return CostItem(
        charge_period_start=line.charge_period_start,
        charge_period_end=line.charge_period_end,
        net_cost=line.net_cost,
        currency=line.currency,
        component=line.component,
        estimated=line.estimated,
        sub_account_id=line.sub_account_id,
        billing_account_id=line.billing_account_id,
        labels=dict(line.labels or {}),
        gpu="gpu" in (line.sku_description or "").lower(),
        consumed_quantity=line.consumed_quantity,
        consumed_unit=line.consumed_unit,
        line_count=1,
        first_line_id=line.id,
        last_line_id=line.id,
    )


def _allocation_out(view: AllocationView) -> AllocationOut:
    return AllocationOut(
        id=view.id,
        run_id=view.run_id,
        day=view.day,
        cluster=view.cluster,
        community_id=view.community_id,
        hub_id=view.hub_id,
        hub=view.hub,
        user_id=view.user_id,
        user=view.user,
        component=view.component,
        rule=view.rule,
        amount=view.amount,
        currency=view.currency,
        estimated=view.estimated,
    )


def _pool_out(pool: AllocationPool) -> PoolOut:
    driver = DRIVERS.get(pool.driver)
    return PoolOut(
        id=pool.id,
        day=pool.day,
        kind=pool.kind,
        how=pool.how,
        detail=pool.detail,
        cluster=pool.cluster_name,
        hub_id=pool.hub_id,
        component=pool.component,
        driver=pool.driver,
        driver_unit=driver.unit if driver else "",
        driver_description=driver.description if driver else pool.driver,
        estimated=pool.estimated,
        currency=pool.currency,
        net_cost=pool.net_cost,
        cost_line_count=pool.cost_line_count,
        first_cost_line_id=pool.first_cost_line_id,
        last_cost_line_id=pool.last_cost_line_id,
        charge_periods=pool.charge_periods,
        driver_units=pool.driver_units,
        capacity_units=pool.capacity_units,
    )


def _line_out(line: CostLine) -> CostLineOut:
    return CostLineOut(
        id=line.id,
        source=line.source,
        source_row=line.source_row,
        service=line.service_name,
        sku=line.sku_description,
        project=line.sub_account_id,
        charge_period_start=line.charge_period_start,
        charge_period_end=line.charge_period_end,
        net_cost=line.net_cost,
        currency=line.currency,
        estimated=line.estimated,
        labels={str(k): str(v) for k, v in (line.labels or {}).items()},
    )


def _filter_text(pool: AllocationPool, policy: Policy) -> str:
    what = {
        "direct": f"classified as direct to hub id {pool.hub_id} ({pool.how}"
        + (f" {pool.detail}" if pool.detail else "")
        + ")",
        "shared": f"classified as shared by cluster {pool.cluster_name}",
        "unattributed": f"classified as unattributed ({pool.how}"
        + (f": {pool.detail}" if pool.detail else "")
        + ")",
    }.get(pool.kind, pool.kind)
    cluster = next((c for c in policy.clusters if c.name == pool.cluster_name), None)
    matched = ""
    if pool.kind == "shared" and cluster is not None:
        matched = f" (cluster costs: {json.dumps(cluster.costs.to_json(), sort_keys=True)})"
    return (
        f"cost lines whose charge period overlaps {pool.day}, component {pool.component}, "
        f"currency {pool.currency}, {'estimated' if pool.estimated else 'billed'}, "
        f"split by {pool.driver}, {what}{matched}: {pool.cost_line_count} line(s) with ids "
        f"{pool.first_cost_line_id}..{pool.last_cost_line_id} when run {pool.run_id} was made"
    )


def _summary_text(view: AllocationView, pool: AllocationPool, policy: Policy) -> str:
    who = (
        f"user {view.user} of hub {view.cluster}/{view.hub}"
        if view.user_id is not None
        else f"hub {view.cluster}/{view.hub} as a whole"
        if view.hub_id is not None
        else "nobody (unattributed)"
    )
    estimated = " (estimated: the bill for this day has not arrived yet)" if view.estimated else ""
    source = {
        "direct": "cost lines direct to the hub",
        "shared": f"cluster {pool.cluster_name}'s shared cost",
        "unattributed": "cost lines no hub or cluster claims",
    }.get(pool.kind, pool.kind)
    driver = DRIVERS.get(pool.driver)
    text = (
        f"On {view.day}, {format_amount(view.amount)} {view.currency} of {view.component} went "
        f"to {who}{estimated}. It comes from {source}: {format_amount(pool.net_cost)} "
        f"{pool.currency} of {view.component} that day, from {pool.cost_line_count} cost "
        f"line(s) in {pool.charge_periods} charge period(s). Rule {view.rule}: "
        f"{describe_rule(view.rule)}."
    )
    basis = view.basis
    if driver is not None and "user_units" in basis and "hub_units" in basis:
        text += (
            f" Over the day the user had "
            f"{readable_units(pool.driver, Decimal(basis['user_units']))} of "
            f"{driver.description}, out of the hub's "
            f"{readable_units(pool.driver, Decimal(basis['hub_units']))}; the hub had that out "
            f"of the cluster's {readable_units(pool.driver, pool.driver_units)}."
        )
    elif driver is not None and "hub_units" in basis:
        text += (
            f" Over the day the hub had {readable_units(pool.driver, Decimal(basis['hub_units']))}"
            f" of {driver.description}, out of the cluster's "
            f"{readable_units(pool.driver, pool.driver_units)}."
        )
    text += " Each charge period is split on its own; the periods below show every step."
    return text


# --- export and run listings --------------------------------------------------------------------


@dataclass(frozen=True)
class ExportRow:
    """One day, hub, user (None: hub level) and component, summed over rules."""

    day: date
    cluster: str | None
    community_id: str | None
    hub: str | None
    user: str | None
    component: str
    amount: Decimal
    currency: str
    estimated: bool
    run_id: int


def export_rows(
    *, session: Session, period: Period, run_id: int | None = None
) -> Iterator[ExportRow]:
    """The allocations in force (or of one run) over `period`, day by day, summed per hub, user
    and component, in a stable order: unattributed rows first, then by cluster, hub, user."""
    for day in period.days():
        query = (
            select(
                Allocation.cluster_name,
                Allocation.community_id,
                Hub.name,
                HubUser.username,
                Allocation.component,
                Allocation.currency,
                Allocation.estimated,
                Allocation.run_id,
                money_sum(Allocation.amount),
            )
            .outerjoin(Hub, Hub.id == Allocation.hub_id)
            .outerjoin(HubUser, HubUser.id == Allocation.user_id)
            .where(Allocation.day == day)
            .group_by(
                Allocation.cluster_name,
                Allocation.community_id,
                Hub.name,
                HubUser.username,
                Allocation.component,
                Allocation.currency,
                Allocation.estimated,
                Allocation.run_id,
            )
        )
        if run_id is None:
            query = query.join(
                AttributionDay,
                and_(
                    AttributionDay.day == Allocation.day,
                    AttributionDay.run_id == Allocation.run_id,
                ),
            )
        else:
            query = query.where(Allocation.run_id == run_id)
        rows = [
            ExportRow(
                day, cluster, community, hub, user, component, amount, currency, bool(est), run
            )
            for cluster, community, hub, user, component, currency, est, run, amount in (
                session.execute(query)
            )
        ]
        rows.sort(
            key=lambda r: (
                r.hub is not None,
                r.cluster or "",
                r.community_id or "",
                r.hub or "",
                r.user is not None,
                r.user or "",
                r.component,
                r.estimated,
                r.currency,
            )
        )
        yield from rows


def _days_in_force(*, session: Session) -> dict[int, int]:
    query = select(AttributionDay.run_id, func.count()).group_by(AttributionDay.run_id)
    return dict(session.execute(query).all())


def run_summaries(*, session: Session, limit: int = 50) -> list[RunOut]:
    """The latest runs, newest first, with how many days each is in force for."""
    in_force = _days_in_force(session=session)
    return [
        _run_out(run, in_force.get(run.id, 0)) for run in list_runs(session=session, limit=limit)
    ]


def run_detail(*, session: Session, run_id: int) -> RunDetail | None:
    """One run with its totals per community and reason and what it changed."""
    run = get_run(session=session, run_id=run_id)
    if run is None:
        return None
    in_force = _days_in_force(session=session).get(run.id, 0)
    totals = (run.summary or {}).get("totals", {})
    base = dict(_run_out(run, in_force))  # the fields' values, amounts still Decimal
    return RunDetail(
        **base,
        by_community={k: Decimal(v) for k, v in totals.get("by_community", {}).items()},
        unattributed_by_reason={
            k: Decimal(v) for k, v in totals.get("unattributed_by_reason", {}).items()
        },
        changes=(run.summary or {}).get("changes", {}),
    )


def _run_out(run: AttributionRun, days_in_force: int) -> RunOut:
    return RunOut(
        id=run.id,
        period_start=run.period_start.date(),
        period_end=run.period_end.date(),
        created_at=run.created_at,
        created_by=run.created_by,
        currency=run.currency,
        cost_total=run.cost_total,
        allocated_total=run.allocated_total,
        unattributed_total=run.unattributed_total,
        estimated_total=run.estimated_total,
        previous_run_id=run.previous_run_id,
        days_in_force=days_in_force,
        note=run.note,
    )
