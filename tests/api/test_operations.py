"""Health, readiness and metrics: what the operator's Kubernetes probes and Prometheus read."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from app import migrate
from app.config import Settings
from app.db import make_engine
from app.main import create_app


def client_for(engine: Engine) -> TestClient:
    return TestClient(create_app(Settings(), engine=engine))


def test_healthz_answers_without_a_database(tmp_path: Path) -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    client = client_for(engine)
    assert client.get("/healthz").json() == {"status": "ok"}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "database unreachable" in response.json()["reason"]


def test_readyz_waits_for_the_migrations(fresh_engine: Engine) -> None:
    client = client_for(fresh_engine)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "hubmeter db upgrade" in response.json()["reason"]
    migrate.upgrade(fresh_engine)
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "revision": migrate.head_revision()}


def test_metrics_are_in_prometheus_format(engine: Engine) -> None:
    client = client_for(engine)
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert (
        'hubmeter_http_request_duration_seconds_count{method="GET",route="/healthz",status="200"}'
        in response.text
    )
    assert "# TYPE hubmeter_job_last_success_timestamp_seconds gauge" in response.text


def test_every_response_carries_a_request_id(engine: Engine) -> None:
    client = client_for(engine)
    assert len(client.get("/healthz").headers["x-request-id"]) == 32
    assert client.get("/healthz", headers={"X-Request-ID": "abc"}).headers["x-request-id"] == "abc"
