"""Prometheus metrics for the service: request latency, and job figures read from job runs.

Job figures come from the `job_run` table at scrape time, so a job that ran in another process
(a Kubernetes CronJob) shows up on the service's /metrics just the same. Their label is
`job_name`, never `job`: Prometheus sets `job` itself on every scraped series (and would rename
ours to `exported_job`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.costapi.cache import CostCache
from app.logs import request_id_var
from app.problems import problem_response
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
            labels=["job_name"],
        )
        last_failure = GaugeMetricFamily(
            "hubmeter_job_last_failure_timestamp_seconds",
            "When each job last failed (Unix time).",
            labels=["job_name"],
        )
        figures = GaugeMetricFamily(
            "hubmeter_job_last_figure",
            "Figures reported by the latest successful run of each job "
            "(rows ingested, amount attributed, unattributed amount, ...).",
            labels=["job_name", "figure"],
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
                    ).all()
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
    for job_name, detail in rows.all():
        yield job_name, detail or {}


class CostCacheCollector(Collector):
    """Hits and misses of the cost API's result cache: a low hit ratio means answers are
    computed from the allocations each time (see docs/api.md)."""

    def __init__(self, cache: CostCache) -> None:
        self.cache = cache

    def collect(self) -> Iterator[Metric]:
        lookups = CounterMetricFamily(
            "hubmeter_cost_cache_lookups",
            "Cost API answers looked up in the result cache, by outcome.",
            labels=["outcome"],
        )
        lookups.add_metric(["hit"], self.cache.hits)
        lookups.add_metric(["miss"], self.cache.misses)
        yield lookups
        yield GaugeMetricFamily(
            "hubmeter_cost_cache_rows",
            "Rows of cost answers held in the result cache.",
            value=self.cache.rows_held,
        )


# Probes and scrapes arrive every few seconds; their access lines would drown everything else.
QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
access_log = logging.getLogger("hubmeter.access")


def route_template(scope: Scope) -> str:
    """The matched route's template (`/api/v1/hubs/{hub_id}/costs`), never the raw path, so
    the latency histogram has one series per route instead of one per id; `unmatched` for
    paths no route serves."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"


class RequestMiddleware:
    """Times every request by route template, tags it with a request id (echoed as
    X-Request-ID, set for the logs while it runs) and writes one access log line.

    A plain ASGI middleware: it adds no task or copy of the body per request, and an
    unexpected error is answered here, inside the request's context, so the 500 problem
    document and the error's log line carry the same request id.
    """

    def __init__(self, app: ASGIApp, latency: Histogram) -> None:
        self.app = app
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = (given if _is_printable(given) else "")[:64] or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unexpected error answering %s %s", scope["method"], scope["path"])
            if response_started:
                raise
            response = problem_response(
                500,
                "Internal error",
                "hubmeter could not answer this request; the error is in the service log "
                "under this request id",
            )
            await response(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            template = route_template(scope)
            self.latency.labels(template, scope["method"], str(status)).observe(elapsed)
            access_log.log(
                logging.DEBUG if scope["path"] in QUIET_PATHS else logging.INFO,
                "%s %s %s %.1fms",
                scope["method"],
                scope["path"],
                status,
                elapsed * 1000,
                extra={
                    "method": scope["method"],
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                },
            )
            request_id_var.reset(token)


def _is_printable(text: str) -> bool:
    return text.isascii() and text.isprintable()
