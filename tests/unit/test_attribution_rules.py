"""The pure attribution core: exact conservation, non-negative parts, proportionality within one
unit at every step of every split, determinism and independence of input order, over random
costs, usage and policies; and the classification and options, by example."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.attribution.rules import (
    AllocationResult,
    ClusterPolicy,
    CostItem,
    CostMatchRule,
    HubPolicy,
    HubRecord,
    Options,
    Period,
    Policy,
    PolicyError,
    TracePart,
    UsageRow,
    allocate,
    allocation_sort_key,
    day_slices,
    describe_rule,
    policy_from_config,
    sliced_cost_by_day,
)
from app.config import (
    Attribution,
    Cluster,
    Community,
    ComputeDriver,
    CostMatch,
    Hub,
    HubmeterConfig,
    NoUsagePolicy,
    SplitMode,
)
from app.money import split_by_weights, split_places

GIB = 1024**3
START = date(2026, 10, 1)
PERIOD = Period(START, START + timedelta(days=2))
T0 = datetime(2026, 10, 1, tzinfo=UTC)
COMPONENTS = ("compute", "home_storage", "object_storage", "networking", "core", "support", "other")


# --- strategies ---------------------------------------------------------------------------------

HUBS = (
    HubPolicy(1, "ocean", "atlantic", "ocean", "ocean-lab"),
    HubPolicy(
        2,
        "climate",
        "atlantic",
        "jh-climate",
        "climate-school",
        dedicated=CostMatchRule(projects=frozenset({"climate-data"})),
    ),
    HubPolicy(3, "geo", "atlantic", "geo", "geo-institute", active=False),
    HubPolicy(4, "ocean", "pacific", "ocean", "ocean-lab"),
    HubPolicy(5, "polar", "pacific", "polar", "polar-lab"),
)
CLUSTERS = (
    ClusterPolicy("atlantic", CostMatchRule(projects=frozenset({"atlantic-project"}))),
    ClusterPolicy(
        "pacific",
        CostMatchRule(
            projects=frozenset({"pacific-project"}),
            labels=(("goog-k8s-cluster-name", "pacific"),),
        ),
    ),
)
USERS = {1: (11, 12, 13), 2: (21, 22), 3: (31,), 4: (41, 42), 5: (51,)}


@st.composite
def options(draw: st.DrawFn) -> Options:
    return Options(
        compute_driver=draw(st.sampled_from(ComputeDriver)),
        cpu_to_memory_price_ratio=draw(st.sampled_from([Decimal("7.5"), Decimal("0.3")])),
        gpu_driver=draw(st.booleans()),
        idle_as_line=draw(st.booleans()),
        shared_split=draw(st.sampled_from(SplitMode)),
        hub_weights=tuple(
            sorted(
                draw(
                    st.dictionaries(
                        st.sampled_from(["ocean", "atlantic/climate", "pacific/polar", "geo"]),
                        st.sampled_from([Decimal(0), Decimal(1), Decimal("2.5"), Decimal(7)]),
                        max_size=4,
                    )
                ).items()
            )
        ),
        overhead_percent=draw(
            st.sampled_from([Decimal(0), Decimal(10), Decimal("33.3"), Decimal(100)])
        ),
        no_usage=draw(st.sampled_from(NoUsagePolicy)),
    )


def gcp_amounts(non_negative: bool = False) -> st.SearchStrategy[Decimal]:
    """As GCP's FLOAT64 costs are stored (app.costs.values.float64_decimal): 15 significant
    digits, the last at 1e-38 (about 1e-24 in all) up to 1e-9 (about a hundred thousand)."""
    return st.builds(
        lambda sign, digits, exponent: Decimal((sign, tuple(map(int, str(digits))), exponent)),
        st.just(0) if non_negative else st.sampled_from([0, 1]),
        st.integers(10**14, 10**15 - 1),
        st.integers(-38, -9),
    )


def amounts(non_negative: bool = False) -> st.SearchStrategy[Decimal]:
    low = 0 if non_negative else -500_000_000
    return st.one_of(
        st.builds(
            lambda units, places: Decimal(units).scaleb(-places),
            st.integers(low, 2_000_000_000),
            st.sampled_from([0, 2, 6, 11, 13]),
        ),
        gcp_amounts(non_negative),
    )


@st.composite
def cost_items(draw: st.DrawFn, non_negative: bool = False, long_periods: bool = True) -> CostItem:
    start = T0 + timedelta(hours=draw(st.integers(-3, 49)))
    hours = draw(st.sampled_from([1, 1, 1, 1, 0, 30, 50] if long_periods else [1, 0]))
    labels: dict[str, str] = {}
    if draw(st.booleans()):
        labels["2i2c:hub-name"] = draw(st.sampled_from(["ocean", "polar", "unknown-hub"]))
    if draw(st.booleans()):
        labels["goog-k8s-cluster-name"] = draw(st.sampled_from(["atlantic", "pacific", "arctic"]))
    if draw(st.booleans()):
        labels["k8s-namespace"] = draw(st.sampled_from(["jh-climate", "kube-system", "polar"]))
    component = draw(st.sampled_from(COMPONENTS))
    return CostItem(
        charge_period_start=start,
        charge_period_end=start + timedelta(hours=hours),
        net_cost=draw(amounts(non_negative)),
        currency="USD",
        component=component,
        estimated=draw(st.booleans()),
        sub_account_id=draw(
            st.sampled_from(["atlantic-project", "pacific-project", "climate-data", "tools", None])
        ),
        labels=labels,
        gpu=draw(st.booleans()),
        consumed_quantity=draw(st.none() | st.integers(0, 10**16).map(Decimal)),
        consumed_unit=draw(st.sampled_from([None, "byte-seconds", "seconds", "gibibyte hour"])),
        line_count=draw(st.integers(1, 5)),
        first_line_id=draw(st.integers(1, 1000)),
        last_line_id=draw(st.integers(1000, 2000)),
    )


@st.composite
def usage_rows(draw: st.DrawFn) -> list[UsageRow]:
    rows = []
    seen = set()
    for _ in range(draw(st.integers(0, 30))):
        hour = T0 + timedelta(hours=draw(st.integers(0, 47)))
        hub = draw(st.sampled_from([1, 2, 3, 4, 5, None]))
        if hub is None:
            cluster, namespace, user = (
                draw(st.sampled_from(["atlantic", "pacific"])),
                "unlisted",
                None,
            )
        else:
            h = HUBS[hub - 1]
            cluster, namespace = h.cluster, h.namespace
            user = draw(st.sampled_from([*USERS[hub], None]))
        key = (cluster, namespace, hub, user, hour)
        if key in seen:
            continue
        seen.add(key)
        value = st.integers(0, 10**15).map(Decimal)
        rows.append(
            UsageRow(
                cluster,
                namespace,
                hub,
                user,
                hour,
                memory_request_byte_seconds=draw(value),
                memory_usage_byte_seconds=draw(value),
                cpu_request_core_seconds=draw(st.integers(0, 7200).map(Decimal)),
                gpu_request_seconds=draw(st.sampled_from([Decimal(0), Decimal(3600)])),
                home_storage_byte_seconds=draw(value),
            )
        )
    return rows


def policy_with(opts: Options) -> Policy:
    return Policy(opts, CLUSTERS, HUBS)


def cost_by_day(items: list[CostItem]) -> dict[date, Fraction]:
    """The net cost of each day of PERIOD, for items whose charge period lies within a day, as
    exact fractions (whatever decimal context the test runs in)."""
    totals: dict[date, Fraction] = defaultdict(Fraction)
    for item in items:
        day = item.charge_period_start.date()
        if PERIOD.start <= day < PERIOD.end:
            totals[day] += Fraction(item.net_cost)
    return totals


def allocated_by_day(result: AllocationResult) -> dict[date, Fraction]:
    allocated: dict[date, Fraction] = defaultdict(Fraction)
    for allocation in result.allocations:
        allocated[allocation.day] += Fraction(allocation.amount)
    return allocated


PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- properties ---------------------------------------------------------------------------------


@PROPERTY
@given(st.lists(cost_items(long_periods=False), max_size=25), usage_rows(), options())
def test_every_day_adds_up_exactly(
    items: list[CostItem], usage: list[UsageRow], opts: Options
) -> None:
    result = allocate(items, usage, policy_with(opts), PERIOD)
    allocated = allocated_by_day(result)
    expected = cost_by_day(items)
    assert {d: v for d, v in allocated.items() if v} == {d: v for d, v in expected.items() if v}
    assert result.imbalances() == {}
    assert sum(Fraction(p.net_cost) for p in result.pools) == sum(expected.values())
    sliced = sliced_cost_by_day(items, policy_with(opts), PERIOD)
    assert {d: Fraction(v) for (d, _), v in sliced.items() if v} == {
        d: v for d, v in expected.items() if v
    }


@PROPERTY
@given(
    st.lists(cost_items(long_periods=False), min_size=2, max_size=25).filter(
        lambda items: any(i.net_cost and abs(i.net_cost) < Decimal("1E-10") for i in items)
    ),
    usage_rows(),
    options(),
)
def test_gcp_shaped_amounts_add_up_exactly_in_a_28_digit_context(
    items: list[CostItem], usage: list[UsageRow], opts: Options
) -> None:
    # A caller whose decimal context is Python's default (28 significant digits, as any thread
    # that did not start from hubmeter's defaults has) still gets exact sums.
    with localcontext() as context:
        context.prec = 28
        result = allocate(items, usage, policy_with(opts), PERIOD)
        sliced = sliced_cost_by_day(items, policy_with(opts), PERIOD)
    expected = {d: v for d, v in cost_by_day(items).items() if v}
    assert {d: v for d, v in allocated_by_day(result).items() if v} == expected
    assert {d: Fraction(v) for (d, _), v in sliced.items() if v} == expected
    assert {d: Fraction(v) for (d, _), v in result.cost_by_day.items() if v} == expected


@PROPERTY
@given(st.lists(cost_items(), max_size=25), usage_rows(), options())
def test_charges_over_several_days_add_up_over_the_period(
    items: list[CostItem], usage: list[UsageRow], opts: Options
) -> None:
    # A charge period over several days is cut into days after the lines of the same cell are
    # summed (so how lines were grouped cannot matter); each day still gets what was cut for it.
    inside = [
        i
        for i in items
        if PERIOD.start_datetime <= i.charge_period_start < PERIOD.end_datetime
        and i.charge_period_end <= PERIOD.end_datetime
    ]
    result = allocate(inside, usage, policy_with(opts), PERIOD)
    assert result.imbalances() == {}
    total = sum(Fraction(a.amount) for a in result.allocations)
    assert total == sum(Fraction(i.net_cost) for i in inside)
    assert sliced_cost_by_day(inside, policy_with(opts), PERIOD) == result.cost_by_day
    # Each cut (the core's per cell, this reference's per item) is within one unit of its
    # split precision, which is never coarser than 1e-11.
    tolerance = 2 * len(inside) * Decimal("1E-11")
    for day in PERIOD.days():
        sliced = sum(
            (
                day_slices(i.charge_period_start, i.charge_period_end, i.net_cost).get(
                    day, Decimal(0)
                )
                for i in inside
            ),
            Decimal(0),
        )
        given_to_day = sum((v for (d, _), v in result.cost_by_day.items() if d == day), Decimal(0))
        assert abs(given_to_day - sliced) <= tolerance


@PROPERTY
@given(st.lists(cost_items(non_negative=True), max_size=25), usage_rows(), options())
def test_non_negative_costs_make_non_negative_parts(
    items: list[CostItem], usage: list[UsageRow], opts: Options
) -> None:
    result = allocate(items, usage, policy_with(opts), PERIOD)
    assert all(a.amount >= 0 for a in result.allocations)


@PROPERTY
@given(st.lists(cost_items(), max_size=25), usage_rows(), options())
def test_every_step_of_every_split_is_proportional_within_one_unit(
    items: list[CostItem], usage: list[UsageRow], opts: Options
) -> None:
    steps: list[TracePart] = []
    allocate(items, usage, policy_with(opts), PERIOD, tracer=steps.append)
    for step in steps:
        if step.units is None or step.of_units is None:
            continue
        unit = Fraction(1, 10 ** split_places(step.stage_whole))
        exact = Fraction(step.stage_whole) * Fraction(step.units) / Fraction(step.of_units)
        assert abs(Fraction(step.amount) - exact) < unit, step


@PROPERTY
@given(
    st.lists(cost_items(), max_size=25), usage_rows(), options(), st.randoms(use_true_random=False)
)
def test_the_result_does_not_depend_on_the_order_of_the_inputs(
    items: list[CostItem], usage: list[UsageRow], opts: Options, rnd: random.Random
) -> None:
    policy = policy_with(opts)
    first = allocate(items, usage, policy, PERIOD)
    shuffled_items, shuffled_usage = list(items), list(usage)
    rnd.shuffle(shuffled_items)
    rnd.shuffle(shuffled_usage)
    hubs = list(policy.hubs)
    rnd.shuffle(hubs)
    second = allocate(shuffled_items, shuffled_usage, Policy(opts, CLUSTERS, tuple(hubs)), PERIOD)
    again = allocate(items, usage, policy, PERIOD)

    def canonical(result: AllocationResult) -> list[tuple[object, ...]]:
        return sorted(allocation_sort_key(a) for a in result.allocations)

    assert canonical(first) == canonical(second) == canonical(again)
    assert [a.amount for a in first.allocations] == [a.amount for a in again.allocations]


@PROPERTY
@given(options())
def test_a_policy_survives_its_json_unchanged(opts: Options) -> None:
    policy = policy_with(opts)
    restored = Policy.from_json(policy.to_json())
    assert restored == policy
    assert restored.sha256() == policy.sha256()


@PROPERTY
@given(amounts(), st.integers(0, 24 * 60), st.integers(0, 24 * 90))
def test_day_slices_add_up_and_follow_the_seconds(
    amount: Decimal, offset: int, minutes: int
) -> None:
    start = T0 + timedelta(minutes=offset)
    end = start + timedelta(minutes=minutes)
    slices = day_slices(start, end, amount)
    assert sum(slices.values(), Decimal(0)) == amount
    if minutes:
        total = Decimal(minutes * 60)
        unit = Decimal(1).scaleb(-split_places(amount)) if amount else Decimal(0)
        for day, part in slices.items():
            day_start = datetime.combine(day, datetime.min.time(), UTC)
            seconds = (
                min(end, day_start + timedelta(days=1)) - max(start, day_start)
            ).total_seconds()
            assert abs(part - amount * Decimal(int(seconds)) / total) <= unit


# --- examples -----------------------------------------------------------------------------------


def test_a_gcp_amount_next_to_thousands_is_not_rounded_away() -> None:
    lines = [
        item(net_cost=Decimal("1234.56"), component="other", sub_account_id="tools"),
        item(net_cost=Decimal("1.23456789012345E-12"), component="other", sub_account_id="tools"),
    ]
    with localcontext() as context:
        context.prec = 28  # Python's default, which gave 1234.560000000001234567890123
        result = allocate(lines, [], policy_with(Options()), PERIOD)
    [allocation] = result.allocations
    assert allocation.amount == Decimal("1234.56000000000123456789012345")
    assert result.pools[allocation.pool].net_cost == allocation.amount
    assert result.cost_by_day == {(START, "USD"): allocation.amount}


def item(**fields: object) -> CostItem:
    defaults: dict[str, object] = {
        "charge_period_start": T0 + timedelta(hours=9),
        "charge_period_end": T0 + timedelta(hours=10),
        "net_cost": Decimal("10.00"),
        "currency": "USD",
        "component": "compute",
        "sub_account_id": "atlantic-project",
    }
    defaults.update(fields)
    return CostItem(**defaults)  # type: ignore[arg-type]


def use(hub: int | None, user: int | None, gib_hours: int = 0, **fields: object) -> UsageRow:
    cluster, namespace = (
        ("atlantic", "unlisted")
        if hub is None
        else (HUBS[hub - 1].cluster, HUBS[hub - 1].namespace)
    )
    values: dict[str, object] = {"memory_request_byte_seconds": Decimal(gib_hours * GIB * 3600)}
    values.update(fields)
    return UsageRow(cluster, namespace, hub, user, T0 + timedelta(hours=9), **values)  # type: ignore[arg-type]


def by_owner(
    items: list[CostItem], usage: list[UsageRow], opts: Options | None = None
) -> dict[tuple[object, ...], Decimal]:
    result = allocate(items, usage, policy_with(opts or Options()), PERIOD)
    out: dict[tuple[object, ...], Decimal] = defaultdict(Decimal)
    for a in result.allocations:
        out[(a.hub_id, a.user_id, a.rule)] += a.amount
    return dict(out)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"labels": {"2i2c:hub-name": "ocean"}}, (1, None, "hub-shared")),
        # A hub name used in two clusters is resolved by the line's cluster...
        (
            {"labels": {"2i2c:hub-name": "ocean"}, "sub_account_id": "pacific-project"},
            (4, None, "hub-shared"),
        ),
        # ...and without one it is ambiguous.
        (
            {"labels": {"2i2c:hub-name": "ocean"}, "sub_account_id": None},
            (None, None, "unattributed:ambiguous-hub-label"),
        ),
        (
            {"labels": {"2i2c:hub-name": "unknown-hub"}},
            (None, None, "unattributed:unknown-hub-label"),
        ),
        # A name only another cluster's hub has is that hub's, whatever project billed it.
        ({"labels": {"2i2c:hub-name": "polar"}}, (5, None, "hub-shared")),
        ({"sub_account_id": "climate-data"}, (2, None, "hub-shared")),
        ({"labels": {"k8s-namespace": "jh-climate"}}, (2, None, "hub-shared")),
        ({"sub_account_id": "tools"}, (None, None, "unattributed:no-match")),
        (
            {"sub_account_id": None, "labels": {"goog-k8s-cluster-name": "arctic"}},
            (None, None, "unattributed:unknown-cluster"),
        ),
    ],
)
def test_how_a_cost_line_is_classified(
    fields: dict[str, object], expected: tuple[object, ...]
) -> None:
    owners = by_owner([item(component="object_storage", **fields)], [])
    assert owners == {expected: Decimal("10.00")}


def test_a_cluster_label_is_more_specific_than_a_shared_project() -> None:
    clusters = (
        ClusterPolicy("atlantic", CostMatchRule(projects=frozenset({"shared-project"}))),
        ClusterPolicy("pacific", CostMatchRule(projects=frozenset({"shared-project"}))),
    )
    policy = Policy(Options(), clusters, HUBS)
    labelled = item(sub_account_id="shared-project", labels={"goog-k8s-cluster-name": "pacific"})
    unlabelled = item(sub_account_id="shared-project")
    result = allocate([labelled, unlabelled], [], policy, PERIOD)
    rules = {(a.cluster, a.rule) for a in result.allocations}
    assert rules == {("pacific", "unattributed:no-usage"), (None, "unattributed:ambiguous-cluster")}


def test_shared_compute_goes_to_hubs_then_users_by_memory_requests() -> None:
    owners = by_owner(
        [item(net_cost=Decimal("9.00"))], [use(1, 11, 3), use(1, 12, 1), use(2, 21, 5)]
    )
    assert owners == {
        (1, 11, "shared-usage"): Decimal("3.00"),
        (1, 12, "shared-usage"): Decimal("1.00"),
        (2, 21, "shared-usage"): Decimal("5.00"),
    }


def test_the_max_of_request_and_usage_can_drive_compute() -> None:
    usage = [use(1, 11, 1, memory_usage_byte_seconds=Decimal(3 * GIB * 3600)), use(2, 21, 2)]
    owners = by_owner(
        [item(net_cost=Decimal("5.00"))],
        usage,
        Options(compute_driver=ComputeDriver.max_request_usage),
    )
    assert owners == {
        (1, 11, "shared-usage"): Decimal("3.00"),
        (2, 21, "shared-usage"): Decimal("2.00"),
    }


def test_cpu_and_memory_weighted_by_the_price_ratio() -> None:
    # One core-second weighs 2 GiB-seconds: 1 GiB-hour + 1 core-hour = 3 GiB-hour equivalents.
    usage = [use(1, 11, 1, cpu_request_core_seconds=Decimal(3600)), use(2, 21, 1)]
    opts = Options(compute_driver=ComputeDriver.cpu_memory, cpu_to_memory_price_ratio=Decimal(2))
    owners = by_owner([item(net_cost=Decimal("4.00"))], usage, opts)
    assert owners == {
        (1, 11, "shared-usage"): Decimal("3.00"),
        (2, 21, "shared-usage"): Decimal("1.00"),
    }


def test_gpu_skus_follow_gpu_time_when_enabled() -> None:
    usage = [use(1, 11, 8), use(2, 21, 1, gpu_request_seconds=Decimal(3600))]
    gpu_line = item(net_cost=Decimal("2.00"), gpu=True)
    assert by_owner([gpu_line], usage) == {(2, 21, "shared-usage"): Decimal("2.00")}
    by_memory = by_owner([gpu_line], usage, Options(gpu_driver=False))
    assert by_memory[(1, 11, "shared-usage")] > by_memory[(2, 21, "shared-usage")]


def test_idle_capacity_can_be_its_own_line() -> None:
    line = item(
        net_cost=Decimal("8.00"),
        consumed_quantity=Decimal(8 * GIB * 3600),
        consumed_unit="byte-seconds",
    )
    owners = by_owner([line], [use(1, 11, 2)], Options(idle_as_line=True))
    assert owners == {
        (1, 11, "shared-usage"): Decimal("2.00"),
        (None, None, "idle-capacity"): Decimal("6.00"),
    }


def test_an_overhead_percentage_is_split_evenly_before_usage() -> None:
    # 10% of 10.00 evenly across the two active hubs of atlantic, the rest by usage (all ocean).
    owners = by_owner([item()], [use(1, 11, 1)], Options(overhead_percent=Decimal(10)))
    assert owners == {
        (1, 11, "shared-overhead"): Decimal("0.50"),
        (1, 11, "shared-usage"): Decimal("9.00"),
        (2, None, "hub-shared"): Decimal("0.50"),
    }


def test_even_and_fixed_weight_splits() -> None:
    usage = [use(1, 11, 1)]
    even = by_owner([item(component="core")], usage, Options(shared_split=SplitMode.even))
    assert even == {
        (1, None, "hub-shared"): Decimal("5.00"),
        (2, None, "hub-shared"): Decimal("5.00"),
    }
    weights = Options(
        shared_split=SplitMode.weights,
        hub_weights=(("atlantic/climate", Decimal(3)), ("ocean", Decimal(1))),
    )
    weighted = by_owner([item(component="core")], usage, weights)
    assert weighted == {
        (1, None, "hub-shared"): Decimal("2.50"),
        (2, None, "hub-shared"): Decimal("7.50"),
    }


def test_no_usage_is_unattributed_by_default_or_even_if_asked() -> None:
    assert by_owner([item()], []) == {(None, None, "unattributed:no-usage"): Decimal("10.00")}
    even = by_owner([item(component="core")], [], Options(no_usage=NoUsagePolicy.even))
    assert even == {
        (1, None, "hub-shared"): Decimal("5.00"),
        (2, None, "hub-shared"): Decimal("5.00"),
    }


def test_users_the_hub_itself_and_unlisted_namespaces() -> None:
    storage = {"home_storage_byte_seconds": Decimal(100)}
    usage = [
        use(1, 11, **storage),
        use(1, None, **storage),  # the hub's shared directory
        UsageRow(
            "atlantic",
            "unlisted",
            None,
            None,
            T0 + timedelta(hours=9),
            home_storage_byte_seconds=Decimal(200),
        ),
    ]
    owners = by_owner([item(component="home_storage", net_cost=Decimal("4.00"))], usage)
    assert owners == {
        (1, 11, "shared-usage"): Decimal("1.00"),
        (1, None, "hub-shared"): Decimal("1.00"),
        (None, None, "unattributed:namespace-without-hub"): Decimal("2.00"),
    }


def test_allocations_say_how_they_were_made() -> None:
    result = allocate(
        [item(net_cost=Decimal("9.00"))],
        [use(1, 11, 3), use(2, 21, 6)],
        policy_with(Options()),
        PERIOD,
    )
    [alice] = [a for a in result.allocations if a.user_id == 11]
    assert alice.community_id == "ocean-lab"
    assert alice.basis == {
        "driver": "memory_request",
        "user_units": str(3 * GIB * 3600),
        "hub_units": str(3 * GIB * 3600),
    }
    pool = result.pools[alice.pool]
    assert pool.driver_units == 9 * GIB * 3600
    assert (pool.key.kind, pool.key.cluster, pool.net_cost, pool.cost_line_count) == (
        "shared",
        "atlantic",
        Decimal("9.00"),
        1,
    )
    assert describe_rule(alice.rule).startswith("the cluster's shared cost")


def test_usage_of_a_hub_the_policy_does_not_know_is_refused() -> None:
    with pytest.raises(PolicyError, match="hub id 99"):
        allocate([], [UsageRow("atlantic", "x", 99, None, T0)], policy_with(Options()), PERIOD)


def test_an_overhead_above_a_hundred_percent_is_refused() -> None:
    with pytest.raises(PolicyError, match="overhead_percent"):
        Options(overhead_percent=Decimal(101))


def test_a_policy_from_the_configuration() -> None:
    config = HubmeterConfig(
        clusters=[
            Cluster(name="atlantic", provider="gcp", costs=CostMatch(projects=["atlantic-project"]))
        ],
        communities=[
            Community(id="ocean-lab", name="Ocean", billing_email="a@b.org", plan="cost-recovery")
        ],
        hubs=[
            Hub(
                name="ocean",
                cluster="atlantic",
                community="ocean-lab",
                dedicated=CostMatch(projects=["ocean-data"]),
            )
        ],
        attribution=Attribution(overhead_percent=Decimal(5), hub_weights={"ocean": Decimal(2)}),
    )
    records = [
        HubRecord(7, "atlantic", "ocean", "ocean", "ocean-lab", True),
        HubRecord(8, "atlantic", "retired", "retired", "ocean-lab", True),
    ]
    policy = policy_from_config(config, records)
    ocean, retired = policy.hubs
    assert ocean.dedicated.projects == frozenset({"ocean-data"})
    assert ocean.active
    # A hub that left the configuration keeps its id (its old usage still finds it) but is no
    # longer active, so even splits skip it.
    assert not retired.active
    assert policy.options.overhead_percent == Decimal(5)
    assert policy.options.hub_weights == (("ocean", Decimal(2)),)


@pytest.mark.parametrize("microseconds", [1, 249, 999_999, 500_001])
def test_day_slices_weigh_a_boundary_inside_a_second_exactly(microseconds: int) -> None:
    start = T0.replace(hour=0, minute=0)
    end = start + timedelta(days=1, microseconds=microseconds)
    amount = Decimal("1000000.00")
    slices = day_slices(start, end, amount)
    whole_day = 86_400 * 1_000_000
    expected = split_by_weights(
        amount, {start.date(): Decimal(whole_day), end.date(): Decimal(microseconds)}
    )
    assert slices == expected
