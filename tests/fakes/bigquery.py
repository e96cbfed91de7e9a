"""A BigQuery REST endpoint for the real `google.cloud.bigquery.Client`, serving billing exports.

It answers jobs.query, jobs.insert, jobs.get and jobs.getQueryResults (with paging by pageToken)
the way BigQuery does. It does not parse SQL: it recognises hubmeter's export query by its table
and parameters and computes the answer with its own, deliberately plain, implementation of what
that query means in BigQuery (group the rows by the listed columns, read FLOAT64 amounts as
`PARSE_BIGNUMERIC(FORMAT('%.14e', x))`, sum as BIGNUMERIC), so a test comparing its results with
hubmeter's file aggregation can fail.

Each table is a list of export rows (dicts as `bq extract` writes them); a row's partition is
the UTC day of its `export_time`, as in an ingestion-time partitioned table.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from pathlib import Path
from typing import Any

from tests.fakes.http import Request, RequestLog, Response, serve

BIG = Context(prec=100)

KEY_COLUMNS = [
    ("billing_account_id", "billing_account_id"),
    ("service_id", "service.id"),
    ("service_description", "service.description"),
    ("sku_id", "sku.id"),
    ("sku_description", "sku.description"),
    ("usage_start_time", "usage_start_time"),
    ("usage_end_time", "usage_end_time"),
    ("project_id", "project.id"),
    ("project_name", "project.name"),
    ("project_labels", "project.labels"),
    ("labels", "labels"),
    ("system_labels", "system_labels"),
    ("location", "location.location"),
    ("region", "location.region"),
    ("cost_type", "cost_type"),
    ("currency", "currency"),
    ("invoice_month", "invoice.month"),
    ("usage_unit", "usage.unit"),
    ("usage_pricing_unit", "usage.pricing_unit"),
    ("adjustment_id", "adjustment_info.id"),
    ("adjustment_description", "adjustment_info.description"),
    ("adjustment_type", "adjustment_info.type"),
    ("adjustment_mode", "adjustment_info.mode"),
]
TIMESTAMP_KEYS = {"usage_start_time", "usage_end_time"}
LABEL_KEYS = {"project_labels", "labels", "system_labels"}
SUMS = [
    ("cost", "cost"),
    ("cost_at_list", "cost_at_list"),
    ("usage_amount", "usage.amount"),
    ("usage_amount_in_pricing_units", "usage.amount_in_pricing_units"),
]
KNOWN_CREDIT_TYPES = [
    "COMMITTED_USAGE_DISCOUNT",
    "COMMITTED_USAGE_DISCOUNT_DOLLAR_BASE",
    "DISCOUNT",
    "FEE_UTILIZATION_OFFSET",
    "FREE_TIER",
    "PROMOTION",
    "RESELLER_MARGIN",
    "SUBSCRIPTION_BENEFIT",
    "SUSTAINED_USAGE_DISCOUNT",
]


def parse_bignumeric_of_format(number: float) -> Decimal:
    """BigQuery's PARSE_BIGNUMERIC(FORMAT('%.14e', number)): 15 significant digits, then
    rounded half away from zero to BIGNUMERIC's 38 decimal places."""
    text = "%.14e" % number  # noqa: UP031 - printf is what FORMAT('%.14e') is
    return Decimal(text).quantize(Decimal("1e-38"), rounding=ROUND_HALF_UP, context=BIG)


