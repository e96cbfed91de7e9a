"""The GCP billing export: one grouping, run in BigQuery or over the same export as a file.

A billion-row export is summarised where it lives: the query groups the rows by the keys below
(the hour, project, service, SKU, labels, cost type, invoice month, ...) and sums cost, credits,
list cost and usage. An export extracted to a file is grouped here by the very same keys and
sums, so both paths give identical cost lines. The key list is defined once, in `GROUP_KEYS`; the
SQL and the file aggregator are both generated from it.

Amounts: the export stores them as FLOAT64. Each one is read per row as its 15-significant-digit
decimal (`app.costs.values.float64_decimal`; in SQL `PARSE_BIGNUMERIC(FORMAT('%.14e', x))`), then
summed exactly.

Pure: no database, clock or network here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any, Literal

from app.costs.components import component_for, gcp_service_category
from app.costs.problems import RowProblems
from app.costs.records import SUM_CONTEXT, ZERO, CostRecord, plain_decimal
from app.costs.values import float_amount, parse_time
from app.errors import BadValue, InputProblem
from app.periods import Window, iso

SOURCE_PREFIX = "gcp-billing-export"
PROVIDER = "gcp"

KeyKind = Literal["string", "timestamp", "pairs"]


@dataclass(frozen=True)
class GroupKey:
    """One grouping key: its output column, and where it is in an export row."""

    name: str
    path: tuple[str, ...]
    kind: KeyKind = "string"

    @property
    def sql(self) -> str:
        column = ".".join(self.path)
        if self.kind == "pairs":
            # Labels are arrays of {key, value}; grouped as their sorted JSON text, so the same
            # labels in another order are the same group.
            return (
                "TO_JSON_STRING(ARRAY(SELECT AS STRUCT l.key, l.value "  # noqa: S608 - column names from GROUP_KEYS, not input
                f"FROM UNNEST({column}) AS l ORDER BY l.key, l.value))"
            )
        return column


GROUP_KEYS: tuple[GroupKey, ...] = (
    GroupKey("billing_account_id", ("billing_account_id",)),
    GroupKey("service_id", ("service", "id")),
    GroupKey("service_description", ("service", "description")),
    GroupKey("sku_id", ("sku", "id")),
    GroupKey("sku_description", ("sku", "description")),
    GroupKey("usage_start_time", ("usage_start_time",), "timestamp"),
    GroupKey("usage_end_time", ("usage_end_time",), "timestamp"),
    GroupKey("project_id", ("project", "id")),
    GroupKey("project_name", ("project", "name")),
    GroupKey("project_labels", ("project", "labels"), "pairs"),
    GroupKey("labels", ("labels",), "pairs"),
    GroupKey("system_labels", ("system_labels",), "pairs"),
    GroupKey("location", ("location", "location")),
    GroupKey("region", ("location", "region")),
    GroupKey("cost_type", ("cost_type",)),
    GroupKey("currency", ("currency",)),
    GroupKey("invoice_month", ("invoice", "month")),
    GroupKey("usage_unit", ("usage", "unit")),
    GroupKey("usage_pricing_unit", ("usage", "pricing_unit")),
    GroupKey("adjustment_id", ("adjustment_info", "id")),
    GroupKey("adjustment_description", ("adjustment_info", "description")),
    GroupKey("adjustment_type", ("adjustment_info", "type")),
    GroupKey("adjustment_mode", ("adjustment_info", "mode")),
)


@dataclass(frozen=True)
class SumColumn:
    """A FLOAT64 column summed per group (NULL when every row's value is NULL, like SUM)."""

    name: str
    path: tuple[str, ...]


SUM_COLUMNS: tuple[SumColumn, ...] = (
    SumColumn("cost", ("cost",)),
    SumColumn("cost_at_list", ("cost_at_list",)),
    SumColumn("usage_amount", ("usage", "amount")),
    SumColumn("usage_amount_in_pricing_units", ("usage", "amount_in_pricing_units")),
)

# Credits are summed per type, so a bill can be reconciled with the invoice's savings lines.
CREDIT_TYPES: tuple[str, ...] = (
    "COMMITTED_USAGE_DISCOUNT",
    "COMMITTED_USAGE_DISCOUNT_DOLLAR_BASE",
    "DISCOUNT",
    "FEE_UTILIZATION_OFFSET",
    "FREE_TIER",
    "PROMOTION",
    "RESELLER_MARGIN",
    "SUBSCRIPTION_BENEFIT",
    "SUSTAINED_USAGE_DISCOUNT",
)
OTHER_CREDIT_TYPE = "OTHER"


def credit_column(credit_type: str) -> str:
    return f"credits_{credit_type.lower()}"


CREDIT_COLUMNS: tuple[str, ...] = tuple(
    credit_column(t) for t in (*CREDIT_TYPES, OTHER_CREDIT_TYPE)
)

COST_TYPES = {
    "regular": "usage",
    "tax": "tax",
    "adjustment": "adjustment",
    "rounding_error": "adjustment",
}

OUTPUT_COLUMNS: tuple[str, ...] = (
    *(key.name for key in GROUP_KEYS),
    *(column.name for column in SUM_COLUMNS),
    *CREDIT_COLUMNS,
    "raw_rows",
    "last_export_time",
)

# --- BigQuery --------------------------------------------------------------------------------

_PROJECT = r"(?:[a-z][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]"
_DATASET = r"[A-Za-z0-9_]{1,1024}"
_TABLE = r"[A-Za-z0-9_]{1,1024}"
TABLE_PATTERN = re.compile(rf"^({_PROJECT})\.({_DATASET})\.({_TABLE})$")


def validate_table(table: str) -> str:
    """`PROJECT.DATASET.TABLE`, checked before it goes into SQL (names cannot be parameters)."""
    if not TABLE_PATTERN.fullmatch(table):
        raise ValueError(
            f"expected a BigQuery table as PROJECT.DATASET.TABLE (letters, digits, '_'; project "
            f"ids as Google writes them), got {table!r}"
        )
    return table


def _float_sql(expression: str) -> str:
    return f"PARSE_BIGNUMERIC(FORMAT('%.14e', {expression}))"


def export_query(table: str, *, partition_filter: bool = True) -> str:
    """The grouping query over the export table; parameters `@usage_start`, `@usage_end` and
    (with the partition filter) `@partition_start`, `@partition_end`, all TIMESTAMPs."""
    validate_table(table)
    per_row = [f"{key.sql} AS {key.name}" for key in GROUP_KEYS]
    per_row += [f"{_float_sql('.'.join(c.path))} AS {c.name}" for c in SUM_COLUMNS]
    known = ", ".join(f"'{t}'" for t in CREDIT_TYPES)
    for credit_type in CREDIT_TYPES:
        per_row.append(
            f"(SELECT SUM({_float_sql('c.amount')}) FROM UNNEST(credits) AS c "  # noqa: S608 - constants only
            f"WHERE c.type = '{credit_type}') AS {credit_column(credit_type)}"
        )
    per_row.append(
        f"(SELECT SUM({_float_sql('c.amount')}) FROM UNNEST(credits) AS c "  # noqa: S608 - constants only
        f"WHERE c.type IS NULL OR c.type NOT IN ({known})) AS {credit_column(OTHER_CREDIT_TYPE)}"
    )
    per_row.append("export_time")
    where = ["usage_start_time >= @usage_start", "usage_start_time < @usage_end"]
    if partition_filter:
        where = [
            "_PARTITIONTIME >= @partition_start",
            "_PARTITIONTIME < @partition_end",
            *where,
        ]
    keys = ", ".join(key.name for key in GROUP_KEYS)
    sums = [f"SUM({c.name}) AS {c.name}" for c in SUM_COLUMNS]
    sums += [f"SUM({name}) AS {name}" for name in CREDIT_COLUMNS]
    sums += ["COUNT(*) AS raw_rows", "MAX(export_time) AS last_export_time"]
    indent = ",\n    "
    return (
        "WITH export_rows AS (\n"
        f"  SELECT\n    {indent.join(per_row)}\n"
        f"  FROM `{table}`\n"
        f"  WHERE {' AND '.join(where)}\n"
        ")\n"
        f"SELECT\n    {keys},\n    {indent.join(sums)}\n"
        "FROM export_rows\n"
        f"GROUP BY {keys}"
    )


# --- the same grouping over export rows read from a file ----------------------------------------


@dataclass
class _Group:
    sums: list[Decimal | None]
    credits: list[Decimal | None]
    raw_rows: int
    last_export_time: datetime | None


class ExportAggregator:
    """Groups export rows (nested, as `bq extract` writes them) the way `export_query` does."""

    def __init__(self, *, window: Window | None, problems: RowProblems) -> None:
        self.window = window
        self.problems = problems
        self.rows = 0
        self.currency: str | None = None
        self.currency_where: str | None = None
        self.first_usage: datetime | None = None
        self.last_usage: datetime | None = None
        self._groups: dict[tuple[Any, ...], _Group] = {}

    @property
    def group_count(self) -> int:
        return len(self._groups)

    def add(self, row: Mapping[str, Any], *, source: str, line: int) -> None:
        """Add one export row, or report it as a problem (file, line, field) and skip it."""
        try:
            key, sums, credits, export_time = self._parse(row)
        except BadValue as error:
            self.problems.report(error.at(source, line))
            return
        currency = key[_CURRENCY]
        if self.currency is None:
            self.currency, self.currency_where = currency, f"{source}:{line}"
        elif currency != self.currency:
            self.problems.report(
                InputProblem(
                    source,
                    line,
                    None,
                    "currency",
                    f"one currency per import ({self.currency}, as at {self.currency_where})",
                    currency,
                )
            )
            return
        start = key[_USAGE_START]
        if self.window is not None and not self.window.contains(start):
            self.problems.report(
                InputProblem(
                    source,
                    line,
                    None,
                    "usage_start_time",
                    f"a usage start inside the requested window {self.window}",
                    iso(start),
                )
            )
            return
        self.rows += 1
        if self.first_usage is None or start < self.first_usage:
            self.first_usage = start
        if self.last_usage is None or start > self.last_usage:
            self.last_usage = start
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = _Group(sums, credits, 1, export_time)
            return
        with localcontext(SUM_CONTEXT):
            group.sums = [_add(a, b) for a, b in zip(group.sums, sums, strict=True)]
            group.credits = [_add(a, b) for a, b in zip(group.credits, credits, strict=True)]
        group.raw_rows += 1
        if export_time is not None and (
            group.last_export_time is None or export_time > group.last_export_time
        ):
            group.last_export_time = export_time

    def groups(self) -> Iterator[dict[str, Any]]:
        """The grouped rows, with the same columns and values the BigQuery query returns."""
        for key, group in self._groups.items():
            out: dict[str, Any] = dict(zip((k.name for k in GROUP_KEYS), key, strict=True))
            for column, value in zip(SUM_COLUMNS, group.sums, strict=True):
                out[column.name] = value
            for name, value in zip(CREDIT_COLUMNS, group.credits, strict=True):
                out[name] = value
            out["raw_rows"] = group.raw_rows
            out["last_export_time"] = group.last_export_time
            yield out

    def _parse(
        self, row: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], list[Decimal | None], list[Decimal | None], datetime | None]:
        key: list[Any] = []
        for group_key in GROUP_KEYS:
            value = _at(row, group_key.path)
            name = ".".join(group_key.path)
            if group_key.kind == "timestamp":
                if value is None:
                    raise BadValue(name, "a timestamp")
                key.append(_time(value, name))
            elif group_key.kind == "pairs":
                key.append(_pairs_text(value, name))
            else:
                key.append(_text(value, name))
        for required in ("billing_account_id", "sku_id", "currency", "cost_type"):
            if key[_INDEX[required]] is None:
                path = ".".join(GROUP_KEYS[_INDEX[required]].path)
                raise BadValue(path, "a value (the export always has one)")
        if not re.fullmatch(r"[A-Z]{3}", key[_CURRENCY]):
            raise BadValue("currency", "a three-letter currency code", key[_CURRENCY])
        if key[_INDEX["cost_type"]] not in COST_TYPES:
            raise BadValue("cost_type", f"one of {', '.join(COST_TYPES)}", key[_INDEX["cost_type"]])
        if key[_USAGE_END] < key[_USAGE_START]:
            raise BadValue(
                "usage_end_time", "a time not before usage_start_time", iso(key[_USAGE_END])
            )
        sums: list[Decimal | None] = []
        for column in SUM_COLUMNS:
            value = _at(row, column.path)
            sums.append(None if value is None else float_amount(value, ".".join(column.path)))
        if sums[0] is None:
            raise BadValue("cost", "a number (the export always has one)")
        usage_amount = sums[_USAGE_AMOUNT]
        if (
            key[_INDEX["cost_type"]] == "regular"
            and usage_amount is not None
            and usage_amount < 0
            and sums[0] > 0
        ):
            raise BadValue(
                "usage.amount",
                "a usage amount of zero or more for a charge with a positive cost",
                format(usage_amount, "f"),
            )
        credits = _credits(row.get("credits"))
        export_value = row.get("export_time")
        export_time = None if export_value is None else _time(export_value, "export_time")
        return tuple(key), sums, credits, export_time


