"""Ground truth of usage: what the written samples imply per user and hour.

The truth is computed from the same generators the OpenMetrics writer uses, sample by sample,
with integers (bytes, thousandths of a core-second) so nothing is rounded on the way. The same
pass sums each cluster's hourly demand, which sizes the bill.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.synthetic.decimals import from_thousandths, plain, round_half_even_div
from app.synthetic.home_storage import (
    SHARED_DIRECTORY,
    SizeChange,
    constant_stretches,
    home_directory_sizes,
    shared_directory_sizes,
)
from app.synthetic.pods import Pod, cpu_usage_millis, user_pods, working_set_bytes
from app.synthetic.spec import ScenarioSpec
from app.synthetic.timefmt import iso_utc
from app.synthetic.topology import Cluster, Hub, Topology, User
from app.synthetic.units import SECONDS_PER_HOUR

USAGE_TRUTH_COLUMNS = (
    "cluster",
    "namespace",
    "hub",
    "username",
    "hour",
    "server_seconds",
    "memory_request_byte_seconds",
    "cpu_request_core_seconds",
    "memory_usage_byte_seconds",
    "cpu_usage_core_seconds",
    "gpu_request_seconds",
    "home_storage_byte_seconds",
)


class _OwnerHours:
    """Hourly sums of one directory owner (a user, or `_shared`): one list per quantity, indexed
    by the hour of the period. Sample values are summed; the interval is applied when written."""

    __slots__ = (
        "cpu_request_millicores",
        "cpu_usage_millis",
        "gpu_request",
        "home_storage_byte_seconds",
        "memory_request_bytes",
        "server_samples",
        "working_set_bytes",
    )

    def __init__(self, hours: int) -> None:
        self.server_samples = [0] * hours
        self.memory_request_bytes = [0] * hours
        self.cpu_request_millicores = [0] * hours
        self.working_set_bytes = [0] * hours
        self.cpu_usage_millis = [0] * hours  # core-seconds used in the hour, in thousandths
        self.gpu_request = [0] * hours
        self.home_storage_byte_seconds = [0] * hours


@dataclass
class ClusterHourlyDemand:
    """Per cluster and hour, what the cloud bill grows with."""

    user_pool_memory_byte_seconds: list[int]
    gpu_seconds: list[int]
    home_storage_byte_seconds: list[int]
    active_users: list[int]

    @classmethod
    def empty(cls, hours: int) -> ClusterHourlyDemand:
        return cls(*([0] * hours for _ in range(4)))


@dataclass
class UsageTruthResult:
    rows: int = 0
    demand: dict[str, ClusterHourlyDemand] = field(default_factory=dict)


def write_usage_truth(
    spec: ScenarioSpec, topology: Topology, path: Path, progress: Callable[[str], None]
) -> UsageTruthResult:
    """Write truth/usage_hourly.csv sorted by cluster, namespace, username and hour."""
    result = UsageTruthResult()
    hour_labels = [
        iso_utc(spec.period_start_epoch + h * SECONDS_PER_HOUR) for h in range(spec.hours)
    ]
    with path.open("w", encoding="utf-8", newline="") as stream:
        out = csv.writer(stream, lineterminator="\n")
        out.writerow(USAGE_TRUTH_COLUMNS)
        for cluster in sorted(topology.clusters, key=lambda c: c.name):
            progress(f"{cluster.name}: computing the usage truth")
            demand = ClusterHourlyDemand.empty(spec.hours)
            result.demand[cluster.name] = demand
            for hub in sorted(cluster.hubs, key=lambda h: h.namespace):
                for username, hours in _directory_owners_by_name(spec, cluster, hub, demand):
                    prefix = [cluster.name, hub.namespace, hub.name if hub.listed else "", username]
                    for hour, quantities in _rows(spec, hours):
                        out.writerow([*prefix, hour_labels[hour], *quantities])
                        result.rows += 1
    return result


def _directory_owners_by_name(
    spec: ScenarioSpec, cluster: Cluster, hub: Hub, demand: ClusterHourlyDemand
) -> Iterator[tuple[str, _OwnerHours]]:
    """Each user of the hub, and its `_shared` directory, with their hourly sums, by name; one
    at a time, so a hub of any size costs one user's hours of memory."""
    gpu_pool = hub.gpu and cluster.gpu_pool is not None
    owners: list[tuple[str, User | None]] = [(user.username, user) for user in hub.users]
    owners.append((SHARED_DIRECTORY, None))
    for name, user in sorted(owners, key=lambda owner: owner[0]):
        hours = _OwnerHours(spec.hours)
        if user is None:
            _add_storage_samples(spec, shared_directory_sizes(spec, cluster, hub), hours)
        else:
            pods = user_pods(spec, cluster, hub, user)
            _add_pod_samples(spec, pods, hours)
            _add_storage_samples(spec, home_directory_sizes(spec, cluster, hub, user, pods), hours)
        _add_demand(spec, hours, demand, gpu_pool)
        yield name, hours


