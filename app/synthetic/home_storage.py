"""Home directory sizes as the dirsize exporter reports them.

A size is piecewise constant: it changes only while its owner works (or, for a hub's `_shared`
directory, now and then). It is kept as a short list of changes, so a 30-day series of five-minute
samples costs a few entries, not thousands.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from app.synthetic.pods import Pod
from app.synthetic.seeding import entity_random
from app.synthetic.spec import ScenarioSpec
from app.synthetic.timefmt import first_grid_time
from app.synthetic.topology import Cluster, Hub, User
from app.synthetic.units import GIB, MIB, SECONDS_PER_HOUR

SHARED_DIRECTORY = "_shared"
EMPTY_DIRECTORY_BYTES = 4096

# (weight, smallest, largest) of a home directory at the start of the period: most hold a few
# notebooks, a few hold data sets.
_INITIAL_SIZES = (
    (30, EMPTY_DIRECTORY_BYTES, 10 * MIB),
    (45, 10 * MIB, GIB),
    (20, GIB, 5 * GIB),
    (5, 5 * GIB, 30 * GIB),
)

SizeChange = tuple[int, int]  # (from this storage scrape time on, size in bytes)


def home_directory_sizes(
    spec: ScenarioSpec, cluster: Cluster, hub: Hub, user: User, pods: Sequence[Pod]
) -> list[SizeChange]:
    """Changes of the user's home directory size; the first one is at the period's start."""
    rng = entity_random(spec.seed, "home", cluster.name, hub.namespace, user.username)
    low, high = rng.choices(
        [(lo, hi) for _, lo, hi in _INITIAL_SIZES], [w for w, _, _ in _INITIAL_SIZES]
    )[0]
    size = rng.randrange(low, high)
    changes = [(spec.period_start_epoch, size)]
    step = spec.storage_interval_seconds
    for pod in pods:
        # Files written during a session show at the exporter's next scrape.
        end = min(pod.end + step, spec.period_end_epoch)
        for at in range(first_grid_time(pod.start, step), end, step):
            if at <= changes[-1][0] or rng.randrange(3):
                continue
            size = max(
                EMPTY_DIRECTORY_BYTES, size + rng.randrange(-size // 50, size // 20 + 20 * MIB)
            )
            changes.append((at, size))
    return changes


def shared_directory_sizes(spec: ScenarioSpec, cluster: Cluster, hub: Hub) -> list[SizeChange]:
    """Changes of the hub's `_shared` directory: large, and edited a few times a day."""
    rng = entity_random(spec.seed, "shared-directory", cluster.name, hub.namespace)
    size = rng.randrange(5 * GIB, 200 * GIB)
    changes = [(spec.period_start_epoch, size)]
    step = spec.storage_interval_seconds
    for hour in range(spec.hours):
        if rng.randrange(10) >= 3:
            continue
        at = (
            spec.period_start_epoch
            + hour * SECONDS_PER_HOUR
            + rng.randrange(SECONDS_PER_HOUR // step) * step
        )
        if at > changes[-1][0]:
            size += rng.randrange(-size // 200, size // 100 + 1)
            changes.append((at, size))
    return changes


def constant_stretches(
    changes: Sequence[SizeChange], spec: ScenarioSpec
) -> Iterator[tuple[range, int]]:
    """(scrape times, size) for each stretch of equal samples, in time order."""
    step = spec.storage_interval_seconds
    for position, (at, size) in enumerate(changes):
        until = changes[position + 1][0] if position + 1 < len(changes) else spec.period_end_epoch
        yield range(at, until, step), size
