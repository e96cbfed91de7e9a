"""Read one kind of bill and import it: what the `ingest costs` command and the jobs call.

Each function works inside the caller's transaction (the caller commits once) and returns the
import's report.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.config import HubmeterConfig
from app.costs import bigquery as bigquery_source
from app.costs import service
from app.costs.estimates import Driver, EstimateTarget, Price, estimate_records
from app.costs.estimates import source_for as estimate_source
from app.costs.files import FileRead, Progress, aggregate_gcp_export, read_focus
from app.costs.gcp_export import ExportAggregator, records_from_groups
from app.costs.problems import RowProblems
from app.costs.service import ImportReport, Replace
from app.errors import InputError, InputProblem
from app.periods import Window


def ingest_focus_files(
    *,
    session: Session,
    paths: list[Path],
    now: datetime,
    window: Window | None = None,
    quarantine: bool = False,
    progress: Progress | None = None,
    replace: Replace = Replace.billing_period,
) -> ImportReport:
    """FOCUS CSV/Parquet files of one delivery: each billing period of each account in them
    replaces the earlier delivery of that period. With `Replace.charge_window`, for files that
    add to each other rather than re-deliver a period, they replace only the lines of their
    accounts whose charge period starts in `window` (required), and every row must start in it.
    """
    by_window = replace is Replace.charge_window
    if by_window and window is None:
        raise ValueError("replacing a window of FOCUS charges needs the window")
    problems = RowProblems(quarantine=quarantine)
    reads: list[FileRead] = []
    records = read_focus(
        paths,
        problems=problems,
        window=None if by_window else window,
        reads=reads,
        progress=progress,
    )
    return service.import_records(
        session=session,
        records=records,
        kind="focus",
        replace=replace,
        window=window if by_window else None,
        now=now,
        problems=problems,
        files=reads,
        note=_files_note(paths),
    )


def ingest_gcp_export_files(
    *,
    session: Session,
    paths: list[Path],
    now: datetime,
    window: Window,
    quarantine: bool = False,
    progress: Progress | None = None,
) -> ImportReport:
    """The GCP export as files, extracted for `window` (usage start times): the import replaces
    every line of the billing account whose usage starts in it.

    The window is the caller's to give, never guessed from the files: a partial extract (one
    `_PARTITIONTIME` partition, holding late rows of earlier days) spans days it holds only a
    few rows of, and replacing those whole days would delete their other lines. Rows starting
    outside the window are refused (or quarantined)."""
    problems = RowProblems(quarantine=quarantine)
    aggregator = ExportAggregator(window=window, problems=problems)
    reads: list[FileRead] = []
    aggregate_gcp_export(paths, aggregator=aggregator, reads=reads, progress=progress)
    source = ", ".join(str(path) for path in paths)
    report = service.import_records(
        session=session,
        records=records_from_groups(aggregator.groups(), source=source, problems=problems),
        kind="gcp-export",
        replace=Replace.charge_window,
        window=window,
        now=now,
        problems=problems,
        files=reads,
        note=_files_note(paths),
    )
    report.rows_read = aggregator.rows
    return report


def ingest_gcp_bigquery(
    *,
    session: Session,
    client: Any,
    table: str,
    window: Window,
    now: datetime,
    quarantine: bool = False,
    partition_filter: bool = True,
    partition_margin_after: timedelta = bigquery_source.PARTITION_MARGIN_AFTER,
    page_size: int | None = None,
) -> ImportReport:
    """Usage starting in `window`, grouped in BigQuery, replacing the same account's lines."""
    problems = RowProblems(quarantine=quarantine)
    groups = bigquery_source.export_groups(
        client=client,
        table=table,
        window=window,
        partition_filter=partition_filter,
        partition_margin_after=partition_margin_after,
        page_size=page_size,
    )
    raw_rows = 0

    def counted() -> Any:
        nonlocal raw_rows
        for group in groups:
            raw_rows += int(group.get("raw_rows") or 0)
            yield group

    report = service.import_records(
        session=session,
        records=records_from_groups(counted(), source=f"bigquery:{table}", problems=problems),
        kind="gcp-bigquery",
        replace=Replace.charge_window,
        window=window,
        now=now,
        problems=problems,
        note=f"bigquery:{table}",
    )
    report.rows_read = raw_rows
    return report


