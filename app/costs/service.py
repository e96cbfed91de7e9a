"""Cost imports and queries on a session. Services flush; the caller commits once.

An import is one transaction: it opens a batch per source and window, deletes what that batch
replaces, writes its lines, retires the estimates the real bill now covers, and records what it
did. Killed half-way, it leaves nothing behind; run twice, it replaces itself. Imports that
could overlap take turns (see `lock_for`): one of the same source, of the same billing account
from another kind of source, or an estimate of the same cloud, waits for the running one to
commit and then sees what it wrote.

What "the same source" and "the window" are, per kind of input:

- GCP export (BigQuery or file): source `gcp-billing-export:<billing account>`; the window is a
  range of usage start times; an import replaces that source's lines starting in the window.
- FOCUS files: source `focus:<provider>:<billing account>`; the window is the billing period of
  the rows; an import replaces the earlier delivery (batch) of the same billing period, whole.
- Estimates: source `estimate:<cluster>`; the window is the hours asked for; an import replaces
  the cluster's estimates starting in the window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, delete, func, or_, select
from sqlalchemy.orm import Session

from app.costs.estimates import HourUsage, Price
from app.costs.files import FileRead
from app.costs.models import CostLine, PriceBookSku
from app.costs.problems import RowProblems
from app.costs.records import SUM_CONTEXT, ZERO, CostRecord
from app.costs.store import CostLineWriter
from app.db import money_sum
from app.errors import InputError, InputProblem
from app.ingestion import service as ingestion_service
from app.ingestion.models import BatchKind, IngestionBatch
from app.periods import Window, as_utc, iso
from app.usage.models import UsageHour

NO_SERVICE = "(no service)"


class Replace(StrEnum):
    """How an import's batch replaces earlier ones of the same source."""

    charge_window = "charge_window"  # GCP export, estimates: lines starting in the window
    billing_period = "billing_period"  # FOCUS: the earlier delivery of the same billing period


@dataclass
class BatchSummary:
    batch_id: int
    source: str
    window: Window
    rows: int = 0
    rows_superseded: int = 0
    replaced_batch_ids: list[int] = field(default_factory=list)
    net_by_currency: dict[str, Decimal] = field(default_factory=dict)
    # Billing-period imports: the first and last charge start (corrections aside) of this
    # delivery, and of the earlier delivery it replaces, which it must cover.
    first_charge: datetime | None = None
    last_charge: datetime | None = None
    replaced_charges: tuple[datetime, datetime] | None = None


@dataclass
class ImportReport:
    """What an import did, for the command's output and the job's record."""

    kind: str
    batches: list[BatchSummary] = field(default_factory=list)
    rows_written: int = 0
    rows_superseded: int = 0
    estimates_retired: int = 0
    rows_read: int = 0
    totals: dict[tuple[date, str, str], Decimal] = field(default_factory=dict)
    problems: RowProblems = field(default_factory=RowProblems)
    files: list[FileRead] = field(default_factory=list)

    def figures(self) -> dict[str, Any]:
        """Flat figures for a job run's record."""
        return {
            "rows_written": self.rows_written,
            "rows_superseded": self.rows_superseded,
            "estimates_retired": self.estimates_retired,
            "rows_quarantined": self.problems.count,
            "batches": len(self.batches),
        }


