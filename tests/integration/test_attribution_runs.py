"""Attribution runs on both databases: every day adds up to its cost lines (exactly, for GCP's
15-digit amounts too, and checked against the database before anything is stored), re-runs
without new data write nothing, a late revised day changes exactly that day, estimates are
replaced when the bill arrives, and any allocation can be explained and exported exactly."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.attribution import cli as attribution_cli
from app.attribution import service
from app.attribution.models import Allocation, AllocationPool, AttributionDay, AttributionRun
from app.attribution.rules import Period
from app.config import (
    Attribution,
    Cluster,
    Community,
    ConfigError,
    CostMatch,
    Hub,
    HubmeterConfig,
)
from app.costs.models import CostLine
from app.db import money_sum
from app.hubs import service as hub_service
from app.hubs.models import HubUser
from app.ingestion.models import IngestionBatch
from app.usage.models import UsageHour

GIB = 1024**3
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DAY1 = date(2026, 10, 1)
PERIOD = Period(DAY1, DAY1 + timedelta(days=3))


def gib_hours(n: int | str) -> Decimal:
    return Decimal(n) * GIB * 3600


def config(**attribution: object) -> HubmeterConfig:
    return HubmeterConfig(
        clusters=[
            Cluster(
                name="atlantic",
                provider="gcp",
                costs=CostMatch(
                    projects=["atlantic-project"], labels={"goog-k8s-cluster-name": "atlantic"}
                ),
            )
        ],
        communities=[
            Community(
                id="ocean-lab",
                name="Ocean Lab",
                billing_email="a@ocean.example.org",
                plan="cost-recovery",
            ),
            Community(
                id="climate-school",
                name="Climate",
                billing_email="b@climate.example.org",
                plan="cost-recovery",
            ),
        ],
        hubs=[
            Hub(name="ocean", cluster="atlantic", community="ocean-lab"),
            Hub(
                name="climate",
                cluster="atlantic",
                community="climate-school",
                dedicated=CostMatch(projects=["climate-data"]),
            ),
        ],
        attribution=Attribution.model_validate(attribution),
    )


@dataclass
class World:
    session: Session
    config: HubmeterConfig
    batch: IngestionBatch
    hubs: dict[str, int]
    users: dict[str, int]
    rows: int = 0

    def cost(
        self,
        hour: datetime,
        amount: str,
        component: str = "compute",
        *,
        project: str | None = "atlantic-project",
        labels: dict[str, str] | None = None,
        estimated: bool = False,
        currency: str = "USD",
        hours: int = 1,
    ) -> CostLine:
        self.rows += 1
        line = CostLine(
            batch_id=self.batch.id,
            source="test-bill",
            source_row=str(self.rows),
            estimated=estimated,
            provider="gcp",
            billing_account_id="ACCOUNT",
            sub_account_id=project,
            service_name="Compute Engine",
            sku_description="N2 Instance Ram running in Americas",
            charge_period_start=hour,
            charge_period_end=hour + timedelta(hours=hours),
            charge_category="usage",
            billed_cost=Decimal(amount),
            credits=Decimal(0),
            net_cost=Decimal(amount),
            currency=currency,
            component=component,
            labels=labels or {},
            extra={},
        )
        self.session.add(line)
        return line

    def usage(
        self,
        hour: datetime,
        hub: str | None,
        user: str | None,
        memory_gib_hours: int | str = 0,
        storage_gib_hours: int | str = 0,
        namespace: str | None = None,
    ) -> None:
        self.session.add(
            UsageHour(
                batch_id=self.batch.id,
                cluster_name="atlantic",
                namespace=namespace or hub or "",
                hub_id=self.hubs[hub] if hub else None,
                user_id=self.users[user] if user else None,
                hour=hour,
                server_seconds=Decimal(3600),
                memory_request_byte_seconds=gib_hours(memory_gib_hours),
                cpu_request_core_seconds=Decimal(0),
                memory_usage_byte_seconds=Decimal(0),
                cpu_usage_core_seconds=Decimal(0),
                gpu_request_seconds=Decimal(0),
                home_storage_byte_seconds=gib_hours(storage_gib_hours),
            )
        )

    def attribute(self, period: Period = PERIOD, **kwargs: object) -> service.RunReport:
        self.session.flush()
        return service.attribute_period(
            session=self.session,
            config=self.config,
            period=period,
            now=NOW,
            created_by="test",
            **kwargs,  # type: ignore[arg-type]
        )

    def in_force(self, **filters: object) -> list[Allocation]:
        query = select(Allocation).join(
            AttributionDay,
            (AttributionDay.day == Allocation.day) & (AttributionDay.run_id == Allocation.run_id),
        )
        for name, value in filters.items():
            query = query.where(getattr(Allocation, name) == value)
        return list(self.session.scalars(query.order_by(Allocation.id)))


def make_world(session: Session, cfg: HubmeterConfig | None = None) -> World:
    cfg = cfg or config()
    hub_service.sync_from_config(session=session, config=cfg, now=NOW)
    hubs = hub_service.hubs_by_namespace(session=session, cluster_name="atlantic")
    hub_ids = {hub.name: hub.id for hub in hubs.values()}
    people = [("ocean", "alice"), ("ocean", "bob"), ("climate", "carol")]
    rows = [HubUser(hub_id=hub_ids[hub], username=name, first_seen_at=NOW) for hub, name in people]
    session.add_all(rows)
    session.flush()
    users = {row.username: row.id for row in rows}
    batch = IngestionBatch(
        kind="costs",
        source="test",
        window_start=NOW,
        window_end=NOW,
        started_at=NOW,
        finished_at=NOW,
        stats={},
    )
    session.add(batch)
    session.flush()
    return World(session, cfg, batch, hub_ids, users)


@pytest.fixture
def world(session: Session) -> World:
    return make_world(session)


def hour(day: int, h: int) -> datetime:
    return datetime(2026, 10, day, h, tzinfo=UTC)


def typical_days(world: World, days: tuple[int, ...] = (1, 2, 3)) -> None:
    """Each day: two hours of shared compute, home storage, a bucket, a dedicated project, an
    operator charge nobody claims, and the users' usage."""
    for day in days:
        for h in (9, 10):
            world.cost(hour(day, h), "10.000000", "compute")
            world.cost(hour(day, h), "-1.000000", "compute")  # a sustained-use credit line
            world.cost(hour(day, h), "2.000000", "home_storage")
            world.usage(hour(day, h), "ocean", "alice", memory_gib_hours=3, storage_gib_hours=10)
            world.usage(hour(day, h), "ocean", "bob", memory_gib_hours=1, storage_gib_hours=30)
            world.usage(hour(day, h), "climate", "carol", memory_gib_hours=5, storage_gib_hours=40)
        world.cost(hour(day, 0), "0.480000", "object_storage", labels={"2i2c:hub-name": "ocean"})
        world.cost(hour(day, 0), "1.500000", "compute", project="climate-data")
        world.cost(hour(day, 0), "0.250000", "other", project="operator-tools")