def bigquery_timestamp(text: str) -> datetime:
    text = text.removesuffix(" UTC")
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def dig(row: dict[str, Any], dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def to_json_string_sorted(pairs: list[dict[str, Any]] | None) -> str:
    """TO_JSON_STRING(ARRAY(SELECT AS STRUCT key, value ... ORDER BY key, value))."""
    items = sorted(
        pairs or [], key=lambda p: (p["key"], p.get("value") is not None, p.get("value") or "")
    )
    return json.dumps(
        [{"key": p["key"], "value": p.get("value")} for p in items],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def bignumeric_text(value: Decimal) -> str:
    """How the BigQuery API writes a BIGNUMERIC: plain digits, no trailing zeros."""
    if value.is_zero():
        return "0"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


@dataclass
class QueryResult:
    schema: list[dict[str, Any]]
    rows: list[list[Any]]
    use_int64_timestamp: bool


@dataclass
class FakeBigQuery:
    """The tables the fake serves and what it was asked."""

    project: str
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    page_size: int = 25
    jobs: dict[str, QueryResult] = field(default_factory=dict)
    queries: list[dict[str, Any]] = field(default_factory=list)
    log: RequestLog | None = None
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def load_jsonl(self, table: str, path: Path) -> None:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        self.tables[table] = rows

    # --- HTTP -------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        match = re.fullmatch(
            r"/bigquery/v2/projects/([^/]+)/(queries|jobs)(?:/([^/]+))?(/cancel)?", request.path
        )
        if not match:
            return _error(404, f"no such endpoint {request.method} {request.path}")
        project, kind, job_id, cancel = match.groups()
        if kind == "queries" and request.method == "POST" and job_id is None:
            return self._jobs_query(project, request.body or {})
        if kind == "jobs" and request.method == "POST" and job_id is None:
            return self._jobs_insert(project, request.body or {})
        if kind == "jobs" and request.method == "GET" and job_id is not None:
            return self._jobs_get(project, job_id, request.query)
        if kind == "jobs" and cancel:
            return Response(200, {"job": self._job_resource(project, job_id)})
        if kind == "queries" and request.method == "GET" and job_id is not None:
            return self._get_query_results(project, job_id, request.query)
        return _error(405, f"{request.method} {request.path} is not supported by the fake")

    def _jobs_query(self, project: str, body: dict[str, Any]) -> Response:
        job_id = f"job_{next(self._ids)}"
        try:
            result = self._run(body.get("query", ""), body.get("queryParameters", []), body)
        except LookupError as exc:
            return _error(404, str(exc))
        except ValueError as exc:
            return _error(400, str(exc))
        self.jobs[job_id] = result
        max_results = body.get("maxResults")
        page = self._page(project, job_id, 0, max_results)
        page["kind"] = "bigquery#queryResponse"
        return Response(200, page)

    def _jobs_insert(self, project: str, body: dict[str, Any]) -> Response:
        reference = body.get("jobReference") or {}
        job_id = reference.get("jobId") or f"job_{next(self._ids)}"
        query = body.get("configuration", {}).get("query", {})
        try:
            result = self._run(query.get("query", ""), query.get("queryParameters", []), body)
        except LookupError as exc:
            return _error(404, str(exc))
        except ValueError as exc:
            return _error(400, str(exc))
        self.jobs[job_id] = result
        resource = self._job_resource(project, job_id)
        resource["configuration"] = body.get("configuration", {})
        return Response(200, resource)

    def _jobs_get(self, project: str, job_id: str, query: dict[str, str]) -> Response:
        if job_id not in self.jobs:
            return _error(404, f"Not found: Job {project}:{job_id}")
        return Response(200, self._job_resource(project, job_id))

    def _get_query_results(self, project: str, job_id: str, query: dict[str, str]) -> Response:
        if job_id not in self.jobs:
            return _error(404, f"Not found: Job {project}:{job_id}")
        start = int(query.get("pageToken") or query.get("startIndex") or 0)
        max_results = query.get("maxResults")
        if max_results == "0":
            page = self._page(project, job_id, start, 0)
        else:
            page = self._page(project, job_id, start, int(max_results) if max_results else None)
        page["kind"] = "bigquery#getQueryResultsResponse"
        return Response(200, page)

    def _job_resource(self, project: str, job_id: str) -> dict[str, Any]:
        result = self.jobs.get(job_id)
        return {
            "kind": "bigquery#job",
            "id": f"{project}:US.{job_id}",
            "jobReference": {"projectId": project, "jobId": job_id, "location": "US"},
            "status": {"state": "DONE"},
            "configuration": {"jobType": "QUERY", "query": {"useLegacySql": False}},
            "statistics": {
                "creationTime": "1767225600000",
                "startTime": "1767225600000",
                "endTime": "1767225601000",
                "query": {
                    "totalBytesProcessed": "0",
                    "schema": {"fields": result.schema} if result else None,
                    "statementType": "SELECT",
                },
            },
        }

    def _page(
        self, project: str, job_id: str, start: int, max_results: int | None
    ) -> dict[str, Any]:
        result = self.jobs[job_id]
        size = self.page_size if max_results is None else min(self.page_size, int(max_results))
        rows = result.rows[start : start + size]
        page: dict[str, Any] = {
            "jobReference": {"projectId": project, "jobId": job_id, "location": "US"},
            "schema": {"fields": result.schema},
            "totalRows": str(len(result.rows)),
            "jobComplete": True,
            "cacheHit": False,
            "totalBytesProcessed": "0",
            "rows": [
                {"f": [{"v": _cell(v, f, result)} for v, f in zip(row, result.schema, strict=True)]}
                for row in rows
            ],
        }
        if start + len(rows) < len(result.rows) and size > 0:
            page["pageToken"] = str(start + len(rows))
        return page

    # --- the query ----------------------------------------------------------------------------

    def _run(self, sql: str, parameters: list[dict[str, Any]], body: dict[str, Any]) -> QueryResult:
        self.queries.append({"sql": sql, "parameters": parameters})
        match = re.search(r"FROM `([^`]+)`", sql)
        if match is None:
            raise ValueError("the fake only answers queries over one `project.dataset.table`")
        table = match.group(1)
        if table not in self.tables:
            raise LookupError(f"Not found: Table {table} was not found in location US")
        values = {p["name"]: p["parameterValue"]["value"] for p in parameters}
        if "_PARTITIONTIME" in sql and not {"partition_start", "partition_end"} <= values.keys():
            raise ValueError("Query parameter 'partition_start' not found")
        usage_start = bigquery_timestamp(values["usage_start"])
        usage_end = bigquery_timestamp(values["usage_end"])
        partition = None
        if "_PARTITIONTIME" in sql:
            partition = (
                bigquery_timestamp(values["partition_start"]),
                bigquery_timestamp(values["partition_end"]),
            )
        format_options = body.get("formatOptions") or {}
        return self._aggregate(
            self.tables[table],
            usage_start,
            usage_end,
            partition,
            bool(format_options.get("useInt64Timestamp")),
        )

    def _aggregate(
        self,
        rows: list[dict[str, Any]],
        usage_start: datetime,
        usage_end: datetime,
        partition: tuple[datetime, datetime] | None,
        use_int64_timestamp: bool,
    ) -> QueryResult:
        groups: dict[tuple[Any, ...], dict[str, Any]] = {}
        for row in rows:
            start = bigquery_timestamp(row["usage_start_time"])
            if not (usage_start <= start < usage_end):
                continue
            if partition is not None:
                exported = bigquery_timestamp(row["export_time"])
                partition_time = datetime(exported.year, exported.month, exported.day, tzinfo=UTC)
                if not (partition[0] <= partition_time < partition[1]):
                    continue
            key = []
            for name, path in KEY_COLUMNS:
                value = dig(row, path)
                if name in LABEL_KEYS:
                    value = to_json_string_sorted(value)
                elif name in TIMESTAMP_KEYS:
                    value = bigquery_timestamp(value)
                key.append(value)
            group = groups.setdefault(
                tuple(key),
                {
                    "sums": {name: None for name, _ in SUMS},
                    "credits": {},
                    "count": 0,
                    "last_export": None,
                },
            )
            for name, path in SUMS:
                value = dig(row, path)
                if value is not None:
                    amount = parse_bignumeric_of_format(float(value))
                    current = group["sums"][name]
                    group["sums"][name] = amount if current is None else BIG.add(current, amount)
            for credit in row.get("credits") or []:
                if credit.get("amount") is None:
                    continue
                credit_type = credit.get("type")
                column = credit_type.lower() if credit_type in KNOWN_CREDIT_TYPES else "other"
                amount = parse_bignumeric_of_format(float(credit["amount"]))
                group["credits"][column] = BIG.add(group["credits"].get(column, Decimal(0)), amount)
            group["count"] += 1
            exported = bigquery_timestamp(row["export_time"]) if row.get("export_time") else None
            if exported is not None and (
                group["last_export"] is None or exported > group["last_export"]
            ):
                group["last_export"] = exported
        schema = [
            {
                "name": name,
                "type": "TIMESTAMP" if name in TIMESTAMP_KEYS else "STRING",
                "mode": "NULLABLE",
            }
            for name, _ in KEY_COLUMNS
        ]
        schema += [{"name": name, "type": "BIGNUMERIC", "mode": "NULLABLE"} for name, _ in SUMS]
        credit_columns = [t.lower() for t in KNOWN_CREDIT_TYPES] + ["other"]
        schema += [
            {"name": f"credits_{c}", "type": "BIGNUMERIC", "mode": "NULLABLE"}
            for c in credit_columns
        ]
        schema += [
            {"name": "raw_rows", "type": "INTEGER", "mode": "NULLABLE"},
            {"name": "last_export_time", "type": "TIMESTAMP", "mode": "NULLABLE"},
        ]
        out_rows = []
        for key, group in groups.items():
            out_rows.append(
                [
                    *key,
                    *(group["sums"][name] for name, _ in SUMS),
                    *(group["credits"].get(c) for c in credit_columns),
                    group["count"],
                    group["last_export"],
                ]
            )
        return QueryResult(schema, out_rows, use_int64_timestamp)


def _cell(value: Any, field: dict[str, Any], result: QueryResult) -> Any:
    if value is None:
        return None
    kind = field["type"]
    if kind == "TIMESTAMP":
        micros = int(value.timestamp()) * 1_000_000 + value.microsecond
        if result.use_int64_timestamp:
            return str(micros)
        return f"{micros / 1_000_000:.6E}"
    if kind == "BIGNUMERIC":
        return bignumeric_text(value)
    return str(value)


def _error(code: int, message: str) -> Response:
    status = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 405: "UNIMPLEMENTED"}.get(code, "UNKNOWN")
    reason = {400: "invalidQuery", 404: "notFound"}.get(code, "backendError")
    return Response(
        code,
        {
            "error": {
                "code": code,
                "message": message,
                "status": status,
                "errors": [{"message": message, "domain": "global", "reason": reason}],
            }
        },
    )


@contextmanager
def fake_bigquery(fake: FakeBigQuery) -> Iterator[str]:
    """Serve `fake`; yields the endpoint URL for `client_options={"api_endpoint": ...}`."""
    with serve(fake.handle) as (url, log):
        fake.log = log
        yield url
