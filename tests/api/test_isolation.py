"""Tenant isolation, proven over every API route and every role.

Every route the application serves under /api/ must have an entry in ROUTES (a new route
without one fails `test_every_route_is_in_the_matrix`). For each route and role the test
checks the status, and for another community's ids that the answer is byte for byte the
answer for an id that does not exist: no data, no count, no name leaks through an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

import app.models as models
from app.auth import service as token_service
from app.auth.models import Role
from app.config import ConfigError, HubmeterConfig
from app.hubs import service as hub_service
from app.usage.metering import QUANTITY_NAMES
from tests.api.conftest import NOW, Client, World, fresh_world, make_app

OWN, OTHER, MISSING = "own", "other", "missing"
# What of the other community must never appear in an answer to the ocean-lab viewer.
OTHER_SECRETS = ["climate", "Climate Secret School", "zed-secret-user", "yuki"]


@dataclass(frozen=True)
class Route:
    """kind: `community` (ids of one community), `list` (filtered to what the caller may
    see), `finance` (finance and admin only), `admin` (admin only), `anyone` (any valid
    token)."""

    kind: str
    ok: int = 200
    body: Callable[[World], dict[str, Any]] | None = None
    params: dict[str, str] | None = None


def _new_viewer_token(world: World) -> dict[str, Any]:
    return {"name": "matrix", "role": "viewer", "community_id": "ocean-lab", "expires_in": "1d"}


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/api/v1/me"): Route("anyone"),
    ("GET", "/api/v1/tokens"): Route("admin"),
    ("POST", "/api/v1/tokens"): Route("admin", ok=201, body=_new_viewer_token),
    ("POST", "/api/v1/tokens/{token_id}/revoke"): Route("admin"),
    ("GET", "/api/v1/communities"): Route("list"),
    ("GET", "/api/v1/communities/{community_id}"): Route("community"),
    ("GET", "/api/v1/hubs"): Route("list"),
    ("GET", "/api/v1/hubs/{hub_id}"): Route("community"),
    ("GET", "/api/v1/hubs/{hub_id}/users"): Route("community"),
    ("GET", "/api/v1/hubs/{hub_id}/costs"): Route("community"),
    ("GET", "/api/v1/communities/{community_id}/costs"): Route("community"),
    ("GET", "/api/v1/costs"): Route("finance"),
    ("GET", "/api/v1/hubs/{hub_id}/top-users"): Route("community"),
    ("GET", "/api/v1/hubs/{hub_id}/users/{user_id}/costs"): Route("community"),
    ("GET", "/api/v1/hubs/{hub_id}/usage"): Route("community"),
    ("GET", "/api/v1/communities/{community_id}/usage"): Route("community"),
    ("GET", "/api/v1/hubs/{hub_id}/month-to-date"): Route("community"),
    ("GET", "/api/v1/communities/{community_id}/month-to-date"): Route("community"),
    ("GET", "/api/v1/month-to-date"): Route("finance"),
    # Mounted from app.attribution.views.
    ("GET", "/api/v1/allocations"): Route("list", params={"day": "2026-10-02"}),
    ("GET", "/api/v1/allocations/{allocation_id}/explanation"): Route("community"),
    ("GET", "/api/v1/attribution/runs"): Route("finance"),
    ("GET", "/api/v1/attribution/runs/{run_id}"): Route("finance"),
}
OPTIONAL: set[tuple[str, str]] = set()
ROLES = ["viewer-ocean", "viewer-climate", "finance", "admin", None, "revoked", "expired"]


def api_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path template) under /api/: from the OpenAPI schema, and from walking
    the routers, so that a route left out of the schema is not left out of the matrix."""
    found = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/")
        for method in operations
    }
    pending: list[Any] = list(app.routes)
    while pending:
        route = pending.pop()
        if isinstance(route, APIRoute) and route.path.startswith("/api/"):
            found.update((method, route.path) for method in route.methods)
        # Included routers are kept whole in recent FastAPI versions.
        nested = getattr(getattr(route, "original_router", None), "routes", None)
        pending.extend(nested or [])
    return found


def test_every_route_is_in_the_matrix(world_app: FastAPI) -> None:
    served = api_routes(world_app)
    missing = served - ROUTES.keys()
    assert not missing, f"add these routes to the isolation matrix: {sorted(missing)}"
    assert ROUTES.keys() - served <= OPTIONAL, "the matrix names routes the app does not serve"