# Which label names a cluster on each cloud's bill (GKE, eksctl); used on estimated lines.
_CLUSTER_LABEL_BY_PROVIDER = {
    "gcp": "goog-k8s-cluster-name",
    "aws": "alpha.eksctl.io/cluster-name",
}


def estimate_target(config: HubmeterConfig, cluster_name: str) -> EstimateTarget:
    """The account, project and cluster label a cluster's estimated lines carry."""
    cluster = config.cluster(cluster_name)
    provider = cluster.provider.value
    label_keys = config.attribution.cluster_label_keys
    preferred = _CLUSTER_LABEL_BY_PROVIDER.get(provider)
    label_key = preferred if preferred in label_keys else (label_keys[0] if label_keys else None)
    labels = dict(cluster.costs.labels)
    if label_key is not None:
        labels.setdefault(label_key, cluster.name)
    return EstimateTarget(
        cluster=cluster.name,
        provider=provider,
        billing_account_id=cluster.costs.billing_accounts[0]
        if cluster.costs.billing_accounts
        else None,
        sub_account_id=cluster.costs.projects[0] if cluster.costs.projects else None,
        labels=labels,
    )


def ingest_estimates(
    *,
    session: Session,
    target: EstimateTarget,
    window: Window,
    skus: dict[Driver, str],
    now: datetime,
) -> ImportReport:
    """Estimate the cluster's hours in `window` that the bill has not reached, from metered
    usage at list price; they replace the cluster's earlier estimates in the window."""
    # Before reading anything: how far the bill has reached must include a real import of
    # this cloud that is running now (it commits first, or waits for this one to).
    service.lock_estimates(session=session, provider=target.provider)
    if not skus:
        raise InputError(
            InputProblem(
                estimate_source(target.cluster), None, None, None,
                "at least one SKU to price usage with (--cpu-sku, --memory-sku, --storage-sku)",
            )
        )  # fmt: skip
    prices: dict[Driver, Price] = {}
    for driver, sku in skus.items():
        try:
            prices[driver] = service.find_price(session=session, sku=sku)
        except LookupError as exc:
            raise InputError(
                InputProblem("price book", None, None, f"{driver.value} SKU", str(exc), sku)
            ) from exc
    reached = service.billed_through(
        session=session,
        provider=target.provider,
        billing_account_id=target.billing_account_id,
        sub_account_id=target.sub_account_id,
        window=window,
    )
    start = max(window.start, reached) if reached is not None else window.start
    usage = [
        hour
        for hour in service.cluster_usage_hours(
            session=session, cluster=target.cluster, window=window
        )
        if hour.hour >= start
    ]
    try:
        records = estimate_records(usage, prices=prices, target=target)
    except ValueError as exc:
        raise InputError(InputProblem("price book", None, None, None, str(exc))) from exc
    report = service.import_records(
        session=session,
        records=records,
        kind="estimate",
        replace=Replace.charge_window,
        window=window,
        now=now,
        note=f"estimate for cluster {target.cluster} from {len(usage)} metered hour(s)",
    )
    if not records:
        # No batch was opened, so nothing replaced the cluster's earlier estimates in the
        # window; they are stale all the same (the bill reached those hours, or usage vanished).
        report.rows_superseded += service.delete_estimates(
            session=session, source=estimate_source(target.cluster), window=window
        )
    report.rows_read = len(usage)
    return report


def _files_note(paths: list[Path]) -> str:
    names = ", ".join(path.name for path in paths)
    return names if len(names) <= 900 else names[:897] + "..."
