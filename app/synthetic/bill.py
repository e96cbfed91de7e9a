"""The cloud bill: hourly charges of one GCP billing account, sized by the clusters' demand.

Shared node pools cost what the autoscaler would have run for the requested memory; Filestore is
provisioned in steps above the stored bytes; buckets and dedicated projects belong to one hub;
the operator's own tools and support belong to nobody. Every charge carries its truth.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from functools import cache

from app.synthetic.catalog import (
    BIGQUERY_ANALYSIS,
    BUCKET_STORAGE,
    CLOUD_RUN_CPU,
    EGRESS,
    FILESTORE_CAPACITY,
    GPU_T4,
    INSTANCE_SKUS,
    PD_CAPACITY,
    REGIONAL_CLUSTER_FEE,
    STANDARD_SUPPORT,
    ZONAL_CLUSTER_FEE,
    Component,
    Sku,
)
from app.synthetic.charges import (
    Adjustment,
    Charge,
    CostClass,
    CostTruth,
    CostType,
    Credit,
    Labels,
    Location,
    Project,
    Resource,
)
from app.synthetic.decimals import percent_of, priced
from app.synthetic.seeding import entity_random, stable_hex
from app.synthetic.spec import ScenarioSpec
from app.synthetic.timefmt import month_start, utc
from app.synthetic.topology import OPERATOR, OPERATOR_PROJECT, Cluster, Hub, NodePool, Topology
from app.synthetic.units import GIB, MIB, SECONDS_PER_DAY, SECONDS_PER_HOUR, TIB
from app.synthetic.usage_truth import ClusterHourlyDemand

BILLING_ACCOUNT_ID = "01A2B3-C4D5E6-F7A8B9"
BILLING_ACCOUNT_NAME = f"{OPERATOR} billing account"
HUB_LABEL = "2i2c:hub-name"
CLUSTER_LABEL = "goog-k8s-cluster-name"
NODE_POOL_LABEL = "goog-k8s-node-pool-name"
REGION = "us-central1"
ZONE = "us-central1-b"
ZONAL = Location(REGION, "US", REGION, ZONE)
REGIONAL = Location(REGION, "US", REGION, None)
MULTI_REGION = Location("US", "US", None, None)
TAX_PERCENT = Decimal("8.25")
_ORGANIZATION_NUMBER = "418265904417"


def bill_charges(
    spec: ScenarioSpec, topology: Topology, demand: dict[str, ClusterHourlyDemand]
) -> Iterator[Charge]:
    """Every charge of the period, hour by hour; regenerated, never held all at once."""
    for hour in range(spec.hours):
        bill = _HourBill(spec, hour)
        for cluster in topology.clusters:
            _cluster_compute(bill, cluster, demand[cluster.name])
            _cluster_home_storage(bill, cluster, demand[cluster.name])
            _cluster_core(bill, cluster, demand[cluster.name])
            for hub in cluster.listed_hubs:
                _hub_direct(bill, cluster, hub)
        _operator_tools(bill)
        _support_and_tax(bill)
        _goodwill_adjustment(bill, topology.clusters[0])
        yield from bill.charges


@cache
def project(project_id: str, labels: Labels = ()) -> Project:
    """A project as the export describes it; the number is made up but stable."""
    number = str(int(stable_hex(12, "project-number", project_id), 16) % 10**12).zfill(12)
    return Project(project_id, number, labels, f"/{_ORGANIZATION_NUMBER}/")


class _HourBill:
    """The charges of one usage hour, with their credits and export times."""

    def __init__(self, spec: ScenarioSpec, hour: int) -> None:
        self.spec = spec
        self.hour = hour
        self.start = spec.period_start_epoch + hour * SECONDS_PER_HOUR
        self.day_of_month = utc(self.start).day
        self.rng = entity_random(spec.seed, "bill", hour)
        self.detailed = spec.cost_rows_per_hour is not None
        self.charges: list[Charge] = []

    def add(
        self,
        sku: Sku,
        in_project: Project | None,
        usage_amount: int,
        truth: CostTruth,
        *,
        labels: Labels = (),
        system_labels: Labels = (),
        location: Location | None = REGIONAL,
        resource: Resource | None = None,
        discount_percent: int = 0,
        free_tier: bool = False,
        cost: Decimal | None = None,
        cost_type: CostType = CostType.regular,
        adjustment: Adjustment | None = None,
    ) -> None:
        amount = Decimal(usage_amount)
        if cost is None:
            cost = priced(amount, sku.list_price, sku.usage_units_per_pricing_unit)
        credits: list[Credit] = []
        if discount_percent:
            credits.append(
                Credit(
                    "Sustained Usage Discount",
                    -percent_of(cost, discount_percent),
                    "Sustained Usage Discount",
                    "SUD",
                    "SUSTAINED_USAGE_DISCOUNT",
                )
            )
        if free_tier:
            credits.append(
                Credit(
                    "Free Tier",
                    -cost,
                    "Free Tier: GKE cluster management fee",
                    "free-tier-gke",
                    "FREE_TIER",
                )
            )
        # Most rows arrive within a day; a few are exported days later.
        if self.rng.random() < self.spec.late_cost_fraction:
            delay = self.rng.randrange(2 * SECONDS_PER_DAY, 6 * SECONDS_PER_DAY)
        else:
            delay = self.rng.randrange(2 * SECONDS_PER_HOUR, 23 * SECONDS_PER_HOUR)
        self.charges.append(
            Charge(
                hour_start=self.start,
                sku=sku,
                project=in_project,
                labels=labels,
                system_labels=system_labels,
                location=location,
                resource=resource,
                usage_amount=amount,
                cost=cost,
                credits=tuple(credits),
                cost_type=cost_type,
                adjustment=adjustment,
                export_time=self.start + SECONDS_PER_HOUR + delay,
                export_microseconds=self.rng.randrange(1_000_000),
                truth=truth,
            )
        )


def _shared(cluster: Cluster, component: Component) -> CostTruth:
    return CostTruth(CostClass.shared, cluster.name, "", component)


def _cluster_labels(cluster: Cluster) -> Labels:
    return ((CLUSTER_LABEL, cluster.name),)


def _cluster_compute(bill: _HourBill, cluster: Cluster, demand: ClusterHourlyDemand) -> None:
    hour = bill.hour
    user_machine = cluster.user_pool.machine
    # The autoscaler keeps one node and adds capacity for the requests plus a quarter of slack.
    wanted = -(-demand.user_pool_memory_byte_seconds[hour] * 5 // (4 * user_machine.memory_bytes))
    # Sustained use discounts start once a VM has run a quarter of the month.
    discount = 0 if bill.day_of_month < 8 else 10 if bill.day_of_month < 15 else 20
    _node_pool(bill, cluster, cluster.user_pool, max(SECONDS_PER_HOUR, wanted), discount)
    _node_pool(
        bill, cluster, cluster.core_pool, SECONDS_PER_HOUR * len(cluster.core_pool.nodes), 20
    )
    if cluster.gpu_pool is not None and demand.gpu_seconds[hour]:
        gpus = cluster.gpu_pool.machine.gpus
        _node_pool(
            bill,
            cluster,
            cluster.gpu_pool,
            -(-demand.gpu_seconds[hour] * 5 // (4 * gpus)),
            discount,
        )


def _node_pool(
    bill: _HourBill, cluster: Cluster, pool: NodePool, node_seconds: int, discount: int
) -> None:
    machine = pool.machine
    core_sku, ram_sku = INSTANCE_SKUS[machine.family]
    labels = (*_cluster_labels(cluster), (NODE_POOL_LABEL, pool.name))
    system_labels = (
        ("compute.googleapis.com/machine_spec", machine.name),
        ("compute.googleapis.com/cores", str(machine.vcpus)),
        ("compute.googleapis.com/memory", str(machine.memory_bytes // MIB)),
    )
    truth = _shared(cluster, Component.compute)
    in_project = project(cluster.project)
    parts: list[tuple[Resource | None, int]]
    if bill.detailed:
        # A detailed export has a row per VM: spread the pool's node-seconds over its nodes.
        parts = [
            (_node_resource(cluster, node), seconds)
            for node, seconds in zip(
                pool.nodes, _even_split(node_seconds, len(pool.nodes)), strict=True
            )
            if seconds
        ]
    else:
        parts = [(None, node_seconds)]
    for resource, seconds in parts:
        for sku, units in (
            (core_sku, machine.vcpus),
            (ram_sku, machine.memory_bytes),
            (GPU_T4, machine.gpus),
        ):
            if units:
                bill.add(
                    sku,
                    in_project,
                    seconds * units,
                    truth,
                    labels=labels,
                    system_labels=system_labels,
                    location=ZONAL,
                    resource=resource,
                    discount_percent=discount,
                )


def _node_resource(cluster: Cluster, node: str) -> Resource:
    return Resource(
        name=node,
        global_name=f"//compute.googleapis.com/projects/{cluster.project}/zones/{ZONE}/instances/{node}",
        focus_type="compute.googleapis.com/Instance",
    )


def _even_split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if position < extra else 0) for position in range(parts)]


def _cluster_home_storage(bill: _HourBill, cluster: Cluster, demand: ClusterHourlyDemand) -> None:
    # Filestore is provisioned, not used: at least 1 TiB, in 256 GiB steps, 30% above the bytes.
    stored_bytes = -(-demand.home_storage_byte_seconds[bill.hour] * 13 // (10 * SECONDS_PER_HOUR))
    step = 256 * GIB
    capacity = max(TIB, -(-stored_bytes // step) * step)
    bill.add(
        FILESTORE_CAPACITY,
        project(cluster.project),
        capacity * SECONDS_PER_HOUR,
        _shared(cluster, Component.home_storage),
        labels=_cluster_labels(cluster),
        location=ZONAL,
    )


def _cluster_core(bill: _HourBill, cluster: Cluster, demand: ClusterHourlyDemand) -> None:
    in_project = project(cluster.project)
    labels = _cluster_labels(cluster)
    core = _shared(cluster, Component.core)
    # The first cluster is zonal, and the account's GKE free tier pays its management fee.
    if cluster.position == 0:
        bill.add(
            ZONAL_CLUSTER_FEE,
            in_project,
            SECONDS_PER_HOUR,
            core,
            labels=labels,
            location=ZONAL,
            free_tier=True,
        )
    else:
        bill.add(REGIONAL_CLUSTER_FEE, in_project, SECONDS_PER_HOUR, core, labels=labels)
    nodes = sum(len(pool.nodes) for pool in cluster.pools)
    disk_bytes = nodes * 100 * GIB + 200 * GIB + len(cluster.hubs) * 10 * GIB
    bill.add(
        PD_CAPACITY, in_project, disk_bytes * SECONDS_PER_HOUR, core, labels=labels, location=ZONAL
    )
    egress = demand.active_users[bill.hour] * bill.rng.randrange(5 * MIB, 60 * MIB)
    egress += bill.rng.randrange(GIB // 4)  # the hubs themselves, with nobody logged in
    bill.add(EGRESS, in_project, egress, _shared(cluster, Component.networking), labels=labels)


def _hub_direct(bill: _HourBill, cluster: Cluster, hub: Hub) -> None:
    rng = entity_random(bill.spec.seed, "hub-storage", cluster.name, hub.name)
    base, growth = rng.randrange(GIB, 5 * TIB), rng.randrange(64 * MIB)
    size = base + growth * bill.hour
    if hub.has_bucket:
        # The hub's scratch bucket: in the cluster's project, labelled with the hub.
        bill.add(
            BUCKET_STORAGE,
            project(cluster.project),
            size * SECONDS_PER_HOUR,
            CostTruth(CostClass.direct, cluster.name, hub.name, Component.object_storage),
            labels=((HUB_LABEL, hub.name),),
            location=MULTI_REGION,
        )
    if hub.dedicated_project is not None:
        # A project of the hub's own: no hub label, the configuration maps the project.
        dedicated = project(hub.dedicated_project, (("community", hub.community or ""),))
        compute = CostTruth(CostClass.direct, cluster.name, hub.name, Component.compute)
        core_sku, ram_sku = INSTANCE_SKUS["N2"]
        bill.add(core_sku, dedicated, 2 * SECONDS_PER_HOUR, compute, location=ZONAL)
        bill.add(ram_sku, dedicated, 16 * GIB * SECONDS_PER_HOUR, compute, location=ZONAL)
        bill.add(
            BUCKET_STORAGE,
            dedicated,
            size // 2 * SECONDS_PER_HOUR,
            CostTruth(CostClass.direct, cluster.name, hub.name, Component.object_storage),
            location=MULTI_REGION,
        )


def _unattributed(component: Component) -> CostTruth:
    return CostTruth(CostClass.unattributed, "", "", component)


def _operator_tools(bill: _HourBill) -> None:
    tools = project(OPERATOR_PROJECT, (("team", "platform"),))
    bill.add(
        CLOUD_RUN_CPU,
        tools,
        bill.rng.randrange(60, SECONDS_PER_HOUR),
        _unattributed(Component.other),
        labels=(("service", "hub-health-checks"),),
    )
    if bill.hour % 24 == 3:  # the nightly reporting query
        bill.add(
            BIGQUERY_ANALYSIS,
            tools,
            bill.rng.randrange(10 * GIB, 2 * TIB),
            _unattributed(Component.other),
            location=MULTI_REGION,
        )


def _support_and_tax(bill: _HourBill) -> None:
    # Billed for the month at its start, or at the period's start when that is mid-month.
    if bill.hour != 0 and month_start(bill.start) != bill.start:
        return
    truth = _unattributed(Component.support)
    bill.add(STANDARD_SUPPORT, None, 1, truth, location=None)
    tax = percent_of(bill.charges[-1].cost, TAX_PERCENT)
    bill.add(STANDARD_SUPPORT, None, 0, truth, location=None, cost=tax, cost_type=CostType.tax)


def _goodwill_adjustment(bill: _HourBill, cluster: Cluster) -> None:
    if bill.hour != min(bill.spec.hours - 1, 36):
        return
    rng = bill.rng
    bill.add(
        INSTANCE_SKUS["N2"][0],
        project(cluster.project),
        0,
        _shared(cluster, Component.compute),
        labels=(*_cluster_labels(cluster), (NODE_POOL_LABEL, "user")),
        location=ZONAL,
        cost=-Decimal(rng.randrange(500, 5000)).scaleb(-2),
        cost_type=CostType.adjustment,
        adjustment=Adjustment(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            description="Goodwill credit for a degraded node pool",
            mode="MANUAL_ADJUSTMENT",
            type="GENERAL_ADJUSTMENT",
        ),
    )
