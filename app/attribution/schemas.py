"""What the attribution API and the `allocations` commands answer with.

Amounts are `Decimal` and serialise as exact decimal strings; driver units are base units
(byte-seconds, seconds) as exact strings, with a human reading beside them.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class AllocationOut(_Out):
    id: int
    run_id: int
    day: date
    cluster: str | None
    community_id: str | None
    hub_id: int | None
    hub: str | None
    user_id: int | None
    user: str | None
    component: str
    rule: str
    amount: Decimal
    currency: str
    estimated: bool


class PoolOut(_Out):
    """The cost one allocation was split from: one day of cost lines classified one way."""

    id: int
    day: date
    kind: str  # direct | shared | unattributed
    how: str  # the direct rule, "cluster", or the reason nobody gets it
    detail: str | None
    cluster: str | None
    hub_id: int | None
    component: str
    driver: str
    driver_unit: str
    driver_description: str
    estimated: bool
    currency: str
    net_cost: Decimal
    cost_line_count: int
    first_cost_line_id: int | None
    last_cost_line_id: int | None
    charge_periods: int
    driver_units: Decimal
    capacity_units: Decimal | None


class ShareStep(_Out):
    """One split: `amount` of `whole` because of `units` out of `of_units` of the driver."""

    stage: str  # "hub": the cost across hubs; "user": the hub's part across its users
    rule: str
    whole: Decimal
    amount: Decimal
    units: Decimal | None
    of_units: Decimal | None
    units_readable: str | None
    of_units_readable: str | None


class ChargePeriodShare(_Out):
    """One charge period of the pool (a day slice of it) and how this allocation's part of it
    was made."""

    charge_period_start: datetime
    charge_period_end: datetime
    net_cost: Decimal
    cost_lines: int
    first_cost_line_id: int | None
    last_cost_line_id: int | None
    steps: list[ShareStep]
    amount: Decimal


class CostLineOut(_Out):
    id: int
    source: str
    source_row: str
    service: str | None
    sku: str | None
    project: str | None
    charge_period_start: datetime
    charge_period_end: datetime
    net_cost: Decimal
    currency: str
    estimated: bool
    labels: dict[str, str]


class RunBrief(_Out):
    id: int
    created_at: datetime
    created_by: str
    in_force: bool
    note: str | None


class AllocationExplanation(_Out):
    """Why an allocation is what it is: the cost it came from, the rule, and the shares."""

    allocation: AllocationOut
    run: RunBrief
    rule_description: str
    summary: str
    pool: PoolOut | None
    basis: dict[str, Any]
    periods: list[ChargePeriodShare]
    cost_line_filter: str
    cost_lines: list[CostLineOut]
    cost_lines_now: int
    cost_lines_net_cost_now: Decimal
    recomputed_amount: Decimal | None
    reproducible: bool
    notes: list[str]


class RunOut(_Out):
    id: int
    period_start: date
    period_end: date
    created_at: datetime
    created_by: str
    currency: str
    cost_total: Decimal
    allocated_total: Decimal
    unattributed_total: Decimal
    estimated_total: Decimal
    previous_run_id: int | None
    days_in_force: int
    note: str | None


class RunDetail(RunOut):
    by_community: dict[str, Decimal]
    unattributed_by_reason: dict[str, Decimal]
    changes: dict[str, Any]