def import_records(
    *,
    session: Session,
    records: Iterable[CostRecord],
    kind: str,
    replace: Replace,
    now: datetime,
    window: Window | None = None,
    problems: RowProblems | None = None,
    files: Sequence[FileRead] = (),
    note: str | None = None,
) -> ImportReport:
    """Write `records` as the current lines of their sources, replacing what they supersede.

    `window` is required for `Replace.charge_window` (every record must start inside it); FOCUS
    records carry their billing period instead. Raises InputError (and writes nothing the caller
    would commit) when a record does not fit, or when the same account's costs for the window
    were already imported from another kind of source, which would count them twice.
    """
    if replace is Replace.charge_window and window is None:
        raise ValueError("a charge-window import needs its window")
    report = ImportReport(kind=kind, problems=problems or RowProblems())
    writer = CostLineWriter(session)
    open_batches: dict[tuple[str, datetime | None, datetime | None], BatchSummary] = {}
    totals = report.totals
    day_of: dict[datetime, date] = {}
    by_period = replace is Replace.billing_period
    real_providers: set[str] = set()
    try:
        with localcontext(SUM_CONTEXT):
            for record in records:
                # Looked up by plain values: building a Window per row would cost a million
                # validations on a large file.
                if by_period:
                    key = (record.source, record.billing_period_start, record.billing_period_end)
                else:
                    key = (record.source, None, None)
                    assert window is not None
                    if not window.start <= record.charge_period_start < window.end:
                        _batch_window(record, replace, window)  # raises, naming the line
                summary = open_batches.get(key)
                if summary is None:
                    writer.pause()
                    batch_window = _batch_window(record, replace, window)
                    lock_for(session=session, record=record)
                    if not record.estimated:
                        real_providers.add(record.provider)
                    summary = _open_batch(
                        session=session,
                        record=record,
                        window=batch_window,
                        replace=replace,
                        now=now,
                        note=note,
                    )
                    if not record.estimated:
                        _refuse_double_counting(session=session, record=record, window=batch_window)
                    open_batches[key] = summary
                    report.batches.append(summary)
                writer.add(record, summary.batch_id)
                summary.rows += 1
                if by_period and not record.is_correction:
                    charge = record.charge_period_start
                    if summary.first_charge is None or charge < summary.first_charge:
                        summary.first_charge = charge
                    if summary.last_charge is None or charge > summary.last_charge:
                        summary.last_charge = charge
                currency = record.currency
                summary.net_by_currency[currency] = (
                    summary.net_by_currency.get(currency, ZERO) + record.net_cost
                )
                start = record.charge_period_start
                day = day_of.get(start)
                if day is None:
                    day = day_of[start] = start.date()
                total_key = (day, record.service_name or NO_SERVICE, currency)
                totals[total_key] = totals.get(total_key, ZERO) + record.net_cost
        writer.close()
    except BaseException:
        writer.abort()
        raise
    for summary in report.batches:
        _refuse_to_lose_charges(summary)
    report.files = list(files)
    report.rows_written = writer.written
    file_stats = [
        {"file": str(f.path), "format": f.format, "rows": f.rows, "sha256": f.sha256}
        for f in report.files
    ]
    for provider in sorted(real_providers):
        # Retiring estimates below must see those of an estimate import running now; see
        # `lock_estimates`.
        lock_estimates(session=session, provider=provider)
    for summary in report.batches:
        batch = session.get_one(IngestionBatch, summary.batch_id)
        stats: dict[str, Any] = {
            "input": kind,
            "net_by_currency": {c: format(v, "f") for c, v in summary.net_by_currency.items()},
            "replaced_batches": summary.replaced_batch_ids,
        }
        if file_stats:
            stats["files"] = file_stats
        if report.problems.count:
            stats.update(report.problems.as_stats())
        ingestion_service.finish_batch(
            session=session,
            batch=batch,
            row_count=summary.rows,
            rows_superseded=summary.rows_superseded,
            stats=stats,
            now=now,
        )
        report.rows_superseded += summary.rows_superseded
        if not summary.source.startswith("estimate:"):
            report.estimates_retired += retire_covered_estimates(
                session=session, window=summary.window
            )
    session.flush()
    return report


