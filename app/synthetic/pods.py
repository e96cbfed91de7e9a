"""Pods: every server a user starts, and the hub, proxy and Prometheus pods that must be ignored.

A user's pods are regenerated from the user's own seed whenever a writer needs them, so each
metric family can be written in its own pass without keeping any samples in memory.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from app.synthetic.seeding import entity_random, stable_hex
from app.synthetic.spec import ScenarioSpec
from app.synthetic.timefmt import first_grid_time
from app.synthetic.topology import SUPPORT_NAMESPACE, Cluster, Hub, Script, User
from app.synthetic.units import GIB, MIB, SECONDS_PER_DAY, SECONDS_PER_HOUR


@dataclass(frozen=True)
class Profile:
    """A KubeSpawner profile: what a server requests."""

    name: str
    memory_request_bytes: int
    cpu_request_millicores: int
    gpu_request: int = 0


PROFILES = (
    Profile("small", 1 * GIB, 500),
    Profile("medium", 2 * GIB, 1000),
    Profile("large", 4 * GIB, 1000),
    Profile("huge", 8 * GIB, 2000),
)
PROFILE_WEIGHTS = (4, 3, 2, 1)
GPU_PROFILE = Profile("gpu", 16 * GIB, 4000, gpu_request=1)

# Share of days a user starts a server, in percent; a fifth of the users never do.
_ACTIVITY_PERCENTS = (0, 0, 3, 5, 10, 15, 20, 25, 30, 50)
# When, in local time, people start their servers.
_START_HOUR_WEIGHTS = (1, 1, 1, 1, 1, 1, 2, 4, 8, 10, 10, 10, 8, 10, 10, 10, 8, 6, 5, 4, 4, 3, 2, 1)
_SESSIONS_PER_ACTIVE_DAY = (1, 2, 3)
_SESSIONS_PER_ACTIVE_DAY_WEIGHTS = (6, 3, 1)
# (weight, shortest, longest) in seconds; None marks a pod shorter than one scrape interval. The
# idle culler ends most sessions within hours; a few run on through the night.
_DURATIONS: tuple[tuple[int, tuple[int, int] | None], ...] = (
    (5, None),
    (30, (5 * 60, 30 * 60)),
    (45, (30 * 60, 2 * SECONDS_PER_HOUR)),
    (17, (2 * SECONDS_PER_HOUR, 6 * SECONDS_PER_HOUR)),
    (3, (6 * SECONDS_PER_HOUR, 14 * SECONDS_PER_HOUR)),
)


@dataclass(frozen=True, slots=True)
class Pod:
    """One pod instance (its own uid) and the parameters its usage series are drawn from."""

    namespace: str
    name: str
    uid: str
    node: str
    container: str
    container_id: str
    start: int  # epoch seconds, inclusive
    end: int  # epoch seconds, exclusive
    memory_request_bytes: int
    cpu_request_millicores: int
    gpu_request: int
    component: str  # singleuser-server, hub, proxy, server
    app: str  # jupyterhub, prometheus
    user: User | None  # None for the pods that are not user servers
    memory_target_percent: int  # where the working set settles, relative to the request
    cpu_busy_millicores: int  # mean CPU use while running
    series_seed: int

    def sample_times(self, step: int) -> range:
        """Scrape times t with start <= t < end."""
        return range(first_grid_time(self.start, step), self.end, step)


def user_pods(spec: ScenarioSpec, cluster: Cluster, hub: Hub, user: User) -> list[Pod]:
    """The user's servers over the period, in time order and never overlapping (one pod name)."""
    if user.script is Script.NEVER_STARTS:
        return []
    rng = entity_random(spec.seed, "sessions", cluster.name, hub.namespace, user.username)
    active_percent = rng.choice(_ACTIVITY_PERCENTS)
    if user.script is not None:
        active_percent = max(active_percent, 30)
    usual_profile = GPU_PROFILE if hub.gpu else rng.choices(PROFILES, PROFILE_WEIGHTS)[0]
    memory_percent = rng.randrange(20, 110)
    cpu_busy = rng.randrange(20, 900)
    pool = cluster.gpu_pool if hub.gpu and cluster.gpu_pool else cluster.user_pool
    pods = []
    for start, end in _session_windows(spec, hub, user, rng, active_percent):
        profile = usual_profile
        if not hub.gpu and rng.randrange(100) < 15:
            profile = rng.choices(PROFILES, PROFILE_WEIGHTS)[0]
        pods.append(
            Pod(
                namespace=hub.namespace,
                name=user.pod_name,
                uid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                node=rng.choice(pool.nodes),
                container="notebook",
                container_id=f"{rng.getrandbits(256):064x}",
                start=start,
                end=end,
                memory_request_bytes=profile.memory_request_bytes,
                cpu_request_millicores=profile.cpu_request_millicores,
                gpu_request=profile.gpu_request,
                component="singleuser-server",
                app="jupyterhub",
                user=user,
                memory_target_percent=max(5, memory_percent + rng.randrange(-15, 16)),
                cpu_busy_millicores=min(cpu_busy, profile.cpu_request_millicores),
                series_seed=rng.getrandbits(64),
            )
        )
    return pods


