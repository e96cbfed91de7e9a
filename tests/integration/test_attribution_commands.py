"""`hubmeter attribute`, `hubmeter allocations export|explain|runs`, the scheduled job and the
API, on a committed database of each kind, as an operator, a finance person or a community
would use them."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from app import cli as app_cli
from app import migrate
from app.attribution import service as attribution_service
from app.attribution.models import Allocation, AllocationPool, AttributionDay, AttributionRun
from app.attribution.rules import Period
from app.auth import service as token_service
from app.auth.models import Role
from app.cli import cli
from app.config import (
    Cluster,
    Community,
    ConfigError,
    CostMatch,
    Hub,
    HubmeterConfig,
    Settings,
)
from app.costs.models import CostLine
from app.db import make_sessionmaker, transaction
from app.errors import UsageError
from app.hubs import service as hub_service
from app.hubs.models import HubUser
from app.ingestion.models import IngestionBatch
from app.main import create_app
from app.runtime import Runtime
from app.scheduling.models import JobRun
from app.usage.models import UsageHour
from jobs import attribute as attribute_job

NOW = datetime(2026, 10, 3, 9, 0, tzinfo=UTC)
GIB_HOUR = Decimal(1024**3 * 3600)
USAGE = (("ocean", "alice", 2), ("ocean", "bob", 1), ("climate", "carol", 3))
TWO_DAYS = ["--start", "2026-10-01", "--end", "2026-10-03"]


def configuration() -> HubmeterConfig:
    return HubmeterConfig(
        clusters=[
            Cluster(
                name="atlantic",
                provider="gcp",
                costs=CostMatch(labels={"goog-k8s-cluster-name": "atlantic"}),
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
            Hub(name="climate", cluster="atlantic", community="climate-school"),
        ],
    )


@dataclass
class Installed:
    engine: Engine
    url: str
    config_file: Path
    users: dict[str, int]


@pytest.fixture
def installed(fresh_engine: Engine, tmp_path: Path) -> Installed:
    """Two days of a small cluster's bill and usage, committed."""
    migrate.upgrade(fresh_engine)
    config = configuration()
    with transaction(make_sessionmaker(fresh_engine)) as session:
        hub_service.sync_from_config(session=session, config=config, now=NOW)
        session.flush()
        hubs = {
            h.name: h.id
            for h in hub_service.hubs_by_namespace(
                session=session, cluster_name="atlantic"
            ).values()
        }
        people = [HubUser(hub_id=hubs[h], username=u, first_seen_at=NOW) for h, u in
                  (("ocean", "alice"), ("ocean", "bob"), ("climate", "carol"))]  # fmt: skip
        session.add_all(people)
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
        users = {p.username: p.id for p in people}
        row = 0
        for day in (1, 2):
            for hour in (9, 10):
                start = datetime(2026, 10, day, hour, tzinfo=UTC)
                for component, amount, labels in (
                    ("compute", "6.000000", {"goog-k8s-cluster-name": "atlantic"}),
                    ("object_storage", "0.100000", {"2i2c:hub-name": "climate"}),
                    ("support", "1.000000", {}),
                ):
                    row += 1
                    session.add(_line(batch.id, row, start, component, Decimal(amount), labels))
                for hub, user, gib_hours in USAGE:
                    session.add(_usage(batch.id, hubs[hub], users[user], hub, start, gib_hours))
    config_file = tmp_path / "hubmeter.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_defaults=True)))
    url = fresh_engine.url.render_as_string(hide_password=False)
    return Installed(fresh_engine, url, config_file, users)


def _line(
    batch_id: int,
    row: int,
    start: datetime,
    component: str,
    amount: Decimal,
    labels: dict[str, str],
) -> CostLine:
    return CostLine(
        batch_id=batch_id,
        source="bill.jsonl",
        source_row=str(row),
        provider="gcp",
        sub_account_id="some-project",
        service_name="Compute Engine",
        sku_description="N2 Instance Ram running in Americas",
        charge_period_start=start,
        charge_period_end=start + timedelta(hours=1),
        charge_category="usage",
        billed_cost=amount,
        credits=Decimal(0),
        net_cost=amount,
        currency="USD",
        component=component,
        labels=labels,
        extra={},
    )