def lock_for(*, session: Session, record: CostRecord) -> None:
    """Wait for, then hold until commit, what an import of `record`'s source may not share.

    The source's own lock: a second import of it replaces the first's lines instead of adding
    to them. For real costs, also the billing account's: `_refuse_double_counting` must see
    the same account's lines that another kind of source is importing right now.
    """
    ingestion_service.lock_source(session=session, kind=BatchKind.costs, source=record.source)
    if not record.estimated and record.billing_account_id is not None:
        ingestion_service.lock_source(
            session=session,
            kind=BatchKind.costs,
            source=f"billing-account:{record.provider}:{record.billing_account_id}",
        )


def lock_estimates(*, session: Session, provider: str) -> None:
    """The lock estimates of `provider`'s clusters and the real bill take turns on.

    An estimate prices the hours the bill has not reached (`billed_through`), and a real import
    retires the estimates its lines now cover. Side by side, the estimate would miss the bill
    being imported and the import would miss the estimates being written: both would stay and
    those hours would count twice. An estimate import takes this lock before it reads anything;
    a real import takes it after writing its lines, before retiring estimates (last, so the two
    orders cannot deadlock).
    """
    ingestion_service.lock_source(
        session=session, kind=BatchKind.costs, source=f"estimates:{provider}"
    )


def _batch_window(record: CostRecord, replace: Replace, window: Window | None) -> Window:
    if replace is Replace.charge_window:
        assert window is not None
        if not window.contains(record.charge_period_start):
            raise InputError(
                InputProblem(
                    record.source,
                    None,
                    None,
                    "charge_period_start",
                    f"a charge period starting inside the window {window}",
                    f"{record.source_row} starting {iso(record.charge_period_start)}",
                )
            )
        return window
    if record.billing_period_start is None or record.billing_period_end is None:
        raise ValueError("a billing-period import needs records with their billing period")
    return Window(record.billing_period_start, record.billing_period_end)


def _open_batch(
    *,
    session: Session,
    record: CostRecord,
    window: Window,
    replace: Replace,
    now: datetime,
    note: str | None,
) -> BatchSummary:
    """Start a batch and delete, in this transaction, what it replaces."""
    batch = ingestion_service.start_batch(
        session=session,
        kind=BatchKind.costs,
        source=record.source,
        window_start=window.start,
        window_end=window.end,
        now=now,
    )
    batch.note = note
    summary = BatchSummary(batch_id=batch.id, source=record.source, window=window)
    earlier = [
        old
        for old in ingestion_service.overlapping_batches(
            session=session,
            kind=BatchKind.costs,
            source=record.source,
            window_start=window.start,
            window_end=window.end,
        )
        if old.id != batch.id
    ]
    if replace is Replace.charge_window:
        result = session.execute(
            delete(CostLine).where(
                CostLine.source == record.source,
                CostLine.charge_period_start >= window.start,
                CostLine.charge_period_start < window.end,
                CostLine.batch_id != batch.id,
            )
        )
        summary.rows_superseded = int(result.rowcount or 0)  # type: ignore[attr-defined]
    else:
        for old in earlier:
            old_window = Window(old.window_start, old.window_end)
            if not window.covers(old_window):
                raise InputError(
                    InputProblem(
                        record.source,
                        None,
                        None,
                        "BillingPeriodStart",
                        f"the billing period {old_window} of batch {old.id}, which this delivery "
                        "would only partly replace",
                        str(window),
                    )
                )
        if earlier:
            earlier_ids = [old.id for old in earlier]
            charge = CostLine.charge_period_start
            first, last = session.execute(
                select(func.min(charge), func.max(charge)).where(
                    CostLine.batch_id.in_(earlier_ids), CostLine.is_correction.is_(False)
                )
            ).one()
            if first is not None and last is not None:
                summary.replaced_charges = (as_utc(first), as_utc(last))
            result = session.execute(delete(CostLine).where(CostLine.batch_id.in_(earlier_ids)))
            summary.rows_superseded = int(result.rowcount or 0)  # type: ignore[attr-defined]
    for old in earlier:
        ingestion_service.mark_superseded(session=session, old=old, by=batch)
        if old.window_start >= window.start and old.window_end <= window.end:
            summary.replaced_batch_ids.append(old.id)
    return summary