def in_force_total_by_day(session: Session) -> dict[date, Decimal]:
    rows = session.execute(
        select(Allocation.day, money_sum(Allocation.amount))
        .join(
            AttributionDay,
            (AttributionDay.day == Allocation.day) & (AttributionDay.run_id == Allocation.run_id),
        )
        .group_by(Allocation.day)
    )
    return dict(rows.all())


def cost_by_day(session: Session) -> dict[date, Decimal]:
    totals: dict[date, Decimal] = {}
    for line in session.scalars(select(CostLine)):
        day = line.charge_period_start.date()
        totals[day] = totals.get(day, Decimal(0)) + line.net_cost
    return totals


def test_every_day_adds_up_exactly_and_the_run_is_in_force(world: World) -> None:
    typical_days(world)
    report = world.attribute()

    assert report.changed
    assert report.balanced
    assert in_force_total_by_day(world.session) == cost_by_day(world.session)
    assert report.cost_total == Decimal("3") * (Decimal("22") + Decimal("2.23"))
    assert report.unattributed_by_reason == {"no-match": Decimal("0.750000")}
    days = dict(world.session.execute(select(AttributionDay.day, AttributionDay.run_id)).all())
    assert days == dict.fromkeys(PERIOD.days(), report.run_id)
    run = world.session.get_one(AttributionRun, report.run_id)
    assert run.cost_total == run.allocated_total + run.unattributed_total == report.cost_total
    assert Decimal(run.summary["days"]["2026-10-02"]["cost"]) == Decimal("24.23")


