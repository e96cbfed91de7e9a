"""FOCUS 1.0 to 1.2 rows (AWS, Azure, GCP, OCI) as cost lines. Pure: rows in, records out.

Each row becomes one line, exactly as billed: `net_cost` is `BilledCost` (credits are rows of
their own, ChargeCategory Credit), `effective_cost` and `list_cost` are kept beside it. Columns
hubmeter has no field for (ChargeFrequency, PricingQuantity, commitment discounts, a provider's
`x_` extensions, ...) are kept as written in the line's `extra`, so nothing of the bill is lost.

NULL is an empty cell or the bare word `NULL` (as the FinOps Foundation's sample writes it).
Times may be `2024-09-18 22:00:00` (UTC implied) or ISO 8601 with a zone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from app.costs.components import component_for
from app.costs.problems import RowProblems
from app.costs.records import CostRecord
from app.costs.values import parse_amount, parse_time
from app.errors import BadValue, InputError, InputProblem
from app.periods import Window, iso

SOURCE_PREFIX = "focus"
NULLS = frozenset({"", "NULL"})

REQUIRED_COLUMNS = (
    "BilledCost",
    "BillingAccountId",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ServiceName",
)
# FOCUS 1.3 renamed ProviderName to ServiceProviderName; either names the cloud.
PROVIDER_COLUMNS = ("ProviderName", "ServiceProviderName")

# Columns that become fields of the line; every other non-null column goes to `extra`.
MAPPED_COLUMNS = frozenset(
    {
        *REQUIRED_COLUMNS,
        *PROVIDER_COLUMNS,
        "BillingCurrency",
        "ChargeClass",
        "ChargeDescription",
        "ConsumedQuantity",
        "ConsumedUnit",
        "EffectiveCost",
        "ListCost",
        "RegionId",
        "ResourceId",
        "ResourceName",
        "ServiceCategory",
        "SkuId",
        "SubAccountId",
        "SubAccountName",
        "Tags",
    }
)

ZERO = Decimal(0)
# Shared by every untagged line; lines are never changed after parsing.
_NO_TAGS: dict[str, str] = {}

CHARGE_CATEGORIES = {
    "Usage": "usage",
    "Purchase": "purchase",
    "Tax": "tax",
    "Credit": "credit",
    "Adjustment": "adjustment",
    "usage": "usage",
    "purchase": "purchase",
    "tax": "tax",
    "credit": "credit",
    "adjustment": "adjustment",
}

_PROVIDERS = (
    (re.compile(r"amazon|\baws\b", re.I), "aws"),
    (re.compile(r"microsoft|azure", re.I), "azure"),
    (re.compile(r"google|\bgcp\b", re.I), "gcp"),
    (re.compile(r"oracle|\boci\b", re.I), "oci"),
)


def provider_key(name: str) -> str:
    """hubmeter's provider name (the configuration's vocabulary) for a FOCUS ProviderName."""
    for pattern, key in _PROVIDERS:
        if pattern.search(name):
            return key
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:32] or "other"


def source_for(provider: str, billing_account_id: str) -> str:
    """The source identity of FOCUS lines: the cloud and its billing account."""
    return f"{SOURCE_PREFIX}:{provider}:{billing_account_id}"


class FocusParser:
    """Turns the rows of one FOCUS file into cost lines; one parser per file."""

    def __init__(
        self,
        header: Sequence[str],
        *,
        source_name: str,
        problems: RowProblems,
        window: Window | None = None,
        currency: str | None = None,
        currency_where: str | None = None,
    ) -> None:
        self.source_name = source_name
        self.file_name = PurePath(source_name).name
        self.problems = problems
        self.window = window
        # The import's currency, and where it was first seen (`file:line`): an earlier file's.
        self.currency = currency
        self.currency_where = currency_where
        self.columns = [name.strip().lstrip("\ufeff") for name in header]
        index = {name: i for i, name in enumerate(self.columns)}
        missing = [name for name in REQUIRED_COLUMNS if name not in index]
        provider_column = next((name for name in PROVIDER_COLUMNS if name in index), None)
        if provider_column is None:
            missing.append("ProviderName")
        if missing:
            raise InputError(
                InputProblem(
                    source_name,
                    1,
                    None,
                    None,
                    "a FOCUS 1.0-1.2 header with the columns "
                    + ", ".join(missing)
                    + " (is this a FOCUS file?)",
                    ",".join(self.columns[:8]) + ("..." if len(self.columns) > 8 else ""),
                )
            )
        assert provider_column is not None
        self.width = len(self.columns)
        self._i = index
        self._provider = index[provider_column]
        # A column the file lacks reads the empty cell appended to every row (see `parse`).
        missing_column = self.width

        def at(name: str) -> int:
            return index.get(name, missing_column)

        (
            self._billed, self._account, self._currency_i, self._period_end, self._period_start,
            self._category, self._class, self._description, self._charge_end, self._charge_start,
            self._quantity, self._unit, self._effective, self._list, self._service_category,
            self._service, self._sku, self._sub_account, self._sub_account_name, self._tags_i,
            self._region, self._resource_id, self._resource_name,
        ) = (
            at(name)
            for name in (
                "BilledCost", "BillingAccountId", "BillingCurrency", "BillingPeriodEnd",
                "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
                "ChargePeriodEnd", "ChargePeriodStart", "ConsumedQuantity", "ConsumedUnit",
                "EffectiveCost", "ListCost", "ServiceCategory", "ServiceName", "SkuId",
                "SubAccountId", "SubAccountName", "Tags", "RegionId", "ResourceId",
                "ResourceName",
            )
        )  # fmt: skip
        self._extra = [
            (i, name)
            for i, name in enumerate(self.columns)
            if name not in MAPPED_COLUMNS and name not in PROVIDER_COLUMNS
        ]
        self._region_name = index.get("RegionName")
        self._tags: dict[str, dict[str, str]] = {}
        self._providers: dict[str, str] = {}
        self._components: dict[tuple[str, str, str, str], str] = {}

    def parse(self, values: list[str], line: int) -> CostRecord | None:
        """The line for one row, or None when the row was set aside (quarantine). The row's list
        gets one empty cell appended (what absent optional columns read)."""
        if len(values) != self.width:
            self.problems.report(
                InputProblem(
                    self.source_name,
                    line,
                    None,
                    None,
                    f"{self.width} fields as in the header",
                    f"{len(values)} fields",
                )
            )
            return None
        values.append("")
        try:
            return self._record(values, line)
        except BadValue as error:
            column = self._i.get(error.field or "")
            self.problems.report(
                error.at(self.source_name, line, None if column is None else column + 1)
            )
            return None

    def _required(self, values: list[str], position: int, name: str) -> str:
        value = values[position]
        if value in NULLS:
            raise BadValue(name, "a value (FOCUS requires one)", value)
        return value

    def _record(self, values: list[str], line: int) -> CostRecord:
        # The hot path of a million-row import: plain index reads, no per-row closures.
        nulls = NULLS
        required = self._required
        billed = parse_amount(required(values, self._billed, "BilledCost"), "BilledCost")
        currency = required(values, self._currency_i, "BillingCurrency")
        if currency != self.currency:
            self._check_currency(currency, line)
        category_text = required(values, self._category, "ChargeCategory")
        charge_category = CHARGE_CATEGORIES.get(category_text) or CHARGE_CATEGORIES.get(
            category_text.lower()
        )
        if charge_category is None:
            raise BadValue(
                "ChargeCategory", "Usage, Purchase, Tax, Credit or Adjustment", category_text
            )
        charge_class = values[self._class]
        is_correction = False
        if charge_class not in nulls:
            if charge_class.lower() != "correction":
                raise BadValue("ChargeClass", "Correction or NULL", charge_class)
            is_correction = True
        start = parse_time(required(values, self._charge_start, "ChargePeriodStart"),
                           "ChargePeriodStart")  # fmt: skip
        end = parse_time(required(values, self._charge_end, "ChargePeriodEnd"), "ChargePeriodEnd")
        # A one-time charge may be an instant (end = start); attribution splits it by the
        # usage of its hour.
        if end < start:
            raise BadValue("ChargePeriodEnd", "a time not before ChargePeriodStart", iso(end))
        period_start = parse_time(
            required(values, self._period_start, "BillingPeriodStart"), "BillingPeriodStart"
        )
        period_end = parse_time(
            required(values, self._period_end, "BillingPeriodEnd"), "BillingPeriodEnd"
        )
        if period_end <= period_start:
            raise BadValue("BillingPeriodEnd", "a time after BillingPeriodStart", iso(period_end))
        window = self.window
        if window is not None and not (window.start <= period_start and period_end <= window.end):
            raise BadValue(
                "BillingPeriodStart",
                f"a billing period inside the requested window {window}",
                f"[{iso(period_start)}, {iso(period_end)})",
            )
        quantity_text = values[self._quantity]
        quantity = None
        if quantity_text not in nulls:
            quantity = parse_amount(quantity_text, "ConsumedQuantity")
            if quantity < 0 and charge_category == "usage" and billed > 0:
                # Azure reverses usage with negative quantities at negative cost; a negative
                # quantity billed at a positive cost cannot happen.
                raise BadValue(
                    "ConsumedQuantity",
                    "zero or more for usage billed at a positive cost",
                    quantity_text,
                )
        effective_text = values[self._effective]
        list_text = values[self._list]
        provider_name = values[self._provider]
        provider = self._providers.get(provider_name)
        if provider is None:
            if provider_name in nulls:
                raise BadValue(self.columns[self._provider], "the cloud's name", provider_name)
            provider = self._providers[provider_name] = provider_key(provider_name)
        account = required(values, self._account, "BillingAccountId")
        service_category = values[self._service_category]
        service_name = required(values, self._service, "ServiceName")
        description = values[self._description]
        component_key = (service_category, service_name, description, charge_category)
        component = self._components.get(component_key)
        if component is None:
            component = component_for(
                service_category=None if service_category in nulls else service_category,
                service_name=service_name,
                sku_description=None if description in nulls else description,
                charge_category=charge_category,
            ).value
            if len(self._components) > 100_000:
                self._components.clear()
            self._components[component_key] = component
        tags_text = values[self._tags_i]
        extra = {name: value for i, name in self._extra if (value := values[i]) not in nulls}
        if provider_name != provider:
            extra["ProviderName"] = provider_name
        region: str | None = values[self._region]
        if region in nulls:
            region = extra.get("RegionName")
        sub_account = values[self._sub_account]
        sub_account_name = values[self._sub_account_name]
        sku_id = values[self._sku]
        resource_id = values[self._resource_id]
        resource_name = values[self._resource_name]
        unit = values[self._unit]
        return CostRecord(
            source=f"{SOURCE_PREFIX}:{provider}:{account}",
            source_row=f"{self.file_name}:{line}",
            provider=provider,
            billing_account_id=account,
            sub_account_id=None if sub_account in nulls else sub_account,
            sub_account_name=None if sub_account_name in nulls else sub_account_name,
            service_name=service_name,
            service_category=None if service_category in nulls else service_category,
            sku_id=None if sku_id in nulls else sku_id,
            sku_description=None if description in nulls else description,
            resource_id=None if resource_id in nulls else resource_id,
            resource_name=None if resource_name in nulls else resource_name,
            region=region,
            charge_period_start=start,
            charge_period_end=end,
            charge_category=charge_category,
            is_correction=is_correction,
            billed_cost=billed,
            effective_cost=None
            if effective_text in nulls
            else parse_amount(effective_text, "EffectiveCost"),
            list_cost=None if list_text in nulls else parse_amount(list_text, "ListCost"),
            credits=ZERO,
            net_cost=billed,
            currency=currency,
            consumed_quantity=quantity,
            consumed_unit=None if unit in nulls else unit,
            component=component,
            labels=_NO_TAGS if tags_text in nulls else self._parse_tags(tags_text),
            exported_at=None,
            extra=extra,
            billing_period_start=period_start,
            billing_period_end=period_end,
        )

    def _check_currency(self, currency: str, line: int) -> None:
        if self.currency is None:
            if not re.fullmatch(r"[A-Z]{3}", currency):
                raise BadValue("BillingCurrency", "a three-letter currency code", currency)
            self.currency, self.currency_where = currency, f"{self.file_name}:{line}"
            return
        where = f", as at {self.currency_where}" if self.currency_where else ""
        raise BadValue(
            "BillingCurrency", f"one currency per import ({self.currency}{where})", currency
        )

    def _parse_tags(self, text: str) -> dict[str, str]:
        cached = self._tags.get(text)
        if cached is not None:
            return cached
        try:
            value = json.loads(text)
        except ValueError:
            raise BadValue("Tags", "a JSON object of tag keys and values", text[:200]) from None
        if not isinstance(value, dict):
            raise BadValue("Tags", "a JSON object of tag keys and values", text[:200])
        tags = {
            str(key): item if isinstance(item, str) else json.dumps(item)
            for key, item in value.items()
        }
        if len(self._tags) > 100_000:
            self._tags.clear()
        self._tags[text] = tags
        return tags


def cell_text(value: Any) -> str:
    """A typed cell (from Parquet) as the text a FOCUS CSV would hold; None is ''."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        # Parquet doubles (AWS writes costs as double): the shortest text that reads back as the
        # same double is the amount the exporter meant.
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        # Parquet MAP columns (Tags) arrive as a list of (key, value) pairs.
        if all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return json.dumps({str(k): v for k, v in value}, ensure_ascii=False)
        return json.dumps(value, ensure_ascii=False)
    return str(value)