def _refuse_to_lose_charges(summary: BatchSummary) -> None:
    """A delivery replaces the earlier one of its billing period whole: refuse one that does not
    reach as far back or as far forward as the one it replaces. AWS and Azure re-deliver the
    month to date, so a later delivery always covers an earlier one; files that add to each
    other (OCI's cost reports, a FOCUS table extracted a day at a time) do not, and replacing
    would drop the earlier file's costs."""
    if summary.replaced_charges is None:
        return
    old_first, old_last = summary.replaced_charges
    first, last = summary.first_charge, summary.last_charge
    if first is not None and last is not None and first <= old_first and old_last <= last:
        return
    covered = f"from {iso(first)} to {iso(last)}" if first and last else "no charges"
    raise InputError(
        InputProblem(
            summary.source,
            None,
            None,
            "ChargePeriodStart",
            f"a delivery of the billing period {summary.window} that covers the one it replaces, "
            f"charges from {iso(old_first)} to {iso(old_last)}; this one has {covered}. If the "
            "files add to each other rather than re-deliver the period (OCI's cost reports), "
            "import them with --replace window --start T --end T",
            str(summary.window),
        )
    )


def _refuse_double_counting(*, session: Session, record: CostRecord, window: Window) -> None:
    """The same account's real costs for the same window from another kind of source (a FOCUS
    file of a GCP account already imported from its BigQuery export, say) would be counted
    twice; refuse, naming the other source."""
    if record.billing_account_id is None:
        return
    other = session.scalar(
        select(CostLine.source)
        .where(
            CostLine.charge_period_start >= window.start,
            CostLine.charge_period_start < window.end,
            CostLine.provider == record.provider,
            CostLine.billing_account_id == record.billing_account_id,
            CostLine.source != record.source,
            CostLine.estimated.is_(False),
        )
        .limit(1)
    )
    if other is not None:
        raise InputError(
            InputProblem(
                record.source,
                None,
                None,
                None,
                f"no costs of billing account {record.billing_account_id} for {window} from "
                f"another source (importing both would count them twice); this account's "
                f"lines for the window already came from {other}",
                record.source,
            )
        )


# --- estimates --------------------------------------------------------------------------------


def billed_through(
    *,
    session: Session,
    provider: str,
    billing_account_id: str | None,
    sub_account_id: str | None,
    window: Window,
) -> datetime | None:
    """The end of the last hour (or day) of usage the real bill has reached for this account
    (or project) within `window`; None if it has none there.

    Only usage lines of a day or less count: a monthly charge does not mean the month is billed.
    """
    conditions = [
        CostLine.estimated.is_(False),
        CostLine.provider == provider,
        CostLine.charge_category == "usage",
        CostLine.charge_period_start >= window.start,
        CostLine.charge_period_start < window.end,
    ]
    if sub_account_id is not None:
        conditions.append(CostLine.sub_account_id == sub_account_id)
    elif billing_account_id is not None:
        conditions.append(CostLine.billing_account_id == billing_account_id)
    rows = session.execute(
        select(CostLine.charge_period_start, func.max(CostLine.charge_period_end))
        .where(*conditions)
        .group_by(CostLine.charge_period_start)
    ).all()
    reached: datetime | None = None
    for start, end in rows:
        # max() through SQLite loses the column type, and with it the UTC zone.
        end = as_utc(end)
        if end - as_utc(start) <= timedelta(days=1) and (reached is None or end > reached):
            reached = end
    return reached


