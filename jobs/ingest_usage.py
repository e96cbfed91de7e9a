"""Ingest usage: each cluster's window of hours from its Prometheus (or an OpenMetrics file).

Each cluster is its own job run, named `ingest_usage:<cluster>`, and its own transaction, so one
unreachable Prometheus neither blocks nor undoes the others (nor hides behind their successes on
/metrics). Run on a schedule with no window, each cluster continues from its watermark up to the
last complete hour. `python -m jobs.ingest_usage` runs that and exits non-zero when any cluster
failed.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.config import ConfigError, get_settings
from app.db import transaction
from app.runtime import Runtime
from app.usage import service as usage_service
from app.usage.prometheus import RetryPolicy
from app.usage.service import IngestReport, SourceKind
from app.usage.sources import Progress
from jobs.runner import JobSkipped, run_job

log = logging.getLogger(__name__)
JOB_NAME = "ingest_usage"

# Called once per cluster with the cluster's name and source kind; returns its progress callback.
ProgressFactory = Callable[[str, SourceKind], Progress | None]


@dataclass
class ClusterIngest:
    """How the ingest of one cluster ended."""

    cluster: str
    source: SourceKind
    window: tuple[datetime, datetime] | None
    report: IngestReport | None = None
    error: BaseException | None = None
    # Why nothing was done: another process is ingesting this cluster right now.
    skipped: str | None = None

    @property
    def up_to_date(self) -> bool:
        return self.report is None and self.error is None and self.skipped is None


def ingest_usage(
    runtime: Runtime,
    *,
    clusters: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    source: SourceKind | None = None,
    file: Path | None = None,
    progress: ProgressFactory | None = None,
    retry: RetryPolicy | None = None,
    now: datetime | None = None,
) -> list[ClusterIngest]:
    """Ingest the clusters named (all by default); failures are returned, not raised."""
    config = runtime.config
    names = clusters or [cluster.name for cluster in config.clusters]
    chosen = [config.cluster(name) for name in names]  # ConfigError for an unknown name
    if file is not None and len(chosen) != 1:
        raise ConfigError("--file holds one cluster's series: name it with --cluster")
    now = now or utcnow()
    outcomes: list[ClusterIngest] = []
    for cluster in chosen:
        kind = usage_service.choose_source_kind(
            cluster, SourceKind.openmetrics if file is not None else source
        )
        window: tuple[datetime, datetime] | None = None
        if not (kind is SourceKind.openmetrics and start is None and end is None):
            with transaction(runtime.session_factory) as session:
                window = usage_service.resolve_window(
                    session=session, cluster=cluster, start=start, end=end, now=now
                )
            if window[0] == window[1]:
                outcomes.append(ClusterIngest(cluster.name, kind, window))
                continue
        on_progress = progress(cluster.name, kind) if progress is not None else None
        outcomes.append(
            _ingest_cluster(runtime, cluster.name, kind, window, file, retry, now, on_progress)
        )
    return outcomes


def _ingest_cluster(
    runtime: Runtime,
    cluster_name: str,
    kind: SourceKind,
    window: tuple[datetime, datetime] | None,
    file: Path | None,
    retry: RetryPolicy | None,
    now: datetime,
    progress: Progress | None,
) -> ClusterIngest:
    """One cluster, as one job run: fetched and stored in one transaction, or not at all."""
    config = runtime.config

    def work(session: Session) -> IngestReport | None:
        # Built inside the run, so a missing secret is recorded as the reason the run failed.
        usage_source = usage_service.make_source(
            config=config, cluster=config.cluster(cluster_name), kind=kind, file=file, retry=retry
        )
        return usage_service.ingest_cluster(
            session=session,
            config=config,
            cluster_name=cluster_name,
            source=usage_source,
            window_start=window[0] if window else None,
            window_end=window[1] if window else None,
            now=now,
            progress=progress,
        )

    def figures(report: IngestReport | None) -> dict[str, Any]:
        return report.figures() if report is not None else {"cluster": cluster_name, "rows": 0}

    try:
        report = run_job(
            runtime,
            f"{JOB_NAME}:{cluster_name}",
            work,
            window=window or (None, None),
            figures=figures,
        )
    except JobSkipped as exc:
        return ClusterIngest(cluster_name, kind, window, skipped=str(exc))
    except Exception as exc:  # recorded in the job run; the other clusters still run
        return ClusterIngest(cluster_name, kind, window, error=exc)
    if report is not None:
        window = (report.window_start, report.window_end)
    return ClusterIngest(cluster_name, kind, window, report=report)


def main() -> int:
    """The scheduled run: every cluster from its watermark; status 1 if any failed."""
    from app.logs import configure_logging

    settings = get_settings()
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    outcomes = ingest_usage(Runtime(settings=settings))
    failed = 0
    for outcome in outcomes:
        if outcome.error is not None:
            failed += 1
            log.error("usage of cluster %s not ingested: %s", outcome.cluster, outcome.error)
        elif outcome.skipped is not None:
            log.info("usage of cluster %s: %s", outcome.cluster, outcome.skipped)
        elif outcome.report is not None:
            log.info("usage of cluster %s ingested: %s", outcome.cluster, outcome.report.figures())
            for warning in outcome.report.warnings:
                log.warning("cluster %s: %s", outcome.cluster, warning)
        else:
            log.info("usage of cluster %s is up to date", outcome.cluster)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
