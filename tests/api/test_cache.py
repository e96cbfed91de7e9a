"""The cost API remembers answers, but never past the moment a new run comes into force."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session

import app.models as models
from app.attribution.rules import Period
from app.costapi import service
from app.costapi.cache import CostCache
from app.costapi.service import CostPage
from tests.api.conftest import World, fresh_world, make_app


def test_cached_answers_are_the_computed_answers(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.tokens['finance']}"}
    cached = TestClient(make_app(world.engine), headers=headers)
    computed = TestClient(make_app(world.engine, cost_cache_rows=0), headers=headers)
    queries = [
        f"/api/v1/hubs/{world.hub_ids['ocean']}/costs?start=2026-10-01&end=2026-11-01&by=user",
        "/api/v1/costs?start=2026-10-01&end=2026-10-20&interval=month&by=community&by=hub",
        "/api/v1/communities/ocean-lab/costs?by=component&limit=5&offset=5",
    ]
    for query in queries:
        first = cached.get(query)
        again = cached.get(query)
        assert first.json() == again.json() == computed.get(query).json()
    cache = cached.app.state.cost_cache  # type: ignore[attr-defined]
    assert (cache.hits, cache.misses) == (len(queries), len(queries))


def test_a_new_run_shows_the_moment_it_is_in_force(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, db_kind: str
) -> None:
    with fresh_world(request, db_kind, "cache", tmp_path_factory) as world:
        client = TestClient(
            make_app(world.engine),
            headers={"Authorization": f"Bearer {world.tokens['viewer-ocean']}"},
        )
        path = f"/api/v1/hubs/{world.hub_ids['ocean']}/costs?start=2026-10-01&end=2026-10-02"
        before = Decimal(client.get(path).json()["totals"][0]["amount"])
        assert before == world.expected(date(2026, 10, 1), date(2026, 10, 2), hub="ocean")
        # Run 1 (amounts doubled for the first half of the month) back in force on the 1st.
        with Session(world.engine) as session:
            session.execute(
                update(models.AttributionDay)
                .where(models.AttributionDay.day == date(2026, 10, 1))
                .values(run_id=world.run_ids[1])
            )
            session.commit()
        after = Decimal(client.get(path).json()["totals"][0]["amount"])
        assert after == 2 * before


def test_entries_expire_and_the_cache_stays_within_its_rows(world: World) -> None:
    cache = CostCache(max_rows=10, ttl_seconds=60)
    period = Period(date(2026, 10, 1), date(2026, 10, 2))
    calls: list[str] = []
    clock = [0.0]

    def page(rows: int, name: str) -> CostPage:
        calls.append(name)
        return CostPage(rows=[None] * rows, total_rows=rows, totals={})  # type: ignore[list-item]

    with Session(world.engine) as session:

        def get(key: str, rows: int) -> None:
            cache.get_or_compute(
                session=session,
                key=key,
                period=period,
                compute=lambda: page(rows, key),
                rows=lambda p: len(p.rows),
                clock=lambda: clock[0],
            )

        get("a", 4)
        get("a", 4)
        assert calls == ["a"]
        clock[0] = 61.0
        get("a", 4)  # expired
        assert calls == ["a", "a"]
        get("b", 4)
        get("c", 4)  # a + b + c = 15 rows > 10: the least recently used (a) goes
        assert cache.rows_held <= 10
        get("b", 4)
        assert calls == ["a", "a", "b", "c"]
        get("a", 4)
        assert calls[-1] == "a"


def test_how_far_the_bill_reaches_is_kept_until_a_cost_batch_arrives(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Period] = []
    computed = service.billed_until

    def counted(*, session: Session, period: Period) -> date | None:
        calls.append(period)
        return computed(session=session, period=period)

    monkeypatch.setattr(service, "billed_until", counted)
    cache = CostCache(max_rows=10)
    october = Period(date(2026, 10, 1), date(2026, 10, 21))
    assert cache.billed_until(session=session, period=october) is None
    assert cache.billed_until(session=session, period=october) is None
    assert len(calls) == 1
    # The bill arrives, as every bill does, in a batch of its own.
    batch = models.IngestionBatch(
        kind="costs",
        source="bill",
        window_start=datetime(2026, 10, 1, tzinfo=UTC),
        window_end=datetime(2026, 10, 2, tzinfo=UTC),
        started_at=datetime(2026, 10, 3, tzinfo=UTC),
        finished_at=datetime(2026, 10, 3, tzinfo=UTC),
        stats={},
    )
    session.add(batch)
    session.flush()
    session.add(
        models.CostLine(
            batch_id=batch.id,
            source="bill",
            source_row="1",
            provider="gcp",
            billing_account_id="ACCOUNT",
            charge_period_start=datetime(2026, 10, 1, tzinfo=UTC),
            charge_period_end=datetime(2026, 10, 2, tzinfo=UTC),
            charge_category="usage",
            billed_cost=Decimal(1),
            credits=Decimal(0),
            net_cost=Decimal(1),
            currency="USD",
            component="compute",
            labels={},
        )
    )
    session.flush()
    assert cache.billed_until(session=session, period=october) == date(2026, 10, 2)
    assert len(calls) == 2
    assert CostCache(max_rows=0).billed_until(session=session, period=october) == date(2026, 10, 2)
    assert len(calls) == 3  # a disabled cache always asks
