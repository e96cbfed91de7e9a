"""The live usage source: a cluster's Prometheus, through prometheus-api-client.

A window is cut into chunks of `ingestion.query_chunk_hours` hours, and each query of
`app.usage.queries` is run as a range query over each chunk with a one-hour step. A chunk that
Prometheus refuses as too large (its sample or 11,000-points limits) is halved and asked again,
down to single hours. Connection failures, timeouts and 5xx answers are retried with exponential
backoff; a query that still fails fails the whole window, and nothing of it is used.
"""

from __future__ import annotations

import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from time import monotonic
from typing import Any

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from app.config import PrometheusSource
from app.errors import BadValue
from app.usage.metering import (
    FLOAT_EXACT_INTEGERS,
    SECONDS_PER_HOUR,
    Number,
    Observations,
    parse_number,
)
from app.usage.queries import QUERIES, UsageQuery
from app.usage.sources import Progress, UsageSourceError

RETRY_STATUSES = (429, 500, 502, 503, 504)
# Prometheus answers 422 when a query would load more samples than --query.max-samples, and 400
# when a range query would return more than 11,000 points per series.
_TOO_LARGE = re.compile(r"too many samples|exceeded maximum resolution", re.IGNORECASE)
_STATUS = re.compile(r"HTTP Status Code (\d+) \((.*)\)\s*$", re.DOTALL)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try before a window is given up: `attempts` tries per request, waiting
    `backoff_seconds` * 2^n between them (the first retry goes at once)."""

    attempts: int = 4
    backoff_seconds: float = 1.0
    backoff_max_seconds: float = 30.0

    def urllib3_retry(self) -> Retry:
        retries = max(0, self.attempts - 1)
        return Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            other=0,
            backoff_factor=self.backoff_seconds,
            backoff_max=self.backoff_max_seconds,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET"}),
            raise_on_status=True,
            respect_retry_after_header=True,
        )


# What a source retries with unless told otherwise.
DEFAULT_RETRY = RetryPolicy()


@dataclass
class QueryTimings:
    """Where the time of a fetch went, for the batch record and the benchmark."""

    requests: int = 0
    points: int = 0
    # Wall time spent waiting for answers, summed over requests (overlaps when concurrent).
    request_seconds: float = 0.0
    wall_seconds: float = 0.0


class _TooLarge(Exception):
    pass


class _GivenUp(Exception):
    """Another query of the window failed: the window is lost, so stop asking."""


class PrometheusUsageSource:
    """Observes a cluster's usage from its Prometheus."""

    def __init__(
        self,
        *,
        cluster_name: str,
        prometheus: PrometheusSource,
        chunk_hours: int,
        retry: RetryPolicy | None = None,
        concurrency: int = 2,
    ) -> None:
        if chunk_hours < 1:
            raise ValueError("chunk_hours must be at least 1")
        self.cluster_name = cluster_name
        self.prometheus = prometheus
        self.chunk_hours = chunk_hours
        self.retry = retry or DEFAULT_RETRY
        self.concurrency = max(1, concurrency)
        self.timings = QueryTimings()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._given_up = threading.Event()
        # Read the secrets once, now, so a missing environment variable fails before any query.
        self._headers = prometheus.auth.headers()
        self._basic_auth = prometheus.auth.basic_auth()
        self._hour_range: str | None = None

    @property
    def description(self) -> str:
        return f"prometheus {self.prometheus.url}"

    def _client(self) -> PrometheusConnect:
        """One client (one HTTP connection pool) per worker thread."""
        client: PrometheusConnect | None = getattr(self._local, "client", None)
        if client is None:
            client = PrometheusConnect(
                url=self.prometheus.url,
                headers=self._headers or None,
                disable_ssl=not self.prometheus.verify_tls,
                retry=self.retry.urllib3_retry(),
                auth=self._basic_auth,
                timeout=self.prometheus.timeout_seconds,
            )
            self._local.client = client
        return client

    def hour_range(self) -> str:
        """The range selector that covers exactly one hour when evaluated at its last
        millisecond. Prometheus 3 made ranges left-open, so `[1h]` there reads
        `(h - 1ms, h + 1h - 1ms]`; before 3, ranges are closed and `[1h]` would also read a
        sample at `h - 1ms` (counted in the hour before too), so `[3599999ms]` is used, which
        reads `[h, h + 1h - 1ms]`. The server's version is asked once; a server that does not
        say, or is another implementation (Mimir, Thanos), is taken to follow Prometheus 3."""
        if self._hour_range is None:
            major = _prometheus_major_version(self.prometheus, self._headers, self._basic_auth)
            self._hour_range = "[3599999ms]" if major is not None and major < 3 else "[1h]"
        return self._hour_range

    def fetch(self, *, first_hour: int, end_hour: int, progress: Progress | None) -> Observations:
        """Every query over `[first_hour, end_hour)`, chunk by chunk; all or nothing."""
        if first_hour % SECONDS_PER_HOUR or end_hour % SECONDS_PER_HOUR:
            raise ValueError("a usage window starts and ends on whole hours")
        hour_range = self.hour_range()
        chunks = [
            (start, min(self.chunk_hours, (end_hour - start) // SECONDS_PER_HOUR))
            for start in range(first_hour, end_hour, self.chunk_hours * SECONDS_PER_HOUR)
        ]
        work = [(chunk, query) for chunk in chunks for query in QUERIES]
        observations = Observations()
        started = monotonic()
        done = 0
        self._given_up.clear()
        if progress is not None:
            progress(0, len(work))
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="prometheus") as pool:
            futures: list[Future[list[dict[str, Any]]]] = [
                pool.submit(self._query_hours, query, start, hours, hour_range)
                for (start, hours), query in work
            ]
            try:
                # In submission order, so the observations never depend on thread timing.
                for ((start, hours), query), future in zip(work, futures, strict=True):
                    series = future.result()
                    self._observe(observations, query, series, start, hours)
                    done += 1
                    if progress is not None:
                        progress(done, len(work))
            except _GivenUp:
                for future in futures:
                    future.cancel()
                raise self._first_failure(futures) from None
            except BaseException:
                self._given_up.set()
                for future in futures:
                    future.cancel()
                raise
        self.timings.wall_seconds += monotonic() - started
        return observations

    @staticmethod
    def _first_failure(futures: list[Future[list[dict[str, Any]]]]) -> UsageSourceError:
        """The error that made the window be given up (not one of the queries it stopped)."""
        for future in futures:
            if future.cancelled():
                continue
            failure = future.exception()
            if isinstance(failure, UsageSourceError):
                return failure
        return UsageSourceError("the fetch was given up")  # pragma: no cover - unreachable

    def _query_hours(
        self, query: UsageQuery, first_hour: int, hours: int, hour_range: str
    ) -> list[dict[str, Any]]:
        """One range query; halved and asked again when Prometheus finds it too large."""
        if self._given_up.is_set():
            raise _GivenUp
        try:
            return self._range_query(query, first_hour, hours, hour_range)
        except UsageSourceError:
            self._given_up.set()
            raise
        except _TooLarge as too_large:
            if hours == 1:
                self._given_up.set()
                raise UsageSourceError(
                    f"{self._where(query, first_hour, hours)}: Prometheus refuses even one hour: "
                    f"{too_large} (raise its --query.max-samples)"
                ) from None
            half = hours // 2
            return self._query_hours(query, first_hour, half, hour_range) + self._query_hours(
                query, first_hour + half * SECONDS_PER_HOUR, hours - half, hour_range
            )

    def _range_query(
        self, query: UsageQuery, first_hour: int, hours: int, hour_range: str
    ) -> list[dict[str, Any]]:
        # Evaluate at the last millisecond of each hour, so [1h] covers exactly that hour. The
        # client rounds datetimes to whole seconds, so the times go in as explicit parameters.
        start_ms = (first_hour + SECONDS_PER_HOUR) * 1000 - 1
        end_ms = start_ms + (hours - 1) * SECONDS_PER_HOUR * 1000
        params = {
            "start": _seconds_text(start_ms),
            "end": _seconds_text(end_ms),
            "step": str(SECONDS_PER_HOUR),
            "timeout": f"{self.prometheus.timeout_seconds:g}s",
        }
        began = monotonic()
        try:
            series: list[dict[str, Any]] = self._client().custom_query_range(
                query.promql.replace("[1h]", hour_range),
                start_time=_utc(start_ms),
                end_time=_utc(end_ms),
                step=str(SECONDS_PER_HOUR),
                params=params,
            )
        except PrometheusApiClientException as exc:
            status, detail = _status_of(exc)
            if status in (400, 422) and _TOO_LARGE.search(detail):
                raise _TooLarge(detail) from None
            raise UsageSourceError(
                f"{self._where(query, first_hour, hours)}: Prometheus answered HTTP {status}: "
                f"{detail}{_hint(status)}"
            ) from None
        except requests.exceptions.RetryError as exc:
            raise UsageSourceError(
                f"{self._where(query, first_hour, hours)}: Prometheus kept failing after "
                f"{self.retry.attempts} attempts: {_reason(exc)}"
            ) from None
        except requests.RequestException as exc:
            raise UsageSourceError(
                f"{self._where(query, first_hour, hours)}: no answer from Prometheus after "
                f"{self.retry.attempts} attempts: {_reason(exc)}"
            ) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageSourceError(
                f"{self._where(query, first_hour, hours)}: not a Prometheus query answer "
                f"({type(exc).__name__}: {exc})"
            ) from None
        elapsed = monotonic() - began
        with self._lock:
            self.timings.requests += 1
            self.timings.request_seconds += elapsed
        return series

    def _observe(
        self,
        observations: Observations,
        query: UsageQuery,
        series: list[dict[str, Any]],
        first_hour: int,
        hours: int,
    ) -> None:
        end_hour = first_hour + hours * SECONDS_PER_HOUR
        # A chunk has one timestamp per hour: work each out once, not once per point.
        hour_at: dict[float, int] = {}
        points = 0
        try:
            for item in series:
                labels: dict[str, str] = item["metric"]
                values: list[tuple[int, Number]] = []
                for timestamp, value_text in item["values"]:
                    hour = hour_at.get(timestamp)
                    if hour is None:
                        hour = hour_at[timestamp] = _hour_evaluated_at(timestamp)
                        if not first_hour <= hour < end_hour:
                            raise BadValue("timestamp", "a point inside the chunk", str(timestamp))
                    value = parse_number(value_text)
                    # A float64 this large has no fraction, so it arrives as an integer.
                    if isinstance(value, int) and value >= FLOAT_EXACT_INTEGERS:
                        observations.inexact_values += 1
                    values.append((hour, value))
                observations.add_series(query.name, labels, values)
                points += len(values)
        except (KeyError, TypeError, ValueError) as exc:  # BadValue is a ValueError
            raise UsageSourceError(
                f"{self._where(query, first_hour, hours)}: unexpected answer: {exc}"
            ) from None
        self.timings.points += points

    def _where(self, query: UsageQuery, first_hour: int, hours: int) -> str:
        start = _utc(first_hour * 1000).strftime("%Y-%m-%dT%H:%MZ")
        end = _utc((first_hour + hours * SECONDS_PER_HOUR) * 1000).strftime("%Y-%m-%dT%H:%MZ")
        return (
            f"cluster {self.cluster_name}: {self.prometheus.url}: query {query.name} "
            f"({query.what}) for [{start}, {end})"
        )


def _seconds_text(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _hour_evaluated_at(timestamp: float | int | str) -> int:
    """The start of the hour whose last millisecond `timestamp` is."""
    ms = round(Decimal(str(timestamp)) * 1000)
    hour = (ms + 1) // 1000 - SECONDS_PER_HOUR
    if (ms + 1) % 1000 or hour % SECONDS_PER_HOUR:
        raise BadValue("timestamp", "the last millisecond of an hour", str(timestamp))
    return hour


def _status_of(exc: PrometheusApiClientException) -> tuple[int | None, str]:
    """The HTTP status and Prometheus' error text, from the client's exception message."""
    match = _STATUS.match(str(exc))
    if match is None:
        return None, str(exc)
    body = match.group(2)
    error = re.search(r'"error"\s*:\s*"((?:[^"\\]|\\.)*)"', body)
    return int(match.group(1)), (error.group(1) if error else body)[:500]


def _hint(status: int | None) -> str:
    if status in (401, 403):
        return " (check the cluster's prometheus.auth and the environment variable it names)"
    if status == 400:
        return " (the query was refused; is this a Prometheus 2.26 or later?)"
    return ""


def _reason(exc: BaseException) -> str:
    """The innermost cause, which says what actually went wrong (refused, timed out, 503)."""
    reason: BaseException = exc
    while True:
        inner = getattr(reason, "reason", None) or reason.__cause__ or reason.__context__
        if not isinstance(inner, BaseException) or inner is reason:
            break
        reason = inner
    text = str(reason) or type(reason).__name__
    return re.sub(r"<urllib3\.[^>]*>:?\s*", "", text)[:300]


def _prometheus_major_version(
    prometheus: PrometheusSource,
    headers: dict[str, str] | None,
    basic_auth: tuple[str, str] | None,
) -> int | None:
    """The server's major version from `/api/v1/status/buildinfo`, or None if it does not say."""
    try:
        response = requests.get(
            f"{prometheus.url.rstrip('/')}/api/v1/status/buildinfo",
            headers=headers or None,
            auth=basic_auth,
            verify=prometheus.verify_tls,
            timeout=min(prometheus.timeout_seconds, 10.0),
        )
        if response.status_code != 200:
            return None
        data = response.json()["data"]
        # Other servers answer this too (Grafana Mimir names itself in `application`), with
        # their own version numbers, not their query engine's: only Prometheus' is trusted.
        if data.get("application", "Prometheus") != "Prometheus":
            return None
        version = str(data["version"])
        return int(version.lstrip("v").split(".", 1)[0])
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return None