def retire_covered_estimates(*, session: Session, window: Window) -> int:
    """Delete the estimated lines in `window` for hours the real bill now covers."""
    groups = session.execute(
        select(
            CostLine.source,
            CostLine.provider,
            CostLine.billing_account_id,
            CostLine.sub_account_id,
        )
        .where(
            CostLine.estimated.is_(True),
            CostLine.charge_period_start >= window.start,
            CostLine.charge_period_start < window.end,
        )
        .distinct()
    ).all()
    retired = 0
    for source, provider, billing_account_id, sub_account_id in groups:
        reached = billed_through(
            session=session,
            provider=provider,
            billing_account_id=billing_account_id,
            sub_account_id=sub_account_id,
            window=window,
        )
        if reached is None:
            continue
        conditions = [
            CostLine.estimated.is_(True),
            CostLine.source == source,
            CostLine.provider == provider,
            CostLine.charge_period_start >= window.start,
            CostLine.charge_period_start < min(reached, window.end),
        ]
        conditions.append(
            CostLine.billing_account_id.is_(None)
            if billing_account_id is None
            else CostLine.billing_account_id == billing_account_id
        )
        conditions.append(
            CostLine.sub_account_id.is_(None)
            if sub_account_id is None
            else CostLine.sub_account_id == sub_account_id
        )
        result = session.execute(delete(CostLine).where(*conditions))
        retired += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return retired


