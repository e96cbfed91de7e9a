"""Prometheus metrics for the service: request latency, and job figures read from job runs.

Job figures come from the `job_run` table at scrape time, so a job that ran in another process
(a Kubernetes CronJob) shows up on the service's /metrics just the same.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from app.logs import request_id_var
from app.scheduling.models import JobRun, JobStatus

log = logging.getLogger(__name__)


def make_registry(session_factory: sessionmaker[Session]) -> tuple[CollectorRegistry, Histogram]:
    registry = CollectorRegistry(auto_describe=True)
    latency = Histogram(
        "hubmeter_http_request_duration_seconds",
        "Time to answer an HTTP request, by route template, method and status code.",
        ["route", "method", "status"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        registry=registry,
    )
    registry.register(JobCollector(session_factory))
    return registry, latency


class JobCollector(Collector):
    """Last success time and the figures of the latest successful run of each job."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    def collect(self) -> Iterator[Metric]:
        last_success = GaugeMetricFamily(
            "hubmeter_job_last_success_timestamp_seconds",
            "When each job last finished successfully (Unix time).",
            labels=["job"],
        )
        last_failure = GaugeMetricFamily(
            "hubmeter_job_last_failure_timestamp_seconds",
            "When each job last failed (Unix time).",
            labels=["job"],
        )
        figures = GaugeMetricFamily(
            "hubmeter_job_last_figure",
            "Figures reported by the latest successful run of each job "
            "(rows ingested, amount attributed, unattributed amount, ...).",
            labels=["job", "figure"],
        )
        try:
            with self.session_factory() as session:
                for status, family in (
                    (JobStatus.succeeded, last_success),
                    (JobStatus.failed, last_failure),
                ):
                    rows = session.execute(
                        select(JobRun.job_name, func.max(JobRun.finished_at))
                        .where(JobRun.status == status)
                        .group_by(JobRun.job_name)
                    ).tuples()
                    for job_name, finished_at in rows:
                        if finished_at is not None:
                            family.add_metric([job_name], finished_at.timestamp())
                for job_name, detail in _latest_success_details(session):
                    reported = detail.get("figures")
                    if not isinstance(reported, dict):
                        continue
                    for figure, value in sorted(reported.items()):
                        try:
                            figures.add_metric([job_name, figure], float(Decimal(str(value))))
                        except ArithmeticError:
                            continue
        except Exception as exc:
            # A scrape must not fail because the database is briefly unreachable.
            log.warning("job figures left out of /metrics: %s", type(exc).__name__)
        yield last_success
        yield last_failure
        yield figures


def _latest_success_details(session: Session) -> Iterator[tuple[str, dict[str, object]]]:
    latest = (
        select(JobRun.job_name, func.max(JobRun.id).label("id"))
        .where(JobRun.status == JobStatus.succeeded)
        .group_by(JobRun.job_name)
        .subquery()
    )
    rows = session.execute(
        select(JobRun.job_name, JobRun.detail).join(latest, JobRun.id == latest.c.id)
    )
    for job_name, detail in rows.tuples():
        yield job_name, detail or {}


def request_middleware(
    latency: Histogram,
) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """Times every request and tags it with a request id (echoed as X-Request-ID)."""

    async def middleware(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        token = request_id_var.set(request_id[:64])
        started = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["X-Request-ID"] = request_id[:64]
            return response
        finally:
            route = request.scope.get("route")
            template = getattr(route, "path", "unmatched")
            latency.labels(template, request.method, str(status)).observe(
                time.perf_counter() - started
            )
            request_id_var.reset(token)

    return middleware
