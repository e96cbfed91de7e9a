"""The scheduled jobs, by name, and when each runs.

Kubernetes CronJobs (deploy/kubernetes/cronjobs.yaml) run `hubmeter jobs run NAME`; on one
machine the service's embedded scheduler (HUBMETER_SCHEDULER_ENABLED=true) runs the same jobs at
the same minutes. Every job is idempotent, so a run that dies is simply run again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.clock import utcnow
from app.costs.estimates import Driver
from app.periods import HOUR, floor_hour
from app.runtime import Runtime
from jobs.runner import JobSkipped

log = logging.getLogger(__name__)


class JobError(Exception):
    """A scheduled job did not do all of its work; the job runs record why."""


@dataclass(frozen=True)
class Cadence:
    """`minute` past the hour, every `every_hours` hours (counted from midnight UTC)."""

    minute: int
    every_hours: int = 1

    def next_after(self, moment: datetime) -> datetime:
        candidate = floor_hour(moment) + timedelta(minutes=self.minute)
        while candidate <= moment or candidate.hour % self.every_hours:
            candidate += HOUR
        return candidate


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    cadence: Cadence
    description: str
    run: Callable[[Runtime], str]


def ingest_usage(runtime: Runtime) -> str:
    from jobs import ingest_usage as job

    outcomes = job.ingest_usage(runtime)
    failed = [outcome for outcome in outcomes if outcome.error is not None]
    if failed:
        raise JobError(
            "usage not ingested for "
            + ", ".join(f"{outcome.cluster} ({outcome.error})" for outcome in failed)
        )
    skipped = [outcome.cluster for outcome in outcomes if outcome.skipped is not None]
    return f"{len(outcomes) - len(skipped)} cluster(s) up to date" + (
        f"; {', '.join(skipped)} already being ingested by another process" if skipped else ""
    )


def ingest_costs(runtime: Runtime) -> str:
    """Re-pull every configured GCP export's trailing window, then estimate the hours the bill
    has not reached for clusters with estimate SKUs.

    Each export and each cluster's estimate is its own job run: one that fails (an unreachable
    table, a missing price) is recorded and the others still run; then the failures are raised
    together."""
    from jobs import ingest_costs as job

    config = runtime.config
    done: list[str] = []
    failed: list[str] = []
    for export in config.ingestion.bigquery_exports:
        try:
            report = job.ingest_gcp_bigquery(
                runtime, table=export.table, billing_project=export.billing_project
            )
        except JobSkipped as exc:
            done.append(str(exc))
            continue
        except Exception as exc:  # recorded in its job run; the other exports still run
            failed.append(f"{export.table} ({exc})")
            continue
        done.append(f"{export.table}: {report.rows_written} lines")
    for cluster in config.clusters:
        skus = cluster.costs.estimate_skus.chosen()
        if not skus:
            continue
        try:
            report = job.estimate_costs(
                runtime, cluster=cluster.name, skus={Driver(k): v for k, v in skus.items()}
            )
        except JobSkipped as exc:
            done.append(str(exc))
            continue
        except Exception as exc:  # recorded in its job run; the other clusters still run
            failed.append(f"estimates for {cluster.name} ({exc})")
            continue
        done.append(f"estimates for {cluster.name}: {report.rows_written} lines")
    if failed:
        raise JobError(
            "costs not ingested for "
            + "; ".join(failed)
            + (f" (done: {'; '.join(done)})" if done else "")
        )
    return "; ".join(done) or "no BigQuery export or estimate SKUs configured"


def refresh_price_book(runtime: Runtime) -> str:
    from jobs import ingest_costs as job

    services = runtime.config.ingestion.price_book_services
    if not services:
        return "no price_book_services configured"
    return f"{job.refresh_price_book(runtime, services=services)} SKUs priced"


def attribute(runtime: Runtime) -> str:
    from jobs import attribute as job

    # A run whose allocations do not add up to the cost lines is refused inside its
    # transaction (and recorded as failed), so a report that comes back balances.
    report = job.attribute(runtime)
    return f"{report.period.start}..{report.period.end}: " + (
        f"run {report.run_id}" if report.changed else "no changes"
    )


SCHEDULE = [
    ScheduledJob("ingest-usage", Cadence(minute=7), "hourly usage from each cluster", ingest_usage),
    ScheduledJob(
        "ingest-costs",
        Cadence(minute=23, every_hours=6),
        "the bill's trailing window, and estimates for hours not billed yet",
        ingest_costs,
    ),
    ScheduledJob(
        "attribute",
        Cadence(minute=47, every_hours=6),
        "attribute the trailing window (after the costs)",
        attribute,
    ),
    ScheduledJob(
        "refresh-price-book",
        Cadence(minute=31, every_hours=24),
        "list prices from the Cloud Billing Catalog",
        refresh_price_book,
    ),
]


def job_named(name: str) -> ScheduledJob:
    for job in SCHEDULE:
        if job.name == name:
            return job
    known = ", ".join(job.name for job in SCHEDULE)
    raise KeyError(f"no scheduled job {name!r}; the jobs are: {known}")


class EmbeddedScheduler:
    """Runs the schedule in one background thread of the service, one job at a time."""

    def __init__(self, runtime: Runtime, jobs: list[ScheduledJob] | None = None) -> None:
        self.runtime = runtime
        self.jobs = jobs or SCHEDULE
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="hubmeter-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        now = utcnow()
        due = {job.name: job.cadence.next_after(now) for job in self.jobs}
        while not self._stop.is_set():
            now = utcnow()
            for job in self.jobs:
                if due[job.name] <= now and not self._stop.is_set():
                    self.run_one(job)
                    due[job.name] = job.cadence.next_after(utcnow())
            wait = min(due.values()) - utcnow()
            self._stop.wait(max(1.0, min(wait.total_seconds(), 60.0)))

    def run_one(self, job: ScheduledJob) -> None:
        try:
            log.info("scheduled job %s: %s", job.name, job.run(self.runtime))
        except JobSkipped as exc:
            log.info("scheduled job %s: %s", job.name, exc)
        except Exception:
            # The job run already records the failure; the next tick tries again.
            log.exception("scheduled job %s failed", job.name)
