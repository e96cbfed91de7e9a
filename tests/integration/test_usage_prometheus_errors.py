"""How the Prometheus source behaves when Prometheus does not simply answer: retries with
backoff, halving a chunk that is too large, refusing bad answers, and sending credentials.

A real Prometheus cannot be made to answer 503 or 401 on demand, so these use a small local HTTP
server that speaks the query API; tests/integration/test_usage_ingest.py uses the real one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from app.config import PrometheusAuth, PrometheusSource
from app.usage.metering import meter
from app.usage.prometheus import PrometheusUsageSource, RetryPolicy
from app.usage.queries import QUERIES, Query
from app.usage.sources import UsageSourceError
from tests import servers

T0 = 1_790_812_800  # 2026-10-01T00:00:00Z
HOUR = 3600
FAST = RetryPolicy(attempts=3, backoff_seconds=0.01)

# (status, body) for one request; None: answer as Prometheus would.
Reply = tuple[int, dict[str, Any]] | None


@dataclass
class FakePrometheus:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    script: Callable[[dict[str, Any]], Reply] = lambda request: None
    delay_seconds: float = 0.0
    # What /api/v1/status/buildinfo says (None: 404, as a server that does not say); asked
    # once per source, and not counted among `requests`.
    version: str | None = "3.1.0"
    application: str | None = None  # what another server names itself as (Grafana Mimir)
    buildinfo_requests: int = 0


def matrix(request: dict[str, Any]) -> dict[str, Any]:
    """A Prometheus answer with one server pod seen 60 times in every hour asked for."""
    start, end = float(request["start"]), float(request["end"])
    values = []
    t = start
    while t <= end + 1e-6:
        values.append([round(t, 3), "60"])
        t += 3600
    result = []
    if request["query"] == QUERIES[0].promql:
        result.append(
            {
                "metric": {
                    "namespace": "ocean",
                    "pod": "jupyter-alice",
                    "uid": "u",
                    "label_hub_jupyter_org_username": "alice",
                },
                "values": values,
            }
        )
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    port = servers.free_port()
    state = FakePrometheus(url=f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/api/v1/status/buildinfo":
                state.buildinfo_requests += 1
                status, info = (
                    (404, {})
                    if state.version is None
                    else (
                        200,
                        {
                            "status": "success",
                            "data": {"version": state.version}
                            | ({"application": state.application} if state.application else {}),
                        },
                    )
                )
                body = json.dumps(info).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            request = {key: values[0] for key, values in parse_qs(url.query).items()}
            request["path"] = url.path
            request["authorization"] = self.headers.get("Authorization")
            state.requests.append(request)
            if state.delay_seconds:
                time.sleep(state.delay_seconds)
            reply = state.script(request) or (200, matrix(request))
            body = json.dumps(reply[1]).encode()
            try:
                self.send_response(reply[0])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting: what the timeout test wants

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def source(url: str, *, chunk_hours: int = 24, **settings: Any) -> PrometheusUsageSource:
    return PrometheusUsageSource(
        cluster_name="atlantic",
        prometheus=PrometheusSource(url=url, **settings),
        chunk_hours=chunk_hours,
        retry=FAST,
        concurrency=1,
    )


def error(status: int, text: str) -> tuple[int, dict[str, Any]]:
    return status, {"status": "error", "errorType": "execution", "error": text}


def test_every_hour_is_evaluated_at_its_last_millisecond_in_chunks(fake: FakePrometheus) -> None:
    observations = source(fake.url, chunk_hours=10).fetch(
        first_hour=T0, end_hour=T0 + 24 * HOUR, progress=None
    )
    windows = sorted({(r["start"], r["end"], r["step"]) for r in fake.requests})
    assert windows == [
        ("1790816399.999", "1790848799.999", "3600"),
        ("1790852399.999", "1790884799.999", "3600"),
        ("1790888399.999", "1790899199.999", "3600"),
    ]
    assert len(fake.requests) == 3 * len(QUERIES)
    assert {r["timeout"] for r in fake.requests} == {"60s"}
    assert sorted({key[0] for key in observations.server_samples}) == [
        T0 + h * HOUR for h in range(24)
    ]


@pytest.mark.parametrize(
    ("version", "application", "hour_range"),
    [
        ("3.1.0", None, "[1h]"),
        ("2.53.1", None, "[3599999ms]"),
        ("v2.42.0", None, "[3599999ms]"),
        (None, None, "[1h]"),
        ("2.16.0", "Grafana Mimir", "[1h]"),  # its own version, not its engine's
    ],
)
def test_the_hour_range_follows_the_servers_range_semantics(
    fake: FakePrometheus, version: str | None, application: str | None, hour_range: str
) -> None:
    """Before Prometheus 3 a range includes its left end, so `[1h]` at h + 1h - 1ms would also
    read a sample at h - 1ms, which the hour before counts too."""
    fake.version = version
    fake.application = application
    usage = source(fake.url, chunk_hours=2)
    usage.fetch(first_hour=T0, end_hour=T0 + 4 * 3600, progress=None)
    usage.fetch(first_hour=T0, end_hour=T0 + 3600, progress=None)
    assert fake.buildinfo_requests == 1  # asked once
    queries = [request["query"] for request in fake.requests]
    assert all("[1h]" not in query for query in queries) == (hour_range != "[1h]")
    assert any(hour_range in query for query in queries)


def test_5xx_answers_are_retried(fake: FakePrometheus) -> None:
    failures = iter([error(503, "overloaded"), error(502, "bad gateway")])
    fake.script = lambda request: next(failures, None)
    observations = source(fake.url).fetch(first_hour=T0, end_hour=T0 + HOUR, progress=None)
    assert len(fake.requests) == len(QUERIES) + 2
    assert observations.server_samples == {(T0, "ocean", "jupyter-alice", "u"): 60}


def test_a_window_that_keeps_failing_is_given_up(fake: FakePrometheus) -> None:
    fake.script = lambda request: error(503, "query queue full")
    seen: list[int] = []
    with pytest.raises(UsageSourceError) as caught:
        source(fake.url).fetch(
            first_hour=T0, end_hour=T0 + HOUR, progress=lambda done, total: seen.append(done)
        )
    message = str(caught.value)
    assert message.startswith(f"cluster atlantic: {fake.url}: query server_samples")
    assert "[2026-10-01T00:00Z, 2026-10-01T01:00Z)" in message
    assert "kept failing after 3 attempts" in message
    assert len(fake.requests) == 3
    assert seen == [0]


def test_an_unreachable_prometheus_is_given_up(fake: FakePrometheus) -> None:
    closed = f"http://127.0.0.1:{servers.free_port()}"
    with pytest.raises(UsageSourceError, match="no answer from Prometheus after 3 attempts"):
        source(closed).fetch(first_hour=T0, end_hour=T0 + HOUR, progress=None)


def test_a_slow_prometheus_times_out_and_is_given_up(fake: FakePrometheus) -> None:
    fake.delay_seconds = 0.5
    slow = source(fake.url, timeout_seconds=0.1)
    with pytest.raises(UsageSourceError, match=r"no answer from Prometheus after 3 attempts: .*"):
        slow.fetch(first_hour=T0, end_hour=T0 + HOUR, progress=None)
    assert len(fake.requests) == 3


def test_a_chunk_prometheus_finds_too_large_is_halved(fake: FakePrometheus) -> None:
    def refuse_more_than_three_hours(request: dict[str, Any]) -> Reply:
        hours = (float(request["end"]) - float(request["start"])) / 3600 + 1
        if hours > 3.5:
            return error(422, "query processing would load too many samples into memory")
        return None

    fake.script = refuse_more_than_three_hours
    observations = source(fake.url, chunk_hours=10).fetch(
        first_hour=T0, end_hour=T0 + 10 * HOUR, progress=None
    )
    assert sorted(key[0] for key in observations.server_samples) == [
        T0 + h * HOUR for h in range(10)
    ]
    served = [r for r in fake.requests if r["query"] == QUERIES[0].promql]
    # 10 hours -> 5 + 5 -> (2 + 3) + (2 + 3): one refusal, two refusals, four answers.
    assert len(served) == 7


def test_a_refused_query_is_not_retried_and_says_why(fake: FakePrometheus) -> None:
    fake.script = lambda request: error(401, "Unauthorized")
    with pytest.raises(UsageSourceError) as caught:
        source(fake.url).fetch(first_hour=T0, end_hour=T0 + HOUR, progress=None)
    assert "answered HTTP 401: Unauthorized" in str(caught.value)
    assert "prometheus.auth" in str(caught.value)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"status": "success"}, "not a Prometheus query answer"),
        (
            {"status": "success", "data": {"result": [{"metric": {}, "values": [[1, "1"]]}]}},
            "unexpected answer",
        ),
    ],
)
def test_an_answer_that_is_not_prometheus_is_refused(
    fake: FakePrometheus, answer: dict[str, Any], expected: str
) -> None:
    fake.script = lambda request: (200, answer)
    with pytest.raises(UsageSourceError, match=expected):
        source(fake.url).fetch(first_hour=T0, end_hour=T0 + HOUR, progress=None)


def test_a_value_that_is_not_a_number_is_refused(fake: FakePrometheus) -> None:
    def not_a_number(request: dict[str, Any]) -> Reply:
        answer = matrix(request)
        for series in answer["data"]["result"]:
            series["values"] = [[t, "NaN"] for t, _ in series["values"]]
        return 200, answer

    fake.script = not_a_number
    with pytest.raises(UsageSourceError, match=r"expected a count of samples|finite"):
        source(fake.url).fetch(first_hour=T0, end_hour=T0 + HOUR, progress=None)


def test_credentials_come_from_the_environment(
    fake: FakePrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PROMETHEUS_TOKEN", "s3cr3t")
    bearer = source(fake.url, auth=PrometheusAuth(bearer_token_env="TEST_PROMETHEUS_TOKEN"))
    bearer.fetch(first_hour=T0, end_hour=T0 + HOUR, progress=None)
    assert {r["authorization"] for r in fake.requests} == {"Bearer s3cr3t"}

    fake.requests.clear()
    monkeypatch.setenv("TEST_PROMETHEUS_PASSWORD", "pw")
    basic = source(
        fake.url, auth=PrometheusAuth(username="meter", password_env="TEST_PROMETHEUS_PASSWORD")
    )
    basic.fetch(first_hour=T0, end_hour=T0 + HOUR, progress=None)
    assert {r["authorization"] for r in fake.requests} == {"Basic bWV0ZXI6cHc="}


def test_a_window_must_be_whole_hours(fake: FakePrometheus) -> None:
    with pytest.raises(ValueError, match="whole hours"):
        source(fake.url).fetch(first_hour=T0 + 1, end_hour=T0 + HOUR, progress=None)


def test_queries_are_the_documented_ones() -> None:
    assert [query.name for query in QUERIES] == list(Query)
    for query in QUERIES:
        assert "[1h]" in query.promql, f"{query.name} must meter from the hour's samples"


def test_sums_beyond_what_a_float_holds_exactly_are_flagged(fake: FakePrometheus) -> None:
    def huge_storage(request: dict[str, Any]) -> Reply:
        if "dirsize" not in request["query"]:
            return None
        value = "9007199254740993" if "sum_over_time" in request["query"] else "12"
        series = {
            "metric": {"namespace": "ocean", "directory": "alice"},
            "values": [[float(request["start"]), value]],
        }
        return 200, {"status": "success", "data": {"resultType": "matrix", "result": [series]}}

    fake.script = huge_storage
    observations = source(fake.url).fetch(first_hour=T0, end_hour=T0 + HOUR, progress=None)
    assert observations.inexact_values == 1
    warnings = meter(observations, scrape_interval_seconds=60).notes.warnings(60)
    assert any("2^53" in warning for warning in warnings)
