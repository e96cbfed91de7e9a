"""One charge of the bill, as both exports describe it, with the truth of where it belongs."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from app.synthetic.catalog import Component, Sku

Labels = tuple[tuple[str, str], ...]


class CostClass(StrEnum):
    direct = "direct"  # a hub label, or a project dedicated to one hub
    shared = "shared"  # a cluster's label or project
    unattributed = "unattributed"  # neither


class CostType(StrEnum):
    regular = "regular"
    tax = "tax"
    adjustment = "adjustment"


@dataclass(frozen=True)
class Project:
    id: str
    number: str
    labels: Labels
    ancestry_numbers: str


@dataclass(frozen=True)
class Location:
    location: str
    country: str
    region: str | None
    zone: str | None


@dataclass(frozen=True)
class Resource:
    """A detailed export's resource: here, one node (VM) of a pool."""

    name: str
    global_name: str
    focus_type: str


@dataclass(frozen=True)
class Credit:
    name: str
    amount: Decimal  # negative
    full_name: str
    id: str
    type: str


@dataclass(frozen=True)
class Adjustment:
    id: str
    description: str
    mode: str
    type: str


@dataclass(frozen=True)
class CostTruth:
    """Where the charge belongs under the default attribution policy."""

    cost_class: CostClass
    cluster: str
    hub: str
    component: Component


@dataclass(frozen=True)
class Charge:
    hour_start: int  # usage is [hour_start, hour_start + 3600)
    sku: Sku
    project: Project | None
    labels: Labels
    system_labels: Labels
    location: Location | None
    resource: Resource | None
    usage_amount: Decimal  # in the SKU's usage unit
    cost: Decimal  # USD, at most six decimals
    credits: tuple[Credit, ...]
    cost_type: CostType
    adjustment: Adjustment | None
    export_time: int
    export_microseconds: int
    truth: CostTruth

    @property
    def net_cost(self) -> Decimal:
        return self.cost + sum((credit.amount for credit in self.credits), Decimal(0))
