"""The synthetic cluster generator: deterministic, well-formed, and its truth is what its files say.

The truth is checked against an independent recomputation from the parsed OpenMetrics samples and
the parsed bill files, using the formulas of the generator's contract rather than its code.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import string
import tracemalloc
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import escapism
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from prometheus_client.samples import Sample, Timestamp
from typer.testing import CliRunner

from app.config import HubmeterConfig, load_config
from app.synthetic import Manifest, ScenarioSpec, generate, read_manifest
from app.synthetic.cli import app as generate_cli

pytestmark = pytest.mark.unit

SMALL = ScenarioSpec(
    hubs=3,
    users_per_hub=6,
    days=2,
    clusters=2,
    seed=7,
    scrape_interval_seconds=300,
    storage_interval_seconds=900,
    gpu_hub_every=3,
)
HOUR = 3600
FAMILIES = {
    "kube_node_labels": "gauge",
    "kube_pod_labels": "gauge",
    "kube_pod_annotations": "gauge",
    "kube_pod_container_resource_requests": "gauge",
    "container_cpu_usage_seconds": "counter",
    "container_memory_working_set_bytes": "gauge",
    "dirsize_total_size_bytes": "gauge",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return generate(SMALL, tmp_path_factory.mktemp("small"))


@dataclass
class Parsed:
    """One cluster's OpenMetrics file, parsed by prometheus_client."""

    types: dict[str, str]
    families: dict[str, list[Sample]]

    def samples(self, family: str) -> list[Sample]:
        return self.families[family]


@pytest.fixture(scope="module")
def parsed(small: Manifest) -> dict[str, Parsed]:
    result = {}
    for cluster, path in small.openmetrics_files.items():
        text = path.read_text(encoding="utf-8")
        families = list(text_string_to_metric_families(text))  # type: ignore[no-untyped-call]
        result[cluster] = Parsed(
            types={family.name: family.type for family in families},
            families={family.name: list(family.samples) for family in families},
        )
    return result


@pytest.fixture(scope="module")
def config(small: Manifest) -> HubmeterConfig:
    return load_config(small.config_file)


def _seconds(sample: Sample) -> int:
    assert isinstance(sample.timestamp, Timestamp)
    return int(sample.timestamp.sec)


def _exact(value: float) -> Decimal:
    # The parser gives floats; the files hold at most three decimals, which repr() keeps.
    return Decimal(repr(value))


# --- determinism --------------------------------------------------------------------------


def _file_bytes(out_dir: Path) -> dict[str, bytes]:
    return {
        path.relative_to(out_dir).as_posix(): path.read_bytes()
        for path in sorted(out_dir.rglob("*"))
        if path.is_file()
    }


def test_the_same_seed_writes_the_same_bytes(small: Manifest, tmp_path: Path) -> None:
    again = generate(SMALL, tmp_path / "again")
    assert _file_bytes(again.out_dir) == _file_bytes(small.out_dir)


def test_another_seed_writes_other_data(small: Manifest, tmp_path: Path) -> None:
    other = generate(ScenarioSpec(**{**SMALL.__dict__, "seed": SMALL.seed + 1}), tmp_path)
    original, changed = _file_bytes(small.out_dir), _file_bytes(other.out_dir)
    assert original.keys() == changed.keys()
    for name in ("usage-atlantic.om", "gcp-billing-export.jsonl", "truth/usage_hourly.csv"):
        assert original[name] != changed[name], name


def test_the_manifest_reads_back(small: Manifest) -> None:
    assert read_manifest(small.out_dir) == small
    document = json.loads((small.out_dir / "manifest.json").read_text())
    assert document["period_start"] == "2026-10-01T00:00:00Z"
    assert document["period_end"] == "2026-10-03T00:00:00Z"
    assert document["files"]["openmetrics_files"] == {
        "atlantic": "usage-atlantic.om",
        "pacific": "usage-pacific.om",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"scrape_interval_seconds": 7},
        {"storage_interval_seconds": 7200},
        {"days": 0},
        {"late_cost_fraction": 1.5},
        {"cost_rows_per_hour": 0},
    ],
)
def test_impossible_specs_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(change))):
        ScenarioSpec(**change)