_INDEX = {key.name: i for i, key in enumerate(GROUP_KEYS)}
_CURRENCY = _INDEX["currency"]
_USAGE_START = _INDEX["usage_start_time"]
_USAGE_END = _INDEX["usage_end_time"]
_USAGE_AMOUNT = [c.name for c in SUM_COLUMNS].index("usage_amount")
_CREDIT_INDEX = {t: i for i, t in enumerate(CREDIT_TYPES)}


def _add(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def _at(row: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = row
    for part in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _text(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise BadValue(field, "text", repr(value))


def _time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise BadValue(field, "a timestamp like 2026-10-01 00:00:00 UTC", repr(value))
    return parse_time(value, field)


def _pairs_text(value: Any, field: str) -> str:
    """Labels as the query groups them: sorted [{"key":..,"value":..}] JSON text."""
    pairs: list[tuple[str, str | None]] = []
    if value is None:
        value = []
    if isinstance(value, Mapping):  # a CSV may carry labels as a plain JSON object
        value = [{"key": k, "value": v} for k, v in value.items()]
    if not isinstance(value, list):
        raise BadValue(field, 'a list of {"key": ..., "value": ...}', repr(value)[:200])
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            raise BadValue(field, 'a list of {"key": ..., "value": ...}', repr(item)[:200])
        label_value = item.get("value")
        if label_value is not None and not isinstance(label_value, str):
            raise BadValue(field, "label values that are text", repr(label_value))
        pairs.append((item["key"], label_value))
    # BigQuery's ORDER BY puts NULL first; a NULL value stays distinct from "" as it does there.
    pairs.sort(key=lambda pair: (pair[0], pair[1] is not None, pair[1] or ""))
    return json.dumps(
        [{"key": k, "value": v} for k, v in pairs], ensure_ascii=False, separators=(",", ":")
    )


def _credits(value: Any) -> list[Decimal | None]:
    sums: list[Decimal | None] = [None] * len(CREDIT_COLUMNS)
    if value is None:
        return sums
    if not isinstance(value, list):
        raise BadValue("credits", "a list of credits", repr(value)[:200])
    for credit in value:
        if not isinstance(credit, Mapping):
            raise BadValue("credits", "credits with name, amount and type", repr(credit)[:200])
        amount = credit.get("amount")
        if amount is None:
            continue  # SUM skips NULL amounts
        decimal_amount = float_amount(amount, "credits.amount")
        credit_type = credit.get("type")
        index = len(CREDIT_TYPES)  # OTHER, as the query's `NOT IN` / `IS NULL` branch
        if isinstance(credit_type, str):
            index = _CREDIT_INDEX.get(credit_type, index)
        with localcontext(SUM_CONTEXT):
            sums[index] = _add(sums[index], decimal_amount)
    return sums


# --- grouped rows (from BigQuery or the file) -> cost lines -----------------------------------


def source_for(billing_account_id: str) -> str:
    """The source identity of GCP lines: the billing account, whichever path they came by, so
    a file import and a BigQuery pull of the same window replace each other."""
    return f"{SOURCE_PREFIX}:{billing_account_id}"


def record_from_group(group: Mapping[str, Any]) -> CostRecord:
    """One cost line from one grouped row (a BigQuery result row or an aggregator group)."""
    cost_type = group["cost_type"]
    if cost_type not in COST_TYPES:
        raise BadValue("cost_type", f"one of {', '.join(COST_TYPES)}", cost_type)
    cost = _amount(group["cost"])
    if cost is None:
        raise BadValue("cost", "a number")
    credits_by_type: dict[str, str] = {}
    credits = ZERO
    with localcontext(SUM_CONTEXT):
        for credit_type, name in zip(
            (*CREDIT_TYPES, OTHER_CREDIT_TYPE), CREDIT_COLUMNS, strict=True
        ):
            amount = _amount(group.get(name))
            if amount is not None and not amount.is_zero():
                credits += amount
                credits_by_type[credit_type] = format(plain_decimal(amount), "f")
        net = plain_decimal(cost + credits)
    credits = plain_decimal(credits)
    project_labels = _pairs(group.get("project_labels"))
    resource_labels = _pairs(group.get("labels"))
    system_labels = _pairs(group.get("system_labels"))
    start: datetime = group["usage_start_time"]
    end: datetime = group["usage_end_time"]
    service = group.get("service_description")
    sku_description = group.get("sku_description")
    charge_category = COST_TYPES[cost_type]
    category = gcp_service_category(service)
    extra: dict[str, Any] = {"raw_rows": int(group["raw_rows"])}
    if group.get("service_id"):
        extra["service_id"] = group["service_id"]
    if group.get("invoice_month"):
        extra["invoice_month"] = group["invoice_month"]
    if credits_by_type:
        extra["credits_by_type"] = credits_by_type
    if project_labels:
        extra["project_labels"] = project_labels
    if system_labels:
        extra["system_labels"] = system_labels
    if group.get("location") and group.get("location") != group.get("region"):
        extra["location"] = group["location"]
    in_pricing_units = _amount(group.get("usage_amount_in_pricing_units"))
    if in_pricing_units is not None:
        extra["usage_amount_in_pricing_units"] = format(plain_decimal(in_pricing_units), "f")
    if group.get("usage_pricing_unit"):
        extra["usage_pricing_unit"] = group["usage_pricing_unit"]
    adjustment = {
        name: group.get(f"adjustment_{name}")
        for name in ("id", "description", "type", "mode")
        if group.get(f"adjustment_{name}") is not None
    }
    if adjustment:
        extra["adjustment"] = adjustment
    list_cost = _amount(group.get("cost_at_list"))
    return CostRecord(
        source=source_for(group["billing_account_id"]),
        source_row=_row_identity(group),
        provider=PROVIDER,
        billing_account_id=group["billing_account_id"],
        sub_account_id=group.get("project_id"),
        sub_account_name=group.get("project_name"),
        service_name=service,
        service_category=category,
        sku_id=group.get("sku_id"),
        sku_description=sku_description,
        region=group.get("region") or group.get("location"),
        charge_period_start=start,
        charge_period_end=end,
        charge_category=charge_category,
        is_correction=bool(adjustment.get("id")),
        billed_cost=plain_decimal(cost),
        effective_cost=net,
        list_cost=None if list_cost is None else plain_decimal(list_cost),
        credits=credits,
        net_cost=net,
        currency=group["currency"],
        consumed_quantity=_plain_or_none(_amount(group.get("usage_amount"))),
        consumed_unit=group.get("usage_unit"),
        component=component_for(
            service_category=category,
            service_name=service,
            sku_description=sku_description,
            charge_category=charge_category,
        ).value,
        # Project labels first, so the resource's own label wins where both set a key.
        labels={**project_labels, **resource_labels},
        exported_at=group.get("last_export_time"),
        extra=extra,
    )


def _amount(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    raise BadValue(None, "an exact decimal amount", repr(value))


def _plain_or_none(value: Decimal | None) -> Decimal | None:
    return None if value is None else plain_decimal(value)


def _pairs(text: Any) -> dict[str, str]:
    if not text:
        return {}
    items = json.loads(text) if isinstance(text, str) else text
    return {item["key"]: item.get("value") or "" for item in items}


def _row_identity(group: Mapping[str, Any]) -> str:
    """Stable across re-pulls and paths: the hour, project and SKU, then a digest of every key."""
    digest = hashlib.sha256()
    for key in GROUP_KEYS:
        value = group.get(key.name)
        if key.kind == "pairs":
            value = json.dumps(_pairs(value), sort_keys=True, ensure_ascii=False)
        elif isinstance(value, datetime):
            value = iso(value)
        digest.update(f"{key.name}={value!r}\x1f".encode())
    start = group["usage_start_time"]
    project = group.get("project_id") or "-"
    return f"{iso(start)}/{project}/{group.get('sku_id')}/{digest.hexdigest()[:20]}"


def records_from_groups(
    groups: Iterable[Mapping[str, Any]], *, source: str, problems: RowProblems
) -> Iterator[CostRecord]:
    """Cost lines from grouped rows; `source` names where they came from in problems (a
    BigQuery table, or the files), the row number counting from 1."""
    currency: str | None = None
    for number, group in enumerate(groups, start=1):
        try:
            record = record_from_group(group)
        except (KeyError, TypeError, ValueError) as error:  # BadValue is a ValueError
            if isinstance(error, BadValue):
                problem = error.at(source, number)
            else:
                problem = InputProblem(
                    source, number, None, None, "a grouped export row", repr(error)[:200]
                )
            problems.report(problem)
            continue
        if currency is None:
            currency = record.currency
        elif record.currency != currency:
            problems.report(
                InputProblem(
                    source,
                    number,
                    None,
                    "currency",
                    f"one currency per import ({currency})",
                    record.currency,
                )
            )
            continue
        yield record
