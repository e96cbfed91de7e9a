"""The GCP export grouping: one definition for the SQL and the file path, exact amounts, and bad
rows named by file and line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.costs.files import FileRead, aggregate_gcp_export
from app.costs.gcp_export import (
    GROUP_KEYS,
    OUTPUT_COLUMNS,
    ExportAggregator,
    export_query,
    records_from_groups,
    validate_table,
)
from app.costs.problems import RowProblems
from app.costs.records import CostRecord
from app.costs.values import float64_decimal
from app.errors import InputError
from app.periods import Window

OCTOBER = Window(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))


def export_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "billing_account_id": "01A2B3-C4D5E6-F7A8B9",
        "service": {"id": "6F81-5844-456A", "description": "Compute Engine"},
        "sku": {"id": "2E10-8FEF-F280", "description": "N2 Instance Core running in Americas"},
        "usage_start_time": "2026-10-01 00:00:00 UTC",
        "usage_end_time": "2026-10-01 01:00:00 UTC",
        "project": {
            "id": "atlantic-project",
            "name": "atlantic-project",
            "labels": [{"key": "team", "value": "infra"}],
        },
        "labels": [
            {"key": "goog-k8s-cluster-name", "value": "atlantic"},
            {"key": "team", "value": "hubs"},
        ],
        "system_labels": [],
        "location": {"location": "us-central1", "region": "us-central1"},
        "export_time": "2026-10-01 12:00:00.000001 UTC",
        "cost": 0.1,
        "currency": "USD",
        "usage": {
            "amount": 3600.0,
            "unit": "seconds",
            "amount_in_pricing_units": 1.0,
            "pricing_unit": "hour",
        },
        "credits": [
            {
                "name": "Sustained usage discount",
                "amount": -0.02,
                "type": "SUSTAINED_USAGE_DISCOUNT",
            }
        ],
        "invoice": {"month": "202610"},
        "cost_type": "regular",
        "adjustment_info": None,
    }
    row.update(changes)
    return row


def aggregate(rows: list[dict[str, Any]], window: Window | None = None) -> list[CostRecord]:
    problems = RowProblems()
    aggregator = ExportAggregator(window=window, problems=problems)
    for line, row in enumerate(rows, start=1):
        aggregator.add(row, source="export.jsonl", line=line)
    return list(records_from_groups(aggregator.groups(), source="export.jsonl", problems=problems))


def test_rows_of_the_same_hour_and_keys_become_one_exact_line() -> None:
    reordered = export_row(
        cost=0.2,
        labels=[
            {"key": "team", "value": "hubs"},
            {"key": "goog-k8s-cluster-name", "value": "atlantic"},
        ],
        export_time="2026-10-03 08:00:00 UTC",
    )
    (line,) = aggregate([export_row(), reordered])
    assert line.billed_cost == Decimal("0.3")  # not 0.30000000000000004
    assert line.credits == Decimal("-0.04")
    assert line.net_cost == Decimal("0.26")
    assert line.extra["raw_rows"] == 2
    assert line.extra["credits_by_type"] == {"SUSTAINED_USAGE_DISCOUNT": "-0.04"}
    assert line.exported_at == datetime(2026, 10, 3, 8, tzinfo=UTC)
    assert line.labels == {"goog-k8s-cluster-name": "atlantic", "team": "hubs"}  # resource wins
    assert line.extra["project_labels"] == {"team": "infra"}
    assert line.sub_account_id == "atlantic-project"
    assert line.component == "compute"
    assert line.service_category == "Compute"
    assert line.charge_category == "usage"
    assert line.source == "gcp-billing-export:01A2B3-C4D5E6-F7A8B9"


def test_different_hours_skus_or_labels_stay_apart() -> None:
    lines = aggregate(
        [
            export_row(),
            export_row(
                usage_start_time="2026-10-01 01:00:00 UTC", usage_end_time="2026-10-01 02:00:00 UTC"
            ),
            export_row(labels=[{"key": "2i2c:hub-name", "value": "ocean"}]),
            export_row(cost_type="tax", credits=[]),
        ]
    )
    assert len(lines) == 4
    assert len({line.source_row for line in lines}) == 4
    assert sorted(line.charge_category for line in lines) == ["tax", "usage", "usage", "usage"]


def test_floats_read_as_their_fifteen_digit_decimal() -> None:
    assert float64_decimal(0.1) == Decimal("0.1")
    assert float64_decimal(0.1 + 0.2) == Decimal("0.3")
    assert float64_decimal(1.2345678901234e-07) == Decimal("1.2345678901234E-7")
    assert float64_decimal(-0.000123) == Decimal("-0.000123")
    assert float64_decimal(1e-45) == Decimal(0)  # beyond BIGNUMERIC's 38 places


def test_a_bad_line_in_an_export_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    lines = [export_row(), export_row(cost="lots"), export_row()]
    path.write_text("\n".join(json.dumps(row) for row in lines) + "\n")
    aggregator = ExportAggregator(window=None, problems=RowProblems())
    with pytest.raises(InputError, match=r"export.jsonl:2: cost: expected a number, got 'lots'"):
        aggregate_gcp_export([path], aggregator=aggregator, reads=[])


def test_broken_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps(export_row()) + "\n" + '{"cost": 1,,}\n')
    aggregator = ExportAggregator(window=None, problems=RowProblems())
    with pytest.raises(InputError, match=r"export.jsonl:2:12: expected a JSON object"):
        aggregate_gcp_export([path], aggregator=aggregator, reads=[])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"currency": "EUR"}, r"one currency per import \(USD"),
        ({"usage_start_time": "2026-09-30 23:00:00 UTC"}, "inside the requested window"),
        ({"usage": {"amount": -5.0, "unit": "seconds"}}, "a usage amount of zero or more"),
        ({"cost_type": "refund"}, "one of regular, tax, adjustment, rounding_error"),
    ],
)
def test_rows_that_cannot_be_are_refused(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(InputError, match=expected):
        aggregate([export_row(), export_row(**change)], window=OCTOBER)


def test_the_flat_csv_form_groups_like_the_json_form(tmp_path: Path) -> None:
    row = export_row()
    json_path = tmp_path / "export.jsonl"
    json_path.write_text(json.dumps(row) + "\n")
    csv_path = tmp_path / "export.csv"
    header = (
        "billing_account_id,service_id,service_description,sku_id,sku_description,"
        "usage_start_time,usage_end_time,project_id,project_name,project_labels,labels,"
        "location_region,export_time,cost,currency,usage_amount,usage_unit,credits,"
        "invoice_month,cost_type"
    )

    def quoted(value: Any) -> str:
        return '"' + json.dumps(value).replace('"', '""') + '"'

    values = [
        row["billing_account_id"],
        "6F81-5844-456A",
        "Compute Engine",
        "2E10-8FEF-F280",
        "N2 Instance Core running in Americas",
        row["usage_start_time"],
        row["usage_end_time"],
        "atlantic-project",
        "atlantic-project",
        quoted(row["project"]["labels"]),
        quoted(row["labels"]),
        "us-central1",
        row["export_time"],
        "0.1",
        "USD",
        "3600",
        "seconds",
        quoted(row["credits"]),
        "202610",
        "regular",
    ]
    csv_path.write_text(header + "\n" + ",".join(values) + "\n")

    def lines(path: Path) -> list[CostRecord]:
        problems = RowProblems()
        aggregator = ExportAggregator(window=None, problems=problems)
        reads: list[FileRead] = []
        aggregate_gcp_export([path], aggregator=aggregator, reads=reads)
        return list(records_from_groups(aggregator.groups(), source="x", problems=problems))

    (from_json,) = lines(json_path)
    (from_csv,) = lines(csv_path)
    for name in (
        "billed_cost",
        "credits",
        "net_cost",
        "labels",
        "charge_period_start",
        "sub_account_id",
        "sku_id",
        "consumed_quantity",
    ):
        assert getattr(from_csv, name) == getattr(from_json, name), name


def test_the_query_is_built_from_the_same_keys_and_refuses_bad_table_names() -> None:
    sql = export_query("my-billing.billing_export.gcp_billing_export_v1_01A2B3_C4D5E6_F7A8B9")
    assert "FROM `my-billing.billing_export.gcp_billing_export_v1_01A2B3_C4D5E6_F7A8B9`" in sql
    assert "_PARTITIONTIME >= @partition_start AND _PARTITIONTIME < @partition_end" in sql
    assert "usage_start_time >= @usage_start AND usage_start_time < @usage_end" in sql
    assert f"GROUP BY {', '.join(key.name for key in GROUP_KEYS)}" in sql
    for column in OUTPUT_COLUMNS:
        assert f" AS {column}" in sql or f"{column}," in sql or sql.endswith(column)
    assert "PARSE_BIGNUMERIC(FORMAT('%.14e', cost))" in sql
    assert "_PARTITIONTIME" not in export_query("p-roject.d.t", partition_filter=False)
    bad_names = ["proj.ds.t`; DROP TABLE x; --", "ds.table", "proj.ds.t where 1=1", "P.d.t"]
    for bad in [*bad_names, "p.d.t\n"]:
        with pytest.raises(ValueError, match=r"PROJECT\.DATASET\.TABLE"):
            validate_table(bad)
    assert validate_table("example.com:my-project.ds.t_1") == "example.com:my-project.ds.t_1"