# --- the OpenMetrics files ----------------------------------------------------------------


def test_openmetrics_parses_with_the_expected_families(parsed: dict[str, Parsed]) -> None:
    for cluster in parsed.values():
        assert cluster.types == FAMILIES
        assert all(cluster.families.values())
        assert {s.name for s in cluster.samples("container_cpu_usage_seconds")} == {
            "container_cpu_usage_seconds_total"
        }


def test_series_are_contiguous_time_ordered_and_on_the_grid(small: Manifest) -> None:
    start = int(small.period_start.timestamp())
    end = int(small.period_end.timestamp())
    for path in small.openmetrics_files.values():
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[-1] == "# EOF"
        finished: set[str] = set()
        current, last_time = "", -1
        for line in lines:
            if line.startswith("#"):
                continue
            series, value, timestamp = line.rsplit(" ", 2)
            at = int(timestamp)
            step = (
                SMALL.storage_interval_seconds
                if series.startswith("dirsize")
                else SMALL.scrape_interval_seconds
            )
            assert start <= at < end, line
            assert at % step == 0, line
            if series != current:
                assert series not in finished, f"series written in two places: {series}"
                finished.add(current)
                current, last_time = series, -1
            assert at > last_time, line
            last_time = at
            if series.startswith("container_cpu_usage_seconds_total"):
                assert len(value.partition(".")[2]) <= 3, line


def test_counters_start_near_zero_and_never_decrease(parsed: dict[str, Parsed]) -> None:
    for cluster in parsed.values():
        by_series = _series(cluster.samples("container_cpu_usage_seconds"))
        for values in by_series.values():
            counters = [_exact(s.value) for s in values]
            assert counters[0] < 5
            assert counters == sorted(counters)


def _series(samples: list[Sample]) -> dict[tuple[tuple[str, str], ...], list[Sample]]:
    grouped: dict[tuple[tuple[str, str], ...], list[Sample]] = defaultdict(list)
    for sample in samples:
        grouped[tuple(sorted(sample.labels.items()))].append(sample)
    return grouped


# --- the usage truth, recomputed from the samples ------------------------------------------

QUANTITIES = (
    "server_seconds",
    "memory_request_byte_seconds",
    "cpu_request_core_seconds",
    "memory_usage_byte_seconds",
    "cpu_usage_core_seconds",
    "gpu_request_seconds",
    "home_storage_byte_seconds",
)
Key = tuple[str, str, str, str, str]  # cluster, namespace, hub, username, hour


def _truth_rows(manifest: Manifest) -> list[dict[str, str]]:
    with manifest.usage_truth_file.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def _escaped(username: str) -> str:
    safe = set(string.ascii_lowercase + string.digits)
    return str(escapism.escape(username, safe=safe, escape_char="-")).lower()