def test_shared_cost_follows_the_drivers_down_to_users(world: World) -> None:
    world.cost(hour(1, 9), "9.00", "compute")
    world.cost(hour(1, 9), "8.00", "home_storage")
    world.cost(hour(1, 9), "1.00", "networking")
    world.usage(hour(1, 9), "ocean", "alice", memory_gib_hours=3, storage_gib_hours=10)
    world.usage(hour(1, 9), "ocean", "bob", memory_gib_hours=1, storage_gib_hours=30)
    world.usage(hour(1, 9), "climate", "carol", memory_gib_hours=5, storage_gib_hours=40)
    world.attribute(Period(DAY1, DAY1 + timedelta(days=1)))

    def amount(user: str | None, component: str, hub: str = "ocean") -> Decimal:
        rows = world.in_force(
            component=component, user_id=world.users[user] if user else None, hub_id=world.hubs[hub]
        )
        return sum((a.amount for a in rows), Decimal(0))

    # Compute by memory requests (3:1:5 of 9), home storage by bytes stored (10:30:40 of 80).
    assert amount("alice", "compute") == Decimal("3.00")
    assert amount("bob", "compute") == Decimal("1.00")
    assert amount("carol", "compute", "climate") == Decimal("5.00")
    assert amount("alice", "home_storage") == Decimal("1.00")
    assert amount("bob", "home_storage") == Decimal("3.00")
    assert amount("carol", "home_storage", "climate") == Decimal("4.00")
    # Networking splits across hubs by memory requests (4:5) and stays at hub level.
    [ocean_networking] = world.in_force(component="networking", hub_id=world.hubs["ocean"])
    assert ocean_networking.user_id is None
    assert ocean_networking.rule == "hub-shared"
    assert ocean_networking.amount == Decimal("0.44444444444")
    [alice] = world.in_force(component="compute", user_id=world.users["alice"])
    assert alice.rule == "shared-usage"
    assert alice.community_id == "ocean-lab"
    assert alice.basis["user_units"] == str(gib_hours(3))
    assert alice.basis["hub_units"] == str(gib_hours(4))
    pool = world.session.get_one(AllocationPool, alice.pool_id)
    assert pool.driver_units == gib_hours(9)
    assert (pool.kind, pool.cluster_name, pool.net_cost, pool.cost_line_count) == (
        "shared",
        "atlantic",
        Decimal("9.00"),
        1,
    )


def test_a_namespace_no_hub_names_takes_its_share_to_unattributed(world: World) -> None:
    world.cost(hour(1, 9), "10.00", "compute")
    world.usage(hour(1, 9), "ocean", "alice", memory_gib_hours=3)
    world.usage(hour(1, 9), None, None, memory_gib_hours=1, namespace="workshop-unlisted")
    report = world.attribute(Period(DAY1, DAY1 + timedelta(days=1)))

    assert report.unattributed_by_reason == {"namespace-without-hub": Decimal("2.50")}
    [unattributed] = world.in_force(hub_id=None)
    assert unattributed.rule == "unattributed:namespace-without-hub"
    assert unattributed.basis["detail"] == "workshop-unlisted"
    assert unattributed.community_id is None


def test_shared_cost_of_an_hour_nobody_used_is_unattributed_by_default(world: World) -> None:
    world.cost(hour(1, 3), "4.00", "compute")
    report = world.attribute(Period(DAY1, DAY1 + timedelta(days=1)))
    assert report.unattributed_by_reason == {"no-usage": Decimal("4.00")}


