"""What the attribution API and the `allocations` commands answer with.

Amounts follow the API's convention (`app.costapi.schemas.Amount`): exact plain decimal strings,
never a float and never an exponent (a split of 0.00000000010 into three has parts of
0.00000000004, which plain `Decimal` would write as "4E-11"). Driver units are base units
(byte-seconds, seconds) written the same way, with a human reading beside them.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema

from app.costapi.schemas import DECIMAL_PATTERN, Amount, Page
from app.money import format_amount

# Driver units are exact (not rounded like the cost API's display quantities).
Units = Annotated[
    Decimal,
    PlainSerializer(format_amount, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "description": "Driver units in base units (byte-seconds, GPU-seconds), exact, as "
            "a decimal string.",
            "examples": ["38654705664000"],
        }
    ),
]


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
    amount: Amount
    currency: str
    estimated: bool


class AllocationList(_Out):
    """A page of allocations in force, in the order day, hub, user, component, id."""

    allocations: list[AllocationOut]
    page: Page


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
    net_cost: Amount
    cost_line_count: int
    first_cost_line_id: int | None
    last_cost_line_id: int | None
    charge_periods: int
    driver_units: Units
    capacity_units: Units | None


class ShareStep(_Out):
    """One split: `amount` of `whole` because of `units` out of `of_units` of the driver."""

    stage: str  # "hub": the cost across hubs; "user": the hub's part across its users
    rule: str
    whole: Amount
    amount: Amount
    units: Units | None
    of_units: Units | None
    units_readable: str | None
    of_units_readable: str | None


class ChargePeriodShare(_Out):
    """One charge period of the pool (a day slice of it) and how this allocation's part of it
    was made."""

    charge_period_start: datetime
    charge_period_end: datetime
    net_cost: Amount
    cost_lines: int
    first_cost_line_id: int | None
    last_cost_line_id: int | None
    steps: list[ShareStep]
    amount: Amount


class CostLineOut(_Out):
    id: int
    source: str
    source_row: str
    service: str | None
    sku: str | None
    project: str | None
    charge_period_start: datetime
    charge_period_end: datetime
    net_cost: Amount
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
    cost_lines_net_cost_now: Amount
    recomputed_amount: Amount | None
    reproducible: bool
    notes: list[str]


class RunOut(_Out):
    id: int
    period_start: date
    period_end: date
    created_at: datetime
    created_by: str
    currency: str
    cost_total: Amount
    allocated_total: Amount
    unattributed_total: Amount
    estimated_total: Amount
    previous_run_id: int | None
    days_in_force: int
    note: str | None


class RunDetail(RunOut):
    by_community: dict[str, Amount]
    unattributed_by_reason: dict[str, Amount]
    changes: dict[str, Any]
