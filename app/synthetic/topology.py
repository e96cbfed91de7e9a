"""The synthetic estate: clusters, their node pools, hubs, communities and users.

This is small (one object per hub, user and node) and is built once; everything sample-sized is
derived from it on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from app.synthetic.seeding import entity_random, stable_hex
from app.synthetic.spec import ScenarioSpec
from app.synthetic.units import GIB
from app.synthetic.usernames import escape_username, hub_usernames, username_label_value

OPERATOR = "hubops"
OPERATOR_PROJECT = f"{OPERATOR}-shared-tools"  # matches no cluster and no hub: unattributable
SUPPORT_NAMESPACE = "support"
UNMATCHED_NAMESPACE = "workshop-unlisted"

_CLUSTER_NAMES = ("atlantic", "pacific", "arctic", "indian", "southern")
_HUB_NAMES = (
    "ocean", "climate", "geo", "neuro", "astro", "bio", "eco", "hydro", "seismo", "polar",
    "solar", "carbon", "forest", "coral", "glacier", "delta", "tundra", "prairie", "canyon",
    "reef", "storm", "lava", "comet", "aurora", "quasar",
)  # fmt: skip
_COMMUNITY_SUFFIXES = ("lab", "institute", "school", "collective")
# Community sizes cycle through these, so some communities own two or three hubs.
_COMMUNITY_SIZES = (2, 1, 3, 1)


class Script(Enum):
    """A behaviour forced on one user of every hub, so that every scenario contains it."""

    CROSSES_MIDNIGHT = "crosses-midnight"
    SHORT_POD = "short-pod"
    SHARED_PREFIX = "shared-prefix"  # one of the two users whose truncated labels collide
    NEVER_STARTS = "never-starts"


@dataclass(frozen=True)
class MachineType:
    name: str
    vcpus: int
    memory_bytes: int
    gpus: int = 0
    family: str = "N2"  # the Compute Engine SKU family its cores and RAM are billed under


N2_HIGHMEM = tuple(MachineType(f"n2-highmem-{n}", n, 8 * n * GIB) for n in (4, 8, 16, 32, 64))
CORE_MACHINE = MachineType("n2-standard-4", 4, 16 * GIB)
GPU_MACHINE = MachineType("n1-standard-8", 8, 30 * GIB, gpus=1, family="N1")


@dataclass(frozen=True)
class NodePool:
    name: str  # user | core | gpu
    machine: MachineType
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class User:
    username: str
    escaped: str  # full escaped form: pod names and home directories
    label_value: str  # the truncated `hub.jupyter.org/username` label
    script: Script | None

    @property
    def pod_name(self) -> str:
        return f"jupyter-{self.escaped}"


@dataclass(frozen=True)
class Hub:
    name: str  # for the unmatched namespace: the namespace, and it is not in the config
    namespace: str
    cluster: str
    listed: bool  # False for the namespace no hub in the configuration names
    gpu: bool
    utc_offset_hours: int  # where its users live, which shifts their working day
    users: tuple[User, ...]
    community: str | None = None
    dedicated_project: str | None = None
    monthly_budget: Decimal | None = None
    has_bucket: bool = False


@dataclass(frozen=True)
class Cluster:
    name: str
    position: int
    project: str
    hubs: tuple[Hub, ...]  # the listed hubs, then the unmatched namespace if any
    user_pool: NodePool
    core_pool: NodePool
    gpu_pool: NodePool | None

    @property
    def pools(self) -> tuple[NodePool, ...]:
        return tuple(p for p in (self.user_pool, self.core_pool, self.gpu_pool) if p is not None)

    @property
    def listed_hubs(self) -> tuple[Hub, ...]:
        return tuple(hub for hub in self.hubs if hub.listed)


@dataclass(frozen=True)
class Community:
    id: str
    name: str
    billing_email: str


@dataclass(frozen=True)
class Topology:
    clusters: tuple[Cluster, ...]
    communities: tuple[Community, ...]


def build_topology(spec: ScenarioSpec) -> Topology:
    """The estate for a scenario: deterministic in the spec alone."""
    hub_names = _hub_names(spec.clusters * spec.hubs)
    communities, community_of = _communities(hub_names)
    hubs_by_cluster: list[tuple[str, tuple[Hub, ...]]] = []
    for position in range(spec.clusters):
        name = _cluster_name(position)
        names = hub_names[position * spec.hubs : (position + 1) * spec.hubs]
        hubs = [
            _listed_hub(spec, name, hub_name, index, position * spec.hubs + index, community_of)
            for index, hub_name in enumerate(names)
        ]
        if spec.unmatched_namespace:
            hubs.append(_unmatched_hub(spec, name, len(hubs)))
        hubs_by_cluster.append((name, tuple(hubs)))
    user_nodes = _user_node_target(spec, [hubs for _, hubs in hubs_by_cluster])
    clusters = tuple(
        _cluster(spec, name, position, hubs, user_nodes)
        for position, (name, hubs) in enumerate(hubs_by_cluster)
    )
    return Topology(clusters=clusters, communities=tuple(communities))


def _cluster_name(position: int) -> str:
    if position < len(_CLUSTER_NAMES):
        return _CLUSTER_NAMES[position]
    return f"cluster-{position + 1:02d}"


def _hub_names(count: int) -> list[str]:
    if count <= len(_HUB_NAMES):
        return list(_HUB_NAMES[:count])
    return [f"hub-{n + 1:03d}" for n in range(count)]


def _communities(hub_names: list[str]) -> tuple[list[Community], dict[str, str]]:
    communities: list[Community] = []
    community_of: dict[str, str] = {}
    position = 0
    while position < len(hub_names):
        size = _COMMUNITY_SIZES[len(communities) % len(_COMMUNITY_SIZES)]
        members = hub_names[position : position + size]
        suffix = _COMMUNITY_SUFFIXES[len(communities) % len(_COMMUNITY_SUFFIXES)]
        community_id = f"{members[0]}-{suffix}"
        communities.append(
            Community(
                id=community_id,
                name=f"{members[0].replace('-', ' ').title()} {suffix.title()}",
                billing_email=f"billing@{community_id}.example.org",
            )
        )
        for member in members:
            community_of[member] = community_id
        position += size
    return communities, community_of


def _users(
    spec: ScenarioSpec, cluster: str, namespace: str, count: int, position: int
) -> tuple[User, ...]:
    rng = entity_random(spec.seed, "usernames", cluster, namespace)
    names = hub_usernames(count, position, rng)
    scripts: dict[int, Script] = {0: Script.CROSSES_MIDNIGHT}
    if count >= 4:
        scripts[1] = scripts[2] = Script.SHARED_PREFIX
        scripts[3] = Script.SHORT_POD
    elif count >= 2:
        scripts[1] = Script.SHORT_POD
    if count >= 5:
        scripts[count - 1] = Script.NEVER_STARTS
    return tuple(
        User(
            username=name,
            escaped=escape_username(name),
            label_value=username_label_value(name),
            script=scripts.get(index),
        )
        for index, name in enumerate(names)
    )


def _listed_hub(
    spec: ScenarioSpec,
    cluster: str,
    name: str,
    index: int,
    global_index: int,
    community_of: dict[str, str],
) -> Hub:
    rng = entity_random(spec.seed, "hub", cluster, name)
    # A few hubs live in a namespace that is not their name, as the config allows.
    namespace = f"jh-{name}" if index % 5 == 2 else name
    return Hub(
        name=name,
        namespace=namespace,
        cluster=cluster,
        listed=True,
        gpu=spec.gpu_hub_every > 0 and (index + 1) % spec.gpu_hub_every == 0,
        utc_offset_hours=rng.randrange(-8, 10),
        users=_users(spec, cluster, namespace, spec.users_per_hub, global_index),
        community=community_of[name],
        dedicated_project=f"{name}-dedicated" if index % 4 == 1 else None,
        monthly_budget=Decimal(500 * rng.randrange(2, 20)).quantize(Decimal("0.01"))
        if index % 3 == 0
        else None,
        has_bucket=index % 3 != 2,
    )


def _unmatched_hub(spec: ScenarioSpec, cluster: str, position: int) -> Hub:
    rng = entity_random(spec.seed, "hub", cluster, UNMATCHED_NAMESPACE)
    count = max(1, spec.users_per_hub // 2)
    return Hub(
        name=UNMATCHED_NAMESPACE,
        namespace=UNMATCHED_NAMESPACE,
        cluster=cluster,
        listed=False,
        gpu=False,
        utc_offset_hours=rng.randrange(-8, 10),
        users=_users(spec, cluster, UNMATCHED_NAMESPACE, count, position),
    )


def _cluster(
    spec: ScenarioSpec, name: str, position: int, hubs: tuple[Hub, ...], user_nodes: int | None
) -> Cluster:
    cpu_users = sum(len(hub.users) for hub in hubs if not hub.gpu)
    gpu_users = sum(len(hub.users) for hub in hubs if hub.gpu)
    # Peak demand is about a tenth of the users at ~4 GiB each; half a GiB of node memory per user
    # leaves room for the autoscaler's slack.
    capacity_needed = cpu_users * GIB // 2
    nodes = user_nodes or max(2, -(-capacity_needed // N2_HIGHMEM[0].memory_bytes))
    machine = next(
        (m for m in N2_HIGHMEM if m.memory_bytes * nodes >= capacity_needed), N2_HIGHMEM[-1]
    )
    return Cluster(
        name=name,
        position=position,
        project=f"{name}-project",
        hubs=hubs,
        user_pool=_pool(spec, name, "user", machine, nodes),
        core_pool=_pool(spec, name, "core", CORE_MACHINE, 1),
        gpu_pool=_pool(spec, name, "gpu", GPU_MACHINE, max(1, -(-gpu_users // 8)))
        if gpu_users
        else None,
    )


# Bill rows per hour besides the user pool's per-node rows (see app.synthetic.bill): per cluster
# the core pool's core and RAM, Filestore, the GKE fee, disks and egress; per hub its bucket and
# its dedicated project's VM core, RAM and bucket; and the shared tools' Cloud Run row.
_ROWS_PER_CLUSTER_HOUR = 6
_ROWS_PER_HOUR = 1


def _user_node_target(spec: ScenarioSpec, hubs_by_cluster: list[tuple[Hub, ...]]) -> int | None:
    """In a detailed bill each user node has a core and a RAM row an hour: size the pool so that
    the rows per hour come near `cost_rows_per_hour`. None: size it by the users instead."""
    if spec.cost_rows_per_hour is None:
        return None
    other_rows = _ROWS_PER_HOUR + sum(
        _ROWS_PER_CLUSTER_HOUR
        + sum(int(hub.has_bucket) + 3 * int(hub.dedicated_project is not None) for hub in hubs)
        for hubs in hubs_by_cluster
    )
    return max(1, (spec.cost_rows_per_hour - other_rows) // (2 * spec.clusters))


def _pool(
    spec: ScenarioSpec, cluster: str, pool: str, machine: MachineType, count: int
) -> NodePool:
    # GKE names nodes gke-<cluster>-<pool>-<instance group hash>-<4 characters>.
    group = stable_hex(8, spec.seed, cluster, pool)
    rng = entity_random(spec.seed, "nodes", cluster, pool)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    names: list[str] = []
    taken: set[str] = set()
    while len(names) < count:
        suffix = "".join(rng.choice(alphabet) for _ in range(4))
        if suffix not in taken:
            taken.add(suffix)
            names.append(f"gke-{cluster}-{pool}-{group}-{suffix}")
    return NodePool(name=pool, machine=machine, nodes=tuple(names))