def fill(path: str, world: World, which: str, token_id: int) -> str:
    """The path with ids of ocean-lab (own), climate-school (other), or of nothing at all."""
    values = {
        "community_id": {OWN: "ocean-lab", OTHER: "climate-school", MISSING: "no-such-place"},
        "hub_id": {
            OWN: world.hub_ids["ocean"],
            OTHER: world.hub_ids["climate"],
            MISSING: 999_999,
        },
        "user_id": {
            OWN: world.user_ids[("ocean", "alice")],
            OTHER: world.user_ids[("climate", "zed-secret-user")],
            MISSING: 999_999,
        },
        "allocation_id": {
            OWN: world.allocation_ids["ocean/alice/home_storage"],
            OTHER: world.allocation_ids["climate/zed-secret-user/home_storage"],
            MISSING: 999_999_999,
        },
        "token_id": dict.fromkeys((OWN, OTHER, MISSING), token_id),
        # Runs belong to no community: "own" and "other" are both real runs.
        "run_id": {OWN: world.run_ids[1], OTHER: world.run_ids[2], MISSING: 999_999},
    }

    def value(match: re.Match[str]) -> str:
        return str(values[match.group(1)][which])

    return re.sub(r"\{(\w+)\}", value, path)


def throwaway_token(world: World) -> int:
    """A token the revoke route may revoke, so the matrix never revokes the ones it uses."""
    with Session(world.engine) as session:
        row, _ = token_service.create_token(
            session=session,
            name="to revoke",
            role=Role.viewer,
            community_id="ocean-lab",
            created_by="test",
            now=NOW,
        )
        session.commit()
        return row.id


def call(client: Any, method: str, path: str, route: Route, world: World) -> Any:
    body = route.body(world) if route.body else None
    return client.request(method, path, json=body, params=route.params)


def without_request_id(response: Any) -> Any:
    document = response.json()
    document.pop("request_id", None)
    return document


def expected_status(route: Route, role: str | None, which: str) -> int:
    if role in (None, "revoked", "expired"):
        return 401
    if route.kind == "admin":
        return route.ok if role == "admin" else 403
    if route.kind == "finance":
        if role not in ("finance", "admin"):
            return 403
        return 404 if which == MISSING else route.ok
    if route.kind == "community" and role.startswith("viewer"):
        mine = "ocean-lab" if role == "viewer-ocean" else "climate-school"
        visible = {OWN: "ocean-lab", OTHER: "climate-school"}.get(which)
        return route.ok if visible == mine else 404
    if route.kind == "community" and which == MISSING:
        return 404
    return route.ok


@pytest.mark.parametrize("role", ROLES, ids=lambda r: r or "no-token")
@pytest.mark.parametrize("key", sorted(ROUTES), ids=lambda k: f"{k[0]} {k[1]}")
def test_each_role_on_each_route(
    world: World, world_app: FastAPI, client_as: Client, key: tuple[str, str], role: str | None
) -> None:
    method, template = key
    if key not in api_routes(world_app):
        pytest.skip(f"{template} is not mounted")
    route = ROUTES[key]
    client = client_as(role)
    token_id = throwaway_token(world) if "{token_id}" in template else 0
    for which in (OWN, OTHER, MISSING) if "{" in template else (OWN,):
        path = fill(template, world, which, token_id)
        response = call(client, method, path, route, world)
        status = expected_status(route, role, which)
        assert response.status_code == status, (which, response.text[:500])
        if status >= 400:
            assert response.headers["content-type"] == "application/problem+json"
        if role == "viewer-ocean":
            for secret in OTHER_SECRETS:
                assert secret not in response.text, f"{which}: {secret!r} leaked"
        if status == 404 and which == OTHER:
            # Another community's object reads exactly like one that does not exist.
            missing = call(client, method, fill(template, world, MISSING, token_id), route, world)
            assert missing.status_code == 404
            assert without_request_id(response) == without_request_id(missing)


def test_lists_show_a_viewer_only_its_own_community(world: World, client_as: Client) -> None:
    viewer = client_as("viewer-ocean")
    communities = viewer.get("/api/v1/communities").json()
    assert [c["id"] for c in communities["communities"]] == ["ocean-lab"]
    assert communities["page"]["total"] == 1
    hubs = viewer.get("/api/v1/hubs").json()
    assert {h["name"] for h in hubs["hubs"]} == {"ocean", "ocean-staging"}
    assert hubs["page"]["total"] == 2
    # Asking for another community's hubs reads like asking for one that does not exist.
    other = viewer.get("/api/v1/hubs", params={"community_id": "climate-school"})
    missing = viewer.get("/api/v1/hubs", params={"community_id": "no-such-place"})
    assert other.status_code == missing.status_code == 404
    assert without_request_id(other) == without_request_id(missing)
    everyone = client_as("finance").get("/api/v1/hubs").json()
    assert everyone["page"]["total"] == 3