def test_shared_cost_of_an_hour_nobody_used_can_be_split_evenly(session: Session) -> None:
    world = make_world(session, config(no_usage="even"))
    world.cost(hour(1, 3), "4.00", "compute")
    report = world.attribute(Period(DAY1, DAY1 + timedelta(days=1)))
    assert report.by_community == {"climate-school": Decimal("2.00"), "ocean-lab": Decimal("2.00")}
    assert {a.rule for a in world.in_force()} == {"hub-shared"}


def test_running_again_without_new_data_writes_nothing(world: World) -> None:
    typical_days(world)
    first = world.attribute()
    allocations = world.session.scalar(select(func.count()).select_from(Allocation))

    again = world.attribute()

    assert not again.changed
    assert again.run_id is None
    assert again.runs_in_force == [first.run_id]
    assert again.cost_total == first.cost_total
    assert again.by_community == first.by_community
    assert world.session.scalar(select(func.count()).select_from(AttributionRun)) == 1
    assert world.session.scalar(select(func.count()).select_from(Allocation)) == allocations


def test_a_late_revised_day_changes_exactly_that_day(world: World) -> None:
    typical_days(world)
    first = world.attribute()
    before = {(a.day, a.hub_id, a.user_id, a.component, a.rule): a.amount for a in world.in_force()}

    # The cost ingestion replaces day 2's compute lines with revised ones (+0.90 in hour 10).
    world.session.execute(
        delete(CostLine).where(
            CostLine.charge_period_start == hour(2, 10), CostLine.component == "compute"
        )
    )
    world.cost(hour(2, 10), "10.900000", "compute")
    world.cost(hour(2, 10), "-1.000000", "compute")
    second = world.attribute()

    assert second.changed
    assert second.previous_run_ids == [first.run_id]
    assert second.days_with_new_inputs == [date(2026, 10, 2)]
    after = {(a.day, a.hub_id, a.user_id, a.component, a.rule): a.amount for a in world.in_force()}
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert {key[0] for key in changed} == {date(2026, 10, 2)}
    assert {key[3] for key in changed} == {"compute"}
    # 0.90 split 4:5 by memory requests between ocean (alice 3, bob 1) and climate (carol 5).
    changes = {c.label: c.difference for c in second.hub_changes}
    assert changes == {"atlantic/ocean": Decimal("0.40"), "atlantic/climate": Decimal("0.50")}
    communities = {c.key: (c.before, c.after) for c in second.community_changes}
    assert communities["ocean-lab"][1] - communities["ocean-lab"][0] == Decimal("0.40")
    assert in_force_total_by_day(world.session) == cost_by_day(world.session)
    summary = world.session.get_one(AttributionRun, second.run_id).summary
    assert summary["changes"]["days_with_new_inputs"] == ["2026-10-02"]
    # Day 1 was copied into the new run, not recomputed, and still explains itself.
    [copied] = world.in_force(
        day=date(2026, 10, 1), user_id=world.users["alice"], component="compute"
    )
    assert copied.run_id == second.run_id
    explanation = service.explain_allocation(session=world.session, allocation_id=copied.id)
    assert explanation is not None
    assert explanation.reproducible
    assert explanation.run.in_force
    # The first run is kept for comparison, but no longer counted.
    assert world.session.get(AttributionRun, first.run_id) is not None
    assert in_force_total_by_day(world.session)[date(2026, 10, 2)] == Decimal("25.13")


def test_a_run_over_part_of_a_period_only_replaces_its_days(world: World) -> None:
    typical_days(world)
    month = world.attribute()
    world.cost(hour(3, 11), "1.00", "networking")
    trailing = world.attribute(Period(date(2026, 10, 3), date(2026, 10, 4)))
    days = dict(world.session.execute(select(AttributionDay.day, AttributionDay.run_id)).all())
    assert days == {
        date(2026, 10, 1): month.run_id,
        date(2026, 10, 2): month.run_id,
        date(2026, 10, 3): trailing.run_id,
    }
    assert in_force_total_by_day(world.session) == cost_by_day(world.session)


