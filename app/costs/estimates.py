"""Estimates of hours the bill has not reached yet: metered usage at list price. Pure.

For one cluster and one hour, from the usage hubmeter has already metered (`usage_hour`):

    compute, CPU      = Σ cpu_request_core_seconds     x price per usage unit / conversion factor
    compute, memory   = Σ memory_request_byte_seconds  x price per usage unit / conversion factor
    home storage      = Σ home_storage_byte_seconds    x price per usage unit / conversion factor

where the price and the conversion factor (base units per usage unit, e.g. 3600 seconds per hour
or 2^30 x 3600 byte-seconds per GiB-hour) come from the price book (Cloud Billing Catalog list
prices). Each amount is rounded half-even to 1e-10. The estimate counts what users requested,
not the nodes that ran: it leaves out idle capacity, system pods and discounts, so it is a floor,
and the real bill replaces it as soon as it covers the hour.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from enum import StrEnum

from app.costs.models import Component
from app.costs.records import SUM_CONTEXT, CostRecord, plain_decimal
from app.periods import iso

SOURCE_PREFIX = "estimate"
ESTIMATE_QUANTUM = Decimal("1e-10")
HOUR = timedelta(hours=1)


class Driver(StrEnum):
    """What an estimated line prices, and the base unit its SKU must be sold in."""

    cpu = "cpu"
    memory = "memory"
    home_storage = "home_storage"

    @property
    def base_unit(self) -> str:
        return "s" if self is Driver.cpu else "By.s"

    @property
    def component(self) -> Component:
        return Component.home_storage if self is Driver.home_storage else Component.compute

    @property
    def consumed_unit(self) -> str:
        return "seconds" if self is Driver.cpu else "byte-seconds"


@dataclass(frozen=True)
class Price:
    """A list price: `unit_price` per usage unit; one usage unit is `base_unit_conversion_factor`
    base units."""

    sku_id: str
    sku_description: str
    service_name: str
    usage_unit: str
    base_unit: str
    base_unit_conversion_factor: Decimal
    unit_price: Decimal
    currency: str
    effective_at: datetime | None = None


@dataclass(frozen=True)
class HourUsage:
    """A cluster's metered usage in one hour, in base units."""

    hour: datetime
    cpu_request_core_seconds: Decimal
    memory_request_byte_seconds: Decimal
    home_storage_byte_seconds: Decimal

    def quantity(self, driver: Driver) -> Decimal:
        if driver is Driver.cpu:
            return self.cpu_request_core_seconds
        if driver is Driver.memory:
            return self.memory_request_byte_seconds
        return self.home_storage_byte_seconds


@dataclass(frozen=True)
class EstimateTarget:
    """Who the estimated lines belong to: they carry the cluster's account, project and cluster
    label, so attribution treats them as the cluster's shared cost, and a real import of the same
    account or project retires them."""

    cluster: str
    provider: str
    billing_account_id: str | None = None
    sub_account_id: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


class PriceError(ValueError):
    """A price book entry that cannot price the usage it was chosen for."""


def source_for(cluster: str) -> str:
    return f"{SOURCE_PREFIX}:{cluster}"


def check_price(driver: Driver, price: Price) -> None:
    """Refuse a SKU sold in other units than the usage it should price."""
    if price.base_unit != driver.base_unit:
        raise PriceError(
            f"SKU {price.sku_id} ({price.sku_description}) is sold per {price.usage_unit} of "
            f"base unit {price.base_unit!r}; {driver.value} usage is metered in "
            f"{driver.base_unit!r}: choose a SKU priced in {driver.base_unit}"
        )
    if price.base_unit_conversion_factor <= 0:
        raise PriceError(f"SKU {price.sku_id} has no usable base unit conversion factor")


def estimate_cost(quantity: Decimal, price: Price) -> Decimal:
    """quantity (base units) x price per usage unit / base units per usage unit, to 1e-10."""
    with localcontext(SUM_CONTEXT):
        exact = quantity * price.unit_price / price.base_unit_conversion_factor
    return plain_decimal(exact.quantize(ESTIMATE_QUANTUM, rounding=ROUND_HALF_EVEN))


def estimate_records(
    usage: Iterable[HourUsage], *, prices: dict[Driver, Price], target: EstimateTarget
) -> list[CostRecord]:
    """One estimated line per hour and priced driver with usage in it."""
    for driver, price in prices.items():
        check_price(driver, price)
    currencies = {price.currency for price in prices.values()}
    if len(currencies) > 1:
        raise PriceError(f"the chosen SKUs are priced in several currencies: {sorted(currencies)}")
    records: list[CostRecord] = []
    for hour in sorted(usage, key=lambda u: u.hour):
        for driver, price in prices.items():
            quantity = hour.quantity(driver)
            if quantity.is_zero():
                continue
            cost = estimate_cost(quantity, price)
            records.append(
                CostRecord(
                    source=source_for(target.cluster),
                    source_row=f"{iso(hour.hour)}/{driver.value}/{price.sku_id}",
                    estimated=True,
                    provider=target.provider,
                    billing_account_id=target.billing_account_id,
                    sub_account_id=target.sub_account_id,
                    service_name=price.service_name,
                    sku_id=price.sku_id,
                    sku_description=price.sku_description,
                    charge_period_start=hour.hour,
                    charge_period_end=hour.hour + HOUR,
                    charge_category="usage",
                    billed_cost=cost,
                    effective_cost=cost,
                    list_cost=cost,
                    credits=Decimal(0),
                    net_cost=cost,
                    currency=price.currency,
                    consumed_quantity=plain_decimal(quantity),
                    consumed_unit=driver.consumed_unit,
                    component=driver.component.value,
                    labels=dict(target.labels),
                    extra={
                        "cluster": target.cluster,
                        "driver": driver.value,
                        "unit_price": format(price.unit_price, "f"),
                        "usage_unit": price.usage_unit,
                        "base_unit_conversion_factor": format(
                            price.base_unit_conversion_factor, "f"
                        ),
                        "price_effective_at": None
                        if price.effective_at is None
                        else iso(price.effective_at),
                        "basis": "requested usage at list price; replaced when the bill arrives",
                    },
                )
            )
    return records
