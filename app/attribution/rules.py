"""The pure core of attribution: divide the real bill among hubs and users, exactly.

`allocate(cost_items, usage, policy, period)` takes plain data and returns plain data; it never
reads the database, the clock or the network, so it can be tested exhaustively and re-run to
explain any amount it produced.

How a cost becomes allocations:

1. Each cost item (a cost line, or a group of lines that agree on everything looked at here) is
   **classified**: direct to one hub (a hub label, a project or account dedicated to the hub, or
   a namespace label naming a hub's namespace), shared by one cluster (the cluster's projects,
   accounts or labels), or unattributed with a reason.
2. Items are summed into **cells**: same classification, component, driver, estimated flag,
   currency and charge period. Only cells are split, so half a million hourly lines make a few
   thousand splits. Every sum here is exact (`allocate` runs in `app.money.EXACT_SUM`): GCP's
   15-digit amounts down to 1e-38 next to thousands need more than the default 28 digits.
3. A cell whose charge period spans several UTC days is first cut into **day slices** in
   proportion to the seconds it overlaps each day.
4. Each slice is **split**, always with `app.money.split_by_weights` (largest remainder), so the
   parts add up to the slice exactly: a shared slice across the cluster's hubs by the component's
   driver within the slice's hours (plus the overhead, idle and no-usage options); then each hub's
   part across its users for compute and home storage; everything else stays at hub level.
5. Parts are summed into daily **allocations** keyed by pool (day, classification, component,
   driver, estimated, currency), hub, user and rule.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from app.config import ComputeDriver, HubmeterConfig, NoUsagePolicy, SplitMode
from app.money import (
    EXACT,
    EXACT_SUM,
    ZERO,
    Shares,
    exact_difference,
    split_by_weights,
    split_evenly,
    split_places,
    units_of,
)
from app.periods import DAY, HOUR, day_start
from app.usage.units import GIB

# Part of every run's policy, hence of every day's input fingerprint: bumped whenever the same
# inputs can give different allocations, so that re-runs recompute days rather than copy them.
# 2: sums are exact at any number of digits (1 rounded them at 28 significant digits).
# 3: a charge cut at midnight is weighed in whole microseconds exactly (2 went through a float,
#    and a boundary inside a second could lose one); a hub label naming another cluster's hub
#    goes to that hub (2 left it unattributed as an unknown hub).
ALGORITHM_VERSION = 3
MICROSECOND = timedelta(microseconds=1)

# --- rules: the `rule` column of an allocation ------------------------------------------------

RULE_DIRECT_HUB_LABEL = "direct-hub-label"
RULE_DIRECT_NAMESPACE_LABEL = "direct-namespace-label"
RULE_DIRECT_DEDICATED = "direct-dedicated"
RULE_SHARED_USAGE = "shared-usage"
RULE_SHARED_EVEN = "shared-even"
RULE_SHARED_WEIGHTS = "shared-weights"
RULE_SHARED_OVERHEAD = "shared-overhead"
RULE_SHARED_NO_USAGE_EVEN = "shared-no-usage-even"
RULE_HUB_SHARED = "hub-shared"
RULE_IDLE = "idle-capacity"
UNATTRIBUTED_PREFIX = "unattributed:"

# --- reasons a cost (or part of one) has no hub -------------------------------------------------

REASON_NO_MATCH = "no-match"  # no hub label, dedicated project or cluster matches
REASON_UNKNOWN_HUB_LABEL = "unknown-hub-label"  # a hub label names a hub not configured
REASON_AMBIGUOUS_HUB_LABEL = "ambiguous-hub-label"  # ...a hub name several clusters use
REASON_AMBIGUOUS_DEDICATED = "ambiguous-dedicated"  # dedicated to several hubs at once
REASON_AMBIGUOUS_CLUSTER = "ambiguous-cluster"  # several clusters claim it equally
REASON_UNKNOWN_CLUSTER = "unknown-cluster"  # a cluster label names a cluster not configured
REASON_NAMESPACE_WITHOUT_HUB = "namespace-without-hub"  # usage of a namespace no hub names
REASON_NO_USAGE = "no-usage"  # shared cost of a period in which nothing was used
REASON_CLUSTER_WITHOUT_HUBS = "cluster-without-hubs"  # shared cost of a cluster with no hubs
REASON_NO_WEIGHTS = "no-weights"  # fixed-weight split where every hub's weight is zero
REASON_IDLE = "idle-capacity"  # unused capacity, kept visible (idle_as_line)

REASONS = {
    REASON_NO_MATCH: "matches no hub label, dedicated project or cluster",
    REASON_UNKNOWN_HUB_LABEL: "its hub label names a hub that is not configured",
    REASON_AMBIGUOUS_HUB_LABEL: "its hub label names a hub in several clusters",
    REASON_AMBIGUOUS_DEDICATED: "it matches the dedicated projects of several hubs",
    REASON_AMBIGUOUS_CLUSTER: "it matches several clusters equally well",
    REASON_UNKNOWN_CLUSTER: "its cluster label names a cluster that is not configured",
    REASON_NAMESPACE_WITHOUT_HUB: "the share of usage in a namespace no hub names",
    REASON_NO_USAGE: "shared cost of a charge period with no usage at all",
    REASON_CLUSTER_WITHOUT_HUBS: "shared cost of a cluster with no active hubs",
    REASON_NO_WEIGHTS: "fixed-weight split where every hub of the cluster weighs zero",
    REASON_IDLE: "capacity the bill paid for and nobody requested",
}

RULE_DESCRIPTIONS = {
    RULE_DIRECT_HUB_LABEL: "the cost lines carry a label naming this hub",
    RULE_DIRECT_NAMESPACE_LABEL: "the cost lines carry a label naming this hub's namespace",
    RULE_DIRECT_DEDICATED: "the cost lines' project or account is dedicated to this hub",
    RULE_SHARED_USAGE: "the cluster's shared cost, split across its hubs by their usage",
    RULE_SHARED_EVEN: "the cluster's shared cost, split evenly across its active hubs",
    RULE_SHARED_WEIGHTS: "the cluster's shared cost, split by the configured hub weights",
    RULE_SHARED_OVERHEAD: "the overhead percentage of the cluster's shared cost, split evenly "
    "across its active hubs",
    RULE_SHARED_NO_USAGE_EVEN: "shared cost of a charge period with no usage, split evenly "
    "across the cluster's active hubs (no_usage: even)",
    RULE_HUB_SHARED: "kept at hub level: the component is not split across users, or no user "
    "(only the hub itself) drove it",
    RULE_IDLE: REASONS[REASON_IDLE],
}


def describe_rule(rule: str) -> str:
    """A sentence for people: what a rule means."""
    if rule.startswith(UNATTRIBUTED_PREFIX):
        reason = rule.removeprefix(UNATTRIBUTED_PREFIX)
        return "unattributed: " + REASONS.get(reason, reason)
    return RULE_DESCRIPTIONS.get(rule, rule)


# Components whose hub part is split across users, and by which driver family.
USER_SPLIT_COMPONENTS = {"compute", "home_storage"}


class PolicyError(ValueError):
    """A policy that cannot be applied (the message says which setting and why)."""


# --- inputs -------------------------------------------------------------------------------------


# Inputs are plain mutable dataclasses with slots, to be treated as read-only: a frozen one
# costs several times more to build, and a month of usage is a million of them.
@dataclass(slots=True)
class CostItem:
    """One cost line, or a group of cost lines that agree on every field below but the amounts.

    `labels` needs only the keys the policy looks at. `consumed_quantity` in `consumed_unit` is
    the capacity the line paid for (used by `idle_as_line`). `line_count` and the id range say
    which stored cost lines the item stands for.
    """

    charge_period_start: datetime
    charge_period_end: datetime
    net_cost: Decimal
    currency: str
    component: str
    estimated: bool = False
    sub_account_id: str | None = None
    billing_account_id: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    gpu: bool = False
    consumed_quantity: Decimal | None = None
    consumed_unit: str | None = None
    line_count: int = 1
    first_line_id: int | None = None
    last_line_id: int | None = None


@dataclass(slots=True)
class UsageRow:
    """Usage of one hub user (or the hub as a whole when `user_id` is None, or of a namespace no
    hub names when `hub_id` is None) in the hour starting at `hour`, in base units."""

    cluster: str
    namespace: str
    hub_id: int | None
    user_id: int | None
    hour: datetime
    memory_request_byte_seconds: Decimal = ZERO
    memory_usage_byte_seconds: Decimal = ZERO
    cpu_request_core_seconds: Decimal = ZERO
    gpu_request_seconds: Decimal = ZERO
    home_storage_byte_seconds: Decimal = ZERO


@dataclass(slots=True)
class UsageColumn:
    """One usage field of every row of a `UsageTable`, exactly: row i has
    `values[i] * 10**exponent` (in the field's base unit). Integers, so that a month of usage
    is summed and split without a `Decimal` per value."""

    values: list[int]
    exponent: int = 0

    @classmethod
    def of(cls, values: Sequence[Decimal]) -> UsageColumn:
        """Decimals as integers times the power of ten of the finest of them."""
        exponent = 0
        for value in values:
            if not value.is_finite():
                raise ValueError(f"expected a finite usage quantity, got {value}")
            value_exponent = value.as_tuple().exponent
            assert isinstance(value_exponent, int)
            exponent = min(exponent, value_exponent)
        return cls([int(value.scaleb(-exponent, EXACT_SUM)) for value in values], exponent)

    def rescaled(self, exponent: int) -> list[int]:
        """The values as integers times 10**exponent (not above this one's exponent)."""
        if exponent == self.exponent:
            return self.values
        factor = 10 ** (self.exponent - exponent)
        return [value * factor for value in self.values]


@dataclass(slots=True)
class UsageTable:
    """Usage rows as columns, the form `allocate` reads fastest (a month is a million rows):
    row i is what `UsageRow(clusters[i], namespaces[i], hub_ids[i], user_ids[i], hours[i],
    ...)` says, with its quantities in `quantities`, keyed by UsageRow field name. Only the
    fields the policy's drivers read are needed (`usage_fields`)."""

    clusters: list[str]
    namespaces: list[str]
    hub_ids: list[int | None]
    user_ids: list[int | None]
    hours: list[datetime]
    quantities: dict[str, UsageColumn]

    @classmethod
    def of_rows(cls, rows: Iterable[UsageRow]) -> UsageTable:
        rows = list(rows)
        return cls(
            clusters=[row.cluster for row in rows],
            namespaces=[row.namespace for row in rows],
            hub_ids=[row.hub_id for row in rows],
            user_ids=[row.user_id for row in rows],
            hours=[row.hour for row in rows],
            quantities={
                name: UsageColumn.of([getattr(row, name) for row in rows]) for name in USAGE_FIELDS
            },
        )

    def __len__(self) -> int:
        return len(self.hours)


@dataclass(frozen=True)
class Period:
    """Whole UTC days, half-open: [start, end)."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"empty period [{self.start}, {self.end})")

    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days)]

    @property
    def start_datetime(self) -> datetime:
        return day_start(self.start)

    @property
    def end_datetime(self) -> datetime:
        return day_start(self.end)


# --- policy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostMatchRule:
    """Which cost lines belong to a cluster or a dedicated hub: any listed project or account,
    or all listed labels."""

    projects: frozenset[str] = frozenset()
    billing_accounts: frozenset[str] = frozenset()
    labels: tuple[tuple[str, str], ...] = ()

    def score(self, item: CostItem) -> int:
        """0: no match; 1: by project or account; 2: by labels (the more specific)."""
        if self.labels and all(item.labels.get(k) == v for k, v in self.labels):
            return 2
        if (item.sub_account_id is not None and item.sub_account_id in self.projects) or (
            item.billing_account_id is not None and item.billing_account_id in self.billing_accounts
        ):
            return 1
        return 0

    def is_empty(self) -> bool:
        return not (self.projects or self.billing_accounts or self.labels)

    def to_json(self) -> dict[str, Any]:
        return {
            "projects": sorted(self.projects),
            "billing_accounts": sorted(self.billing_accounts),
            "labels": dict(self.labels),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CostMatchRule:
        return cls(
            projects=frozenset(data.get("projects", ())),
            billing_accounts=frozenset(data.get("billing_accounts", ())),
            labels=tuple(sorted(dict(data.get("labels", {})).items())),
        )


@dataclass(frozen=True)
class ClusterPolicy:
    name: str
    costs: CostMatchRule = CostMatchRule()


@dataclass(frozen=True)
class HubPolicy:
    id: int
    name: str
    cluster: str
    namespace: str
    community_id: str
    active: bool = True
    dedicated: CostMatchRule = CostMatchRule()


@dataclass(frozen=True)
class Options:
    """The attribution options of the configuration (see app.config.Attribution)."""

    hub_label_keys: tuple[str, ...] = ("2i2c:hub-name", "2i2c.org/hub-name", "hub")
    namespace_label_keys: tuple[str, ...] = ("k8s-namespace",)
    cluster_label_keys: tuple[str, ...] = (
        "goog-k8s-cluster-name",
        "alpha.eksctl.io/cluster-name",
        "aws:eks:cluster-name",
    )
    compute_driver: ComputeDriver = ComputeDriver.memory_request
    cpu_to_memory_price_ratio: Decimal = Decimal("7.5")
    gpu_driver: bool = True
    idle_as_line: bool = False
    shared_split: SplitMode = SplitMode.usage
    hub_weights: tuple[tuple[str, Decimal], ...] = ()
    overhead_percent: Decimal = ZERO
    no_usage: NoUsagePolicy = NoUsagePolicy.unattributed

    def __post_init__(self) -> None:
        if not ZERO <= self.overhead_percent <= 100:
            raise PolicyError(
                f"attribution.overhead_percent must be between 0 and 100, "
                f"got {self.overhead_percent}"
            )
        if self.cpu_to_memory_price_ratio <= 0:
            raise PolicyError("attribution.cpu_to_memory_price_ratio must be positive")
        for name, weight in self.hub_weights:
            if weight < 0:
                raise PolicyError(f"attribution.hub_weights[{name!r}] must not be negative")

    def to_json(self) -> dict[str, Any]:
        return {
            "hub_label_keys": list(self.hub_label_keys),
            "namespace_label_keys": list(self.namespace_label_keys),
            "cluster_label_keys": list(self.cluster_label_keys),
            "compute_driver": self.compute_driver.value,
            "cpu_to_memory_price_ratio": str(self.cpu_to_memory_price_ratio),
            "gpu_driver": self.gpu_driver,
            "idle_as_line": self.idle_as_line,
            "shared_split": self.shared_split.value,
            "hub_weights": {name: str(weight) for name, weight in self.hub_weights},
            "overhead_percent": str(self.overhead_percent),
            "no_usage": self.no_usage.value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Options:
        return cls(
            hub_label_keys=tuple(data["hub_label_keys"]),
            namespace_label_keys=tuple(data["namespace_label_keys"]),
            cluster_label_keys=tuple(data["cluster_label_keys"]),
            compute_driver=ComputeDriver(data["compute_driver"]),
            cpu_to_memory_price_ratio=Decimal(data["cpu_to_memory_price_ratio"]),
            gpu_driver=bool(data["gpu_driver"]),
            idle_as_line=bool(data["idle_as_line"]),
            shared_split=SplitMode(data["shared_split"]),
            hub_weights=tuple(sorted((k, Decimal(v)) for k, v in data["hub_weights"].items())),
            overhead_percent=Decimal(data["overhead_percent"]),
            no_usage=NoUsagePolicy(data["no_usage"]),
        )

    def label_keys(self) -> tuple[str, ...]:
        """Every label key classification reads (besides those in cost matches)."""
        return (*self.hub_label_keys, *self.namespace_label_keys, *self.cluster_label_keys)


@dataclass(frozen=True)
class Policy:
    """Everything attribution decides with: the options, the clusters and the hubs (with the
    database ids allocations refer to)."""

    options: Options
    clusters: tuple[ClusterPolicy, ...]
    hubs: tuple[HubPolicy, ...]

    def __post_init__(self) -> None:
        names = [c.name for c in self.clusters]
        if len(set(names)) != len(names):
            raise PolicyError("cluster names must be unique")
        ids = [h.id for h in self.hubs]
        if len(set(ids)) != len(ids):
            raise PolicyError("hub ids must be unique")

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm_version": ALGORITHM_VERSION,
            "options": self.options.to_json(),
            "clusters": [{"name": c.name, "costs": c.costs.to_json()} for c in self.clusters],
            "hubs": [
                {
                    "id": h.id,
                    "name": h.name,
                    "cluster": h.cluster,
                    "namespace": h.namespace,
                    "community_id": h.community_id,
                    "active": h.active,
                    "dedicated": h.dedicated.to_json(),
                }
                for h in sorted(self.hubs, key=lambda h: h.id)
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        return cls(
            options=Options.from_json(data["options"]),
            clusters=tuple(
                ClusterPolicy(c["name"], CostMatchRule.from_json(c["costs"]))
                for c in data["clusters"]
            ),
            hubs=tuple(
                HubPolicy(
                    id=int(h["id"]),
                    name=h["name"],
                    cluster=h["cluster"],
                    namespace=h["namespace"],
                    community_id=h["community_id"],
                    active=bool(h["active"]),
                    dedicated=CostMatchRule.from_json(h["dedicated"]),
                )
                for h in data["hubs"]
            ),
        )

    def sha256(self) -> str:
        """A fingerprint of the policy: the same policy always gives the same allocations."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def match_label_keys(self) -> tuple[str, ...]:
        """Every label key classification can read, in a stable order."""
        keys = list(self.options.label_keys())
        for cluster in self.clusters:
            keys.extend(k for k, _ in cluster.costs.labels)
        for hub in self.hubs:
            keys.extend(k for k, _ in hub.dedicated.labels)
        return tuple(dict.fromkeys(keys))


@dataclass(frozen=True)
class HubRecord:
    """A hub as the database knows it: what `policy_from_config` needs besides the file."""

    id: int
    cluster: str
    name: str
    namespace: str
    community_id: str
    active: bool


def policy_from_config(config: HubmeterConfig, hubs: Iterable[HubRecord]) -> Policy:
    """The policy of a configuration, with the database's hubs (inactive ones included, so the
    usage they left behind still finds its hub)."""
    attribution = config.attribution
    options = Options(
        hub_label_keys=tuple(attribution.hub_label_keys),
        namespace_label_keys=tuple(attribution.namespace_label_keys),
        cluster_label_keys=tuple(attribution.cluster_label_keys),
        compute_driver=attribution.compute_driver,
        cpu_to_memory_price_ratio=attribution.cpu_to_memory_price_ratio,
        gpu_driver=attribution.gpu_driver,
        idle_as_line=attribution.idle_as_line,
        shared_split=attribution.shared_split,
        hub_weights=tuple(sorted(attribution.hub_weights.items())),
        overhead_percent=attribution.overhead_percent,
        no_usage=attribution.no_usage,
    )
    clusters = tuple(
        ClusterPolicy(
            c.name,
            CostMatchRule(
                projects=frozenset(c.costs.projects),
                billing_accounts=frozenset(c.costs.billing_accounts),
                labels=tuple(sorted(c.costs.labels.items())),
            ),
        )
        for c in config.clusters
    )
    configured = {(h.cluster, h.name): h for h in config.hubs}
    hub_policies = []
    for record in hubs:
        wanted = configured.get((record.cluster, record.name))
        dedicated = CostMatchRule()
        if wanted is not None:
            dedicated = CostMatchRule(
                projects=frozenset(wanted.dedicated.projects),
                billing_accounts=frozenset(wanted.dedicated.billing_accounts),
                labels=tuple(sorted(wanted.dedicated.labels.items())),
            )
        hub_policies.append(
            HubPolicy(
                id=record.id,
                name=record.name,
                cluster=record.cluster,
                namespace=record.namespace,
                community_id=record.community_id,
                active=record.active and wanted is not None,
                dedicated=dedicated,
            )
        )
    return Policy(options=options, clusters=clusters, hubs=tuple(hub_policies))


# --- drivers ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Driver:
    """What a split is proportional to."""

    name: str
    unit: str
    description: str
    capacity_kind: str  # which consumed quantities measure the capacity (for idle_as_line)


DRIVERS = {
    "memory_request": Driver(
        "memory_request",
        "byte-seconds",
        "memory requested by running servers",
        "byte-seconds",
    ),
    "max_request_usage": Driver(
        "max_request_usage",
        "byte-seconds",
        "the larger of memory requested and memory used, hour by hour",
        "byte-seconds",
    ),
    "cpu_memory": Driver(
        "cpu_memory",
        "memory-equivalent byte-seconds",
        "memory requested plus CPU requested, weighted by the CPU-to-memory price ratio",
        "byte-seconds",
    ),
    "gpu": Driver("gpu", "GPU-seconds", "GPUs requested by running servers", "seconds"),
    "home_storage": Driver(
        "home_storage", "byte-seconds", "bytes stored in home directories", "byte-seconds"
    ),
}


def readable_units(driver: str, units: Decimal | None) -> str | None:
    """Driver units for people: GiB-hours, GPU-hours (base units are exact; this is not)."""
    if units is None:
        return None
    if driver == "gpu":
        value, unit = units / 3600, "GPU-hours"
    elif driver == "cpu_memory":
        value, unit = units / (GIB * 3600), "GiB-hour equivalents"
    else:
        value, unit = units / (GIB * 3600), "GiB-hours"
    return f"{value:,.4f} {unit}"


def driver_for(component: str, gpu: bool, options: Options) -> str:
    """The driver that splits a cost of `component` (GPU SKUs by GPU time, if enabled)."""
    if component == "home_storage":
        return "home_storage"
    if component == "compute" and gpu and options.gpu_driver:
        return "gpu"
    return options.compute_driver.value


# The UsageRow fields each driver reads.
USAGE_FIELDS = (
    "memory_request_byte_seconds",
    "memory_usage_byte_seconds",
    "cpu_request_core_seconds",
    "gpu_request_seconds",
    "home_storage_byte_seconds",
)
_DRIVER_FIELDS = {
    "memory_request": ("memory_request_byte_seconds",),
    "max_request_usage": ("memory_request_byte_seconds", "memory_usage_byte_seconds"),
    "cpu_memory": ("memory_request_byte_seconds", "cpu_request_core_seconds"),
    "gpu": ("gpu_request_seconds",),
    "home_storage": ("home_storage_byte_seconds",),
}


def usage_fields(options: Options) -> tuple[str, ...]:
    """The UsageRow fields attribution reads under `options` (the others cannot change an
    allocation): those of the compute driver, memory requests (idle capacity), home storage,
    and GPU time if GPU SKUs follow it."""
    drivers = [options.compute_driver.value, "memory_request", "home_storage"]
    if options.gpu_driver:
        drivers.append("gpu")
    wanted = {name for driver in drivers for name in _DRIVER_FIELDS[driver]}
    return tuple(name for name in USAGE_FIELDS if name in wanted)


def _driver_quantities(name: str, table: UsageTable, options: Options) -> UsageColumn:
    """A driver's units row by row, exactly, as integers times a power of ten."""
    fields = _DRIVER_FIELDS.get(name)
    if fields is None:
        raise PolicyError(f"unknown driver {name!r}")
    missing = [field for field in fields if field not in table.quantities]
    if missing:
        raise PolicyError(f"driver {name!r} needs usage field(s) {', '.join(missing)}, not read")
    if name == "max_request_usage":
        request, used = (table.quantities[field] for field in fields)
        exponent = min(request.exponent, used.exponent)
        values = list(map(max, request.rescaled(exponent), used.rescaled(exponent)))
        return UsageColumn(values, exponent)
    if name == "cpu_memory":
        # Weight one core-second like `ratio` GiB-seconds of memory, in byte-seconds.
        memory, cpu = (table.quantities[field] for field in fields)
        ratio = options.cpu_to_memory_price_ratio
        ratio_exponent = ratio.as_tuple().exponent
        assert isinstance(ratio_exponent, int)
        per_core = int(ratio.scaleb(-ratio_exponent, EXACT_SUM)) * GIB
        exponent = min(memory.exponent, cpu.exponent + ratio_exponent)
        cpu_scaled = UsageColumn(cpu.values, cpu.exponent + ratio_exponent).rescaled(exponent)
        values = [
            m + c * per_core for m, c in zip(memory.rescaled(exponent), cpu_scaled, strict=True)
        ]
        return UsageColumn(values, exponent)
    return table.quantities[fields[0]]


def _idle_driver(name: str) -> str:
    # Idle capacity is measured against what was paid for: memory for node pools (the resource
    # JupyterHub nodes are packed by), GPU time for GPU SKUs, bytes for storage.
    return "memory_request" if name == "cpu_memory" else name


_UNITS = {
    "byteseconds": ("byte-seconds", Decimal(1)),
    "bytesecond": ("byte-seconds", Decimal(1)),
    "gibibytehour": ("byte-seconds", Decimal(GIB * 3600)),
    "gibibytehours": ("byte-seconds", Decimal(GIB * 3600)),
    "gibhour": ("byte-seconds", Decimal(GIB * 3600)),
    "gibhours": ("byte-seconds", Decimal(GIB * 3600)),
    "gibibytemonth": ("byte-seconds", Decimal(GIB * 3600 * 730)),
    "seconds": ("seconds", Decimal(1)),
    "second": ("seconds", Decimal(1)),
    "hour": ("seconds", Decimal(3600)),
    "hours": ("seconds", Decimal(3600)),
}


def capacity_in(unit: str | None, quantity: Decimal | None) -> tuple[str, Decimal] | None:
    """A consumed quantity as (kind, amount in base units), or None if its unit is unknown."""
    if unit is None or quantity is None:
        return None
    key = "".join(ch for ch in unit.lower() if ch.isalnum())
    known = _UNITS.get(key)
    if known is None:
        return None
    kind, factor = known
    return kind, quantity * factor


# --- classification -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where a cost item goes: `kind` direct (to `hub_id`), shared (by `cluster`) or
    unattributed; `how` is the rule (direct, shared) or the reason (unattributed)."""

    kind: str
    cluster: str | None
    hub_id: int | None
    how: str
    detail: str | None = None


class Classifier:
    """Classifies cost items under a policy, remembering the answer per distinct key."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.options = policy.options
        self.cluster_names = {c.name for c in policy.clusters}
        self.hubs_by_name: dict[str, list[HubPolicy]] = defaultdict(list)
        self.hubs_by_namespace: dict[tuple[str, str], HubPolicy] = {}
        for hub in policy.hubs:
            self.hubs_by_name[hub.name].append(hub)
            self.hubs_by_namespace[(hub.cluster, hub.namespace)] = hub
        self.dedicated = [h for h in policy.hubs if not h.dedicated.is_empty()]
        self.label_keys = policy.match_label_keys()
        self._cache: dict[tuple[Any, ...], Target] = {}

    def classify(self, item: CostItem) -> Target:
        labels = item.labels
        key = (
            item.sub_account_id,
            item.billing_account_id,
            tuple(labels.get(k) for k in self.label_keys),
        )
        target = self._cache.get(key)
        if target is None:
            target = self._classify(item)
            self._cache[key] = target
        return target

    def _cluster_of(self, item: CostItem) -> tuple[str | None, str | None, str | None]:
        """(cluster, unattributed reason, detail): the best-matching cluster of a cost item."""
        label_value = next(
            (item.labels[k] for k in self.options.cluster_label_keys if item.labels.get(k)), None
        )
        scores: dict[str, int] = {}
        for cluster in self.policy.clusters:
            score = cluster.costs.score(item)
            if label_value == cluster.name:
                score = max(score, 2)
            if score:
                scores[cluster.name] = score
        if scores:
            best = max(scores.values())
            winners = sorted(name for name, score in scores.items() if score == best)
            if len(winners) == 1:
                return winners[0], None, None
            return None, REASON_AMBIGUOUS_CLUSTER, ",".join(winners)
        if label_value is not None:
            return None, REASON_UNKNOWN_CLUSTER, label_value
        return None, None, None

    def _classify(self, item: CostItem) -> Target:
        cluster, cluster_problem, cluster_detail = self._cluster_of(item)
        labels = item.labels
        for key in self.options.hub_label_keys:
            name = labels.get(key)
            if not name:
                continue
            candidates = self.hubs_by_name.get(name, [])
            if cluster is not None and len(candidates) > 1:
                # The line's cluster decides between hubs of one name; a name only another
                # cluster's hub has is still that hub's (a bucket billed to a shared project).
                candidates = [h for h in candidates if h.cluster == cluster] or candidates
            if len(candidates) == 1:
                hub = candidates[0]
                return Target("direct", hub.cluster, hub.id, RULE_DIRECT_HUB_LABEL, f"{key}={name}")
            reason = REASON_AMBIGUOUS_HUB_LABEL if candidates else REASON_UNKNOWN_HUB_LABEL
            return Target("unattributed", cluster, None, reason, f"{key}={name}")
        dedicated = [h for h in self.dedicated if h.dedicated.score(item)]
        if len(dedicated) == 1:
            hub = dedicated[0]
            return Target("direct", hub.cluster, hub.id, RULE_DIRECT_DEDICATED, None)
        if len(dedicated) > 1:
            names = ",".join(sorted(f"{h.cluster}/{h.name}" for h in dedicated))
            return Target("unattributed", cluster, None, REASON_AMBIGUOUS_DEDICATED, names)
        if cluster is not None:
            for key in self.options.namespace_label_keys:
                namespace = labels.get(key)
                if namespace and (cluster, namespace) in self.hubs_by_namespace:
                    hub = self.hubs_by_namespace[(cluster, namespace)]
                    return Target(
                        "direct", cluster, hub.id, RULE_DIRECT_NAMESPACE_LABEL, f"{key}={namespace}"
                    )
            # A namespace that is no hub's (kube-system, support) is the cluster's overhead.
            return Target("shared", cluster, None, "cluster", None)
        if cluster_problem is not None:
            return Target("unattributed", None, None, cluster_problem, cluster_detail)
        return Target("unattributed", None, None, REASON_NO_MATCH, None)


# --- outputs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PoolKey:
    """The cost of one day that was split one way: the aggregate allocations point back to."""

    day: date
    kind: str  # direct | shared | unattributed
    cluster: str | None
    hub_id: int | None
    how: str  # the direct rule, "cluster", or the unattributed reason
    detail: str | None
    component: str
    driver: str
    estimated: bool
    currency: str


@dataclass(slots=True)
class Pool:
    """A pool and what went into it: the day slices of its cells, the cost lines they stand
    for, and the driver units it was split by."""

    key: PoolKey
    net_cost: Decimal = ZERO
    cost_line_count: int = 0
    first_line_id: int | None = None
    last_line_id: int | None = None
    charge_periods: int = 0
    driver_units: Decimal = ZERO
    capacity_units: Decimal | None = None

    def add_lines(self, count: int, first: int | None, last: int | None) -> None:
        self.cost_line_count += count
        if first is not None:
            self.first_line_id = (
                first if self.first_line_id is None else min(self.first_line_id, first)
            )
        if last is not None:
            self.last_line_id = last if self.last_line_id is None else max(self.last_line_id, last)


@dataclass(slots=True)
class Allocation:
    """Part of a day's bill for a hub and user (or the hub as a whole, or nobody)."""

    day: date
    cluster: str | None
    community_id: str | None
    hub_id: int | None
    user_id: int | None
    component: str
    rule: str
    amount: Decimal
    currency: str
    estimated: bool
    pool: int  # index into AllocationResult.pools
    basis: dict[str, Any]

    @property
    def unattributed(self) -> bool:
        return self.hub_id is None


@dataclass
class AllocationResult:
    allocations: list[Allocation]
    pools: list[Pool]
    # The net cost each day was given (day slices of the cost items), per currency.
    cost_by_day: dict[tuple[date, str], Decimal]

    def allocated_by_day(self) -> dict[tuple[date, str], Decimal]:
        totals: dict[tuple[date, str], Decimal] = defaultdict(lambda: ZERO)
        with localcontext(EXACT_SUM):
            for allocation in self.allocations:
                totals[(allocation.day, allocation.currency)] += allocation.amount
        return dict(totals)

    def imbalances(self) -> dict[tuple[date, str], Decimal]:
        """Days (and currencies) whose allocations do not add up to the cost the core gave
        them: always empty. This is the core checking itself (a property tests rely on); the
        check that counts is the service's, against the cost lines in the database."""
        allocated = self.allocated_by_day()
        keys = set(allocated) | set(self.cost_by_day)
        out = {}
        for key in keys:
            difference = exact_difference(allocated.get(key, ZERO), self.cost_by_day.get(key, ZERO))
            if difference:
                out[key] = difference
        return out


@dataclass(frozen=True, slots=True)
class TracePart:
    """One step of one split, for explanations: `amount` of a day slice of a cell went to
    (hub, user, rule) because of `units` out of `of_units` of the driver."""

    day: date
    pool: PoolKey
    charge_period_start: datetime
    charge_period_end: datetime
    slice_net_cost: Decimal
    cell_line_count: int
    cell_first_line_id: int | None
    cell_last_line_id: int | None
    stage: str  # "hub" (the cell across hubs) or "user" (a hub's part across its users)
    stage_whole: Decimal
    hub_id: int | None
    user_id: int | None
    rule: str
    detail: str | None
    amount: Decimal
    units: Decimal | None
    of_units: Decimal | None


# --- the split ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Cell:
    target: Target
    component: str
    driver: str
    estimated: bool
    currency: str
    start: datetime
    end: datetime
    net_cost: Decimal = ZERO
    line_count: int = 0
    first_line_id: int | None = None
    last_line_id: int | None = None
    capacity: Decimal | None = None


class _Weights:
    """Driver units over some hours of one cluster, as integers times 10**exponent: per hub
    (int) or unnamed namespace (str), and per hub per user (None: the hub's own usage, such as
    a shared directory), with the integer shares split by, prepared once."""

    __slots__ = ("_hub_shares", "_user_shares", "by_hub", "by_user", "exponent", "total")

    def __init__(
        self,
        by_hub: dict[int | str, int],
        by_user: dict[int, dict[int | None, int]],
        total: int,
        exponent: int,
    ) -> None:
        self.by_hub = by_hub
        self.by_user = by_user
        self.total = total
        self.exponent = exponent
        self._hub_shares: Shares[int | str] | None = None
        self._user_shares: dict[int, Shares[int | None]] = {}

    def decimal(self, units: int) -> Decimal:
        """Units as the exact Decimal they stand for."""
        return Decimal(units).scaleb(self.exponent, EXACT_SUM) if units else ZERO

    @property
    def total_decimal(self) -> Decimal:
        return self.decimal(self.total)

    def hub_shares(self) -> Shares[int | str]:
        if self._hub_shares is None:
            self._hub_shares = Shares(list(self.by_hub), list(self.by_hub.values()))
        return self._hub_shares

    def user_shares(self, hub_id: int) -> Shares[int | None] | None:
        """The hub's users' shares, or None if no user (nor the hub itself) drove it."""
        shares = self._user_shares.get(hub_id)
        if shares is None:
            users = self.by_user.get(hub_id)
            if not users:
                return None
            shares = self._user_shares[hub_id] = Shares(list(users), list(users.values()))
        return shares


class _UsageIndex:
    """A day's usage by cluster and hour, and the driver units of any hours, cached."""

    def __init__(self, usage: Iterable[UsageRow] | UsageTable, policy: Policy) -> None:
        self.options = policy.options
        table = usage if isinstance(usage, UsageTable) else UsageTable.of_rows(usage)
        self.table = table
        known_hubs = {h.id for h in policy.hubs}
        # (cluster, hour) -> the indices of its rows, in input order.
        rows: dict[tuple[str, datetime], list[int]] = {}
        for index, (cluster, hour, hub_id) in enumerate(
            zip(table.clusters, table.hours, table.hub_ids, strict=True)
        ):
            if hub_id is not None and hub_id not in known_hubs:
                raise PolicyError(
                    f"usage of cluster {cluster!r}, namespace {table.namespaces[index]!r} names "
                    f"hub id {hub_id}, which the policy does not know"
                )
            at = rows.get((cluster, hour))
            if at is None:
                rows[(cluster, hour)] = [index]
            else:
                at.append(index)
        self.rows = rows
        # What a row's units count for across hubs: its hub, or its namespace if no hub names it.
        self.hub_keys: list[int | str] = [
            namespace if hub_id is None else hub_id
            for hub_id, namespace in zip(table.hub_ids, table.namespaces, strict=True)
        ]
        self._drivers: dict[str, UsageColumn] = {}
        self._cache: dict[tuple[str, tuple[datetime, ...], str], _Weights] = {}

    def exponents(self) -> dict[str, int]:
        """The power of ten each driver's integer units are counted in, for the drivers read."""
        return {name: quantities.exponent for name, quantities in self._drivers.items()}

    def driver(self, name: str) -> UsageColumn:
        quantities = self._drivers.get(name)
        if quantities is None:
            quantities = _driver_quantities(name, self.table, self.options)
            self._drivers[name] = quantities
        return quantities

    def weights(self, cluster: str, hours: tuple[datetime, ...], driver: str) -> _Weights:
        key = (cluster, hours, driver)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        quantities = self.driver(driver)
        values = quantities.values
        hub_keys = self.hub_keys
        hub_ids = self.table.hub_ids
        user_ids = self.table.user_ids
        by_hub: dict[int | str, int] = {}
        by_user: dict[int, dict[int | None, int]] = {}
        total = 0
        for hour in hours:
            for index in self.rows.get((cluster, hour), ()):
                units = values[index]
                if not units:
                    continue
                if units < 0:
                    raise ValueError("weights must be non-negative")
                total += units
                hub_key = hub_keys[index]
                by_hub[hub_key] = by_hub.get(hub_key, 0) + units
                hub_id = hub_ids[index]
                if hub_id is not None:
                    users = by_user.get(hub_id)
                    user_id = user_ids[index]
                    if users is None:
                        by_user[hub_id] = {user_id: units}
                    else:
                        users[user_id] = users.get(user_id, 0) + units
        weights = _Weights(by_hub, by_user, total, quantities.exponent)
        self._cache[key] = weights
        return weights


def _hours_of(start: datetime, end: datetime) -> tuple[datetime, ...]:
    """The usage hours a charge period overlaps (the hour of `start` for an instant)."""
    first = start.replace(minute=0, second=0, microsecond=0)
    if end <= start:
        return (first,)
    hours = []
    hour = first
    while hour < end:
        hours.append(hour)
        hour += HOUR
    return tuple(hours)


def day_slices(start: datetime, end: datetime, amount: Decimal) -> dict[date, Decimal]:
    """`amount` of a charge period cut into the UTC days it overlaps, by seconds overlapped.

    A period within one day (or an instant) stays whole on its day."""
    first_day = start.astimezone(UTC).date()
    if end <= start or (end - timedelta(microseconds=1)).astimezone(UTC).date() == first_day:
        return {first_day: amount}
    weights: dict[date, Decimal] = {}
    day = first_day
    while day_start(day) < end:
        overlap = min(end, day_start(day) + DAY) - max(start, day_start(day))
        weights[day] = Decimal(overlap // MICROSECOND)
        day += DAY
    if amount == 0:
        return dict.fromkeys(weights, ZERO)
    return split_by_weights(amount, weights)


def _slice_bounds(start: datetime, end: datetime, day: date) -> tuple[datetime, datetime]:
    if end <= start:
        return start, end
    return max(start, day_start(day)), min(end, day_start(day) + DAY)


class _Accumulator:
    """Sums parts into daily allocation rows and pools, and passes them to a tracer.

    Amounts are summed as integer coefficients with a power of ten, `[coefficient, exponent,
    units]`: exactly what `Decimal` addition gives (the sum of parts with exponents e1 and e2
    has exponent min(e1, e2)), without a `Decimal` per part. Driver units are integers in the
    power of ten of the pool's driver (`_UsageIndex.exponent`); idle capacity units, which come
    from the bill's consumed quantities, stay `Decimal`.
    """

    def __init__(self, tracer: Callable[[TracePart], None] | None) -> None:
        # Rows refer to pools by position: hashing a PoolKey for every part would cost more
        # than the split itself.
        self.pools: list[Pool] = []
        self.pool_positions: dict[PoolKey, int] = {}
        # (pool, hub, user, rule, detail) -> [coefficient, exponent, units], for everything but
        # a user's parts, which are in user_rows: (pool, hub, rule) -> user -> the same.
        self.rows: dict[tuple[int, int | None, int | None, str, str | None], list[Any]] = {}
        self.user_rows: dict[tuple[int, int, str], dict[int, list[Any]]] = {}
        # (pool, hub) -> hub units summed over the cells split across hubs by usage
        self.hub_units: dict[tuple[int, int | str], int] = {}
        # (pool, hub) -> origin (the rule that brought it) -> [coefficient, exponent]
        self.hub_level_parts: dict[tuple[int, int], dict[str, list[int]]] = {}
        self.tracer = tracer

    def pool(self, key: PoolKey) -> int:
        position = self.pool_positions.get(key)
        if position is None:
            position = self.pool_positions[key] = len(self.pools)
            self.pools.append(Pool(key))
        return position

    def add(
        self,
        pool: int,
        hub_id: int | None,
        user_id: int | None,
        rule: str,
        detail: str | None,
        coefficient: int,
        exponent: int,
        units: int | Decimal | None,
    ) -> None:
        key = (pool, hub_id, user_id, rule, detail)
        row = self.rows.get(key)
        if row is None:
            self.rows[key] = [coefficient, exponent, units]
            return
        _add_to(row, coefficient, exponent)
        if units is not None:
            row[2] = units if row[2] is None else row[2] + units

    def add_decimal(
        self,
        pool: int,
        hub_id: int | None,
        user_id: int | None,
        rule: str,
        detail: str | None,
        amount: Decimal,
        units: int | Decimal | None,
    ) -> None:
        self.add(pool, hub_id, user_id, rule, detail, *_coefficient(amount), units)


def _add_to(row: list[Any], coefficient: int, exponent: int) -> None:
    """Add coefficient * 10**exponent to row[0] * 10**row[1], exactly, keeping the smaller
    exponent (as Decimal addition does)."""
    if exponent == row[1]:
        row[0] += coefficient
    elif exponent < row[1]:
        row[0] = row[0] * 10 ** (row[1] - exponent) + coefficient
        row[1] = exponent
    else:
        row[0] += coefficient * 10 ** (exponent - row[1])


def _coefficient(amount: Decimal) -> tuple[int, int]:
    """A finite Decimal as (coefficient, exponent): amount = coefficient * 10**exponent, with the
    Decimal's own exponent."""
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    return int(amount.scaleb(-exponent, EXACT_SUM)), exponent


def _decimal(coefficient: int, exponent: int) -> Decimal:
    """coefficient * 10**exponent as a Decimal with that exponent."""
    return Decimal(coefficient).scaleb(exponent, EXACT_SUM)


def allocate(
    cost_items: Iterable[CostItem],
    usage: Iterable[UsageRow] | UsageTable,
    policy: Policy,
    period: Period,
    *,
    tracer: Callable[[TracePart], None] | None = None,
) -> AllocationResult:
    """Divide the cost items' net cost within `period` into daily allocations.

    For every day and currency the allocations add up exactly to the day slices of the cost
    items; the result does not depend on the order of the inputs. `tracer`, if given, sees
    every step of every split (this is how an allocation is explained).
    """
    # Every sum below (cells, pools, rows, driver units) is exact: the default context would
    # round at 28 significant digits, and an exact sum of GCP amounts can need fifty.
    with localcontext(EXACT_SUM):
        return _allocate(cost_items, usage, policy, period, tracer)


def _allocate(
    cost_items: Iterable[CostItem],
    usage: Iterable[UsageRow] | UsageTable,
    policy: Policy,
    period: Period,
    tracer: Callable[[TracePart], None] | None,
) -> AllocationResult:
    options = policy.options
    hubs = {h.id: h for h in policy.hubs}
    active_hubs_of: dict[str, list[int]] = defaultdict(list)
    for hub in sorted(policy.hubs, key=lambda h: h.id):
        if hub.active:
            active_hubs_of[hub.cluster].append(hub.id)
    fixed_weights = _fixed_weights(policy)

    cells = _cells(cost_items, Classifier(policy), options)
    index = _UsageIndex(usage, policy)
    acc = _Accumulator(tracer)
    cost_by_day: dict[tuple[date, str], Decimal] = defaultdict(lambda: ZERO)
    period_days = set(period.days())

    # Sorted, so that the pools and allocations come out in the same order for any input order.
    for cell in sorted(cells.values(), key=_cell_order):
        slices = day_slices(cell.start, cell.end, cell.net_cost)
        total_seconds = (cell.end - cell.start).total_seconds()
        for day, amount in slices.items():
            if day not in period_days:
                continue
            cost_by_day[(day, cell.currency)] += amount
            start, end = _slice_bounds(cell.start, cell.end, day)
            capacity = cell.capacity
            if capacity is not None and len(slices) > 1 and total_seconds > 0:
                with localcontext(EXACT):
                    capacity = (
                        capacity * Decimal((end - start).total_seconds()) / Decimal(total_seconds)
                    )
            _SliceSplit(acc, cell, day, start, end, amount, index).run(
                capacity, options, active_hubs_of, fixed_weights
            )

    return _result(acc, hubs, dict(cost_by_day), index)


def _cells(
    cost_items: Iterable[CostItem], classifier: Classifier, options: Options
) -> dict[tuple[Any, ...], _Cell]:
    """The cost items summed into cells: same classification, component, driver, estimated
    flag, currency and charge period. Call inside `localcontext(EXACT_SUM)`."""
    cells: dict[tuple[Any, ...], _Cell] = {}
    for item in cost_items:
        target = classifier.classify(item)
        driver = driver_for(item.component, item.gpu, options)
        key = (
            target,
            item.component,
            driver,
            item.estimated,
            item.currency,
            item.charge_period_start,
            item.charge_period_end,
        )
        cell = cells.get(key)
        if cell is None:
            cell = cells[key] = _Cell(
                target,
                item.component,
                driver,
                item.estimated,
                item.currency,
                item.charge_period_start,
                item.charge_period_end,
            )
        cell.net_cost += item.net_cost
        cell.line_count += item.line_count
        if item.first_line_id is not None:
            first = item.first_line_id
            cell.first_line_id = (
                first if cell.first_line_id is None else min(cell.first_line_id, first)
            )
        if item.last_line_id is not None:
            last = item.last_line_id
            cell.last_line_id = last if cell.last_line_id is None else max(cell.last_line_id, last)
        paid_for = capacity_in(item.consumed_unit, item.consumed_quantity)
        if paid_for is not None and paid_for[0] == DRIVERS[driver].capacity_kind:
            cell.capacity = paid_for[1] if cell.capacity is None else cell.capacity + paid_for[1]
    return cells


def sliced_cost_by_day(
    cost_items: Iterable[CostItem], policy: Policy, period: Period
) -> dict[tuple[date, str], Decimal]:
    """The net cost each day (and currency) of `period` gets from `cost_items`, sliced exactly
    as `allocate` slices it: the items summed into the cells `allocate` splits, each cell cut
    into the days it overlaps by `day_slices`. What a day's allocations must add up to."""
    days = set(period.days())
    out: dict[tuple[date, str], Decimal] = defaultdict(lambda: ZERO)
    with localcontext(EXACT_SUM):
        for cell in _cells(cost_items, Classifier(policy), policy.options).values():
            for day, amount in day_slices(cell.start, cell.end, cell.net_cost).items():
                if day in days:
                    out[(day, cell.currency)] += amount
    return dict(out)


def _cell_order(cell: _Cell) -> tuple[Any, ...]:
    t = cell.target
    return (
        cell.start,
        cell.end,
        t.kind,
        t.cluster or "",
        t.hub_id or 0,
        t.how,
        t.detail or "",
        cell.component,
        cell.driver,
        cell.estimated,
        cell.currency,
    )


def _fixed_weights(policy: Policy) -> dict[int, Decimal]:
    """hub_weights by hub id: "cluster/hub" keys first, then plain hub names; others weigh 0."""
    by_key = dict(policy.options.hub_weights)
    weights = {}
    for hub in policy.hubs:
        weight = by_key.get(f"{hub.cluster}/{hub.name}", by_key.get(hub.name))
        if weight is not None:
            weights[hub.id] = weight
    return weights


class _SliceSplit:
    """Splits one day slice of one cell: the context every step of the split shares.

    Every split of a slice is made at the slice's split precision (`places`, see
    `app.money.split_places`): the hub parts, and the users' parts of each hub part, are
    integers of 10**-places, split with `app.money.Shares`, and summed into the rows as such.
    """

    def __init__(
        self,
        acc: _Accumulator,
        cell: _Cell,
        day: date,
        start: datetime,
        end: datetime,
        amount: Decimal,
        index: _UsageIndex,
    ) -> None:
        target = cell.target
        self.acc = acc
        self.cell = cell
        self.day = day
        self.start = start
        self.end = end
        self.amount = amount
        self.index = index
        self.hub_amount = amount
        self.places = split_places(amount)
        self.hours = _hours_of(start, end)
        self.pool_key = PoolKey(
            day,
            target.kind,
            target.cluster,
            target.hub_id,
            target.how,
            target.detail,
            cell.component,
            cell.driver,
            cell.estimated,
            cell.currency,
        )

    def run(
        self,
        capacity: Decimal | None,
        options: Options,
        active_hubs_of: Mapping[str, list[int]],
        fixed_weights: Mapping[int, Decimal],
    ) -> None:
        target = self.cell.target
        self.pool = self.acc.pool(self.pool_key)
        pool = self.acc.pools[self.pool]
        pool.net_cost += self.amount
        pool.charge_periods += 1
        pool.add_lines(self.cell.line_count, self.cell.first_line_id, self.cell.last_line_id)
        if self.amount == 0:
            return
        if target.kind == "unattributed":
            self.unattributed(self.amount, target.how, target.detail)
            return
        assert target.cluster is not None
        if target.kind == "direct":
            assert target.hub_id is not None
            self.trace("hub", self.amount, target.hub_id, None, target.how, target.detail)
            self.hub_part(target.cluster, target.hub_id, *_coefficient(self.amount), target.how)
            return

        cluster = target.cluster
        weights = self.index.weights(cluster, self.hours, self.cell.driver)
        pool.driver_units += weights.total_decimal
        active = active_hubs_of.get(cluster, [])
        remaining = self.amount

        if options.overhead_percent:
            parts = split_by_weights(
                remaining,
                {"overhead": options.overhead_percent, "rest": 100 - options.overhead_percent},
            )
            overhead, remaining = parts["overhead"], parts["rest"]
            self.even(cluster, overhead, active, RULE_SHARED_OVERHEAD)

        if options.idle_as_line and capacity is not None and capacity > 0 and remaining:
            used_weights = self.index.weights(cluster, self.hours, _idle_driver(self.cell.driver))
            used = used_weights.total_decimal
            idle_units = max(ZERO, capacity - used)
            pool.capacity_units = (pool.capacity_units or ZERO) + capacity
            if idle_units:
                whole = remaining
                parts = split_by_weights(whole, {"idle": idle_units, "used": min(used, capacity)})
                idle, remaining = parts["idle"], parts["used"]
                if idle:
                    self.acc.add_decimal(self.pool, None, None, RULE_IDLE, None, idle, idle_units)
                    self.trace(
                        "hub", idle, None, None, RULE_IDLE, None, idle_units, capacity, whole
                    )
        if not remaining:
            return

        if options.shared_split == SplitMode.even:
            self.even(cluster, remaining, active, RULE_SHARED_EVEN)
        elif options.shared_split == SplitMode.weights:
            hub_weights = {hub_id: fixed_weights.get(hub_id, ZERO) for hub_id in active}
            total = sum(hub_weights.values(), ZERO)
            if not total:
                self.unattributed(remaining, REASON_NO_WEIGHTS, None)
                return
            for hub_id, part in split_by_weights(remaining, hub_weights).items():
                if part:
                    units = hub_weights[hub_id]
                    self.trace(
                        "hub",
                        part,
                        hub_id,
                        None,
                        RULE_SHARED_WEIGHTS,
                        None,
                        units,
                        total,
                        remaining,
                    )
                    self.hub_part(cluster, hub_id, *_coefficient(part), RULE_SHARED_WEIGHTS)
        elif weights.total == 0:
            if options.no_usage == NoUsagePolicy.even:
                self.even(cluster, remaining, active, RULE_SHARED_NO_USAGE_EVEN)
            else:
                self.unattributed(remaining, REASON_NO_USAGE, None)
        else:
            self.by_usage(cluster, remaining, weights)

    def by_usage(self, cluster: str, amount: Decimal, weights: _Weights) -> None:
        """Across the cluster's hubs (and unnamed namespaces) by their driver units."""
        shares = weights.hub_shares()
        exponent = -self.places
        tracing = self.acc.tracer is not None
        hub_units = self.acc.hub_units
        pool = self.pool
        parts = shares.split(units_of(amount, self.places))
        for hub_key, part, units in zip(shares.keys, parts, shares.weights, strict=True):
            if isinstance(hub_key, str):
                # Usage in a namespace no hub names: its share is nobody's, and shown as such.
                rule = UNATTRIBUTED_PREFIX + REASON_NAMESPACE_WITHOUT_HUB
                self.acc.add(pool, None, None, rule, hub_key, part, exponent, units)
                if tracing:
                    self.trace(
                        "hub",
                        _decimal(part, exponent),
                        None,
                        None,
                        rule,
                        hub_key,
                        weights.decimal(units),
                        weights.total_decimal,
                        amount,
                    )
                continue
            key = (pool, hub_key)
            hub_units[key] = hub_units.get(key, 0) + units
            if part:
                if tracing:
                    self.trace(
                        "hub",
                        _decimal(part, exponent),
                        hub_key,
                        None,
                        RULE_SHARED_USAGE,
                        None,
                        weights.decimal(units),
                        weights.total_decimal,
                        amount,
                    )
                self.hub_part(cluster, hub_key, part, exponent, RULE_SHARED_USAGE, weights)

    def even(self, cluster: str, amount: Decimal, hub_ids: list[int], rule: str) -> None:
        """Equal parts for the cluster's active hubs."""
        if not amount:
            return
        if not hub_ids:
            self.unattributed(amount, REASON_CLUSTER_WITHOUT_HUBS, cluster)
            return
        count = Decimal(len(hub_ids))
        for hub_id, part in split_evenly(amount, hub_ids).items():
            if part:
                self.trace("hub", part, hub_id, None, rule, None, Decimal(1), count, amount)
                self.hub_part(cluster, hub_id, *_coefficient(part), rule)

    def unattributed(self, amount: Decimal, reason: str, detail: str | None) -> None:
        rule = UNATTRIBUTED_PREFIX + reason
        self.acc.add_decimal(self.pool, None, None, rule, detail, amount, None)
        self.trace("hub", amount, None, None, rule, detail)

    def hub_part(
        self,
        cluster: str,
        hub_id: int,
        coefficient: int,
        exponent: int,
        rule: str,
        cluster_weights: _Weights | None = None,
    ) -> None:
        """A hub's part (coefficient * 10**exponent): compute and home storage across its users
        by the driver, the rest (and anything no user drove) at hub level."""
        tracing = self.acc.tracer is not None
        if tracing:
            self.hub_amount = _decimal(coefficient, exponent)
        if self.cell.component in USER_SPLIT_COMPONENTS:
            weights = cluster_weights or self.index.weights(cluster, self.hours, self.cell.driver)
            users = weights.user_shares(hub_id)
            if users is not None:
                # The hot loop of a month's attribution (a part per user and hour): the part in
                # units of the slice's precision (never finer than the part's own digits), split
                # in integers, summed into the rows as written out here rather than through
                # _Accumulator.add.
                places = self.places
                group_key = (self.pool, hub_id, rule)
                rows = self.acc.user_rows.get(group_key)
                if rows is None:
                    rows = self.acc.user_rows[group_key] = {}
                parts = users.split(coefficient * 10 ** (exponent + places))
                exponent = -places
                for user_id, part, units in zip(users.keys, parts, users.weights, strict=True):
                    if not part:
                        continue
                    if user_id is None:
                        self.hub_level(hub_id, rule, part, exponent, units)
                        if tracing:
                            self.trace_user(part, hub_id, None, RULE_HUB_SHARED, units, weights)
                        continue
                    row = rows.get(user_id)
                    if row is None:
                        rows[user_id] = [part, exponent, units]
                    else:
                        if row[1] == exponent:
                            row[0] += part
                        else:
                            _add_to(row, part, exponent)
                        row[2] += units
                    if tracing:
                        self.trace_user(part, hub_id, user_id, rule, units, weights)
                return
        self.hub_level(hub_id, rule, coefficient, exponent, None)
        if tracing:
            amount = _decimal(coefficient, exponent)
            self.trace("user", amount, hub_id, None, RULE_HUB_SHARED, None, None, None, amount)

    def hub_level(
        self, hub_id: int, origin: str, coefficient: int, exponent: int, units: int | None
    ) -> None:
        self.acc.add(self.pool, hub_id, None, RULE_HUB_SHARED, None, coefficient, exponent, units)
        parts = self.acc.hub_level_parts.setdefault((self.pool, hub_id), {})
        part = parts.get(origin)
        if part is None:
            parts[origin] = [coefficient, exponent]
        else:
            _add_to(part, coefficient, exponent)

    def trace_user(
        self,
        part: int,
        hub_id: int,
        user_id: int | None,
        rule: str,
        units: int,
        weights: _Weights,
    ) -> None:
        """A step of a hub's part across its users (whole: the hub's part)."""
        self.trace(
            "user",
            _decimal(part, -self.places),
            hub_id,
            user_id,
            rule,
            None,
            weights.decimal(units),
            weights.decimal(weights.by_hub[hub_id]),
            self.hub_amount,
        )

    def trace(
        self,
        stage: str,
        amount: Decimal,
        hub_id: int | None,
        user_id: int | None,
        rule: str,
        detail: str | None,
        units: Decimal | None = None,
        of_units: Decimal | None = None,
        whole: Decimal | None = None,
    ) -> None:
        sink = self.acc.tracer
        if sink is None:
            return
        sink(
            TracePart(
                day=self.day,
                pool=self.pool_key,
                charge_period_start=self.start,
                charge_period_end=self.end,
                slice_net_cost=self.amount,
                cell_line_count=self.cell.line_count,
                cell_first_line_id=self.cell.first_line_id,
                cell_last_line_id=self.cell.last_line_id,
                stage=stage,
                stage_whole=self.amount if whole is None else whole,
                hub_id=hub_id,
                user_id=user_id,
                rule=rule,
                detail=detail,
                amount=amount,
                units=units,
                of_units=of_units,
            )
        )


def _result(
    acc: _Accumulator,
    hubs: Mapping[int, HubPolicy],
    cost_by_day: dict[tuple[date, str], Decimal],
    index: _UsageIndex,
) -> AllocationResult:
    allocations: list[Allocation] = []
    append = allocations.append
    pools = acc.pools
    # Integer driver units are in the power of ten of the pool's driver (any pool with such
    # units had its driver's units computed).
    exponents = index.exponents()
    hub_units_text: dict[tuple[int, int], str | None] = {}

    def hub_units_of(position: int, hub_id: int, units_exponent: int) -> str | None:
        """The hub's units summed over the pool's cells split across hubs by usage, as text."""
        key = (position, hub_id)
        if key in hub_units_text:
            return hub_units_text[key]
        summed = acc.hub_units.get(key)
        text = None if summed is None else _units_text(summed, units_exponent)
        hub_units_text[key] = text
        return text

    for (position, hub_id, user_id, rule, detail), row in acc.rows.items():
        coefficient, exponent, units = row
        if not coefficient:
            continue
        amount = Decimal(coefficient).scaleb(exponent)
        pool = pools[position]
        key = pool.key
        units_exponent = exponents.get(key.driver, 0)
        basis: dict[str, Any] = {"driver": key.driver}
        if hub_id is None:
            if detail is not None:
                basis["detail"] = detail
            if units is not None:
                basis["units"] = _units_text(units, units_exponent)
                basis["of_units"] = _text(
                    pool.capacity_units if rule == RULE_IDLE else pool.driver_units
                )
            append(
                Allocation(key.day, key.cluster, None, None, None, key.component, rule, amount,
                           key.currency, key.estimated, position, basis)
            )  # fmt: skip
            continue
        if user_id is not None and units is not None:  # pragma: no cover - in user_rows
            basis["user_units"] = _units_text(units, units_exponent)
        hub_units = hub_units_of(position, hub_id, units_exponent)
        if hub_units is not None:
            # The pool's units (the denominator of the hub's share) are on the pool.
            basis["hub_units"] = hub_units
        if user_id is None:
            if units is not None:
                basis["hub_level_units"] = _units_text(units, units_exponent)
            parts = acc.hub_level_parts.get((position, hub_id))
            if parts and len(parts) > 1:
                basis["origins"] = {
                    origin: format(_decimal(*value), "f") for origin, value in parts.items()
                }
        hub = hubs[hub_id]
        append(
            Allocation(key.day, hub.cluster, hub.community_id, hub_id, user_id, key.component,
                       rule, amount, key.currency, key.estimated, position, basis)
        )  # fmt: skip

    # Users' parts: the basis is the driver, the user's units and the hub's.
    for (position, hub_id, rule), users in acc.user_rows.items():
        key = pools[position].key
        driver = key.driver
        units_exponent = exponents.get(driver, 0)
        hub_units = hub_units_of(position, hub_id, units_exponent)
        hub = hubs[hub_id]
        for user_id, (coefficient, exponent, units) in users.items():
            if not coefficient:
                continue
            basis = {"driver": driver, "user_units": _units_text(units, units_exponent)}
            if hub_units is not None:
                basis["hub_units"] = hub_units
            append(
                Allocation(key.day, hub.cluster, hub.community_id, hub_id, user_id,
                           key.component, rule, Decimal(coefficient).scaleb(exponent),
                           key.currency, key.estimated, position, basis)
            )  # fmt: skip
    return AllocationResult(allocations=allocations, pools=list(pools), cost_by_day=cost_by_day)


def _units_text(units: int | Decimal, exponent: int) -> str:
    """Driver units as exact decimal text: integers in the driver's power of ten (or Decimal)."""
    if isinstance(units, Decimal):
        return format(units, "f")
    if exponent == 0:
        return str(units)
    return format(Decimal(units).scaleb(exponent, EXACT_SUM), "f")


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def allocation_sort_key(allocation: Allocation) -> tuple[Any, ...]:
    """A total order on allocations, for comparisons that must not depend on input order."""
    return (
        allocation.day,
        allocation.cluster or "",
        allocation.hub_id or 0,
        allocation.user_id or 0,
        allocation.component,
        allocation.rule,
        allocation.estimated,
        allocation.currency,
        json.dumps(allocation.basis, sort_keys=True),
        allocation.amount,
    )


__all__ = [
    "REASONS",
    "Allocation",
    "AllocationResult",
    "ClusterPolicy",
    "CostItem",
    "CostMatchRule",
    "HubPolicy",
    "HubRecord",
    "Options",
    "Period",
    "Policy",
    "PolicyError",
    "Pool",
    "PoolKey",
    "TracePart",
    "UsageRow",
    "allocate",
    "day_slices",
    "driver_for",
    "policy_from_config",
    "sliced_cost_by_day",
]
