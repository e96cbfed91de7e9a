"""Bad requests get a problem document that says which parameter and what to send instead."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.db import make_engine
from tests.api.conftest import Client, World, make_app


@pytest.mark.parametrize(
    ("params", "location", "says"),
    [
        ({"start": "2026-10-31", "end": "2026-10-01"}, "query.end", "must be after start"),
        ({"start": "2026-10-01", "end": "2026-10-01"}, "query.end", "half-open [start, end)"),
        ({"start": "2026-13-01", "end": "2026-10-01"}, "query.start", "YYYY-MM-DD"),
        ({"start": "01/10/2026", "end": "2026-10-02"}, "query.start", "got '01/10/2026'"),
        ({"start": "2026-10-01"}, "query.end", "give start and end together"),
        ({"start": "2025-01-01", "end": "2026-10-01"}, "query.end", "at most 366 days"),
        (
            {"start": "2020-01-01", "end": "2026-10-01", "interval": "month"},
            "query.end",
            "at most 1096 days",
        ),
        ({"start": "1900-01-01", "end": "1900-02-01"}, "query.start", "between 2000-01-01"),
        ({"interval": "week"}, "query.interval", "'day', 'month' or 'total'"),
        ({"by": "colour"}, "query.by.0", "'component' or 'user'"),
        ({"limit": "0"}, "query.limit", "greater than or equal to 1"),
    ],
)
def test_bad_ranges_say_what_to_change(
    world: World, client_as: Client, params: dict[str, str], location: str, says: str
) -> None:
    response = client_as("viewer-ocean").get(
        f"/api/v1/hubs/{world.hub_ids['ocean']}/costs", params=params
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["title"] == "Invalid request"
    assert problem["status"] == 422
    assert len(problem["request_id"]) == 32
    assert [e["location"] for e in problem["errors"]] == [location]
    assert says in problem["detail"], problem["detail"]


def test_malformed_ids_and_unknown_paths_are_problems_too(world: World, client_as: Client) -> None:
    client = client_as("finance")
    bad_id = client.get("/api/v1/hubs/not-a-number")
    assert bad_id.status_code == 422
    assert bad_id.json()["errors"][0]["location"] == "path.hub_id"
    unknown = client.get("/api/v1/nothing-here")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    wrong_method = client.delete("/api/v1/hubs")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["title"] == "Method not allowed"


def test_no_token_says_how_to_send_one(world: World, client_as: Client) -> None:
    response = client_as(None).get("/api/v1/hubs")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Authorization: Bearer" in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/hubs/99999999999999999999",
        "/api/v1/attribution/runs/99999999999999999999",
        "/api/v1/allocations/99999999999999999999/explanation",
    ],
)
def test_ids_beyond_the_database_are_refused_not_crashed_on(
    world: World, client_as: Client, path: str
) -> None:
    response = client_as("finance").get(path)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_an_unreachable_database_is_a_503_to_retry() -> None:
    engine = make_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        client = TestClient(make_app(engine), raise_server_exceptions=False)
        response = client.get("/api/v1/hubs", headers={"Authorization": "Bearer hm_x"})
    finally:
        engine.dispose()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert "retry" in response.json()["detail"]
