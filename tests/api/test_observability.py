"""What the operator watches: latency by route template, and request ids in JSON logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from app.logs import JsonFormatter
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
