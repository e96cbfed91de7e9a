"""What a hub admin and finance read: costs that match the allocations in force, exactly, in a
stable order, page after page, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal

import pytest

from tests.api.conftest import OCTOBER, Client, World

OCT = {"start": "2026-10-01", "end": "2026-11-01"}


def test_a_hubs_month_by_user_adds_up_to_the_allocations_in_force(
    world: World, client_as: Client
) -> None:
    hub = world.hub_ids["ocean"]
    body = (
        client_as("viewer-ocean")
        .get(f"/api/v1/hubs/{hub}/costs", params={**OCT, "interval": "month", "by": "user"})
        .json()
    )
    expected_total = world.expected(date(2026, 10, 1), date(2026, 11, 1), hub="ocean")
    assert body["totals"] == [{"currency": "USD", "amount": str(expected_total)}]
    by_user = {row["username"]: Decimal(row["amount"]) for row in body["rows"]}
    for username in ("alice", "bob", "=HYPERLINK(1)", "carol"):
        assert by_user[username] == world.expected(
            date(2026, 10, 1), date(2026, 11, 1), hub="ocean", user=username
        )
    # The hub's own share (no one user caused it) is its own row, so the rows add up.
    assert by_user[None] == Decimal("3.3") * len(OCTOBER)  # type: ignore[index]
    assert sum(by_user.values()) == expected_total
    assert all(row["period_start"] == "2026-10-01" for row in body["rows"])
    assert all(row["period_end"] == "2026-11-01" for row in body["rows"])


def test_older_runs_are_never_counted(world: World, client_as: Client) -> None:
    hub = world.hub_ids["ocean"]
    client = client_as("finance")
    for day in (date(2026, 10, 3), date(2026, 10, 18)):
        body = client.get(
            f"/api/v1/hubs/{hub}/costs",
            params={"start": day.isoformat(), "end": (day + timedelta(days=1)).isoformat()},
        ).json()
        assert Decimal(body["totals"][0]["amount"]) == world.expected(
            day, day + timedelta(days=1), hub="ocean"
        )


def test_amounts_are_exact_decimal_strings(world: World, client_as: Client) -> None:
    hub = world.hub_ids["ocean"]
    body = (
        client_as("viewer-ocean")
        .get(
            f"/api/v1/hubs/{hub}/costs",
            params={"start": "2026-10-02", "end": "2026-10-03", "by": ["user", "component"]},
        )
        .json()
    )
    bob_compute = next(
        r for r in body["rows"] if r["username"] == "bob" and r["component"] == "compute"
    )
    # 2 + 1/100 + 1e-11: a float would have lost the last digit.
    assert bob_compute["amount"] == "2.01000000001"
    assert isinstance(bob_compute["amount"], str)


def test_by_day_and_component_covers_every_day_in_order(world: World, client_as: Client) -> None:
    hub = world.hub_ids["climate"]
    body = (
        client_as("viewer-climate")
        .get(f"/api/v1/hubs/{hub}/costs", params={**OCT, "interval": "day", "by": "component"})
        .json()
    )
    keys = [(row["period_start"], row["component"]) for row in body["rows"]]
    assert keys == sorted(keys)
    days = sorted({row["period_start"] for row in body["rows"]})
    assert days == [d.isoformat() for d in OCTOBER]
    for row in body["rows"]:
        day = date.fromisoformat(row["period_start"])
        assert row["period_end"] == (day + timedelta(days=1)).isoformat()
        assert Decimal(row["amount"]) == world.expected(
            day, day + timedelta(days=1), hub="climate", component=row["component"]
        )
        assert row["estimated"] == (day == date(2026, 10, 21))


def test_months_are_cut_to_the_range(world: World, client_as: Client) -> None:
    hub = world.hub_ids["ocean"]
    body = (
        client_as("viewer-ocean")
        .get(
            f"/api/v1/hubs/{hub}/costs",
            params={"start": "2026-09-20", "end": "2026-10-10", "interval": "month"},
        )
        .json()
    )
    assert [(r["period_start"], r["period_end"]) for r in body["rows"]] == [
        ("2026-10-01", "2026-10-10")  # September has no allocations, so no row
    ]
    assert Decimal(body["rows"][0]["amount"]) == world.expected(
        date(2026, 10, 1), date(2026, 10, 10), hub="ocean"
    )


def test_pages_are_stable_and_complete(world: World, client_as: Client) -> None:
    hub = world.hub_ids["ocean"]
    client = client_as("viewer-ocean")
    params = {**OCT, "interval": "day", "by": "user"}
    whole = client.get(f"/api/v1/hubs/{hub}/costs", params={**params, "limit": 10_000}).json()
    seen: list[dict[str, object]] = []
    offset: int | None = 0
    while offset is not None:
        page = client.get(
            f"/api/v1/hubs/{hub}/costs", params={**params, "limit": 7, "offset": offset}
        ).json()
        assert page["totals"] == whole["totals"]  # totals always cover the whole range
        assert page["page"]["total"] == whole["page"]["total"]
        seen.extend(page["rows"])
        offset = page["page"]["next_offset"]
    assert seen == whole["rows"]
    assert len(seen) == whole["page"]["total"] > 7
    past_the_end = client.get(
        f"/api/v1/hubs/{hub}/costs", params={**params, "limit": 7, "offset": 10_000}
    ).json()
    assert past_the_end["rows"] == []
    assert past_the_end["page"]["total"] == whole["page"]["total"]
    assert past_the_end["totals"] == whole["totals"]


@pytest.mark.parametrize("how", ["format", "accept"])
def test_csv_has_the_same_rows_as_json(world: World, client_as: Client, how: str) -> None:
    hub = world.hub_ids["ocean"]
    client = client_as("viewer-ocean")
    params = {**OCT, "interval": "month", "by": "user"}
    as_json = client.get(f"/api/v1/hubs/{hub}/costs", params=params).json()
    if how == "format":
        response = client.get(f"/api/v1/hubs/{hub}/costs", params={**params, "format": "csv"})
    else:
        response = client.get(
            f"/api/v1/hubs/{hub}/costs",
            params=params,
            headers={"Accept": "text/csv, application/json;q=0.5"},
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["amount"] for r in rows] == [r["amount"] for r in as_json["rows"]]
    assert [r["user_id"] for r in rows] == [str(r["user_id"] or "") for r in as_json["rows"]]
    # A username that a spreadsheet would run as a formula is written as text.
    assert "'=HYPERLINK(1)" in [r["username"] for r in rows]
    assert response.headers["x-total-count"] == str(len(rows))


def test_json_stays_the_default_for_browsers(world: World, client_as: Client) -> None:
    hub = world.hub_ids["ocean"]
    response = client_as("viewer-ocean").get(
        f"/api/v1/hubs/{hub}/costs",
        params=OCT,
        headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"},
    )
    assert response.headers["content-type"] == "application/json"


def test_top_users_rank_by_cost_with_their_usage(world: World, client_as: Client) -> None:
    hub = world.hub_ids["ocean"]
    body = (
        client_as("viewer-ocean")
        .get(f"/api/v1/hubs/{hub}/top-users", params={**OCT, "limit": 2})
        .json()
    )
    everyone = {
        name: world.expected(date(2026, 10, 1), date(2026, 11, 1), hub="ocean", user=name)
        for name in ("alice", "bob", "=HYPERLINK(1)", "carol")
    }
    ranking = sorted(everyone, key=lambda n: -everyone[n])
    assert [u["username"] for u in body["users"]] == ranking[:2]
    assert [u["rank"] for u in body["users"]] == [1, 2]
    assert body["page"] == {"limit": 2, "offset": 0, "total": 4, "next_offset": 2}
    top = body["users"][0]
    hub_total = world.expected(date(2026, 10, 1), date(2026, 11, 1), hub="ocean")
    assert Decimal(top["amount"]) == everyone[ranking[0]]
    assert Decimal(top["share_percent"]) == (everyone[ranking[0]] * 100 / hub_total).quantize(
        Decimal("0.01")
    )
    assert sum(Decimal(v) for v in top["components"].values()) == Decimal(top["amount"])
    # carol (index 3) ran two hours on each active day: 2 GiB requested, so 4 GiB-hours a day.
    active_days = sum(1 for d in range(21) if (3 + d) % 3 != 0)
    assert top["usage"]["server_hours"] == f"{2 * active_days}.000000"
    assert top["usage"]["memory_request_gib_hours"] == f"{4 * active_days}.000000"
    second = (
        client_as("viewer-ocean")
        .get(f"/api/v1/hubs/{hub}/top-users", params={**OCT, "limit": 2, "offset": 2})
        .json()
    )
    assert [u["rank"] for u in second["users"]] == [3, 4]
    assert [u["username"] for u in second["users"]] == ranking[2:]


def test_one_users_history_by_day(world: World, client_as: Client) -> None:
    hub = world.hub_ids["ocean"]
    bob = world.user_ids[("ocean", "bob")]
    body = (
        client_as("viewer-ocean")
        .get(
            f"/api/v1/hubs/{hub}/users/{bob}/costs",
            params={"start": "2026-10-01", "end": "2026-10-08"},
        )
        .json()
    )
    assert body["user"] == {"id": bob, "username": "bob"}
    assert len(body["periods"]) == 7
    for period in body["periods"]:
        day = date.fromisoformat(period["period_start"])
        (cost,) = period["costs"]
        assert Decimal(cost["amount"]) == world.expected(
            day, day + timedelta(days=1), hub="ocean", user="bob"
        )
        d_index = (day - date(2026, 10, 1)).days
        ran = (1 + d_index) % 3 != 0
        assert ("compute" in cost["components"]) == ran
        assert period["usage"]["server_hours"] == ("2.000000" if ran else "0.000000")
    assert Decimal(body["totals"][0]["amount"]) == world.expected(
        date(2026, 10, 1), date(2026, 10, 8), hub="ocean", user="bob"
    )


def test_usage_sits_next_to_cost(world: World, client_as: Client) -> None:
    hub = world.hub_ids["climate"]
    body = (
        client_as("viewer-climate")
        .get(f"/api/v1/hubs/{hub}/usage", params={**OCT, "interval": "month"})
        .json()
    )
    (row,) = body["rows"]
    assert Decimal(row["costs"][0]["amount"]) == world.expected(
        date(2026, 10, 1), date(2026, 11, 1), hub="climate"
    )
    active_hours = sum(2 for u in range(2) for d in range(21) if (u + d) % 3 != 0)
    assert row["usage"]["server_hours"] == f"{active_hours}.000000"
    assert row["usage"]["cpu_request_core_hours"] == f"{Decimal(active_hours) / 2:.6f}"
    hours_stored = sum(3 if (u + d) % 3 != 0 else 1 for u in range(2) for d in range(21))
    assert row["usage"]["home_storage_gib_hours"] == f"{10 * hours_stored}.000000"


def test_a_community_by_hub_and_finance_by_community(world: World, client_as: Client) -> None:
    body = (
        client_as("viewer-ocean")
        .get(
            "/api/v1/communities/ocean-lab/costs", params={**OCT, "interval": "total", "by": "hub"}
        )
        .json()
    )
    by_hub = {row["hub_name"]: Decimal(row["amount"]) for row in body["rows"]}
    assert by_hub == {
        "ocean": world.expected(date(2026, 10, 1), date(2026, 11, 1), hub="ocean"),
        "ocean-staging": world.expected(date(2026, 10, 1), date(2026, 11, 1), hub="ocean-staging"),
    }
    everything = (
        client_as("finance")
        .get("/api/v1/costs", params={**OCT, "interval": "total", "by": "community"})
        .json()
    )
    rows = {row["community_id"]: Decimal(row["amount"]) for row in everything["rows"]}
    # The unattributed bucket is a row of its own, and everything adds up to the whole bill.
    assert rows[None] == world.expected(
        date(2026, 10, 1), date(2026, 11, 1), everything=True, component="support"
    )
    assert Decimal(everything["totals"][0]["amount"]) == world.expected(
        date(2026, 10, 1), date(2026, 11, 1), everything=True
    )
    assert sum(rows.values()) == Decimal(everything["totals"][0]["amount"])
    names = {row["community_id"]: row["community_name"] for row in everything["rows"]}
    assert names["ocean-lab"] == "Ocean Lab"


def test_no_range_means_the_current_month(world: World, client_as: Client) -> None:
    hub = world.hub_ids["ocean"]
    body = (
        client_as("viewer-ocean")
        .get(f"/api/v1/hubs/{hub}/costs", params={"interval": "total"})
        .json()
    )
    assert (body["start"], body["end"]) == ("2026-10-01", "2026-11-01")
