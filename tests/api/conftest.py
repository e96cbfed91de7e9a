"""A small world of communities, hubs, users, two attribution runs, usage and tokens, committed
once per database kind, and clients that call the API as each role.

Two runs cover October 2026: the older one (run 1, every amount doubled) is still in force from
the 16th; the newer one (run 2) replaced it for the 1st to the 15th. Any query that forgets to
join through `attribution_day` counts both and is off by a visible amount. "Today" is pinned to
2026-10-21, the day after the last complete attributed day; the 21st itself carries estimated
allocations of run 1. The cloud bill has one billed line a day up to the 20th and an estimate
for the 21st, so the month-to-date figures count the 1st to the 20th.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

import app.models as models
from app import migrate
from app.attribution.rules import HubRecord, policy_from_config
from app.auth import service as token_service
from app.auth.models import Role
from app.config import HubmeterConfig, Settings
from app.costapi.views import get_today
from app.db import make_engine
from app.main import create_app
from tests import servers

TODAY = date(2026, 10, 21)
NOW = datetime(2026, 10, 21, 9, 30, tzinfo=UTC)
OCTOBER = [date(2026, 10, 1) + timedelta(days=i) for i in range(21)]  # the 1st to the 21st
GIB = 2**30
TINY = Decimal("0.00000000001")


@dataclass(frozen=True)
class Seeded:
    """One allocation as written, for expectations computed without SQL."""

    run: int
    day: date
    community_id: str | None
    hub: str | None
    user: str | None
    component: str
    amount: Decimal
    estimated: bool


@dataclass
class World:
    engine: Engine
    kind: str
    hub_ids: dict[str, int] = field(default_factory=dict)
    user_ids: dict[tuple[str, str], int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    token_ids: dict[str, int] = field(default_factory=dict)
    allocations: list[Seeded] = field(default_factory=list)
    in_force: dict[date, int] = field(default_factory=dict)
    allocation_ids: dict[str, int] = field(default_factory=dict)
    run_ids: dict[int, int] = field(default_factory=dict)

    def expected(
        self,
        start: date,
        end: date,
        *,
        hub: str | None = None,
        community_id: str | None = None,
        user: str | None = None,
        component: str | None = None,
        everything: bool = False,
    ) -> Decimal:
        """The sum of the allocations in force over [start, end) that match, in Python."""
        total = Decimal(0)
        for a in self.allocations:
            if self.in_force.get(a.day) != a.run or not start <= a.day < end:
                continue
            if not everything:
                if hub is not None and a.hub != hub:
                    continue
                if community_id is not None and a.community_id != community_id:
                    continue
                if user is not None and a.user != user:
                    continue
            if component is not None and a.component != component:
                continue
            total += a.amount
        return total


HUBS = {
    # hub: (community, monthly budget, users)
    "ocean": ("ocean-lab", Decimal("2500.00"), ["alice", "bob", "=HYPERLINK(1)", "carol"]),
    "ocean-staging": ("ocean-lab", None, ["dave"]),
    "climate": ("climate-school", Decimal("100"), ["zed-secret-user", "yuki"]),
}
COMMUNITIES = {
    "ocean-lab": ("Ocean Lab", "USD"),
    "climate-school": ("Climate Secret School", "USD"),
}


def compute_amount(hub_index: int, user_index: int, day_index: int) -> Decimal:
    return Decimal(hub_index * 10 + user_index + 1) + Decimal(day_index) / 100 + TINY


def active(user_index: int, day_index: int) -> bool:
    return (user_index + day_index) % 3 != 0


def seed(engine: Engine, kind: str) -> World:
    world = World(engine=engine, kind=kind)
    with Session(engine) as session:
        session.add(models.Cluster(name="alpha", provider="gcp", updated_at=NOW))
        for cid, (name, currency) in COMMUNITIES.items():
            session.add(
                models.Community(
                    id=cid,
                    name=name,
                    billing_email=f"billing@{cid}.example.org",
                    currency=currency,
                    plan="cost-recovery",
                    active=True,
                    updated_at=NOW,
                )
            )
        session.flush()
        for hub_name, (cid, budget, users) in HUBS.items():
            hub = models.Hub(
                cluster_name="alpha",
                name=hub_name,
                namespace=hub_name,
                community_id=cid,
                monthly_budget=budget,
                active=True,
                updated_at=NOW,
            )
            session.add(hub)
            session.flush()
            world.hub_ids[hub_name] = hub.id
            for username in users:
                user = models.HubUser(hub_id=hub.id, username=username, first_seen_at=NOW)
                session.add(user)
                session.flush()
                world.user_ids[(hub_name, username)] = user.id
        batch = models.IngestionBatch(
            kind="usage",
            source="test",
            window_start=datetime(2026, 10, 1, tzinfo=UTC),
            window_end=datetime(2026, 10, 22, tzinfo=UTC),
            started_at=NOW,
            finished_at=NOW,
            stats={},
        )
        session.add(batch)
        _add_bill(session, through=TODAY)
        policy = _policy(world)
        runs = {}
        for number, end in ((1, date(2026, 10, 22)), (2, date(2026, 10, 16))):
            run = models.AttributionRun(
                period_start=datetime(2026, 10, 1, tzinfo=UTC),
                period_end=datetime.combine(end, datetime.min.time(), UTC),
                created_at=NOW,
                created_by="test",
                policy=policy,
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
            runs[number] = run.id
            world.run_ids[number] = run.id
        for day in OCTOBER:
            world.in_force[day] = 2 if day.day <= 15 else 1
            session.add(models.AttributionDay(day=day, run_id=runs[world.in_force[day]]))
        session.flush()
        for run_number in (1, 2):
            days = OCTOBER if run_number == 1 else [d for d in OCTOBER if d.day <= 15]
            factor = Decimal(2) if run_number == 1 and True else Decimal(1)
            for d_index, day in enumerate(OCTOBER):
                if day not in days:
                    continue
                # Run 1's amounts for days run 2 replaced are doubled: counting both shows.
                scale = factor if day.day <= 15 else Decimal(1)
                estimated = day == TODAY
                rows = _day_allocations(world, d_index, day, scale, estimated)
                for seeded in rows:
                    seeded = Seeded(run_number, *seeded)
                    world.allocations.append(seeded)
                    allocation = models.Allocation(
                        run_id=runs[run_number],
                        day=seeded.day,
                        cluster_name="alpha",
                        community_id=seeded.community_id,
                        hub_id=world.hub_ids[seeded.hub] if seeded.hub else None,
                        user_id=(
                            world.user_ids[(seeded.hub, seeded.user)]
                            if seeded.hub and seeded.user
                            else None
                        ),
                        component=seeded.component,
                        rule="test",
                        amount=seeded.amount,
                        currency="USD",
                        estimated=seeded.estimated,
                        basis={"rule": "test"},
                    )
                    session.add(allocation)
                    if run_number == 2 and d_index == 0:
                        session.flush()
                        key = f"{seeded.hub}/{seeded.user}/{seeded.component}"
                        world.allocation_ids.setdefault(key, allocation.id)
        session.flush()
        for hub_index, (hub_name, (_, _, users)) in enumerate(HUBS.items()):
            for u_index, username in enumerate(users):
                for d_index, day in enumerate(OCTOBER):
                    _add_usage(
                        session,
                        world,
                        batch.id,
                        hub_name,
                        username,
                        day,
                        hub_index,
                        active(u_index, d_index),
                    )
        session.flush()
        for name, role, community, expires, revoked in (
            ("viewer-ocean", Role.viewer, "ocean-lab", None, False),
            ("viewer-climate", Role.viewer, "climate-school", None, False),
            ("finance", Role.finance, None, None, False),
            ("admin", Role.admin, None, None, False),
            ("revoked", Role.viewer, "ocean-lab", None, True),
            ("expired", Role.viewer, "ocean-lab", datetime(2026, 10, 1, tzinfo=UTC), False),
        ):
            created = datetime(2026, 9, 1, tzinfo=UTC)
            row, token = token_service.create_token(
                session=session,
                name=name,
                role=role,
                community_id=community,
                created_by="test",
                now=created,
                expires_at=expires,
            )
            if revoked:
                token_service.revoke_token(session=session, token_id=row.id, now=created)
            world.tokens[name] = token
            world.token_ids[name] = row.id
        session.commit()
    return world


def _policy(world: World) -> dict[str, object]:
    """The attribution policy of this world, as a run records it."""
    config = HubmeterConfig.model_validate(
        {
            "clusters": [{"name": "alpha", "provider": "gcp"}],
            "communities": [
                {"id": cid, "name": name, "billing_email": "b@x.org", "plan": "cost-recovery"}
                for cid, (name, _) in COMMUNITIES.items()
            ],
            "hubs": [
                {"name": hub, "cluster": "alpha", "community": cid}
                for hub, (cid, _, _) in HUBS.items()
            ],
        }
    )
    records = [
        HubRecord(
            id=world.hub_ids[hub],
            cluster="alpha",
            name=hub,
            namespace=hub,
            community_id=cid,
            active=True,
        )
        for hub, (cid, _, _) in HUBS.items()
    ]
    return policy_from_config(config, records).to_json()


def _day_allocations(
    world: World, d_index: int, day: date, scale: Decimal, estimated: bool
) -> list[tuple[date, str | None, str | None, str | None, str, Decimal, bool]]:
    rows: list[tuple[date, str | None, str | None, str | None, str, Decimal, bool]] = []
    for hub_index, (hub_name, (cid, _, users)) in enumerate(HUBS.items()):
        for u_index, username in enumerate(users):
            if active(u_index, d_index):
                amount = compute_amount(hub_index, u_index, d_index) * scale
                rows.append((day, cid, hub_name, username, "compute", amount, estimated))
            home = (Decimal("0.5") + Decimal(u_index) / 1000) * scale
            rows.append((day, cid, hub_name, username, "home_storage", home, estimated))
        core = Decimal("3.3") * scale
        rows.append((day, cid, hub_name, None, "core", core, estimated))
    rows.append((day, None, None, None, "support", Decimal("0.77") * scale, estimated))
    return rows


def _add_bill(session: Session, *, through: date) -> None:
    """The cloud bill: one billed usage line a day of October before `through`, and a
    list-price estimate for `through` itself (which the bill has not reached)."""
    batch = models.IngestionBatch(
        kind="costs",
        source="test-bill",
        window_start=datetime(2026, 10, 1, tzinfo=UTC),
        window_end=datetime(2026, 10, 22, tzinfo=UTC),
        started_at=NOW,
        finished_at=NOW,
        stats={},
    )
    session.add(batch)
    session.flush()
    for day in OCTOBER:
        if day > through:
            break
        start = datetime.combine(day, datetime.min.time(), UTC)
        amount = Decimal("100.5")
        session.add(
            models.CostLine(
                batch_id=batch.id,
                source="test-bill",
                source_row=day.isoformat(),
                estimated=day == through,
                provider="gcp",
                billing_account_id="ACCOUNT",
                sub_account_id="alpha-project",
                service_name="Compute Engine",
                sku_description="N2 Instance Ram running in Americas",
                charge_period_start=start,
                charge_period_end=start + timedelta(days=1),
                charge_category="usage",
                billed_cost=amount,
                credits=Decimal(0),
                net_cost=amount,
                currency="USD",
                component="compute",
                labels={"goog-k8s-cluster-name": "alpha"},
            )
        )


def _add_usage(
    session: Session,
    world: World,
    batch_id: int,
    hub_name: str,
    username: str,
    day: date,
    hub_index: int,
    is_active: bool,
) -> None:
    hub_id = world.hub_ids[hub_name]
    user_id = world.user_ids[(hub_name, username)]
    midnight = datetime.combine(day, datetime.min.time(), UTC)
    hours = [midnight + timedelta(hours=h) for h in ((0, 10, 11) if is_active else (0,))]
    for hour in hours:
        running = hour.hour != 0
        session.add(
            models.UsageHour(
                batch_id=batch_id,
                cluster_name="alpha",
                namespace=hub_name,
                hub_id=hub_id,
                user_id=user_id,
                hour=hour,
                server_seconds=Decimal(3600 if running else 0),
                memory_request_byte_seconds=Decimal(2 * GIB * 3600 if running else 0),
                cpu_request_core_seconds=Decimal(1800 if running else 0),
                memory_usage_byte_seconds=Decimal(GIB * 3600 if running else 0),
                cpu_usage_core_seconds=Decimal(900 if running else 0),
                gpu_request_seconds=Decimal(0),
                home_storage_byte_seconds=Decimal(10 * GIB * 3600),
            )
        )


@contextmanager
def fresh_world(
    request: pytest.FixtureRequest, kind: str, name: str, tmp: pytest.TempPathFactory
) -> Iterator[World]:
    """A new database of `kind`, migrated and seeded, disposed of afterwards."""
    if kind == "sqlite":
        engine = make_engine(f"sqlite:///{tmp.mktemp(name) / 'api.db'}")
    else:
        server_url: str = request.getfixturevalue("postgres_server_url")
        engine = make_engine(servers.create_database(server_url, f"hubmeter_{name}"))
    try:
        migrate.upgrade(engine)
        yield seed(engine, kind)
    finally:
        engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """The seeded world, once per database kind, for tests that only read (or add tokens)."""
    with fresh_world(request, request.param, "api", tmp_path_factory) as seeded:
        yield seeded


def make_app(engine: Engine, settings: Settings | None = None, **options: int) -> FastAPI:
    application = create_app(settings or Settings(), engine=engine, **options)
    application.dependency_overrides[get_today] = lambda: TODAY
    return application


@pytest.fixture(scope="session")
def world_app(world: World) -> FastAPI:
    return make_app(world.engine)


Client = Callable[[str | None], TestClient]


@pytest.fixture
def client_as(world: World, world_app: FastAPI) -> Iterator[Client]:
    """A test client sending the named role's token (None: no token)."""
    clients: list[TestClient] = []

    def make(role: str | None) -> TestClient:
        headers = {"Authorization": f"Bearer {world.tokens[role]}"} if role else {}
        client = TestClient(world_app, headers=headers, raise_server_exceptions=False)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