def _session_windows(
    spec: ScenarioSpec, hub: Hub, user: User, rng: random.Random, active_percent: int
) -> list[tuple[int, int]]:
    period_start, period_end = spec.period_start_epoch, spec.period_end_epoch
    step = spec.scrape_interval_seconds
    nominal: list[tuple[int, int, bool]] = []  # (start, duration, shorter than a scrape)
    for day in range(spec.days):
        day_start = period_start + day * SECONDS_PER_DAY
        if day == 0 and user.script is not None:
            nominal.append(_scripted_session(user.script, day_start, spec.days, rng))
            continue
        if rng.randrange(100) >= active_percent:
            continue
        count = rng.choices(_SESSIONS_PER_ACTIVE_DAY, _SESSIONS_PER_ACTIVE_DAY_WEIGHTS)[0]
        for _ in range(count):
            local_hour = rng.choices(range(24), _START_HOUR_WEIGHTS)[0]
            hour = (local_hour - hub.utc_offset_hours) % 24
            start = day_start + hour * SECONDS_PER_HOUR + rng.randrange(SECONDS_PER_HOUR)
            span = rng.choices([span for _, span in _DURATIONS], [w for w, _ in _DURATIONS])[0]
            if span is None:
                nominal.append((start, 0, True))
            else:
                nominal.append((start, rng.randrange(span[0], span[1]), False))
    nominal.sort()
    windows: list[tuple[int, int]] = []
    not_before = period_start
    for wanted_start, duration, short in nominal:
        start = max(wanted_start, not_before)
        if short and step >= 2:
            # Straddle exactly one scrape time: `before` seconds ahead of it, `after` past it.
            before = rng.randrange(step - 1)
            after = rng.randrange(1, step - before)
            scrape = first_grid_time(start + before, step)
            start, end = scrape - before, scrape + after
        else:
            end = start + max(duration, step)
        end = min(end, period_end)
        if first_grid_time(start, step) >= end:
            continue  # never scraped: Prometheus would not know it existed
        windows.append((start, end))
        not_before = end + rng.randrange(5, 600)  # the next server of the same name starts later
    return windows


def _scripted_session(
    script: Script, day_start: int, days: int, rng: random.Random
) -> tuple[int, int, bool]:
    """The first day's session of a user with a script: (start, duration, shorter than a scrape)."""
    if script is Script.SHORT_POD:
        return (day_start + 9 * SECONDS_PER_HOUR + rng.randrange(8 * SECONDS_PER_HOUR), 0, True)
    if script is Script.CROSSES_MIDNIGHT and days >= 2:
        start = day_start + 23 * SECONDS_PER_HOUR + rng.randrange(40 * 60)
        return (start, rng.randrange(90 * 60, 3 * SECONDS_PER_HOUR), False)
    # The two users with colliding labels run at the same time, the hardest case to tell apart.
    # (A one-day period has no midnight to cross: that user gets the same kind of session.)
    start = day_start + 10 * SECONDS_PER_HOUR + rng.randrange(20 * 60)
    return (start, rng.randrange(SECONDS_PER_HOUR, 2 * SECONDS_PER_HOUR), False)