def test_estimated_days_are_marked_and_replaced_when_the_bill_arrives(world: World) -> None:
    typical_days(world, days=(1, 2))
    world.usage(hour(3, 9), "ocean", "alice", memory_gib_hours=2)
    estimate = world.cost(hour(3, 9), "7.00", "compute", estimated=True)
    first = world.attribute()
    assert first.estimated_total == Decimal("7.00")
    estimated = world.in_force(estimated=True)
    assert {a.day for a in estimated} == {date(2026, 10, 3)}
    assert sum((a.amount for a in estimated), Decimal(0)) == Decimal("7.00")

    # The bill arrives: the cost ingestion deletes the estimate and writes the billed line.
    world.session.delete(estimate)
    world.cost(hour(3, 9), "6.50", "compute")
    second = world.attribute()

    assert second.estimated_total == 0
    assert world.in_force(estimated=True) == []
    [alice] = world.in_force(day=date(2026, 10, 3), user_id=world.users["alice"])
    assert alice.amount == Decimal("6.50")
    assert not alice.estimated
    assert second.days_with_new_inputs == [date(2026, 10, 3)]


def test_a_charge_period_over_several_days_is_cut_by_the_day(world: World) -> None:
    world.cost(datetime(2026, 10, 1, 12, tzinfo=UTC), "3.00", "other", project="ops", hours=48)
    report = world.attribute()
    assert [(d.day, d.cost) for d in report.days] == [
        (date(2026, 10, 1), Decimal("0.75")),
        (date(2026, 10, 2), Decimal("1.50")),
        (date(2026, 10, 3), Decimal("0.75")),
    ]
    assert report.balanced


def test_hubs_missing_from_the_database_are_refused(session: Session) -> None:
    world = make_world(session)
    bigger = config()
    bigger = bigger.model_copy(
        update={
            "hubs": [*bigger.hubs, Hub(name="new-hub", cluster="atlantic", community="ocean-lab")]
        }
    )
    with pytest.raises(ConfigError, match="config apply"):
        service.attribute_period(
            session=world.session, config=bigger, period=PERIOD, now=NOW, created_by="test"
        )


def test_several_currencies_in_one_period_are_refused(world: World) -> None:
    world.cost(hour(1, 9), "1.00", "compute")
    world.cost(hour(1, 9), "1.00", "compute", currency="EUR")
    with pytest.raises(service.AttributionError, match="EUR, USD"):
        world.attribute()


def test_an_allocation_explains_itself_and_notices_changed_inputs(world: World) -> None:
    typical_days(world)
    world.attribute()
    [alice] = world.in_force(
        day=date(2026, 10, 2), user_id=world.users["alice"], component="compute"
    )

    explanation = service.explain_allocation(session=world.session, allocation_id=alice.id)

    assert explanation is not None
    assert explanation.reproducible
    assert explanation.recomputed_amount == alice.amount
    assert explanation.run.in_force
    assert explanation.pool is not None
    assert explanation.pool.kind == "shared"
    assert explanation.cost_lines_now == explanation.pool.cost_line_count == 4
    assert {line.net_cost for line in explanation.cost_lines} == {Decimal("10"), Decimal("-1")}
    assert [p.charge_period_start.hour for p in explanation.periods] == [9, 10]
    hub_step, user_step = explanation.periods[0].steps
    assert (hub_step.stage, hub_step.units, hub_step.of_units) == (
        "hub",
        gib_hours(4),
        gib_hours(9),
    )
    assert (user_step.stage, user_step.units, user_step.of_units) == (
        "user",
        gib_hours(3),
        gib_hours(4),
    )
    assert sum((p.amount for p in explanation.periods), Decimal(0)) == alice.amount
    assert "alice" in explanation.summary
    assert "3.0000 GiB-hours" in explanation.periods[0].steps[1].units_readable  # type: ignore[operator]

    world.cost(hour(2, 9), "5.00", "compute")
    world.session.flush()
    changed = service.explain_allocation(session=world.session, allocation_id=alice.id)
    assert changed is not None
    assert not changed.reproducible
    assert any("have changed since run" in note for note in changed.notes)


