"""Hourly accuracy: what the samples of an hour imply, per user, exactly.

Each test writes the few series a case needs as kube-state-metrics, cAdvisor and the dirsize
exporter would export them, reads them with the OpenMetrics source and meters them. The
Prometheus source reports the same query results (tests/integration/test_usage_ingest.py checks
that the two give identical rows), so these cases hold for both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from app.usage.metering import (
    MeteredRow,
    Observations,
    aggregate_unmatched,
    meter,
    round_cpu,
)
from app.usage.openmetrics import read_openmetrics
from app.usage.queries import Query
from app.usage.usernames import escape_username

GIB = 2**30
T0 = 1_790_812_800  # 2026-10-01T00:00:00Z
HOUR = 3600
MINUTE = 60

_KINDS = {
    "kube_pod_labels": "gauge",
    "kube_pod_annotations": "gauge",
    "kube_pod_container_resource_requests": "gauge",
    "container_cpu_usage_seconds": "counter",
    "container_memory_working_set_bytes": "gauge",
    "dirsize_total_size_bytes": "gauge",
    "kube_node_labels": "gauge",
}


def at(hour: int, minute: int = 0, second: int = 0) -> int:
    """Epoch seconds of 2026-10-01 + hour:minute:second (hours past 23 run into later days)."""
    return T0 + hour * HOUR + minute * MINUTE + second


def every(start: int, end: int, step: int = MINUTE) -> list[int]:
    """Scrape times in [start, end)."""
    return list(range(start, end, step))


def _labels(pairs: dict[str, str]) -> str:
    escaped = (
        f'{name}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for name, value in pairs.items()
    )
    return "{" + ",".join(escaped) + "}"


class OpenMetricsBuilder:
    def __init__(self) -> None:
        self.families: dict[str, list[str]] = defaultdict(list)

    def samples(
        self, metric: str, labels: dict[str, str], times: Sequence[int], values: Iterable[object]
    ) -> None:
        family = metric.removesuffix("_total") if metric.endswith("_total") else metric
        head = metric + _labels(labels)
        self.families[family].extend(f"{head} {v} {t}" for t, v in zip(times, values, strict=True))

    def server(
        self,
        namespace: str,
        username: str,
        times: Sequence[int],
        *,
        pod: str | None = None,
        uid: str = "uid-1",
        label: str | None = None,
        annotation: bool = True,
        memory_bytes: int = GIB,
        cpu_cores: str = "0.5",
        gpu: int = 0,
        component: str = "singleuser-server",
        extra: dict[str, str] | None = None,
    ) -> str:
        """A pod's kube-state-metrics series at `times`; returns the pod name."""
        escaped = escape_username(username)
        pod = pod or f"jupyter-{escaped}"
        identity = {"namespace": namespace, "pod": pod, "uid": uid}
        pod_labels = {**identity, "label_component": component, "label_app": "jupyterhub"}
        pod_labels["label_hub_jupyter_org_username"] = label if label is not None else escaped[:63]
        pod_labels.update(extra or {})
        ones = ["1"] * len(times)
        self.samples("kube_pod_labels", pod_labels, times, ones)
        if annotation:
            annotations = {**identity, "annotation_hub_jupyter_org_username": username}
            self.samples("kube_pod_annotations", {**annotations, **(extra or {})}, times, ones)
        requests = {**identity, "container": "notebook", "node": "node-1", **(extra or {})}
        memory = {**requests, "resource": "memory", "unit": "byte"}
        cpu = {**requests, "resource": "cpu", "unit": "core"}
        self.samples(
            "kube_pod_container_resource_requests", memory, times, [memory_bytes] * len(times)
        )
        self.samples("kube_pod_container_resource_requests", cpu, times, [cpu_cores] * len(times))
        if gpu:
            gpus = {**requests, "resource": "nvidia_com_gpu", "unit": "integer"}
            self.samples("kube_pod_container_resource_requests", gpus, times, [gpu] * len(times))
        return pod

    def working_set(
        self,
        namespace: str,
        pod: str,
        times: Sequence[int],
        values: Sequence[int],
        container: str = "notebook",
    ) -> None:
        labels = {"namespace": namespace, "pod": pod, "container": container, "id": f"/{pod}"}
        self.samples("container_memory_working_set_bytes", labels, times, values)

    def cpu_counter(
        self,
        namespace: str,
        pod: str,
        times: Sequence[int],
        values: Sequence[str],
        container: str = "notebook",
        series_id: str = "c1",
    ) -> None:
        labels = {"namespace": namespace, "pod": pod, "container": container, "id": series_id}
        self.samples("container_cpu_usage_seconds_total", labels, times, values)

    def dirsize(
        self, namespace: str, directory: str, times: Sequence[int], values: Sequence[int]
    ) -> None:
        labels = {"namespace": namespace, "directory": directory}
        self.samples("dirsize_total_size_bytes", labels, times, values)

    def text(self) -> str:
        out: list[str] = []
        for family, lines in self.families.items():
            out.append(f"# TYPE {family} {_KINDS.get(family, 'gauge')}")
            out.extend(lines)
        out.append("# EOF")
        return "\n".join(out) + "\n"

    def write(self, path: Path) -> Path:
        path.write_text(self.text(), encoding="utf-8")
        return path


