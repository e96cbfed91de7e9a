"""What the operator watches: latency by route template, request ids in JSON logs, and job
metrics as a real Prometheus scrapes them and the Grafana dashboard queries them."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app import migrate
from app.config import Settings
from app.logs import JsonFormatter
from app.runtime import Runtime
from app.usage.service import SourceKind
from jobs.ingest_usage import ingest_usage
from tests import servers
from tests.api.conftest import World, make_app


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_latency_is_labelled_by_route_template(world: World) -> None:
    client = TestClient(
        make_app(world.engine), headers={"Authorization": f"Bearer {world.tokens['finance']}"}
    )
    for hub_id in world.hub_ids.values():
        client.get(f"/api/v1/hubs/{hub_id}/costs")
    client.get("/api/v1/hubs/999999/costs")
    client.get("/no/such/path/42")
    metrics = client.get("/metrics").text
    series = [
        line
        for line in metrics.splitlines()
        if line.startswith("hubmeter_http_request_duration_seconds_count")
    ]
    assert (
        'hubmeter_http_request_duration_seconds_count{method="GET",'
        'route="/api/v1/hubs/{hub_id}/costs",status="200"} 3.0'
    ) in series
    assert any('route="/api/v1/hubs/{hub_id}/costs",status="404"' in s for s in series)
    assert any('route="unmatched",status="404"' in s for s in series)
    # One series per route, never one per id or per unknown path.
    assert not any("999999" in s or "/no/such" in s for s in series)
    assert all(f"/hubs/{hub_id}/" not in metrics for hub_id in world.hub_ids.values())


def test_request_ids_are_in_the_json_logs(world: World, json_log: io.StringIO) -> None:
    application = make_app(world.engine)
    log = logging.getLogger("tests.boom")

    @application.get("/boom")
    def boom() -> None:
        log.warning("about to fail")
        raise RuntimeError("the database caught fire")

    client = TestClient(application, raise_server_exceptions=False)
    response = client.get("/boom", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-42"
    problem = response.json()
    assert problem["request_id"] == "req-42"
    assert "fire" not in problem["detail"]  # internals stay in the log

    records = lines(json_log)
    warning = next(r for r in records if r["message"] == "about to fail")
    assert warning["request_id"] == "req-42"  # set in the route's worker thread too
    error = next(r for r in records if str(r["message"]).startswith("unexpected error"))
    assert error["request_id"] == "req-42"
    assert "the database caught fire" in str(error["exception"])
    access = next(r for r in records if r["logger"] == "hubmeter.access")
    assert access["request_id"] == "req-42"
    assert (access["route"], access["status"], access["method"]) == ("/boom", 500, "GET")

    client.get("/api/v1/me")
    generated = lines(json_log)[-1]
    assert generated["logger"] == "hubmeter.access"
    assert generated["status"] == 401
    assert len(str(generated["request_id"])) == 32


def test_probes_stay_out_of_the_access_log(world: World, json_log: io.StringIO) -> None:
    client = TestClient(make_app(world.engine))
    client.get("/healthz")
    client.get("/metrics")
    assert not [r for r in lines(json_log) if r["logger"] == "hubmeter.access"]


# --- job metrics, as Prometheus scrapes them and the Grafana dashboard reads them ----------

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "hubmeter-dashboard.json"


def two_cluster_runtime(tmp_path: Path, engine: Engine) -> Runtime:
    """Two clusters read from OpenMetrics files: `broken`'s file is cut short, `working`'s is
    fine. `broken` comes first, so its failure is older than `working`'s success."""
    (tmp_path / "cut-short.om").write_text('kube_pod_info{namespace="x"} 1 1790000000\n')
    (tmp_path / "empty.om").write_text("# EOF\n")
    config = {
        "clusters": [
            {"name": "broken", "provider": "gcp", "openmetrics_file": "cut-short.om"},
            {"name": "working", "provider": "gcp", "openmetrics_file": "empty.om"},
        ],
        "communities": [
            {
                "id": "ocean-lab",
                "name": "Ocean",
                "billing_email": "a@b.org",
                "plan": "cost-recovery",
            }
        ],
        "hubs": [{"name": "ocean", "cluster": "working", "community": "ocean-lab"}],
    }
    path = tmp_path / "hubmeter.yaml"
    path.write_text(yaml.safe_dump(config))
    return Runtime(settings=Settings(), config_path=path, _engine=engine)