def test_an_allocation_of_a_fee_spanning_days_explains_itself_as_unchanged(world: World) -> None:
    """A pool holds its day's share of a charge spanning days (a monthly fee, here three days):
    the explanation compares that share, not the whole charge, with what the run saw."""
    typical_days(world)
    world.cost(hour(1, 0), "30.000000", "other", project="climate-data", hours=72)
    world.attribute()
    [fee] = [
        a
        for a in world.in_force(day=date(2026, 10, 2), hub_id=world.hubs["climate"])
        if a.component == "other"
    ]
    assert fee.amount == Decimal("10.000000")

    explanation = service.explain_allocation(session=world.session, allocation_id=fee.id)

    assert explanation is not None
    assert explanation.reproducible
    assert explanation.cost_lines_net_cost_now == Decimal("10.000000")
    assert not any("changed since run" in note for note in explanation.notes)


def test_unattributed_allocations_explain_their_reason(world: World) -> None:
    typical_days(world, days=(1,))
    world.attribute(Period(DAY1, DAY1 + timedelta(days=1)))
    [operator] = world.in_force(hub_id=None)
    explanation = service.explain_allocation(session=world.session, allocation_id=operator.id)
    assert explanation is not None
    assert explanation.reproducible
    assert explanation.rule_description.startswith("unattributed: matches no hub label")
    assert [line.project for line in explanation.cost_lines] == ["operator-tools"]


def export_csv(session: Session, period: Period) -> list[dict[str, str]]:
    stream = io.StringIO()
    attribution_cli._csv_rows(service.export_rows(session=session, period=period), stream)
    return list(csv.DictReader(io.StringIO(stream.getvalue())))