def _add_pod_samples(spec: ScenarioSpec, pods: Sequence[Pod], hours: _OwnerHours) -> None:
    step = spec.scrape_interval_seconds
    start = spec.period_start_epoch
    for pod in pods:
        times = pod.sample_times(step)
        last_counter_by_hour: dict[int, int] = {}
        for at, working_set, counter in zip(
            times,
            working_set_bytes(pod, len(times)),
            cpu_usage_millis(pod, len(times), step),
            strict=True,
        ):
            hour = (at - start) // SECONDS_PER_HOUR
            hours.server_samples[hour] += 1
            hours.memory_request_bytes[hour] += pod.memory_request_bytes
            hours.cpu_request_millicores[hour] += pod.cpu_request_millicores
            hours.working_set_bytes[hour] += working_set
            hours.gpu_request[hour] += pod.gpu_request
            last_counter_by_hour[hour] = counter
        # A counter's use in an hour: its last value there minus its last value the hour before
        # (zero for the hour it first appears in).
        for hour, last in last_counter_by_hour.items():
            hours.cpu_usage_millis[hour] += last - last_counter_by_hour.get(hour - 1, 0)


def _add_storage_samples(
    spec: ScenarioSpec, changes: Sequence[SizeChange], hours: _OwnerHours
) -> None:
    """home_storage_byte_seconds: the mean of the hour's samples times 3600, half-even."""
    start = spec.period_start_epoch
    sums, counts = [0] * spec.hours, [0] * spec.hours
    for times, size in constant_stretches(changes, spec):
        at = times.start
        while at < times.stop:
            hour = (at - start) // SECONDS_PER_HOUR
            until = min(times.stop, start + (hour + 1) * SECONDS_PER_HOUR)
            count = len(range(at, until, times.step))
            sums[hour] += size * count
            counts[hour] += count
            at = until
    for hour, count in enumerate(counts):
        if count:
            hours.home_storage_byte_seconds[hour] = round_half_even_div(
                sums[hour] * SECONDS_PER_HOUR, count
            )


def _add_demand(
    spec: ScenarioSpec, hours: _OwnerHours, demand: ClusterHourlyDemand, gpu_pool: bool
) -> None:
    step = spec.scrape_interval_seconds
    for hour in range(spec.hours):
        if not gpu_pool:  # GPU pods run on their own pool, sized by GPUs
            demand.user_pool_memory_byte_seconds[hour] += hours.memory_request_bytes[hour] * step
        demand.gpu_seconds[hour] += hours.gpu_request[hour] * step
        demand.home_storage_byte_seconds[hour] += hours.home_storage_byte_seconds[hour]
        demand.active_users[hour] += hours.server_samples[hour] > 0


def _rows(spec: ScenarioSpec, hours: _OwnerHours) -> Iterator[tuple[int, list[object]]]:
    """(hour, the row's quantities) for each hour with any non-zero quantity."""
    step = spec.scrape_interval_seconds
    for hour in range(spec.hours):
        storage = hours.home_storage_byte_seconds[hour]
        if not hours.server_samples[hour]:
            if storage:  # the common case: a directory and no server
                yield hour, [0, 0, "0", 0, "0", 0, storage]
            continue
        yield (
            hour,
            [
                hours.server_samples[hour] * step,
                hours.memory_request_bytes[hour] * step,
                plain(from_thousandths(hours.cpu_request_millicores[hour] * step)),
                hours.working_set_bytes[hour] * step,
                plain(from_thousandths(hours.cpu_usage_millis[hour])),
                hours.gpu_request[hour] * step,
                storage,
            ],
        )
