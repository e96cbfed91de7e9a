"""One FOCUS-shaped cost line per billed row, whatever cloud or file it came from."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Exact, JSONType, UTCDateTime


class Component(StrEnum):
    """The small fixed vocabulary every cost and allocation is reported in."""

    compute = "compute"
    home_storage = "home_storage"
    object_storage = "object_storage"
    networking = "networking"
    core = "core"
    support = "support"
    other = "other"


class ChargeCategory(StrEnum):
    usage = "usage"
    purchase = "purchase"
    tax = "tax"
    credit = "credit"
    adjustment = "adjustment"


class CostLine(Base):
    """A billed row. `net_cost` (billed cost after credits) is what attribution divides."""

    __tablename__ = "cost_line"
    __table_args__ = (
        Index(None, "charge_period_start"),
        Index(None, "source", "charge_period_start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("ingestion_batch.id"), index=True)
    source: Mapped[str] = mapped_column(String(300))
    source_row: Mapped[str] = mapped_column(String(300))
    estimated: Mapped[bool] = mapped_column(default=False)
    provider: Mapped[str] = mapped_column(String(32))
    billing_account_id: Mapped[str | None] = mapped_column(String(200))
    sub_account_id: Mapped[str | None] = mapped_column(String(200))
    sub_account_name: Mapped[str | None] = mapped_column(String(300))
    service_name: Mapped[str | None] = mapped_column(String(300))
    service_category: Mapped[str | None] = mapped_column(String(64))
    sku_id: Mapped[str | None] = mapped_column(String(200))
    sku_description: Mapped[str | None] = mapped_column(Text)
    resource_id: Mapped[str | None] = mapped_column(Text)
    resource_name: Mapped[str | None] = mapped_column(Text)
    region: Mapped[str | None] = mapped_column(String(64))
    charge_period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    charge_period_end: Mapped[datetime] = mapped_column(UTCDateTime())
    charge_category: Mapped[str] = mapped_column(String(16))
    is_correction: Mapped[bool] = mapped_column(default=False)
    billed_cost: Mapped[Decimal] = mapped_column(Exact())
    effective_cost: Mapped[Decimal | None] = mapped_column(Exact())
    list_cost: Mapped[Decimal | None] = mapped_column(Exact())
    credits: Mapped[Decimal] = mapped_column(Exact())
    net_cost: Mapped[Decimal] = mapped_column(Exact())
    currency: Mapped[str] = mapped_column(String(3))
    consumed_quantity: Mapped[Decimal | None] = mapped_column(Exact())
    consumed_unit: Mapped[str | None] = mapped_column(String(64))
    component: Mapped[str] = mapped_column(String(32))
    labels: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    exported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    extra: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class PriceBookSku(Base):
    """A list price from the Cloud Billing Catalog, as of the last refresh of its service.

    Estimates of hours the bill has not reached yet are priced from here; each estimated line
    names the SKU and the unit price it used. `unit_price` is per `usage_unit`; one usage unit is
    `base_unit_conversion_factor` base units (seconds, byte-seconds, bytes), the units usage is
    metered in.
    """

    __tablename__ = "price_book_sku"

    sku_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_id: Mapped[str] = mapped_column(String(64), index=True)
    service_name: Mapped[str] = mapped_column(String(300))
    sku_description: Mapped[str] = mapped_column(Text)
    resource_family: Mapped[str | None] = mapped_column(String(64))
    resource_group: Mapped[str | None] = mapped_column(String(64))
    usage_type: Mapped[str | None] = mapped_column(String(64))
    regions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    usage_unit: Mapped[str] = mapped_column(String(64))
    usage_unit_description: Mapped[str | None] = mapped_column(String(200))
    base_unit: Mapped[str] = mapped_column(String(64))
    base_unit_conversion_factor: Mapped[Decimal] = mapped_column(Exact())
    currency: Mapped[str] = mapped_column(String(3))
    unit_price: Mapped[Decimal] = mapped_column(Exact())
    tiers: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    effective_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime())