class _Exposition(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(body: bytes) -> Iterator[int]:
    """An HTTP server answering every GET with `body` (one replica's /metrics)."""
    handler = type("Exposition", (_Exposition,), {"body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def scraping_prometheus(tmp_path: Path, targets: list[int]) -> Iterator[str]:
    """A real Prometheus scraping `targets` every second as job `hubmeter`, as deployed."""
    binaries = servers.prometheus_binaries()
    if binaries is None:
        servers.unavailable("prometheus not found (Debian package `prometheus`)")
        raise AssertionError("unreachable")
    port = servers.free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "hubmeter",
                        "static_configs": [{"targets": [f"127.0.0.1:{t}" for t in targets]}],
                    }
                ],
            }
        )
    )
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binaries[0],
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait()
        log.close()


def query(url: str, expr: str) -> list[dict[str, Any]]:
    address = f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(address, timeout=10) as response:  # noqa: S310 - local
            answer = json.load(response)
    except urllib.error.HTTPError as exc:  # Prometheus refuses the query, and says why
        answer = json.load(exc)
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def wait_for_scrapes(url: str, replicas: int) -> None:
    """Until every replica has been scraped with its job metrics (a wait, not a timing test)."""
    wanted = 'count(hubmeter_job_last_success_timestamp_seconds{job="hubmeter"})'
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            found = query(url, wanted)
            if found and int(float(found[0]["value"][1])) == replicas:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"Prometheus did not scrape the {replicas} replicas")


def test_a_failing_cluster_stays_visible_on_metrics_and_the_dashboard(
    fresh_engine: Engine, tmp_path: Path
) -> None:
    migrate.upgrade(fresh_engine)
    outcomes = ingest_usage(
        two_cluster_runtime(tmp_path, fresh_engine), source=SourceKind.openmetrics
    )
    assert [(o.cluster, o.error is None) for o in outcomes] == [
        ("broken", False),
        ("working", True),
    ]
    metrics = TestClient(make_app(fresh_engine)).get("/metrics").text
    assert 'hubmeter_job_last_failure_timestamp_seconds{job_name="ingest_usage:broken"}' in metrics
    assert 'hubmeter_job_last_success_timestamp_seconds{job_name="ingest_usage:working"}' in metrics
    assert 'hubmeter_job_last_figure{figure="rows",job_name="ingest_usage:working"} 0.0' in metrics
    # Prometheus owns the `job` label of every scraped series.
    assert not re.search(r'[{,]job="', metrics)

    dashboard = json.loads(DASHBOARD.read_text())
    targets = {
        panel["title"]: target for panel in dashboard["panels"] for target in panel["targets"]
    }
    body = metrics.encode()
    # Two replicas of the service: each serves the same job series, from the database.
    with (
        serving(body) as first,
        serving(body) as second,
        scraping_prometheus(tmp_path, [first, second]) as url,
    ):
        wait_for_scrapes(url, replicas=2)
        answers = {title: query(url, t["expr"]) for title, t in targets.items()}

    def series(title: str) -> list[str]:
        """The legends Grafana shows for the panel: every label they name must be there."""
        legend = targets[title]["legendFormat"]
        shown = []
        for found in answers[title]:
            labels: dict[str, str] = found["metric"]
            for name in re.findall(r"\{\{(\w+)\}\}", legend):
                assert name in labels, (title, legend, labels)
            shown.append(re.sub(r"\{\{(\w+)\}\}", lambda m, lb=labels: lb[m[1]], legend))
        return sorted(shown)

    assert series("Jobs whose last run failed") == ["ingest_usage:broken"]
    assert series("Time since each job last succeeded") == ["ingest_usage:working"]
    assert series("Figures of each job's last run") == ["ingest_usage:working rows"]
