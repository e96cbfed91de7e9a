"""The README's first command, end to end on a small month: generate, ingest, attribute, serve.

What a newcomer sees must hold: the service is ready, every cent of the bill is accounted for,
and a community's token reads its own hubs and nothing of anyone else's.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

from fastapi.testclient import TestClient

from app import demo
from app.config import Settings
from app.main import create_app
from app.synthetic import ScenarioSpec


def test_the_demo_serves_an_attributed_month_to_each_community(tmp_path: Path) -> None:
    spec = ScenarioSpec(hubs=3, users_per_hub=4, days=2, start=dt.date(2026, 10, 1), seed=3)
    said: list[str] = []
    result = demo.run_demo(directory=tmp_path, spec=spec, say=said.append, base_settings=Settings())
    assert any("every day adds up exactly" in line for line in said), said

    runtime = result.runtime
    client = TestClient(create_app(runtime.settings, engine=runtime.engine, config=runtime.config))
    assert client.get("/readyz").json()["status"] == "ready"

    finance = {"Authorization": f"Bearer {result.tokens['finance']}"}
    hubs = client.get("/api/v1/hubs", headers=finance).json()["hubs"]
    assert len(hubs) == 3
    period = {"start": "2026-10-01", "end": "2026-10-03"}
    totals = Decimal(0)
    for hub in hubs:
        owner = {"Authorization": f"Bearer {result.tokens[hub['community_id']]}"}
        mine = client.get(f"/api/v1/hubs/{hub['id']}/costs", params=period, headers=owner)
        assert mine.status_code == 200, mine.text
        totals += sum(Decimal(t["amount"]) for t in mine.json()["totals"])
        for other in {h["community_id"] for h in hubs} - {hub["community_id"]}:
            stranger = {"Authorization": f"Bearer {result.tokens[other]}"}
            refused = client.get(f"/api/v1/hubs/{hub['id']}/costs", params=period, headers=stranger)
            assert refused.status_code == 404
            assert hub["name"] not in refused.text
    assert totals > 0

    # Running the demo again replaces its data: the month is not counted twice.
    again = demo.run_demo(directory=tmp_path, spec=spec, say=said.append, base_settings=Settings())
    assert any("reusing" in line for line in said)
    rerun_totals = Decimal(0)
    for hub in hubs:
        owner = {"Authorization": f"Bearer {again.tokens[hub['community_id']]}"}
        response = client.get(f"/api/v1/hubs/{hub['id']}/costs", params=period, headers=owner)
        rerun_totals += sum(Decimal(t["amount"]) for t in response.json()["totals"])
    assert rerun_totals == totals
    # ...and its tokens replace the previous run's, which no longer open anything.
    for community_id, token in result.tokens.items():
        stale = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert stale.status_code == 401, community_id
    fresh = client.get("/api/v1/me", headers={"Authorization": f"Bearer {again.tokens['finance']}"})
    assert fresh.status_code == 200