def test_a_viewer_cannot_reach_another_hubs_user_through_its_own_hub(
    world: World, client_as: Client
) -> None:
    own_hub = world.hub_ids["ocean"]
    other_user = world.user_ids[("climate", "zed-secret-user")]
    response = client_as("viewer-ocean").get(f"/api/v1/hubs/{own_hub}/users/{other_user}/costs")
    assert response.status_code == 404
    assert "zed" not in response.text
    by_name = client_as("viewer-ocean").get(
        f"/api/v1/hubs/{own_hub}/users", params={"username": "zed-secret-user"}
    )
    assert by_name.json()["users"] == []


# --- a hub's history stays with the community it was made for ---------------------------------


def _config(ocean: str, fresh: str) -> HubmeterConfig:
    return HubmeterConfig.model_validate(
        {
            "clusters": [{"name": "alpha", "provider": "gcp"}],
            "communities": [
                {"id": cid, "name": cid, "billing_email": "b@x.org", "plan": "cost-recovery"}
                for cid in ("ocean-lab", "climate-school")
            ],
            "hubs": [
                {"name": "ocean", "cluster": "alpha", "community": ocean},
                {"name": "fresh", "cluster": "alpha", "community": fresh},
            ],
        }
    )


def test_a_hub_with_usage_or_allocations_is_not_moved_to_another_community(
    session: Session,
) -> None:
    hub_service.sync_from_config(session=session, config=_config("ocean-lab", "ocean-lab"), now=NOW)
    hubs = {hub.name: hub for hub in session.scalars(select(models.Hub))}
    batch = models.IngestionBatch(
        kind="usage",
        source="alpha",
        window_start=NOW,
        window_end=NOW,
        started_at=NOW,
        finished_at=NOW,
        stats={},
    )
    session.add(batch)
    session.flush()
    session.add(
        models.UsageHour(
            batch_id=batch.id,
            cluster_name="alpha",
            namespace="ocean",
            hub_id=hubs["ocean"].id,
            user_id=None,
            hour=NOW.replace(minute=0),
            **dict.fromkeys(QUANTITY_NAMES, Decimal(0)),
        )
    )
    session.flush()
    # A hub with no data yet may still move (a mistake caught before anything was ingested).
    report = hub_service.sync_from_config(
        session=session, config=_config("ocean-lab", "climate-school"), now=NOW
    )
    assert report.updated == ["hub alpha/fresh"]
    assert hubs["fresh"].community_id == "climate-school"

    with pytest.raises(ConfigError) as refused:
        hub_service.sync_from_config(
            session=session, config=_config("climate-school", "climate-school"), now=NOW
        )
    message = str(refused.value)
    assert "hub alpha/ocean cannot move from community ocean-lab to climate-school" in message
    assert "give the hub a new name" in message
    assert "deactivate it" in message
    assert "re-add it for climate-school" in message
    assert hubs["ocean"].community_id == "ocean-lab"


def test_a_hub_with_only_allocations_is_not_moved_either(session: Session) -> None:
    hub_service.sync_from_config(session=session, config=_config("ocean-lab", "ocean-lab"), now=NOW)
    fresh = session.scalars(select(models.Hub).where(models.Hub.name == "fresh")).one()
    run = models.AttributionRun(
        period_start=NOW,
        period_end=NOW,
        created_at=NOW,
        created_by="test",
        policy={},
        inputs_sha256="0" * 64,
        currency="USD",
        cost_total=Decimal(0),
        allocated_total=Decimal(0),
        unattributed_total=Decimal(0),
        estimated_total=Decimal(0),
        summary={},
    )
    session.add(run)
    session.flush()
    session.add(
        models.Allocation(
            run_id=run.id,
            day=NOW.date(),
            cluster_name="alpha",
            community_id="ocean-lab",
            hub_id=fresh.id,
            component="core",
            rule="test",
            amount=Decimal("1.5"),
            currency="USD",
            basis={},
        )
    )
    session.flush()
    with pytest.raises(ConfigError, match="hub alpha/fresh cannot move from community ocean-lab"):
        hub_service.sync_from_config(
            session=session, config=_config("ocean-lab", "climate-school"), now=NOW
        )


