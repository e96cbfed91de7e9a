"""Explanations through the API: a community's viewer can check the arithmetic of its own
allocations, but a shared allocation's cost lines are the whole cluster's, so their projects,
labels and sources, and the operator's cost matching, are finance's to read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app import migrate
from app.attribution import service as attribution_service
from app.attribution.rules import Period
from app.auth import service as token_service
from app.auth.models import Role
from app.config import HubmeterConfig
from app.costs.models import CostLine
from app.hubs import service as hub_service
from app.hubs.models import Hub
from app.ingestion.models import IngestionBatch
from app.usage.models import UsageHour
from tests.api.conftest import make_app

NOW = datetime(2026, 10, 2, 9, 0, tzinfo=UTC)
HOUR = datetime(2026, 10, 1, 10, tzinfo=UTC)
GIB_HOUR = Decimal(2**30 * 3600)
# What of the cluster's other tenants and of the operator the ocean-lab viewer must not read.
NOT_FOR_VIEWERS = [
    "atlantic-project",  # the cluster's project, on the shared lines
    "support",  # another namespace's label
    "kube-system",
    "climate",  # the other community's hub, its label and its user
    "zed-secret-user",
    "gcp_billing_export",  # where the operator's bill lives
]


@dataclass
class Seeded:
    tokens: dict[str, str]
    shared_id: int  # alice's part of the cluster's shared compute
    direct_id: int  # ocean's object storage, labelled with its hub


def config() -> HubmeterConfig:
    return HubmeterConfig.model_validate(
        {
            "clusters": [
                {
                    "name": "atlantic",
                    "provider": "gcp",
                    "costs": {"projects": ["atlantic-project"]},
                }
            ],
            "communities": [
                {"id": cid, "name": cid, "billing_email": "b@x.org", "plan": "cost-recovery"}
                for cid in ("ocean-lab", "climate-school")
            ],
            "hubs": [
                {"name": "ocean", "cluster": "atlantic", "community": "ocean-lab"},
                {"name": "climate", "cluster": "atlantic", "community": "climate-school"},
            ],
        }
    )


def line(batch_id: int, row: int, amount: str, component: str, labels: dict[str, str]) -> CostLine:
    return CostLine(
        batch_id=batch_id,
        source="bigquery:billing.export.gcp_billing_export_v1_0A1B2C",
        source_row=f"row-{row}",
        estimated=False,
        provider="gcp",
        billing_account_id="0A1B2C",
        sub_account_id="atlantic-project",
        service_name="Compute Engine",
        sku_description="N2 Instance Ram running in Americas",
        charge_period_start=HOUR,
        charge_period_end=HOUR.replace(hour=11),
        charge_category="usage",
        billed_cost=Decimal(amount),
        credits=Decimal(0),
        net_cost=Decimal(amount),
        currency="USD",
        component=component,
        labels=labels,
    )


def seed(engine: Engine) -> Seeded:
    migrate.upgrade(engine)
    cfg = config()
    with Session(engine) as session:
        hub_service.sync_from_config(session=session, config=cfg, now=NOW)
        hubs = {hub.name: hub.id for hub in session.scalars(select(Hub))}
        users, _ = hub_service.get_or_create_users(
            session=session,
            wanted={(hubs["ocean"], "alice"), (hubs["climate"], "zed-secret-user")},
            now=NOW,
        )
        batches = [
            IngestionBatch(
                kind=kind,
                source=kind,
                window_start=HOUR,
                window_end=NOW,
                started_at=NOW,
                finished_at=NOW,
                stats={},
            )
            for kind in ("usage", "costs")
        ]
        session.add_all(batches)
        session.flush()
        for (hub_id, _), user_id in users.items():
            memory = 3 if hub_id == hubs["ocean"] else 1
            session.add(
                UsageHour(
                    batch_id=batches[0].id,
                    cluster_name="atlantic",
                    namespace="ocean" if hub_id == hubs["ocean"] else "climate",
                    hub_id=hub_id,
                    user_id=user_id,
                    hour=HOUR,
                    server_seconds=Decimal(3600),
                    memory_request_byte_seconds=memory * GIB_HOUR,
                    cpu_request_core_seconds=Decimal(0),
                    memory_usage_byte_seconds=Decimal(0),
                    cpu_usage_core_seconds=Decimal(0),
                    gpu_request_seconds=Decimal(0),
                    home_storage_byte_seconds=Decimal(0),
                )
            )
        cost = batches[1].id
        session.add_all(
            [
                line(cost, 1, "10", "compute", {"k8s-namespace": "support", "team": "climate"}),
                line(cost, 2, "2", "compute", {"k8s-namespace": "kube-system"}),
                line(cost, 3, "0.48", "object_storage", {"2i2c:hub-name": "ocean", "team": "sea"}),
            ]
        )
        attribution_service.attribute_period(
            session=session,
            config=cfg,
            period=Period(date(2026, 10, 1), date(2026, 10, 2)),
            now=NOW,
            created_by="test",
            note="re-run for climate-school's late credits",
        )
        (shared,), _ = attribution_service.find_allocations(
            session=session,
            day=date(2026, 10, 1),
            hub_id=hubs["ocean"],
            user_id=users[(hubs["ocean"], "alice")],
            component="compute",
        )
        (direct,), _ = attribution_service.find_allocations(
            session=session,
            day=date(2026, 10, 1),
            hub_id=hubs["ocean"],
            component="object_storage",
        )
        tokens = {}
        for role, community in (("viewer", "ocean-lab"), ("finance", None)):
            _, tokens[role] = token_service.create_token(
                session=session,
                name=role,
                role=Role(role),
                community_id=community,
                created_by="test",
                now=NOW,
            )
        session.commit()
    return Seeded(tokens, shared.id, direct.id)


@pytest.fixture
def seeded(fresh_engine: Engine) -> tuple[Engine, Seeded]:
    return fresh_engine, seed(fresh_engine)


def explain(engine: Engine, token: str, allocation_id: int) -> tuple[str, dict[str, Any]]:
    client = TestClient(make_app(engine), headers={"Authorization": f"Bearer {token}"})
    response = client.get(f"/api/v1/allocations/{allocation_id}/explanation?lines=100")
    assert response.status_code == 200, response.text
    return response.text, response.json()


def test_a_viewer_checks_its_shared_allocation_without_reading_the_cluster(
    seeded: tuple[Engine, Seeded],
) -> None:
    engine, world = seeded
    text, body = explain(engine, world.tokens["viewer"], world.shared_id)
    # ocean used 3 of the cluster's 4 GiB-hours: 3/4 of the 12 of shared compute, all alice's.
    assert Decimal(body["allocation"]["amount"]) == 9
    assert Decimal(body["recomputed_amount"]) == 9
    assert body["reproducible"]
    assert Decimal(body["pool"]["net_cost"]) == 12
    (period,) = body["periods"]
    hub_step = next(step for step in period["steps"] if step["stage"] == "hub")
    assert Decimal(hub_step["whole"]) == 12
    assert Decimal(hub_step["amount"]) == 9
    assert Decimal(hub_step["units"]) / Decimal(hub_step["of_units"]) == Decimal("0.75")
    lines = body["cost_lines"]
    assert sorted(Decimal(li["net_cost"]) for li in lines) == [2, 10]
    assert {li["sku"] for li in lines} == {"N2 Instance Ram running in Americas"}
    assert all(li["project"] is None and li["labels"] == {} for li in lines)
    assert all(li["source"] == "" and li["source_row"] == "" for li in lines)
    assert body["run"]["note"] is None
    assert "shared by cluster atlantic" in body["cost_line_filter"]
    for secret in NOT_FOR_VIEWERS:
        assert secret not in text, f"{secret!r} shown to a viewer"


def test_finance_reads_the_whole_explanation(seeded: tuple[Engine, Seeded]) -> None:
    engine, world = seeded
    _, viewer = explain(engine, world.tokens["viewer"], world.shared_id)
    _, body = explain(engine, world.tokens["finance"], world.shared_id)
    labels = sorted(li["labels"].get("k8s-namespace", "") for li in body["cost_lines"])
    assert labels == ["kube-system", "support"]
    assert {li["project"] for li in body["cost_lines"]} == {"atlantic-project"}
    assert all(li["source"].startswith("bigquery:") for li in body["cost_lines"])
    assert "atlantic-project" in body["cost_line_filter"]  # the cluster's cost matching
    assert body["run"]["note"] == "re-run for climate-school's late credits"
    # The same arithmetic for both.
    for key in ("allocation", "periods", "recomputed_amount", "cost_lines_net_cost_now"):
        assert body[key] == viewer[key]
    assert [li["net_cost"] for li in body["cost_lines"]] == [
        li["net_cost"] for li in viewer["cost_lines"]
    ]


def test_a_viewer_reads_its_own_hubs_direct_lines_whole(seeded: tuple[Engine, Seeded]) -> None:
    engine, world = seeded
    _, body = explain(engine, world.tokens["viewer"], world.direct_id)
    (only,) = body["cost_lines"]
    assert only["labels"] == {"2i2c:hub-name": "ocean", "team": "sea"}
    assert Decimal(only["net_cost"]) == Decimal("0.48")
    assert only["source"] == ""