def _iso_hour(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _recompute(
    cluster_name: str,
    cluster: Parsed,
    hubs_by_namespace: dict[str, str],
    owners: set[tuple[str, str]],
) -> dict[Key, dict[str, Decimal]]:
    step = SMALL.scrape_interval_seconds
    sums: dict[Key, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))

    def key(namespace: str, username: str, at: int) -> Key:
        hour = at - at % HOUR
        return (
            cluster_name,
            namespace,
            hubs_by_namespace.get(namespace, ""),
            username,
            _iso_hour(hour),
        )

    singleuser = {
        (s.labels["namespace"], s.labels["uid"])
        for s in cluster.samples("kube_pod_labels")
        if s.labels["label_component"] == "singleuser-server"
    }
    username_of = {
        (s.labels["namespace"], s.labels["uid"]): s.labels["annotation_hub_jupyter_org_username"]
        for s in cluster.samples("kube_pod_annotations")
        if (s.labels["namespace"], s.labels["uid"]) in singleuser
    }
    for s in cluster.samples("kube_pod_container_resource_requests"):
        pod = (s.labels["namespace"], s.labels["uid"])
        if pod not in singleuser:
            continue
        row = sums[key(pod[0], username_of[pod], _seconds(s))]
        value = _exact(s.value) * step
        match s.labels["resource"]:
            case "memory":
                row["server_seconds"] += step
                row["memory_request_byte_seconds"] += value
            case "cpu":
                row["cpu_request_core_seconds"] += value
            case "nvidia_com_gpu":
                row["gpu_request_seconds"] += value

    def cadvisor_pod(sample: Sample) -> tuple[str, str] | None:
        uid = sample.labels["id"].split("/")[3].removeprefix("pod")
        pod = (sample.labels["namespace"], uid)
        return pod if pod in singleuser and sample.labels["container"] == "notebook" else None

    for s in cluster.samples("container_memory_working_set_bytes"):
        if (notebook := cadvisor_pod(s)) is not None:
            row = sums[key(notebook[0], username_of[notebook], _seconds(s))]
            row["memory_usage_byte_seconds"] += _exact(s.value) * step
    for series in _series(cluster.samples("container_cpu_usage_seconds")).values():
        if (notebook := cadvisor_pod(series[0])) is None:
            continue
        last_by_hour: dict[int, Decimal] = {}
        for s in series:
            last_by_hour[_seconds(s) // HOUR] = _exact(s.value)
        for hour, last in last_by_hour.items():
            used = last - last_by_hour.get(hour - 1, Decimal(0))
            row = sums[key(notebook[0], username_of[notebook], hour * HOUR)]
            row["cpu_usage_core_seconds"] += used

    directory_owner = {(ns, "_shared" if u == "_shared" else _escaped(u)): u for ns, u in owners}
    for series in _series(cluster.samples("dirsize_total_size_bytes")).values():
        labels = series[0].labels
        username = directory_owner[(labels["namespace"], labels["directory"])]
        by_hour: dict[int, list[Decimal]] = defaultdict(list)
        for s in series:
            by_hour[_seconds(s) // HOUR].append(_exact(s.value))
        for hour, values in by_hour.items():
            mean_times_hour = sum(values, Decimal(0)) * HOUR / len(values)
            sums[key(labels["namespace"], username, hour * HOUR)]["home_storage_byte_seconds"] = (
                mean_times_hour.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
            )
    return sums


def test_usage_truth_is_what_the_samples_imply(
    small: Manifest, parsed: dict[str, Parsed], config: HubmeterConfig
) -> None:
    rows = _truth_rows(small)
    hubs_by_namespace = {hub.k8s_namespace: hub.name for hub in config.hubs}
    expected: dict[Key, tuple[Decimal, ...]] = {}
    for cluster_name, cluster in parsed.items():
        owners = {(r["namespace"], r["username"]) for r in rows if r["cluster"] == cluster_name}
        for key, quantities in _recompute(cluster_name, cluster, hubs_by_namespace, owners).items():
            values = tuple(quantities.get(name, Decimal(0)) for name in QUANTITIES)
            if any(values):
                expected[key] = values
    actual = {
        (r["cluster"], r["namespace"], r["hub"], r["username"], r["hour"]): tuple(
            Decimal(r[name]) for name in QUANTITIES
        )
        for r in rows
    }
    assert actual == expected
    assert len(rows) == small.usage_truth_rows


def test_usage_truth_is_sorted_and_plain(small: Manifest) -> None:
    rows = _truth_rows(small)
    keys = [(r["cluster"], r["namespace"], r["username"], r["hour"]) for r in rows]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    for row in rows:
        for name in QUANTITIES:
            assert "e" not in row[name].lower(), row


# --- the awkward cases every scenario must contain -----------------------------------------


def test_awkward_usernames_are_present(small: Manifest) -> None:
    usernames = {r["username"] for r in _truth_rows(small)}
    assert any("@" in u and u != u.lower() for u in usernames), "e-mail with capitals"
    assert {"josé", "李雷"} <= usernames or {"zoë", "李雷"} <= usernames
    for character in "._-\\":
        assert any(character in u for u in usernames if u != "_shared"), character
    assert any(u.isascii() and u.isalnum() and u.islower() for u in usernames), "plain names"


def test_truncated_labels_collide_for_two_users(parsed: dict[str, Parsed]) -> None:
    for cluster in parsed.values():
        users_by_label: dict[tuple[str, str], set[str]] = defaultdict(set)
        raw = {
            (s.labels["namespace"], s.labels["uid"]): s.labels[
                "annotation_hub_jupyter_org_username"
            ]
            for s in cluster.samples("kube_pod_annotations")
            if "annotation_hub_jupyter_org_username" in s.labels
        }
        for s in cluster.samples("kube_pod_labels"):
            if "label_hub_jupyter_org_username" in s.labels:
                label = s.labels["label_hub_jupyter_org_username"]
                assert len(label) <= 63
                users_by_label[(s.labels["namespace"], label)].add(
                    raw[(s.labels["namespace"], s.labels["uid"])]
                )
        colliding = [users for users in users_by_label.values() if len(users) > 1]
        assert colliding
        assert all(len(_escaped(u)) > 63 for users in colliding for u in users)


def test_short_pods_cross_midnight_pods_and_idle_users(
    small: Manifest, parsed: dict[str, Parsed]
) -> None:
    for cluster in parsed.values():
        times_by_pod: dict[tuple[str, str], list[int]] = defaultdict(list)
        for s in cluster.samples("kube_pod_container_resource_requests"):
            if s.labels["resource"] == "memory" and s.labels["pod"].startswith("jupyter-"):
                times_by_pod[(s.labels["namespace"], s.labels["uid"])].append(_seconds(s))
        assert any(len(times) == 1 for times in times_by_pod.values()), "a pod of one scrape"
        assert any(times[0] // 86_400 != times[-1] // 86_400 for times in times_by_pod.values()), (
            "a pod across midnight"
        )
        pod_names = {s.labels["pod"] for s in cluster.samples("kube_pod_labels")}
        assert any(p.startswith("hub-") for p in pod_names)
        assert any(p.startswith("proxy-") for p in pod_names)
        assert any(p.startswith("support-prometheus-server-") for p in pod_names)
    active: dict[tuple[str, str, str], int] = defaultdict(int)
    for row in _truth_rows(small):
        active[(row["cluster"], row["namespace"], row["username"])] += int(row["server_seconds"])
    assert any(seconds == 0 for seconds in active.values()), "a user who never starts a server"


def test_gpu_hubs_request_gpus(parsed: dict[str, Parsed]) -> None:
    gpu = [
        s
        for s in parsed["atlantic"].samples("kube_pod_container_resource_requests")
        if s.labels["resource"] == "nvidia_com_gpu"
    ]
    assert gpu
    assert all(s.value == 1 and s.labels["unit"] == "integer" for s in gpu)


# --- the configuration ---------------------------------------------------------------------


def test_the_config_validates_and_matches_the_files(
    small: Manifest, config: HubmeterConfig, parsed: dict[str, Parsed]
) -> None:
    assert [c.name for c in config.clusters] == ["atlantic", "pacific"]
    for cluster in config.clusters:
        assert cluster.openmetrics_file == small.openmetrics_files[cluster.name]
        assert cluster.costs.projects == [f"{cluster.name}-project"]
        assert cluster.costs.labels == {"goog-k8s-cluster-name": cluster.name}
        assert cluster.scrape_interval_seconds == SMALL.scrape_interval_seconds
    assert len(config.hubs) == SMALL.clusters * SMALL.hubs
    hubs_per_community: dict[str, int] = defaultdict(int)
    for hub in config.hubs:
        hubs_per_community[hub.community] += 1
    assert max(hubs_per_community.values()) >= 2
    assert any(hub.dedicated.projects for hub in config.hubs)
    assert any(hub.monthly_budget is not None for hub in config.hubs)
    assert any(hub.k8s_namespace != hub.name for hub in config.hubs)
    listed = {(hub.cluster, hub.k8s_namespace) for hub in config.hubs}
    for cluster_name, metrics in parsed.items():
        namespaces = {
            s.labels["namespace"]
            for s in metrics.samples("kube_pod_labels")
            if s.labels["label_component"] == "singleuser-server"
        }
        unlisted = {ns for ns in namespaces if (cluster_name, ns) not in listed}
        assert len(unlisted) == 1


# --- the bill ------------------------------------------------------------------------------


def _export_rows(manifest: Manifest) -> Iterator[dict[str, Any]]:
    with manifest.billing_export_file.open(encoding="utf-8") as stream:
        for line in stream:
            yield json.loads(line, parse_float=Decimal)


def _net(row: dict[str, Any]) -> Decimal:
    return Decimal(row["cost"]) + sum((Decimal(c["amount"]) for c in row["credits"]), Decimal(0))


def _focus_rows(manifest: Manifest) -> list[dict[str, str]]:
    with manifest.focus_file.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def _cost_truth(manifest: Manifest) -> list[dict[str, str]]:
    with manifest.cost_truth_file.open(encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def test_export_and_focus_describe_the_same_charges(small: Manifest) -> None:
    export: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for row in _export_rows(small):
        project = row["project"]["id"] if row["project"] else ""
        export[(row["usage_start_time"][:10], project, row["sku"]["id"])] += _net(row)
        for amount in [row["cost"], *(c["amount"] for c in row["credits"])]:
            exponent = Decimal(amount).as_tuple().exponent
            assert isinstance(exponent, int)
            assert exponent >= -6
    focus: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for row in _focus_rows(small):
        focus[(row["ChargePeriodStart"][:10], row["SubAccountId"], row["SkuId"])] += Decimal(
            row["BilledCost"]
        )
    assert focus == export


def test_cost_truth_adds_up_to_the_bill(small: Manifest) -> None:
    export_by_day: dict[str, Decimal] = defaultdict(Decimal)
    for row in _export_rows(small):
        export_by_day[row["usage_start_time"][:10]] += _net(row)
    truth_by_day: dict[str, Decimal] = defaultdict(Decimal)
    for row in _cost_truth(small):
        truth_by_day[row["day"]] += Decimal(row["net_cost"])
    assert truth_by_day == export_by_day
    assert sum(export_by_day.values()) == small.total_net_cost


def test_cost_truth_classes_follow_the_default_policy(
    small: Manifest, config: HubmeterConfig
) -> None:
    """Direct by hub label or dedicated project, shared by cluster label or project, else not."""
    hub_cluster = {hub.name: hub.cluster for hub in config.hubs}
    dedicated = {p: hub for hub in config.hubs for p in hub.dedicated.projects}
    cluster_projects = {p: c.name for c in config.clusters for p in c.costs.projects}
    expected: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
    for row in _export_rows(small):
        labels = {label["key"]: label["value"] for label in row["labels"]}
        project = row["project"]["id"] if row["project"] else ""
        day = row["usage_start_time"][:10]
        if "2i2c:hub-name" in labels:
            hub = labels["2i2c:hub-name"]
            key = (day, hub_cluster[hub], "direct", hub)
        elif project in dedicated:
            key = (day, dedicated[project].cluster, "direct", dedicated[project].name)
        elif "goog-k8s-cluster-name" in labels:
            key = (day, labels["goog-k8s-cluster-name"], "shared", "")
        elif project in cluster_projects:
            key = (day, cluster_projects[project], "shared", "")
        else:
            key = (day, "", "unattributed", "")
        expected[key] += _net(row)
    actual: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
    for row in _cost_truth(small):
        actual[(row["day"], row["cluster"], row["class"], row["hub"])] += Decimal(row["net_cost"])
    assert actual == expected
    components = {row["component"] for row in _cost_truth(small)}
    assert components == {
        "compute", "home_storage", "object_storage", "networking", "core", "support", "other"
    }  # fmt: skip


def test_bill_has_credits_taxes_adjustments_and_late_rows(small: Manifest) -> None:
    rows = list(_export_rows(small))
    assert {row["cost_type"] for row in rows} == {"regular", "tax", "adjustment"}
    assert any(c["type"] == "SUSTAINED_USAGE_DISCOUNT" for row in rows for c in row["credits"])
    assert {row["invoice"]["month"] for row in rows} == {"202610"}
    late = 0
    for row in rows:
        exported = _bigquery_time(row["export_time"])
        used = _bigquery_time(row["usage_end_time"])
        assert exported > used
        late += exported - used > dt.timedelta(days=1)
    assert 0 < late < len(rows) * 0.2
    categories = {row["ChargeCategory"] for row in _focus_rows(small)}
    assert categories == {"Usage", "Credit", "Tax", "Adjustment"}


def _bigquery_time(text: str) -> dt.datetime:
    """`2026-10-02 04:13:08.123456 UTC` or without the fraction."""
    moment = text.removesuffix(" UTC") + "+0000"
    if "." in moment:
        return dt.datetime.strptime(moment, "%Y-%m-%d %H:%M:%S.%f%z")
    return dt.datetime.strptime(moment, "%Y-%m-%d %H:%M:%S%z")


def test_cost_rows_per_hour_scales_the_bill_with_per_node_rows(tmp_path: Path) -> None:
    spec = ScenarioSpec(hubs=3, users_per_hub=5, days=1, scrape_interval_seconds=600,
                        cost_rows_per_hour=120)  # fmt: skip
    manifest = generate(spec, tmp_path)
    assert 0.8 * 120 <= manifest.bill_rows / spec.days / 24 <= 1.2 * 120
    nodes = {
        row["resource"]["name"] for row in _export_rows(manifest) if row["resource"] is not None
    }
    node_labels = manifest.openmetrics_files["atlantic"].read_text(encoding="utf-8")
    assert len(nodes) > 40
    assert all(f'node="{node}"' in node_labels for node in nodes)


# --- scale and the command line ------------------------------------------------------------


def test_a_moderate_run_keeps_memory_flat(tmp_path: Path) -> None:
    """1,000 users: nothing sample-sized may stay in memory (tracemalloc is slow, so the period is
    short and the scrapes sparse; the peak does not depend on either)."""
    spec = ScenarioSpec(hubs=20, users_per_hub=50, days=2, scrape_interval_seconds=600,
                        storage_interval_seconds=3600)  # fmt: skip
    tracemalloc.start()
    try:
        generate(spec, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    written = sum(path.stat().st_size for path in tmp_path.rglob("*") if path.is_file())
    assert written > 20 * 1024**2
    assert peak < 16 * 1024**2, f"peak {peak / 1024**2:.1f} MiB"


def test_the_command_writes_a_scenario(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        generate_cli,
        ["--out", str(tmp_path), "--hubs", "2", "--users-per-hub", "3", "--days", "1",
         "--start", "2026-11-30", "--no-annotations", "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "usage:" in result.output
    manifest = read_manifest(tmp_path)
    assert manifest.spec.start == dt.date(2026, 11, 30)
    assert "kube_pod_annotations" not in manifest.openmetrics_files["atlantic"].read_text()