# --- the cases ---


def metered(
    tmp_path: Path,
    build: OpenMetricsBuilder,
    *,
    step: int = MINUTE,
    first_hour: int | None = None,
    end_hour: int | None = None,
) -> dict[tuple[str, str | None, datetime], dict[str, Decimal]]:
    """(namespace, user, hour) -> the row's quantities, from the builder's file."""
    path = build.write(tmp_path / "usage.om")
    observations = read_openmetrics(path, first_hour=first_hour, end_hour=end_hour)
    result = meter(observations, scrape_interval_seconds=step)
    return {(r.namespace, r.username, r.hour): r.quantities.as_dict() for r in result.rows}


def hour(h: int) -> datetime:
    return datetime.fromtimestamp(at(h), UTC)


def test_a_server_that_ran_ten_minutes_counts_a_sixth_of_an_hour(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    times = every(at(10), at(10, 10))
    pod = build.server("ocean", "alice", times, memory_bytes=2 * GIB, cpu_cores="0.5")
    build.working_set("ocean", pod, times, [100 * 2**20] * len(times))
    rows = metered(tmp_path, build)
    assert list(rows) == [("ocean", "alice", hour(10))]
    row = rows[("ocean", "alice", hour(10))]
    assert row["server_seconds"] == 600
    assert row["memory_request_byte_seconds"] == 2 * GIB * 600
    assert row["cpu_request_core_seconds"] == 300
    assert row["memory_usage_byte_seconds"] == 100 * 2**20 * 600
    assert row["gpu_request_seconds"] == 0


def test_a_pod_shorter_than_one_scrape_counts_its_one_sample(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    build.server("ocean", "bob", [at(9, 41)], gpu=1, cpu_cores="4")
    row = metered(tmp_path, build)[("ocean", "bob", hour(9))]
    assert row["server_seconds"] == 60
    assert row["memory_request_byte_seconds"] == GIB * 60
    assert row["cpu_request_core_seconds"] == 240
    assert row["gpu_request_seconds"] == 60


def test_a_server_spanning_hours_is_split_at_the_boundary(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    # 10:50 to 11:20: the scrape at exactly 11:00 belongs to the 11:00 hour.
    build.server("ocean", "carol", every(at(10, 50), at(11, 20)))
    rows = metered(tmp_path, build)
    assert rows[("ocean", "carol", hour(10))]["server_seconds"] == 600
    assert rows[("ocean", "carol", hour(11))]["server_seconds"] == 1200
    assert len(rows) == 2


def test_a_server_running_past_midnight_lands_on_both_days(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    build.server("ocean", "dave", every(at(23, 30), at(24, 45)))
    rows = metered(tmp_path, build)
    assert rows[("ocean", "dave", hour(23))]["server_seconds"] == 1800
    assert rows[("ocean", "dave", hour(24))]["server_seconds"] == 2700
    assert hour(24).date() != hour(23).date()


def test_cpu_use_is_the_counter_increase_per_hour_from_its_samples(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    times = [at(10, 58), at(10, 59), at(11, 0), at(11, 1), at(12, 0)]
    pod = build.server("ocean", "erin", times)
    # New at 10:58 (counts from zero); 11:00 continues; it restarted before 12:00.
    build.cpu_counter("ocean", pod, times, ["1.5", "61.25", "121.000", "180.125", "2.5"])
    rows = metered(tmp_path, build)
    assert rows[("ocean", "erin", hour(10))]["cpu_usage_core_seconds"] == Decimal("61.25")
    assert rows[("ocean", "erin", hour(11))]["cpu_usage_core_seconds"] == Decimal("118.875")
    assert rows[("ocean", "erin", hour(12))]["cpu_usage_core_seconds"] == Decimal("2.5")


def test_cpu_of_the_first_hour_of_a_window_uses_the_hour_before_it(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    times = [at(9, 59), at(10, 0), at(10, 1)]
    pod = build.server("ocean", "erin", times)
    build.cpu_counter("ocean", pod, times, ["100", "130", "190.5"])
    rows = metered(tmp_path, build, first_hour=at(10), end_hour=at(11))
    assert list(rows) == [("ocean", "erin", hour(10))]
    assert rows[("ocean", "erin", hour(10))]["cpu_usage_core_seconds"] == Decimal("90.5")


def test_home_storage_is_the_hours_mean_size_times_an_hour_rounded_half_even(
    tmp_path: Path,
) -> None:
    build = OpenMetricsBuilder()
    # 32 samples in the hour: mean * 3600 = sum * 112.5, a tie whenever the sum is odd.
    times = every(at(10), at(11), 100)[:32]
    build.dirsize("ocean", "frank", times, [1] + [2] * 31)  # sum 63 -> 7087.5 -> 7088
    build.dirsize("ocean", "grace", times, [3] + [2] * 31)  # sum 65 -> 7312.5 -> 7312
    build.dirsize("ocean", "heidi", every(at(10), at(11), 300), [4096] * 12)
    rows = metered(tmp_path, build)
    assert rows[("ocean", "frank", hour(10))]["home_storage_byte_seconds"] == 7088
    assert rows[("ocean", "grace", hour(10))]["home_storage_byte_seconds"] == 7312
    assert rows[("ocean", "heidi", hour(10))]["home_storage_byte_seconds"] == 4096 * 3600


def test_storage_and_compute_of_an_awkward_name_are_one_user(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    name = "Alice.Smith@example.org"
    times = every(at(10), at(10, 5))
    build.server("ocean", name, times, annotation=False)
    build.dirsize("ocean", escape_username(name), every(at(10), at(11), 300), [10] * 12)
    build.dirsize("ocean", "_shared", every(at(10), at(11), 300), [7] * 12)
    rows = metered(tmp_path, build)
    assert set(rows) == {("ocean", name, hour(10)), ("ocean", None, hour(10))}
    assert rows[("ocean", name, hour(10))]["server_seconds"] == 300
    assert rows[("ocean", name, hour(10))]["home_storage_byte_seconds"] == 36000
    assert rows[("ocean", None, hour(10))]["home_storage_byte_seconds"] == 7 * 3600


def test_pods_that_are_not_user_servers_and_pod_level_cgroups_are_left_out(
    tmp_path: Path,
) -> None:
    build = OpenMetricsBuilder()
    times = every(at(10), at(10, 10))
    build.server("ocean", "hub", times, pod="hub-7d9f-xk2p9", component="hub")
    pod = build.server("ocean", "ivan", times)
    build.working_set("ocean", "hub-7d9f-xk2p9", times, [10**9] * len(times))
    build.working_set("ocean", pod, times, [1000] * len(times))
    build.working_set("ocean", pod, times, [5000] * len(times), container="")  # the pod cgroup
    build.working_set("ocean", pod, times, [700] * len(times), container="POD")  # pause
    rows = metered(tmp_path, build)
    assert list(rows) == [("ocean", "ivan", hour(10))]
    assert rows[("ocean", "ivan", hour(10))]["memory_usage_byte_seconds"] == 1000 * 600


def test_a_second_kube_state_metrics_replica_does_not_double_anything(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    times = every(at(10), at(10, 10))
    for replica in ("ksm-0", "ksm-1"):
        build.server("ocean", "judy", times, extra={"instance": replica})
    row = metered(tmp_path, build)[("ocean", "judy", hour(10))]
    assert row["server_seconds"] == 600
    assert row["memory_request_byte_seconds"] == GIB * 600


def test_two_servers_of_one_user_in_one_hour_add_up(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    first = build.server("ocean", "kim", every(at(10), at(10, 20)), uid="a")
    build.server("ocean", "kim", every(at(10, 30), at(10, 40)), uid="b", memory_bytes=4 * GIB)
    build.working_set("ocean", first, every(at(10), at(10, 40)), [10] * 40)
    row = metered(tmp_path, build)[("ocean", "kim", hour(10))]
    assert row["server_seconds"] == 1800
    assert row["memory_request_byte_seconds"] == (20 * GIB + 10 * 4 * GIB) * 60
    assert row["memory_usage_byte_seconds"] == 400 * 60


def test_the_scrape_interval_scales_every_sample(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    build.server("ocean", "leo", every(at(10), at(10, 10), 30))  # 20 scrapes, 30 s apart
    row = metered(tmp_path, build, step=30)[("ocean", "leo", hour(10))]
    assert row["server_seconds"] == 600
    assert row["memory_request_byte_seconds"] == GIB * 600


def test_a_wrong_scrape_interval_is_noticed(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    build.server("ocean", "leo", every(at(10), at(11), 30))
    path = build.write(tmp_path / "usage.om")
    result = meter(read_openmetrics(path), scrape_interval_seconds=60)
    warnings = result.notes.warnings(60)
    assert len(warnings) == 1
    assert "up to 120 scrapes" in warnings[0]


def test_namespaces_without_a_hub_are_kept_per_namespace_and_counted(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    build.server("ocean", "mallory", every(at(10), at(10, 10)))
    build.server("workshop", "nia", every(at(10), at(10, 20)))
    build.server("workshop", "olivia", every(at(10, 30), at(11, 10)), uid="o")
    path = build.write(tmp_path / "usage.om")
    rows = meter(read_openmetrics(path), scrape_interval_seconds=MINUTE).rows
    kept, unmatched = aggregate_unmatched(rows, {"ocean"})
    by_key = {(r.namespace, r.username, r.hour): r.quantities for r in kept}
    assert by_key[("workshop", None, hour(10))].server_seconds == 1200 + 1800
    assert by_key[("workshop", None, hour(11))].server_seconds == 600
    assert by_key[("ocean", "mallory", hour(10))].server_seconds == 600
    assert set(unmatched) == {"workshop"}
    assert unmatched["workshop"].rows == 2
    assert unmatched["workshop"].users == 2
    assert unmatched["workshop"].quantities.server_seconds == 3600


def test_truncated_labels_without_annotations_are_reported(tmp_path: Path) -> None:
    long_name = "x" * 70
    build = OpenMetricsBuilder()
    label = escape_username(long_name)[:63]
    for pod in ("server-a", "server-b"):
        build.server("ocean", long_name, every(at(10), at(10, 5)), pod=pod, annotation=False)
    path = build.write(tmp_path / "usage.om")
    result = meter(read_openmetrics(path), scrape_interval_seconds=MINUTE)
    assert [row.username for row in result.rows] == [label]
    assert result.notes.merged_truncated_labels == {"ocean": [f"{label} (2 pod name(s))"]}
    assert "counted as one" in result.notes.warnings(MINUTE)[0]


def test_an_hour_without_any_use_has_no_row(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    build.dirsize("ocean", "peggy", every(at(10), at(11), 300), [0] * 12)
    assert metered(tmp_path, build) == {}


def test_float_noise_from_prometheus_is_rounded_to_a_millionth_of_a_core_second() -> None:
    observations = Observations()
    pod = {"namespace": "ocean", "pod": "jupyter-quinn", "uid": "u"}
    observations.add(Query.server_samples, pod, at(10), Decimal(60))
    observations.add(
        Query.requests, {**pod, "resource": "cpu"}, at(10), Decimal("5.999999999999998")
    )
    observations.add(Query.cpu_usage, pod, at(10), Decimal("12.345678500000001"))
    (row,) = meter(observations, scrape_interval_seconds=MINUTE).rows
    assert row.quantities.cpu_request_core_seconds == 360
    assert row.quantities.cpu_usage_core_seconds == Decimal("12.345679")
    assert round_cpu(Decimal("0.0000005")) == 0  # half-even
    assert str(round_cpu(Decimal("3.000000"))) == "3"


@pytest.mark.parametrize("bad", ["NaN", "+Inf", "1.5e400000000"])
def test_values_that_are_not_finite_numbers_are_refused(bad: str) -> None:
    from app.errors import BadValue
    from app.usage.metering import parse_sample_value

    with pytest.raises(BadValue, match="finite"):
        parse_sample_value(bad)


def test_rows_come_out_in_a_stable_order(tmp_path: Path) -> None:
    build = OpenMetricsBuilder()
    build.server("ocean", "zane", every(at(11), at(11, 5)))
    build.server("climate", "amir", every(at(10), at(10, 5)), uid="2")
    build.dirsize("ocean", "_shared", [at(10)], [1])
    path = build.write(tmp_path / "usage.om")
    rows: list[MeteredRow] = meter(read_openmetrics(path), scrape_interval_seconds=60).rows
    assert [(r.namespace, r.username) for r in rows] == [
        ("climate", "amir"),
        ("ocean", None),
        ("ocean", "zane"),
    ]