def _usage(
    batch_id: int, hub_id: int, user_id: int, namespace: str, hour: datetime, gib_hours: int
) -> UsageHour:
    zero = Decimal(0)
    return UsageHour(
        batch_id=batch_id,
        cluster_name="atlantic",
        namespace=namespace,
        hub_id=hub_id,
        user_id=user_id,
        hour=hour,
        server_seconds=Decimal(3600),
        memory_request_byte_seconds=gib_hours * GIB_HOUR,
        cpu_request_core_seconds=zero,
        memory_usage_byte_seconds=zero,
        cpu_usage_core_seconds=zero,
        gpu_request_seconds=zero,
        home_storage_byte_seconds=zero,
    )


def invoke(installed: Installed, *args: str) -> Result:
    """Run a `hubmeter` command on the test's engine (so its connections are closed)."""

    def runtime_on_engine(settings: Settings, config_path: Path | None = None) -> Runtime:
        return Runtime(settings=settings, config_path=config_path, _engine=installed.engine)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app_cli, "Runtime", runtime_on_engine)
        return CliRunner().invoke(
            cli, ["--database-url", installed.url, "--config", str(installed.config_file), *args]
        )


def hubmeter(installed: Installed, *args: str) -> str:
    result = invoke(installed, *args)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_attribute_prints_the_totals_and_the_check_then_finds_nothing_new(
    installed: Installed,
) -> None:
    output = hubmeter(installed, "attribute", *TWO_DAYS)
    assert "run 1 is now in force" in output
    assert "adds up exactly: 2 of 2 days" in output
    # Compute 4 x 6.00 split 3:3 by memory requests; the buckets are climate's; support nobody's.
    assert "ocean-lab" in output
    assert "12.00000000000" in output
    assert "climate-school" in output
    assert "12.40000000000" in output
    assert "no-match" in output
    assert "4.000000" in output

    again = hubmeter(installed, "attribute", *TWO_DAYS)
    assert again.startswith("No changes")
    with Session(installed.engine) as session:
        assert session.scalar(select(func.count()).select_from(AttributionRun)) == 1

    report = json.loads(hubmeter(installed, "attribute", "--month", "2026-10", "--format", "json"))
    assert report["balanced"] is True
    assert report["cost_total"] == "28.400000"
    assert report["changed"] is True  # the 29 days without data are new to it
    assert report["changes"]["days_with_new_inputs"][0] == "2026-10-03"


def test_attribute_refuses_a_period_it_cannot_read(installed: Installed) -> None:
    for args, message in (
        (["--month", "2026-13"], "expected YYYY-MM"),
        (["--start", "2026-10-03", "--end", "2026-10-03"], "must be after --start"),
        (["--start", "2026-10-01"], "give --start DATE and --end DATE"),
    ):
        result = invoke(installed, "attribute", *args)
        assert isinstance(result.exception, UsageError), result.output
        assert message in str(result.exception)


