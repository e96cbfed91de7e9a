"""The cost line as plain data, before it is stored: what every parser produces.

`CostRecord` mirrors the `cost_line` table column for column (less the database's own `id` and
`batch_id`), plus the billing period a FOCUS row was delivered in, which decides the batch it is
stored under. Parsers build records; `app.costs.store` writes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal
from typing import Any

# Sums of cost lines never round: 80 digits hold any bill at 38 decimal places (BigQuery's
# BIGNUMERIC scale) with room to spare.
SUM_CONTEXT = Context(prec=80)
ZERO = Decimal(0)


@dataclass(slots=True)
class CostRecord:
    """One FOCUS-shaped cost line. Amounts are exact; times are UTC-aware; [start, end)."""

    source: str
    source_row: str
    provider: str
    charge_period_start: datetime
    charge_period_end: datetime
    charge_category: str
    billed_cost: Decimal
    credits: Decimal
    net_cost: Decimal
    currency: str
    component: str
    estimated: bool = False
    billing_account_id: str | None = None
    sub_account_id: str | None = None
    sub_account_name: str | None = None
    service_name: str | None = None
    service_category: str | None = None
    sku_id: str | None = None
    sku_description: str | None = None
    resource_id: str | None = None
    resource_name: str | None = None
    region: str | None = None
    is_correction: bool = False
    effective_cost: Decimal | None = None
    list_cost: Decimal | None = None
    consumed_quantity: Decimal | None = None
    consumed_unit: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    exported_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Not stored on the line: the FOCUS billing period the row was delivered in (its batch).
    billing_period_start: datetime | None = None
    billing_period_end: datetime | None = None


# The `cost_line` columns a record fills, in the order the bulk writer sends them.
STORED_COLUMNS: tuple[str, ...] = (
    "source",
    "source_row",
    "estimated",
    "provider",
    "billing_account_id",
    "sub_account_id",
    "sub_account_name",
    "service_name",
    "service_category",
    "sku_id",
    "sku_description",
    "resource_id",
    "resource_name",
    "region",
    "charge_period_start",
    "charge_period_end",
    "charge_category",
    "is_correction",
    "billed_cost",
    "effective_cost",
    "list_cost",
    "credits",
    "net_cost",
    "currency",
    "consumed_quantity",
    "consumed_unit",
    "component",
    "labels",
    "exported_at",
    "extra",
)


@dataclass(frozen=True)
class Window:
    """A half-open UTC interval `[start, end)`."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("a window's bounds must be timezone-aware UTC times")
        if self.end <= self.start:
            raise ValueError(f"empty window: end {self.end:%Y-%m-%dT%H:%MZ} is not after start")

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def covers(self, other: Window) -> bool:
        return self.start <= other.start and other.end <= self.end

    def __str__(self) -> str:
        return f"[{iso(self.start)}, {iso(self.end)})"


def iso(moment: datetime) -> str:
    """`2026-10-01T00:00:00Z`: how hubmeter writes a UTC time."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


def next_day_start(moment: datetime) -> datetime:
    return day_start(moment) + timedelta(days=1)


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month_start(moment: datetime) -> datetime:
    start = month_start(moment)
    return (start + timedelta(days=32)).replace(day=1)


def plain_decimal(value: Decimal) -> Decimal:
    """The same amount without trailing zeros and without a positive exponent.

    Two sources that agree on an amount can write it differently (`1.50` from a file, `1.5` from
    BigQuery); lines are compared and stored in this one form.
    """
    if value.is_zero():
        return ZERO
    normal = value.normalize(SUM_CONTEXT)
    exponent = normal.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent > 0:
        return normal.quantize(Decimal(1), context=SUM_CONTEXT)
    return normal


_quote: Callable[[str], str] = getattr(json.encoder, "c_encode_basestring", None) or (
    json.encoder.encode_basestring
)


def flat_json(value: dict[str, Any]) -> str:
    """A JSON object as text. A flat object of text values (labels, a FOCUS row's extra
    columns: nearly every line) is written directly, which is several times faster than
    json.dumps on a million-row import; anything else goes through json.dumps."""
    parts = []
    for key, item in value.items():
        if type(item) is not str or type(key) is not str:
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        parts.append(f"{_quote(key)}:{_quote(item)}")
    return "{" + ",".join(parts) + "}"


def labels_json(labels: dict[str, str]) -> str:
    """Labels as stored: a JSON object with keys in order, so equal labels are equal text."""
    if not labels:
        return "{}"
    return flat_json(dict(sorted(labels.items())))