def test_a_hub_forced_into_another_community_keeps_its_past_from_it(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, db_kind: str
) -> None:
    """Defence in depth, should a hub's community change anyway (a database edited by hand):
    ocean moves from ocean-lab to climate-school on the 16th, and attribution gives its days
    from then on to climate-school. carol left before the move."""
    with fresh_world(request, db_kind, "moved", tmp_path_factory) as world:
        ocean = world.hub_ids["ocean"]
        carol = world.user_ids[("ocean", "carol")]
        moved = date(2026, 10, 16)
        with Session(world.engine) as session:
            session.execute(
                update(models.Hub)
                .where(models.Hub.id == ocean)
                .values(community_id="climate-school")
            )
            session.execute(
                update(models.Allocation)
                .where(models.Allocation.hub_id == ocean, models.Allocation.day >= moved)
                .values(community_id="climate-school")
            )
            session.execute(
                update(models.HubUser)
                .where(models.HubUser.hub_id == ocean)
                .values(first_seen_at=datetime(2026, 10, 1, tzinfo=UTC))
            )
            session.execute(
                delete(models.Allocation).where(
                    models.Allocation.user_id == carol, models.Allocation.day >= moved
                )
            )
            session.execute(
                delete(models.UsageHour).where(
                    models.UsageHour.user_id == carol,
                    models.UsageHour.hour >= datetime(2026, 10, 16, tzinfo=UTC),
                )
            )
            session.commit()
        application = make_app(world.engine)

        def client(role: str) -> TestClient:
            return TestClient(
                application, headers={"Authorization": f"Bearer {world.tokens[role]}"}
            )

        climate, finance = client("viewer-climate"), client("finance")
        october = {"start": "2026-10-01", "end": "2026-11-01"}
        after_move = sum(
            (
                a.amount
                for a in world.allocations
                if a.hub == "ocean"
                and a.day >= moved
                and world.in_force[a.day] == a.run
                and a.user != "carol"
            ),
            Decimal(0),
        )
        before_move = world.expected(date(2026, 10, 1), moved, hub="ocean")

        costs = climate.get(f"/api/v1/hubs/{ocean}/costs", params={**october, "by": "user"})
        assert costs.status_code == 200
        assert Decimal(costs.json()["totals"][0]["amount"]) == after_move
        assert min(row["period_start"] for row in costs.json()["rows"]) == "2026-10-16"
        assert "carol" not in costs.text
        # Finance still reads the whole hub, before and after the move.
        everything = finance.get(f"/api/v1/hubs/{ocean}/costs", params=october).json()
        assert Decimal(everything["totals"][0]["amount"]) == before_move + after_move

        # Usage, which has no community of its own, starts after the last day of ocean-lab's.
        since_move = {"start": "2026-10-16", "end": "2026-11-01", "interval": "total"}
        totals = {**october, "interval": "total"}
        by_user = finance.get(
            f"/api/v1/hubs/{ocean}/usage", params={**since_move, "by": "user"}
        ).json()
        usage_since_move = {
            row["username"]: row["usage"] for row in by_user["rows"] if row["username"]
        }
        assert set(usage_since_move) == {"alice", "bob", "=HYPERLINK(1)"}
        top = climate.get(f"/api/v1/hubs/{ocean}/top-users", params=october).json()
        assert {u["username"]: u["usage"] for u in top["users"]} == usage_since_move
        assert sum(Decimal(t["amount"]) for t in top["hub_totals"]) == after_move

        hub_usage = finance.get(f"/api/v1/hubs/{ocean}/usage", params=since_move).json()
        (expected_row,) = hub_usage["rows"]
        (row,) = climate.get(f"/api/v1/hubs/{ocean}/usage", params=totals).json()["rows"]
        assert row["usage"] == expected_row["usage"]
        assert Decimal(row["costs"][0]["amount"]) == after_move
        community = climate.get(
            "/api/v1/communities/climate-school/usage", params={**totals, "by": "hub"}
        ).json()
        (row,) = [r for r in community["rows"] if r["hub_id"] == ocean]
        assert row["usage"] == expected_row["usage"]  # the same days as its costs
        assert Decimal(row["costs"][0]["amount"]) == after_move

        users = climate.get(f"/api/v1/hubs/{ocean}/users").json()
        assert {u["username"] for u in users["users"]} == {"alice", "bob", "=HYPERLINK(1)"}
        assert users["page"]["total"] == 3
        assert climate.get(f"/api/v1/hubs/{ocean}/users/{carol}/costs").status_code == 404
        alice = world.user_ids[("ocean", "alice")]
        history = climate.get(f"/api/v1/hubs/{ocean}/users/{alice}/costs", params=october)
        assert min(p["period_start"] for p in history.json()["periods"]) == "2026-10-16"
        everyone = finance.get(f"/api/v1/hubs/{ocean}/users").json()
        assert everyone["page"]["total"] == 4

        month = climate.get(f"/api/v1/hubs/{ocean}/month-to-date").json()
        assert Decimal(month["month_to_date"]) == sum(
            (
                a.amount
                for a in world.allocations
                if a.hub == "ocean"
                and moved <= a.day < date(2026, 10, 21)
                and world.in_force[a.day] == a.run
                and a.user != "carol"
            ),
            Decimal(0),
        )
        community_month = climate.get("/api/v1/communities/climate-school/month-to-date").json()
        assert Decimal(community_month["month_to_date"]) == sum(
            Decimal(h["month_to_date"]) for h in community_month["hubs"]
        )
        ocean_month = next(h for h in community_month["hubs"] if h["hub"]["id"] == ocean)
        assert ocean_month["month_to_date"] == month["month_to_date"]