def test_export_writes_exact_csv_and_parquet(installed: Installed, tmp_path: Path) -> None:
    hubmeter(installed, "attribute", *TWO_DAYS)
    text = hubmeter(installed, "allocations", "export", *TWO_DAYS, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert sum((Decimal(r["amount"]) for r in rows), Decimal(0)) == Decimal("28.400000")
    alice = [r for r in rows if r["user"] == "alice"]
    assert [(r["day"], r["component"], Decimal(r["amount"])) for r in alice] == [
        ("2026-10-01", "compute", Decimal("4")),
        ("2026-10-02", "compute", Decimal("4")),
    ]
    assert {r["community"] for r in rows if r["hub"] == ""} == {""}

    path = tmp_path / "out.parquet"
    hubmeter(installed, "allocations", "export", *TWO_DAYS, "--format", "parquet", "-o", str(path))
    table = pq.read_table(path)
    assert table.num_rows == len(rows)
    assert sum(table.column("amount").to_pylist(), Decimal(0)) == Decimal("28.400000")


def test_explain_answers_why_a_bill_is_what_it_is(installed: Installed) -> None:
    hubmeter(installed, "attribute", *TWO_DAYS)
    found = "--hub", "ocean", "--day", "2026-10-01"
    listing = hubmeter(installed, "allocations", "explain", *found)
    assert "allocations match" in listing
    assert "alice" in listing
    assert "bob" in listing

    text = hubmeter(installed, "allocations", "explain", *found, "--user", "alice")
    assert "4.00000000000 USD of compute went to user alice of hub atlantic/ocean" in text
    assert "shared-usage" in text
    assert "2.0000 GiB-hours" in text
    assert "(the same)" in text

    with Session(installed.engine) as session:
        support = session.scalars(select(Allocation).where(Allocation.hub_id.is_(None))).first()
        assert support is not None
    explained = json.loads(
        hubmeter(installed, "allocations", "explain", "--id", str(support.id), "--format", "json")
    )
    assert explained["allocation"]["rule"] == "unattributed:no-match"
    assert explained["reproducible"] is True
    assert len(explained["cost_lines"]) == 2


def test_runs_are_listed_and_shown(installed: Installed) -> None:
    hubmeter(installed, "attribute", *TWO_DAYS)
    assert "2026-10-01..2026-10-03" in hubmeter(installed, "allocations", "runs")
    detail = json.loads(hubmeter(installed, "allocations", "runs", "--id", "1"))
    assert detail["by_community"] == {
        "climate-school": "12.40000000000",
        "ocean-lab": "12.00000000000",
    }
    assert detail["days_in_force"] == 2


def test_the_job_attributes_once_and_records_its_figures(installed: Installed) -> None:
    runtime = Runtime(
        settings=Settings(database_url=installed.url, config=installed.config_file),
        _engine=installed.engine,
    )
    period = Period(date(2026, 10, 1), date(2026, 10, 3))
    first = attribute_job.attribute(runtime, period=period, now=NOW)
    second = attribute_job.attribute(runtime, period=period, now=NOW)
    assert first.changed
    assert not second.changed
    with Session(installed.engine) as session:
        jobs = session.scalars(select(JobRun).order_by(JobRun.id)).all()
        assert [j.status for j in jobs] == ["succeeded", "succeeded"]
        assert jobs[0].detail["figures"]["amount_attributed"] == "24.40000000000"
        assert jobs[0].detail["figures"]["unattributed_amount"] == "4.000000"
        assert jobs[1].detail["figures"]["changed"] == 0
        assert session.scalar(select(func.count()).select_from(AttributionRun)) == 1


def test_a_failed_job_leaves_nothing_behind(installed: Installed) -> None:
    config = configuration()
    broken = config.model_copy(
        update={"hubs": [*config.hubs, Hub(name="new", cluster="atlantic", community="ocean-lab")]}
    )
    installed.config_file.write_text(
        yaml.safe_dump(broken.model_dump(mode="json", exclude_defaults=True))
    )
    runtime = Runtime(
        settings=Settings(database_url=installed.url, config=installed.config_file),
        _engine=installed.engine,
    )
    with pytest.raises(ConfigError, match="config apply"):
        attribute_job.attribute(runtime, period=Period(date(2026, 10, 1), date(2026, 10, 3)))
    with Session(installed.engine) as session:
        [job] = session.scalars(select(JobRun)).all()
        assert job.status == "failed"
        assert "config apply" in (job.error or "")
        assert session.scalar(select(func.count()).select_from(Allocation)) == 0


def test_the_api_explains_only_what_the_caller_may_read(installed: Installed) -> None:
    hubmeter(installed, "attribute", *TWO_DAYS)
    factory = make_sessionmaker(installed.engine)
    with transaction(factory) as session:
        tokens = {
            name: token_service.create_token(
                session=session,
                name=name,
                role=role,
                community_id=community,
                created_by="test",
                now=NOW,
            )[1]
            for name, role, community in (
                ("ocean", Role.viewer, "ocean-lab"),
                ("climate", Role.viewer, "climate-school"),
                ("finance", Role.finance, None),
            )
        }
        alice = session.scalars(
            select(Allocation).where(Allocation.user_id == installed.users["alice"])
        ).first()
        nobody = session.scalars(select(Allocation).where(Allocation.hub_id.is_(None))).first()
        assert alice is not None
        assert nobody is not None
    client = TestClient(create_app(Settings(), engine=installed.engine))

    def get(path: str, who: str) -> tuple[int, object]:
        response = client.get(path, headers={"Authorization": f"Bearer {tokens[who]}"})
        return response.status_code, response.json()

    status, body = get(f"/api/v1/allocations/{alice.id}/explanation", "ocean")
    assert status == 200
    assert isinstance(body, dict)
    assert body["reproducible"] is True
    assert body["allocation"]["user"] == "alice"
    assert body["allocation"]["amount"] == "4.00000000000"
    assert get(f"/api/v1/allocations/{alice.id}/explanation", "climate")[0] == 404
    assert get(f"/api/v1/allocations/{nobody.id}/explanation", "ocean")[0] == 404
    assert get(f"/api/v1/allocations/{nobody.id}/explanation", "finance")[0] == 200
    assert get("/api/v1/allocations/999999/explanation", "finance")[0] == 404

    status, listed = get("/api/v1/allocations?day=2026-10-01", "ocean")
    assert status == 200
    assert isinstance(listed, dict)
    rows = listed["allocations"]
    assert {a["community_id"] for a in rows} == {"ocean-lab"}
    assert listed["page"]["total"] == len(rows)
    # Pages follow one order, and together are the whole list.
    assert len(rows) >= 2
    paged: list[dict[str, object]] = []
    offset: int | None = 0
    while offset is not None:
        page = get(f"/api/v1/allocations?day=2026-10-01&limit=1&offset={offset}", "ocean")[1]
        assert isinstance(page, dict)
        paged += page["allocations"]
        offset = page["page"]["next_offset"]
    assert [a["id"] for a in paged] == [a["id"] for a in rows]
    unattributed = get("/api/v1/allocations?day=2026-10-01&unattributed=true", "ocean")[1]
    assert isinstance(unattributed, dict)
    assert unattributed["allocations"] == []
    assert unattributed["page"]["total"] == 0
    assert get("/api/v1/attribution/runs", "ocean")[0] == 403
    status, runs = get("/api/v1/attribution/runs", "finance")
    assert status == 200
    assert isinstance(runs, list)
    assert runs[0]["cost_total"] == "28.400000"
    assert get("/api/v1/attribution/runs/1", "finance")[1]["days_in_force"] == 2  # type: ignore[index]


def test_the_check_row_is_the_databases_figure(installed: Installed) -> None:
    output = hubmeter(installed, "attribute", *TWO_DAYS)
    assert re.search(r"allocations, total +in the database +28\.4", output)
    assert re.search(r"net cost of the cost lines +in the database +28\.4", output)
    report = json.loads(hubmeter(installed, "attribute", "--month", "2026-10", "--format", "json"))
    assert Decimal(report["allocations_total"]) == Decimal(report["cost_total"]) == Decimal("28.4")


def lose_the_support_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make attribution's loader lose the support lines (a bug): they stay in the database."""
    load = attribution_service.load_cost_items

    def losing(**kwargs: object) -> dict[date, list[object]]:
        by_day = load(**kwargs)  # type: ignore[arg-type]
        return {d: [i for i in items if i.component != "support"] for d, items in by_day.items()}

    monkeypatch.setattr(attribution_service, "load_cost_items", losing)


def test_a_run_that_does_not_add_up_is_not_committed(
    installed: Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    lose_the_support_lines(monkeypatch)
    result = invoke(installed, "attribute", *TWO_DAYS)
    assert result.exit_code == 1
    assert "do not add up to the net cost of the cost lines in the database" in result.output
    assert "2026-10-01: allocations 12.2" in result.output  # of 14.200000 in cost lines

    runtime = Runtime(
        settings=Settings(database_url=installed.url, config=installed.config_file),
        _engine=installed.engine,
    )
    period = Period(date(2026, 10, 1), date(2026, 10, 3))
    with pytest.raises(attribution_service.ConservationError):
        attribute_job.attribute(runtime, period=period, now=NOW)
    with Session(installed.engine) as session:
        [job] = session.scalars(select(JobRun)).all()
        assert job.status == "failed"
        assert "ConservationError" in (job.error or "")
        for table in (AttributionRun, AllocationPool, Allocation, AttributionDay):
            assert session.scalar(select(func.count()).select_from(table)) == 0


@pytest.fixture
def tiny(installed: Installed) -> Installed:
    """A day whose only cost is 0.00000000010 of shared compute, used by three users equally:
    split by largest remainder into parts of 0.00000000004 and 0.00000000003."""
    with transaction(make_sessionmaker(installed.engine)) as session:
        hubs = {
            h.name: h.id
            for h in hub_service.hubs_by_namespace(
                session=session, cluster_name="atlantic"
            ).values()
        }
        batch = session.scalars(select(IngestionBatch)).one()
        start = datetime(2026, 10, 3, 9, tzinfo=UTC)
        labels = {"goog-k8s-cluster-name": "atlantic"}
        session.add(_line(batch.id, 99, start, "compute", Decimal("0.00000000010"), labels))
        for hub, user in (("ocean", "alice"), ("ocean", "bob"), ("climate", "carol")):
            session.add(_usage(batch.id, hubs[hub], installed.users[user], hub, start, 1))
    hubmeter(installed, "attribute", "--start", "2026-10-01", "--end", "2026-10-04")
    return installed


PLAIN_DECIMAL = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
AMOUNT_KEYS = {
    "amount", "net_cost", "whole", "units", "of_units", "driver_units", "capacity_units",
    "cost_lines_net_cost_now", "recomputed_amount", "cost_total", "allocated_total",
    "unattributed_total", "estimated_total",
}  # fmt: skip


def amounts_in(document: object) -> Iterator[str]:
    """Every amount or driver-unit value in a JSON document."""
    if isinstance(document, list):
        for value in document:
            yield from amounts_in(value)
    elif isinstance(document, dict):
        for key, value in document.items():
            if key in AMOUNT_KEYS and value is not None:
                assert isinstance(value, str), (key, value)
                yield value
            elif key in {"by_community", "unattributed_by_reason"}:
                yield from value.values()
            else:
                yield from amounts_in(value)


def test_the_api_writes_tiny_amounts_without_exponents(tiny: Installed) -> None:
    factory = make_sessionmaker(tiny.engine)
    with transaction(factory) as session:
        token = {
            role: token_service.create_token(
                session=session,
                name=role.value,
                role=role,
                community_id="ocean-lab" if role == Role.viewer else None,
                created_by="test",
                now=NOW,
            )[1]
            for role in (Role.viewer, Role.finance)
        }
    client = TestClient(create_app(Settings(), engine=tiny.engine))

    def get(path: str, role: Role) -> object:
        response = client.get(path, headers={"Authorization": f"Bearer {token[role]}"})
        assert response.status_code == 200, response.text
        return response.json()

    page = get("/api/v1/allocations?day=2026-10-03", Role.viewer)
    assert isinstance(page, dict)
    listed = page["allocations"]
    amounts = {a["user"]: a["amount"] for a in listed}
    assert amounts == {"alice": "0.00000000004", "bob": "0.00000000003"}
    [alice] = [a for a in listed if a["user"] == "alice"]
    explanation = get(f"/api/v1/allocations/{alice['id']}/explanation", Role.viewer)
    assert isinstance(explanation, dict)
    assert explanation["allocation"]["amount"] == "0.00000000004"
    assert explanation["recomputed_amount"] == "0.00000000004"
    assert explanation["pool"]["net_cost"] == "0.00000000010"
    assert explanation["cost_lines"][0]["net_cost"] == "0.00000000010"
    hub_step, user_step = explanation["periods"][0]["steps"]
    assert (hub_step["whole"], hub_step["amount"]) == ("0.00000000010", "0.00000000007")
    assert (user_step["whole"], user_step["amount"]) == ("0.00000000007", "0.00000000004")
    documents = [listed, explanation, get("/api/v1/attribution/runs", Role.finance)]
    documents.append(get("/api/v1/attribution/runs/1", Role.finance))
    written = [value for document in documents for value in amounts_in(document)]
    assert len(written) > 20
    assert [v for v in written if not PLAIN_DECIMAL.match(v)] == []
