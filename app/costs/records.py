"""The cost line as plain data, before it is stored: what every parser produces.

`CostRecord` mirrors the `cost_line` table column for column (less the database's own `id` and
`batch_id`), plus the billing period a FOCUS row was delivered in, which decides the batch it is
stored under. Parsers build records; `app.costs.store` writes them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
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
