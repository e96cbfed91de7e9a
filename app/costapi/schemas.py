"""What the cost API answers. Amounts and quantities are exact decimals written as JSON strings
(`"12.345678"`, never a float or an exponent), so no client rounds them by accident."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from app.costapi.forecast import AlertState
from app.money import format_amount
from app.usage.metering import Quantities
from app.usage.units import in_display_units

DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"

Amount = Annotated[
    Decimal,
    PlainSerializer(format_amount, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "description": "An exact decimal amount in the row's currency, as a string.",
            "examples": ["1234.56789012345"],
        }
    ),
]
Quantity = Annotated[
    Decimal,
    PlainSerializer(format_amount, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "description": "A quantity as a decimal string, rounded half-even to 6 places.",
            "examples": ["41.25"],
        }
    ),
]
Percent = Annotated[
    Decimal,
    PlainSerializer(format_amount, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "description": "A percentage as a decimal string, rounded half-even to 2 places.",
            "examples": ["87.50"],
        }
    ),
]
CurrencyCode = Annotated[str, Field(description="ISO 4217 code", examples=["USD"])]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Money(_Out):
    currency: CurrencyCode
    amount: Amount


class Page(_Out):
    """Limit/offset pagination over a stable order; `next_offset` is null on the last page."""

    limit: int
    offset: int
    total: int = Field(description="Rows over all pages.")
    next_offset: int | None

    @classmethod
    def of(cls, *, limit: int, offset: int, total: int) -> Page:
        following = offset + limit
        return cls(
            limit=limit,
            offset=offset,
            total=total,
            next_offset=following if following < total else None,
        )


class HubRef(_Out):
    id: int
    name: str
    cluster: str
    community_id: str


class CommunityRef(_Out):
    id: str
    name: str


# --- costs ----------------------------------------------------------------------------------


class CostRowOut(_Out):
    period_start: date = Field(description="First day of the period (inclusive).")
    period_end: date = Field(description="Day after the period (exclusive).")
    community_id: str | None = Field(
        default=None,
        description="With by=community: the community; null is the unattributed bucket.",
    )
    community_name: str | None = None
    hub_id: int | None = Field(
        default=None, description="With by=hub: the hub; null is the unattributed bucket."
    )
    hub_name: str | None = None
    cluster: str | None = None
    user_id: int | None = Field(
        default=None,
        description="With by=user: the user; null is the hub's own share (hub "
        "infrastructure, networking, object storage) that no one user caused.",
    )
    username: str | None = None
    component: str | None = Field(
        default=None,
        description="With by=component: compute, home_storage, object_storage, networking, "
        "core, support or other.",
    )
    currency: CurrencyCode
    amount: Amount
    estimated: bool = Field(
        description="Part of the amount is an estimate from list prices for days the cloud "
        "has not billed yet."
    )


class CostReport(_Out):
    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "hub": {"id": 1, "name": "ocean", "cluster": "demo", "community_id": "ocean"},
                    "start": "2026-10-01",
                    "end": "2026-11-01",
                    "interval": "month",
                    "by": ["user"],
                    "totals": [{"currency": "USD", "amount": "1834.2210093"}],
                    "rows": [
                        {
                            "period_start": "2026-10-01",
                            "period_end": "2026-11-01",
                            "user_id": 17,
                            "username": "alice@ocean.example.org",
                            "currency": "USD",
                            "amount": "123.45678901234",
                            "estimated": False,
                        }
                    ],
                    "page": {"limit": 100, "offset": 0, "total": 1, "next_offset": None},
                }
            ]
        },
    )

    hub: HubRef | None = Field(default=None, description="The hub, for a hub's report.")
    community: CommunityRef | None = Field(
        default=None, description="The community, for a community's report."
    )
    start: date
    end: date
    interval: str
    by: list[str]
    totals: list[Money] = Field(description="The whole range (all pages), per currency.")
    rows: list[CostRowOut]
    page: Page


# --- usage ----------------------------------------------------------------------------------


class UsageOut(_Out):
    """Usage in display units, from exact base units: hours = seconds / 3600, GiB-hours =
    byte-seconds / (2^30 x 3600), core-hours = core-seconds / 3600."""

    server_hours: Quantity
    memory_request_gib_hours: Quantity
    cpu_request_core_hours: Quantity
    memory_usage_gib_hours: Quantity
    cpu_usage_core_hours: Quantity
    gpu_hours: Quantity
    home_storage_gib_hours: Quantity

    @classmethod
    def of(cls, sums: Quantities) -> UsageOut:
        return cls(**in_display_units(sums))


class UsageRowOut(_Out):
    period_start: date
    period_end: date
    hub_id: int | None = None
    hub_name: str | None = None
    user_id: int | None = Field(
        default=None, description="With by=user; null is the hub's own (shared) cost."
    )
    username: str | None = None
    usage: UsageOut
    costs: list[Money] = Field(description="The cost of the same period (and user), per currency.")


class UsageReport(_Out):
    hub: HubRef | None = None
    community: CommunityRef | None = None
    start: date
    end: date
    interval: str
    by: list[str]
    rows: list[UsageRowOut]
    page: Page


# --- top users and one user's history -------------------------------------------------------


class TopUserOut(_Out):
    rank: int = Field(description="1 for the most expensive user of the range.")
    user_id: int
    username: str
    currency: CurrencyCode
    amount: Amount
    share_percent: Percent | None = Field(
        description="Share of the hub's whole cost in this currency (shared costs included)."
    )
    components: dict[str, Amount]
    estimated: bool
    usage: UsageOut


class TopUsersReport(_Out):
    hub: HubRef
    start: date
    end: date
    hub_totals: list[Money]
    users: list[TopUserOut]
    page: Page


class CostBreakdown(_Out):
    currency: CurrencyCode
    amount: Amount
    components: dict[str, Amount]
    estimated: bool


class UserPeriodOut(_Out):
    period_start: date
    period_end: date
    costs: list[CostBreakdown]
    usage: UsageOut


class UserRef(_Out):
    id: int
    username: str


class UserHistory(_Out):
    hub: HubRef
    user: UserRef
    start: date
    end: date
    interval: str
    totals: list[Money]
    periods: list[UserPeriodOut]


# --- month to date --------------------------------------------------------------------------


class HubMonthOut(_Out):
    model_config = ConfigDict(
        frozen=True,
        json_schema_extra={
            "examples": [
                {
                    "hub": {"id": 1, "name": "ocean", "cluster": "demo", "community_id": "ocean"},
                    "month": "2026-10",
                    "currency": "USD",
                    "days_in_month": 31,
                    "days_attributed": 14,
                    "last_attributed_day": "2026-10-14",
                    "month_to_date": "1190.123456",
                    "estimated": "0",
                    "run_rate_per_day": "88.20",
                    "forecast": "2737.72",
                    "budget": "2500.00",
                    "budget_used_percent": "47.60",
                    "budget_remaining": "1309.876544",
                    "projected_overrun": "237.72",
                    "alert_state": "forecast_over_budget",
                    "other_currencies": [],
                }
            ]
        },
    )

    hub: HubRef
    month: str = Field(description="YYYY-MM", examples=["2026-10"])
    currency: CurrencyCode
    days_in_month: int
    days_attributed: int = Field(
        description="Days of the month before today with allocations in force that the cloud "
        "bill has reached, and whose allocations for this hub are not estimates."
    )
    last_attributed_day: date | None
    month_to_date: Amount
    estimated: Amount = Field(
        description="List-price estimates of the days before today that are not attributed "
        "yet (the bill has not reached them). Not part of month_to_date: those days are "
        "forecast at the run rate."
    )
    run_rate_per_day: Amount | None = Field(
        description="Mean of the last (up to) 7 attributed days, rounded to the minor unit."
    )
    forecast: Amount | None = Field(
        description="month_to_date + run_rate x unattributed days, rounded to the minor unit; "
        "null before the first attributed day."
    )
    budget: Amount | None
    budget_used_percent: Percent | None = Field(description="month_to_date / budget x 100.")
    budget_remaining: Amount | None = Field(description="budget - month_to_date.")
    projected_overrun: Amount | None = Field(description="max(forecast - budget, 0).")
    alert_state: AlertState
    other_currencies: list[Money] = Field(
        description="Costs in currencies other than the community's, not counted above."
    )


class CommunityMonthOut(_Out):
    community: CommunityRef
    month: str = Field(description="YYYY-MM", examples=["2026-10"])
    currency: CurrencyCode
    month_to_date: Amount
    forecast: Amount | None
    budget: Amount | None = Field(description="Sum of the hubs' budgets, where any is set.")
    alert_state: AlertState = Field(description="The worst state among the community's hubs.")
    hubs: list[HubMonthOut]


class MonthOverview(_Out):
    month: str = Field(description="YYYY-MM", examples=["2026-10"])
    hubs: list[HubMonthOut]
    page: Page