def test_the_export_has_one_row_per_day_hub_user_and_component_and_adds_up(world: World) -> None:
    typical_days(world)
    report = world.attribute()
    rows = export_csv(world.session, PERIOD)

    assert list(rows[0]) == list(attribution_cli.EXPORT_COLUMNS)
    keys = [(r["day"], r["hub"], r["user"], r["component"], r["estimated"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert sum((Decimal(r["amount"]) for r in rows), Decimal(0)) == report.cost_total
    alice = [r for r in rows if r["user"] == "alice" and r["day"] == "2026-10-01"]
    assert {r["component"]: Decimal(r["amount"]) for r in alice} == {
        "compute": Decimal(6),
        "home_storage": Decimal("0.50"),
    }
    assert {r["run_id"] for r in rows} == {str(report.run_id)}
    [nobody] = [r for r in rows if r["hub"] == "" and r["day"] == "2026-10-01"]
    assert (nobody["community"], nobody["amount"]) == ("", "0.250000")
    assert all("E" not in r["amount"] for r in rows)


def test_the_parquet_export_keeps_amounts_exact(world: World, tmp_path: Path) -> None:
    typical_days(world)
    report = world.attribute()
    path = tmp_path / "allocations.parquet"
    count = attribution_cli.write_parquet(
        service.export_rows(session=world.session, period=PERIOD), path
    )
    table = pq.read_table(path)
    assert table.num_rows == count
    assert pa.types.is_decimal(table.schema.field("amount").type)
    assert sum(table.column("amount").to_pylist(), Decimal(0)) == report.cost_total
    assert table.schema.field("day").type == pa.date32()


# --- exactness and the conservation check against the database --------------------------------

# GCP amounts as stored (15 significant digits, exponents down to 1e-38) next to thousands.
GCP_SHAPED = (
    "1234.56",
    "1.23456789012345E-12",
    "-9.87654321098765E-24",
    "4.20000000000001E-25",
    "7654.32101234567",
)


@pytest.fixture
def python_default_context() -> Iterator[None]:
    """Run the test in Python's default decimal precision (28 significant digits), as a thread
    that did not start from hubmeter's raised defaults would."""
    with localcontext() as context:
        context.prec = 28
        yield


@pytest.mark.usefixtures("python_default_context")
def test_gcp_shaped_amounts_are_attributed_exactly_on_both_databases(world: World) -> None:
    for amount in GCP_SHAPED:
        world.cost(hour(1, 9), amount, "compute")  # shared, split by usage
        world.cost(hour(1, 10), amount, "networking", labels={"2i2c:hub-name": "ocean"})
        world.cost(hour(2, 0), amount, "other", project="operator-tools")  # unattributed
    world.usage(hour(1, 9), "ocean", "alice", memory_gib_hours=3)
    world.usage(hour(1, 9), "climate", "carol", memory_gib_hours=5)
    report = world.attribute(Period(DAY1, DAY1 + timedelta(days=2)))

    day_total = sum((Fraction(Decimal(a)) for a in GCP_SHAPED), Fraction(0))
    assert report.balanced
    assert [(d.day, Fraction(d.cost), Fraction(d.allocated)) for d in report.days] == [
        (DAY1, 2 * day_total, 2 * day_total),
        (date(2026, 10, 2), day_total, day_total),
    ]
    assert Fraction(report.cost_total) == 3 * day_total
    in_force = world.in_force()
    assert sum(Fraction(a.amount) for a in in_force) == 3 * day_total
    by_day = in_force_total_by_day(world.session)  # the database's own sums
    assert {d: Fraction(v) for d, v in by_day.items()} == {
        DAY1: 2 * day_total,
        date(2026, 10, 2): day_total,
    }
    [nobody] = world.in_force(hub_id=None)
    assert nobody.amount == Decimal("8888.881012345671234567890113993456789012351")
    pools = world.session.scalars(select(AllocationPool.net_cost)).all()
    assert sum(Fraction(p) for p in pools) == 3 * day_total


def drop_a_cost_line(monkeypatch: pytest.MonkeyPatch, amount: str) -> None:
    """Make attribution's loader lose the group of cost lines of `amount` (a bug the check must
    catch), while the cost lines stay in the database."""
    load = service.load_cost_items

    def losing(**kwargs: object) -> dict[date, list[object]]:
        by_day = load(**kwargs)  # type: ignore[arg-type]
        return {
            day: [item for item in items if item.net_cost != Decimal(amount)]
            for day, items in by_day.items()
        }

    monkeypatch.setattr(service, "load_cost_items", losing)


def test_a_run_that_does_not_add_up_to_the_cost_lines_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    typical_days(world)
    world.cost(hour(2, 11), "0.000000000042", "networking")
    drop_a_cost_line(monkeypatch, "0.000000000042")

    with pytest.raises(service.ConservationError) as refused:
        world.attribute()

    # The allocator added up to what it loaded; the database's cost lines say otherwise.
    message = str(refused.value)
    assert "2026-10-02: allocations" in message
    assert "nothing was stored" in message
    [day2] = [d for d in refused.value.report.days if d.difference]
    assert day2.day == date(2026, 10, 2)
    assert day2.difference == Decimal("-0.000000000042")
    assert day2.cost == Decimal("24.230000000042")
    for table in (AttributionRun, Allocation, AllocationPool, AttributionDay):
        assert world.session.scalar(select(func.count()).select_from(table)) == 0


def test_a_refused_run_leaves_the_runs_in_force_as_they_were(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    typical_days(world)
    first = world.attribute()
    allocations = world.session.scalar(select(func.count()).select_from(Allocation))
    # A late line the loader loses: the inputs it sees are unchanged, but day 2 in force no
    # longer adds up to the cost lines, so it is recomputed, and the recomputation is refused.
    world.cost(hour(2, 11), "0.000000000042", "networking")
    drop_a_cost_line(monkeypatch, "0.000000000042")

    with pytest.raises(service.ConservationError, match="2026-10-02"):
        world.attribute()

    days = dict(world.session.execute(select(AttributionDay.day, AttributionDay.run_id)).all())
    assert days == dict.fromkeys(PERIOD.days(), first.run_id)
    assert world.session.scalar(select(func.count()).select_from(AttributionRun)) == 1
    assert world.session.scalar(select(func.count()).select_from(Allocation)) == allocations


@pytest.mark.parametrize("another_day_revised", [False, True], ids=["alone", "in-a-new-run"])
def test_allocations_in_force_that_do_not_add_up_are_recomputed_not_copied(
    world: World, another_day_revised: bool
) -> None:
    typical_days(world)
    first = world.attribute()
    # Allocations in force that no longer add up (an older hubmeter's rounded sums, or an edit
    # behind hubmeter's back), although the cost lines, usage and policy have not changed.
    [alice] = world.in_force(
        day=date(2026, 10, 2), user_id=world.users["alice"], component="compute"
    )
    alice.amount += Decimal("0.01")
    world.session.flush()
    if another_day_revised:  # a new run anyway, which would otherwise copy day 2
        world.cost(hour(3, 11), "1.00", "networking")

    second = world.attribute()

    assert second.changed
    assert second.days_rebalanced == [date(2026, 10, 2)]
    assert second.days_with_new_inputs == ([date(2026, 10, 3)] if another_day_revised else [])
    assert second.balanced
    assert in_force_total_by_day(world.session) == cost_by_day(world.session)
    [recomputed] = world.in_force(
        day=date(2026, 10, 2), user_id=world.users["alice"], component="compute"
    )
    assert recomputed.run_id == second.run_id
    assert recomputed.amount == alice.amount - Decimal("0.01")
    summary = world.session.get_one(AttributionRun, second.run_id).summary
    assert summary["changes"]["days_rebalanced"] == ["2026-10-02"]
    assert not world.attribute().changed
    assert first.run_id not in second.runs_in_force


def test_the_check_cuts_charges_over_midnight_as_attribution_does(world: World) -> None:
    # Two lines of one cell (same project, component and charge period) of one unit of 1e-11
    # each, over 12:00..12:00: attribution sums them and cuts the sum, half a day each side, so
    # each day gets one unit. Cutting each line on its own would give both units to the first
    # day (ties go to the key that sorts first). A third line of another cell (a dedicated
    # project) is cut on its own: its one unit goes to the first day.
    noon = datetime(2026, 10, 1, 12, tzinfo=UTC)
    world.cost(noon, "0.00000000001", "other", project="operator-tools", hours=24)
    world.cost(noon, "0.00000000001", "other", project="operator-tools", hours=24)
    world.cost(noon, "0.00000000001", "other", project="climate-data", hours=24)
    # ...and a line from before the period into it.
    world.cost(hour(1, 18), "3.00", "other", project="operator-tools", hours=12)
    world.session.flush()
    day2 = Period(date(2026, 10, 2), date(2026, 10, 3))

    policy = service.build_policy(session=world.session, config=world.config)
    cost = service.cost_lines_by_day(session=world.session, policy=policy, period=day2)
    assert cost == {(date(2026, 10, 2), "USD"): Decimal("1.50000000001")}
    report = world.attribute(day2)
    assert report.balanced
    assert [(d.day, d.cost, d.allocated) for d in report.days] == [
        (date(2026, 10, 2), Decimal("1.50000000001"), Decimal("1.50000000001"))
    ]
    whole = world.attribute()
    assert [d.cost for d in whole.days] == [
        Decimal("1.50000000002"),
        Decimal("1.50000000001"),
        Decimal(0),
    ]


def test_the_check_reads_periods_of_years(world: World) -> None:
    # One query per few hundred days for the lines over midnight (SQLite refuses an expression
    # nested a thousand deep).
    late = datetime(2029, 6, 30, 18, tzinfo=UTC)
    world.cost(late, "3.00", "other", project="operator-tools", hours=12)
    world.cost(hour(1, 9), "1.00", "other", project="operator-tools")
    world.session.flush()
    years = Period(DAY1, DAY1 + timedelta(days=1100))
    policy = service.build_policy(session=world.session, config=world.config)
    cost = service.cost_lines_by_day(session=world.session, policy=policy, period=years)
    assert cost == {
        (DAY1, "USD"): Decimal("1.00"),
        (date(2029, 6, 30), "USD"): Decimal("1.50"),
        (date(2029, 7, 1), "USD"): Decimal("1.50"),
    }