def delete_estimates(*, session: Session, source: str, window: Window) -> int:
    """Delete an estimate source's lines starting in `window`."""
    result = session.execute(
        delete(CostLine).where(
            CostLine.estimated.is_(True),
            CostLine.source == source,
            CostLine.charge_period_start >= window.start,
            CostLine.charge_period_start < window.end,
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def cluster_usage_hours(*, session: Session, cluster: str, window: Window) -> list[HourUsage]:
    """A cluster's metered usage per hour in `window` (every namespace, matched or not)."""
    rows = session.execute(
        select(
            UsageHour.hour,
            money_sum(UsageHour.cpu_request_core_seconds),
            money_sum(UsageHour.memory_request_byte_seconds),
            money_sum(UsageHour.home_storage_byte_seconds),
        )
        .where(
            UsageHour.cluster_name == cluster,
            UsageHour.hour >= window.start,
            UsageHour.hour < window.end,
        )
        .group_by(UsageHour.hour)
        .order_by(UsageHour.hour)
    ).all()
    return [
        HourUsage(
            hour=as_utc(hour),
            cpu_request_core_seconds=cpu or ZERO,
            memory_request_byte_seconds=memory or ZERO,
            home_storage_byte_seconds=storage or ZERO,
        )
        for hour, cpu, memory, storage in rows
    ]


# --- the price book ------------------------------------------------------------------------------


def replace_price_book(
    *, session: Session, service_ids: Sequence[str], entries: Sequence[PriceBookSku]
) -> int:
    """Make `entries` the price book's SKUs of these services (the others stay)."""
    session.execute(delete(PriceBookSku).where(PriceBookSku.service_id.in_(list(service_ids))))
    session.flush()
    seen: set[str] = set()
    for entry in entries:
        if entry.sku_id in seen:
            continue
        seen.add(entry.sku_id)
        session.add(entry)
    session.flush()
    return len(seen)


def find_price(*, session: Session, sku: str) -> Price:
    """The price book entry for a SKU id or exact SKU description; a clear error otherwise."""
    entry = session.get(PriceBookSku, sku)
    if entry is None:
        matches = list(
            session.scalars(select(PriceBookSku).where(PriceBookSku.sku_description == sku))
        )
        if len(matches) > 1:
            raise LookupError(
                f"{len(matches)} SKUs are described {sku!r} (one per region?); give the SKU id: "
                + ", ".join(m.sku_id for m in matches[:10])
            )
        entry = matches[0] if matches else None
    if entry is None:
        raise LookupError(
            f"no SKU {sku!r} in the price book; run `hubmeter costs prices refresh` for its "
            "service, or see `hubmeter costs prices show`"
        )
    return Price(
        sku_id=entry.sku_id,
        sku_description=entry.sku_description,
        service_name=entry.service_name,
        usage_unit=entry.usage_unit,
        base_unit=entry.base_unit,
        base_unit_conversion_factor=entry.base_unit_conversion_factor,
        unit_price=entry.unit_price,
        currency=entry.currency,
        effective_at=entry.effective_at,
    )


def price_book(*, session: Session, search: str | None = None) -> list[PriceBookSku]:
    """Price book entries, optionally those whose service or description contains `search`."""
    query = select(PriceBookSku).order_by(PriceBookSku.service_name, PriceBookSku.sku_description)
    if search:
        pattern = f"%{search}%"
        query = query.where(
            or_(
                PriceBookSku.sku_description.ilike(pattern),
                PriceBookSku.service_name.ilike(pattern),
                PriceBookSku.sku_id == search,
            )
        )
    return list(session.scalars(query))


# --- what did the clouds bill us ------------------------------------------------------------


class GroupBy(StrEnum):
    day = "day"
    service = "service"
    provider = "provider"
    charge_category = "charge-category"
    project = "project"
    component = "component"
    source = "source"
    # GCP's invoice month (invoice.month of the export, YYYYMM): GCP invoices months in
    # Pacific time, so a month's invoice does not match the UTC days of the month.
    invoice_month = "invoice-month"


@dataclass
class CostTotal:
    key: str
    currency: str
    billed_cost: Decimal = ZERO
    credits: Decimal = ZERO
    net_cost: Decimal = ZERO
    lines: int = 0
    estimated: bool = False


_GROUP_COLUMNS = {
    GroupBy.service: CostLine.service_name,
    GroupBy.provider: CostLine.provider,
    GroupBy.charge_category: CostLine.charge_category,
    GroupBy.project: CostLine.sub_account_id,
    GroupBy.component: CostLine.component,
    GroupBy.source: CostLine.source,
    GroupBy.invoice_month: CostLine.extra["invoice_month"].as_string(),
}


def cost_totals(
    *,
    session: Session,
    window: Window,
    group_by: GroupBy,
    include_estimates: bool = False,
) -> list[CostTotal]:
    """Billed cost, credits and net cost of the lines whose charge period starts in `window`,
    per group and currency, exactly. Estimates are left out unless asked for (then they are
    their own rows, marked)."""
    column = CostLine.charge_period_start if group_by is GroupBy.day else _GROUP_COLUMNS[group_by]
    conditions = [
        CostLine.charge_period_start >= window.start,
        CostLine.charge_period_start < window.end,
    ]
    if not include_estimates:
        conditions.append(CostLine.estimated.is_(False))
    rows = session.execute(
        select(
            column,
            CostLine.currency,
            CostLine.estimated,
            money_sum(CostLine.billed_cost),
            money_sum(CostLine.credits),
            money_sum(CostLine.net_cost),
            func.count(),
        )
        .where(and_(*conditions))
        .group_by(column, CostLine.currency, CostLine.estimated)
    ).all()
    totals: dict[tuple[str, str, bool], CostTotal] = {}
    with localcontext(SUM_CONTEXT):
        for value, currency, estimated, billed, credits, net, count in rows:
            key: str
            if isinstance(value, datetime):
                key = as_utc(value).date().isoformat()
            else:
                key = str(value) if value is not None else "(none)"
            total = totals.setdefault(
                (key, currency, bool(estimated)),
                CostTotal(key=key, currency=currency, estimated=bool(estimated)),
            )
            total.billed_cost += billed or ZERO
            total.credits += credits or ZERO
            total.net_cost += net or ZERO
            total.lines += int(count)
    return sorted(totals.values(), key=lambda t: (t.key, t.currency, t.estimated))


def recent_batches(*, session: Session, limit: int = 50) -> list[IngestionBatch]:
    """The latest cost imports, newest first."""
    return list(
        session.scalars(
            select(IngestionBatch)
            .where(IngestionBatch.kind == BatchKind.costs)
            .order_by(IngestionBatch.id.desc())
            .limit(limit)
        )
    )
