"""Attribution of a generated cluster against the generator's ground truth, on both databases.

The usage truth (`truth/usage_hourly.csv`) becomes usage rows and the GCP billing export becomes
cost lines (with a small loader here: the real ingestion is tested elsewhere). The default policy
then implies, hour by hour, an exact rational share of every shared charge for every hub and
user; the allocations must match it to within the rounding of the splits, the classes of cost
must match `truth/costs_daily.csv` exactly, and every day must add up exactly.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.attribution import service
from app.attribution.models import Allocation, AllocationPool, AttributionDay
from app.attribution.rules import Period
from app.config import HubmeterConfig, load_config
from app.costs.models import CostLine
from app.hubs import service as hub_service
from app.hubs.models import HubUser
from app.ingestion.models import IngestionBatch
from app.synthetic import Manifest, ScenarioSpec, generate
from app.synthetic import catalog as synthetic_catalog
from app.usage.models import UsageHour

NOW = datetime(2026, 11, 2, tzinfo=UTC)
QUANTUM = Fraction(1, 10**11)  # the split precision of amounts with six decimals
HUB_LABEL = "2i2c:hub-name"
USAGE_FIELDS = (
    "server_seconds",
    "memory_request_byte_seconds",
    "cpu_request_core_seconds",
    "memory_usage_byte_seconds",
    "cpu_usage_core_seconds",
    "gpu_request_seconds",
    "home_storage_byte_seconds",
)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    spec = ScenarioSpec(hubs=5, users_per_hub=6, days=2, seed=7, gpu_hub_every=3)
    return generate(spec, tmp_path_factory.mktemp("scenario"))


@dataclass
class Loaded:
    config: HubmeterConfig
    hub_ids: dict[str, int]  # hub name -> id
    user_ids: dict[tuple[str, str], int]  # (hub, username) -> id
    usage: list[dict[str, Any]]  # the truth rows, parsed
    lines: list[dict[str, Any]]  # the bill rows, parsed


def _component_of_sku() -> dict[str, str]:
    skus = [v for v in vars(synthetic_catalog).values() if isinstance(v, synthetic_catalog.Sku)]
    for pair in synthetic_catalog.INSTANCE_SKUS.values():
        skus.extend(pair)
    return {sku.id: sku.component.value for sku in skus}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace(" UTC", "+00:00").replace("Z", "+00:00"))


def load_scenario(session: Session, manifest: Manifest) -> Loaded:
    config = load_config(manifest.config_file)
    hub_service.sync_from_config(session=session, config=config, now=NOW)
    batch = IngestionBatch(
        kind="usage",
        source="truth",
        window_start=manifest.period_start,
        window_end=manifest.period_end,
        started_at=NOW,
        finished_at=NOW,
        stats={},
    )
    session.add(batch)
    session.flush()
    namespaces = {
        (h.cluster, h.k8s_namespace): h.name for h in config.hubs
    }  # the configuration's namespaces
    hubs: dict[str, int] = {}
    for cluster in config.clusters:
        for hub in hub_service.hubs_by_namespace(
            session=session, cluster_name=cluster.name
        ).values():
            hubs[hub.name] = hub.id

    with manifest.usage_truth_file.open(encoding="utf-8") as stream:
        usage: list[dict[str, Any]] = [
            {**row, **{f: Decimal(row[f]) for f in USAGE_FIELDS}, "hour": _utc(row["hour"])}
            for row in csv.DictReader(stream)
        ]
    people: list[tuple[str, str]] = sorted(
        {
            (row["hub"], row["username"])
            for row in usage
            if row["hub"] and row["username"] != "_shared"
        }
    )
    users = [HubUser(hub_id=hubs[hub], username=name, first_seen_at=NOW) for hub, name in people]
    session.add_all(users)
    session.flush()
    user_ids = {
        (hubs_name, user.username): user.id
        for (hubs_name, _), user in zip(people, users, strict=True)
    }

    usage_rows = []
    for row in usage:
        hub_name = namespaces.get((row["cluster"], row["namespace"]))
        assert (hub_name or "") == row["hub"], "the truth and the configuration agree on hubs"
        usage_rows.append(
            {
                "batch_id": batch.id,
                "cluster_name": row["cluster"],
                "namespace": row["namespace"],
                "hub_id": hubs[hub_name] if hub_name else None,
                # The shared directory is the hub's own storage, not a person's.
                "user_id": user_ids[(hub_name, row["username"])]
                if hub_name and row["username"] != "_shared"
                else None,
                "hour": row["hour"],
                **{f: row[f] for f in USAGE_FIELDS},
            }
        )
    session.execute(insert(UsageHour), usage_rows)

    components = _component_of_sku()
    lines = []
    with manifest.billing_export_file.open(encoding="utf-8") as stream:
        for number, text in enumerate(stream, start=1):
            raw = json.loads(text, parse_float=Decimal)
            credits = sum((Decimal(c["amount"]) for c in raw["credits"]), Decimal(0))
            lines.append(
                {
                    "batch_id": batch.id,
                    "source": "gcp-billing-export.jsonl",
                    "source_row": str(number),
                    "provider": "gcp",
                    "billing_account_id": raw["billing_account_id"],
                    "sub_account_id": raw["project"]["id"] if raw["project"] else None,
                    "service_name": raw["service"]["description"],
                    "sku_id": raw["sku"]["id"],
                    "sku_description": raw["sku"]["description"],
                    "charge_period_start": _utc(raw["usage_start_time"]),
                    "charge_period_end": _utc(raw["usage_end_time"]),
                    "charge_category": "usage",
                    "billed_cost": Decimal(raw["cost"]),
                    "credits": credits,
                    "net_cost": Decimal(raw["cost"]) + credits,
                    "currency": raw["currency"],
                    "consumed_quantity": Decimal(raw["usage"]["amount"]),
                    "consumed_unit": raw["usage"]["unit"],
                    "component": components[raw["sku"]["id"]],
                    "labels": {label["key"]: label["value"] for label in raw["labels"]},
                    "extra": {},
                    "estimated": False,
                    "is_correction": False,
                }
            )
    session.execute(insert(CostLine), lines)
    session.flush()
    return Loaded(config, hubs, user_ids, usage, lines)


def expected_allocations(loaded: Loaded) -> dict[tuple[date, str, str, str], Fraction]:
    """What the default policy implies, exactly: (day, hub or reason, user, component) -> amount.

    Written from the policy's statement, not from the implementation: shared charges (the
    cluster's project, no hub label) split by memory requests (GPU SKUs by GPU time, home
    storage by bytes stored) across the cluster's namespaces in their hour; inside a hub,
    compute and home storage across users by the same driver, the rest at hub level."""
    config = loaded.config
    projects = {p: c.name for c in config.clusters for p in c.costs.projects}
    dedicated = {p: h.name for h in config.hubs for p in h.dedicated.projects}
    units: dict[tuple[str, datetime, str], dict[tuple[str, str], Fraction]] = defaultdict(
        lambda: defaultdict(Fraction)
    )
    for row in loaded.usage:
        hub = row["hub"] or f"unattributed:namespace-without-hub:{row['namespace']}"
        user = row["username"] if row["hub"] and row["username"] != "_shared" else ""
        for driver, field in (
            ("memory", "memory_request_byte_seconds"),
            ("gpu", "gpu_request_seconds"),
            ("storage", "home_storage_byte_seconds"),
        ):
            if row[field]:
                units[(row["cluster"], row["hour"], driver)][(hub, user)] += Fraction(row[field])

    expected: dict[tuple[date, str, str, str], Fraction] = defaultdict(Fraction)
    for line in loaded.lines:
        hour, component = line["charge_period_start"], line["component"]
        day, net = hour.date(), Fraction(line["net_cost"])
        driver = (
            "storage"
            if component == "home_storage"
            else "gpu"
            if "GPU" in line["sku_description"]
            else "memory"
        )
        hub = line["labels"].get(HUB_LABEL) or dedicated.get(line["sub_account_id"])
        cluster = projects.get(line["sub_account_id"])
        if hub is not None:
            cluster = next(h.cluster for h in config.hubs if h.name == hub)
            shares = {(hub, ""): Fraction(1)}
        elif cluster is not None:
            weights = units[(cluster, hour, driver)]
            total = sum(weights.values(), Fraction(0))
            if not total:
                expected[(day, "unattributed:no-usage", "", component)] += net
                continue
            by_hub: dict[str, Fraction] = defaultdict(Fraction)
            for (weight_hub, _), weight in weights.items():
                by_hub[weight_hub] += weight / total
            shares = {(h, ""): share for h, share in by_hub.items()}
        else:
            expected[(day, "unattributed:no-match", "", component)] += net
            continue
        for (share_hub, _), share in shares.items():
            part = net * share
            if share_hub.startswith("unattributed:"):
                expected[(day, "unattributed:namespace-without-hub", "", component)] += part
                continue
            if component not in ("compute", "home_storage"):
                expected[(day, share_hub, "", component)] += part
                continue
            users = {
                user: weight
                for (weight_hub, user), weight in units[(cluster, hour, driver)].items()
                if weight_hub == share_hub
            }
            user_total = sum(users.values(), Fraction(0))
            if not user_total:
                expected[(day, share_hub, "", component)] += part
                continue
            for user, weight in users.items():
                expected[(day, share_hub, user, component)] += part * weight / user_total
    return expected


def allocated(session: Session, loaded: Loaded) -> dict[tuple[date, str, str, str], Decimal]:
    hub_names = {v: k for k, v in loaded.hub_ids.items()}
    user_names = {v: k[1] for k, v in loaded.user_ids.items()}
    out: dict[tuple[date, str, str, str], Decimal] = defaultdict(Decimal)
    query = select(Allocation).join(
        AttributionDay,
        (AttributionDay.day == Allocation.day) & (AttributionDay.run_id == Allocation.run_id),
    )
    for a in session.scalars(query):
        who = hub_names[a.hub_id] if a.hub_id is not None else a.rule
        user = user_names[a.user_id] if a.user_id is not None else ""
        out[(a.day, who, user, a.component)] += a.amount
    return out


def test_allocations_match_the_ground_truth(session: Session, scenario: Manifest) -> None:
    loaded = load_scenario(session, scenario)
    period = Period(scenario.period_start.date(), scenario.period_end.date())
    report = service.attribute_period(
        session=session, config=loaded.config, period=period, now=NOW, created_by="test"
    )

    # Every day adds up to the generated bill, exactly.
    truth_by_day: dict[date, Decimal] = defaultdict(Decimal)
    truth_by_class: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
    with scenario.cost_truth_file.open(encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            day = date.fromisoformat(row["day"])
            truth_by_day[day] += Decimal(row["net_cost"])
            truth_by_class[(row["day"], row["class"], row["hub"], row["component"])] += Decimal(
                row["net_cost"]
            )
    assert {d.day: d.allocated for d in report.days} == truth_by_day
    assert {d.day: d.cost for d in report.days} == truth_by_day
    assert report.cost_total == scenario.total_net_cost
    assert report.balanced

    # Each class of cost (direct per hub, shared per cluster, unattributed) is the truth's.
    hub_names = {v: k for k, v in loaded.hub_ids.items()}
    by_class: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
    for pool in session.scalars(
        select(AllocationPool).where(AllocationPool.run_id == report.run_id)
    ):
        hub = hub_names[pool.hub_id] if pool.hub_id is not None else ""
        by_class[(pool.day.isoformat(), pool.kind, hub, pool.component)] += pool.net_cost
    assert {k: v for k, v in by_class.items() if v} == {
        k: v for k, v in truth_by_class.items() if v
    }

    # Every hub's and user's part is the exact share the policy implies, to the split's rounding:
    # one unit per split, two splits (across hubs, then users) per hourly charge.
    expected = expected_allocations(loaded)
    actual = allocated(session, loaded)
    assert set(actual) <= set(expected)
    tolerance = 2 * 24 * QUANTUM
    for key, amount in expected.items():
        assert abs(Fraction(actual.get(key, Decimal(0))) - amount) <= tolerance, key
    users_with_compute = {k[2] for k in actual if k[2] and k[3] == "compute"}
    assert len(users_with_compute) > 10
    assert any(k[1] == "unattributed:namespace-without-hub" for k in actual)
    assert any(
        k[3] == "home_storage" and k[2] == "" and not k[1].startswith("unattributed")
        for k in actual
    )


def test_a_revised_bill_for_one_day_changes_only_that_day(
    session: Session, scenario: Manifest
) -> None:
    loaded = load_scenario(session, scenario)
    period = Period(scenario.period_start.date(), scenario.period_end.date())
    first = service.attribute_period(
        session=session, config=loaded.config, period=period, now=NOW, created_by="test"
    )
    second_day = period.start.replace(day=period.start.day + 1)
    revised = session.scalars(
        select(CostLine).where(
            CostLine.component == "home_storage",
            CostLine.charge_period_start
            == datetime.combine(second_day, datetime.min.time(), UTC).replace(hour=5),
        )
    ).one()
    revised.net_cost += Decimal("1.000000")
    session.flush()

    second = service.attribute_period(
        session=session, config=loaded.config, period=period, now=NOW, created_by="test"
    )
    assert second.days_with_new_inputs == [second_day]
    assert second.cost_total - first.cost_total == Decimal(1)
    moved = sum((c.difference for c in second.hub_changes), Decimal(0)) + sum(
        (c.difference for c in second.reason_changes), Decimal(0)
    )
    assert moved == Decimal(1)
    assert second.balanced


def test_the_generated_scenario_is_what_the_test_expects(scenario: Manifest) -> None:
    # The checks above rely on these features being present in the scenario.
    config = load_config(scenario.config_file)
    assert any(h.dedicated.projects for h in config.hubs)
    assert Path(scenario.billing_export_file).exists()
    with scenario.billing_export_file.open(encoding="utf-8") as stream:
        text = stream.read()
    assert "GPU" in text
    assert HUB_LABEL in text