def infrastructure_pods(spec: ScenarioSpec, cluster: Cluster, hub: Hub) -> list[Pod]:
    """The hub and proxy pods of one hub's namespace: running all period, never a user's."""
    return [
        _long_running_pod(
            spec, cluster, hub.namespace, "hub", "hub", "hub", "jupyterhub", 512 * MIB, 200
        ),
        _long_running_pod(
            spec, cluster, hub.namespace, "proxy", "chp", "proxy", "jupyterhub", 256 * MIB, 200
        ),
    ]


def support_pods(spec: ScenarioSpec, cluster: Cluster) -> list[Pod]:
    """The cluster's own Prometheus, in the `support` namespace."""
    return [
        _long_running_pod(
            spec,
            cluster,
            SUPPORT_NAMESPACE,
            "support-prometheus-server",
            "prometheus-server",
            "server",
            "prometheus",
            8 * GIB,
            1000,
        ),
    ]


def _long_running_pod(
    spec: ScenarioSpec,
    cluster: Cluster,
    namespace: str,
    deployment: str,
    container: str,
    component: str,
    app: str,
    memory_request_bytes: int,
    cpu_request_millicores: int,
) -> Pod:
    rng = entity_random(spec.seed, "pod", cluster.name, namespace, deployment)
    # A Deployment's pod: <deployment>-<replica set hash>-<5 characters>.
    replica_set = stable_hex(10, spec.seed, cluster.name, namespace, deployment)
    suffix = "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
    return Pod(
        namespace=namespace,
        name=f"{deployment}-{replica_set}-{suffix}",
        uid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        node=cluster.core_pool.nodes[0],
        container=container,
        container_id=f"{rng.getrandbits(256):064x}",
        start=spec.period_start_epoch,
        end=spec.period_end_epoch,
        memory_request_bytes=memory_request_bytes,
        cpu_request_millicores=cpu_request_millicores,
        gpu_request=0,
        component=component,
        app=app,
        user=None,
        memory_target_percent=rng.randrange(40, 90),
        cpu_busy_millicores=rng.randrange(5, cpu_request_millicores // 2),
        series_seed=rng.getrandbits(64),
    )


def working_set_bytes(pod: Pod, sample_count: int) -> Iterator[int]:
    """container_memory_working_set_bytes at each of the pod's scrapes: it starts small and
    drifts towards the pod's own level, which may lie above the request (the limit is twice it)."""
    rng = random.Random(pod.series_seed * 2)
    request = pod.memory_request_bytes
    target = request * pod.memory_target_percent // 100
    wobble = max(1, request // 50)
    floor, ceiling = 50 * MIB, 2 * request
    level = rng.randrange(80 * MIB, 200 * MIB)
    for _ in range(sample_count):
        yield level
        level += (target - level) // 4 + rng.randrange(-wobble, wobble + 1)
        level = min(max(level, floor), ceiling)


def cpu_usage_millis(pod: Pod, sample_count: int, step: int) -> Iterator[int]:
    """container_cpu_usage_seconds_total at each scrape, in thousandths of a core-second: near
    zero at the first scrape (the container's start-up), then growing with the pod's use."""
    rng = random.Random(pod.series_seed * 2 + 1)
    counter = rng.randrange(100, 3000)
    busiest = 2 * pod.cpu_busy_millicores
    for _ in range(sample_count):
        yield counter
        counter += step * rng.randrange(busiest + 1)


def cluster_pods(spec: ScenarioSpec, cluster: Cluster) -> Iterator[Pod]:
    """Every pod of the cluster over the period, regenerated on each call, in a stable order."""
    yield from support_pods(spec, cluster)
    for hub in cluster.hubs:
        yield from infrastructure_pods(spec, cluster, hub)
        for user in hub.users:
            yield from user_pods(spec, cluster, hub, user)
