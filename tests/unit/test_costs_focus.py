"""FOCUS files as cost lines: the FinOps Foundation's real sample to the last digit, every file
form (CSV, gzip, Parquet), and bad rows refused with file, line and column."""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from app.costs.files import FileRead, read_focus
from app.costs.focus import provider_key
from app.costs.problems import RowProblems
from app.costs.records import CostRecord
from app.errors import InputError
from app.periods import Window

# Bundled with its licence (CC BY 4.0) in tests/data/focus-sample/.
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "focus-sample" / "focus_sample.csv"

HEADER = (
    "BilledCost,BillingAccountId,BillingCurrency,BillingPeriodEnd,BillingPeriodStart,"
    "ChargeCategory,ChargeClass,ChargeDescription,ChargePeriodEnd,ChargePeriodStart,"
    "ConsumedQuantity,ConsumedUnit,EffectiveCost,ListCost,ProviderName,ServiceCategory,"
    "ServiceName,SkuId,SubAccountId,Tags"
)


def row(**overrides: str) -> str:
    values = {
        "BilledCost": "1.25",
        "BillingAccountId": "acct-1",
        "BillingCurrency": "USD",
        "BillingPeriodEnd": "2026-11-01T00:00:00Z",
        "BillingPeriodStart": "2026-10-01T00:00:00Z",
        "ChargeCategory": "Usage",
        "ChargeClass": "",
        "ChargeDescription": "N2 Instance Core running in Americas",
        "ChargePeriodEnd": "2026-10-01T01:00:00Z",
        "ChargePeriodStart": "2026-10-01T00:00:00Z",
        "ConsumedQuantity": "3600",
        "ConsumedUnit": "seconds",
        "EffectiveCost": "1.25",
        "ListCost": "1.5",
        "ProviderName": "Google Cloud",
        "ServiceCategory": "Compute",
        "ServiceName": "Compute Engine",
        "SkuId": "2E10-8FEF-F280",
        "SubAccountId": "atlantic-project",
        "Tags": '"{""goog-k8s-cluster-name"": ""atlantic""}"',
    }
    values.update(overrides)
    return ",".join(values[name] for name in HEADER.split(","))


def write(path: Path, *rows: str) -> Path:
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n")
    return path


def parse(
    *paths: Path, window: Window | None = None, quarantine: bool = False
) -> tuple[list[CostRecord], RowProblems]:
    problems = RowProblems(quarantine=quarantine)
    reads: list[FileRead] = []
    records = list(read_focus(list(paths), problems=problems, window=window, reads=reads))
    return records, problems


def sample_records() -> list[CostRecord]:
    return parse(SAMPLE)[0]


def independent_totals(key_column: str) -> dict[str, Decimal]:
    """The sample's BilledCost per `key_column`, read with nothing but csv and Decimal."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    with SAMPLE.open(newline="") as handle:
        for values in csv.DictReader(handle):
            totals[values[key_column]] += Decimal(values["BilledCost"])
    return dict(totals)


def test_the_sample_totals_per_provider_come_out_to_the_last_digit() -> None:
    records = sample_records()
    ours: dict[str, Decimal] = defaultdict(Decimal)
    for record in records:
        ours[record.provider] += record.net_cost
    expected = {provider_key(k): v for k, v in independent_totals("ProviderName").items()}
    assert dict(ours) == expected
    assert ours["aws"] == Decimal("18.00663861840")
    assert ours["azure"] == Decimal("1.97651418586")
    assert ours["oci"] == Decimal("0.53707392473")
    assert len(records) == 1000


def test_the_sample_totals_per_charge_category_come_out_to_the_last_digit() -> None:
    records = sample_records()
    ours: dict[str, Decimal] = defaultdict(Decimal)
    for record in records:
        ours[record.charge_category] += record.billed_cost
    expected = {k.lower(): v for k, v in independent_totals("ChargeCategory").items()}
    assert dict(ours) == expected
    assert ours["credit"] == Decimal("-2.61370000000")
    assert ours["adjustment"] == Decimal("0.27200000000")
    assert ours["usage"] == Decimal("22.86192672899")


def test_the_sample_keeps_nulls_tags_precision_and_its_extra_column() -> None:
    records = sample_records()
    first = records[0]
    assert first.billed_cost == Decimal("0.00000080000")
    assert str(first.billed_cost) == "8.0000E-7"  # the precision as written, trailing zeros kept
    assert first.charge_period_start == datetime(2024, 9, 18, 22, tzinfo=UTC)
    assert first.resource_name is None  # the bare word NULL
    assert first.labels == {}
    assert first.extra["Id"] == "11472"  # a column FOCUS does not define, kept as written
    tagged = records[1]
    assert tagged.labels == {
        "application": "BrightLensMatrix",
        "environment": "dev",
        "business_unit": "ViennaAI",
    }
    assert tagged.component == "networking"  # Elastic Load Balancing
    assert {r.source for r in records} >= {"focus:aws:1234567890123"}
    assert all(r.net_cost == r.billed_cost and r.credits == 0 for r in records)


def test_the_generators_iso_times_and_empty_cells_read_the_same(tmp_path: Path) -> None:
    records, _ = parse(write(tmp_path / "f.csv", row(ChargeClass="", ResourceName="")))
    record = records[0]
    assert record.charge_period_start == datetime(2026, 10, 1, tzinfo=UTC)
    assert record.billing_period_start == datetime(2026, 10, 1, tzinfo=UTC)
    assert record.is_correction is False
    assert record.provider == "gcp"
    assert record.component == "compute"
    assert record.source == "focus:gcp:acct-1"
    assert record.source_row == "f.csv:2"


def test_gzip_and_parquet_give_the_same_lines_as_the_csv(tmp_path: Path) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    plain = write(
        tmp_path / "bill.csv", row(), row(BilledCost="0.00000000001", ChargeCategory="Credit")
    )
    zipped = tmp_path / "bill.csv.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    table = pacsv.read_csv(
        plain, convert_options=pacsv.ConvertOptions(column_types={"BilledCost": "string"})
    )
    parquet = tmp_path / "bill.parquet"
    pq.write_table(table, parquet)

    def essentials(records: list[CostRecord]) -> list[tuple[object, ...]]:
        return [
            (r.billed_cost, r.charge_category, r.charge_period_start, r.labels, r.sku_id)
            for r in records
        ]

    from_csv = essentials(parse(plain)[0])
    assert essentials(parse(zipped)[0]) == from_csv
    assert essentials(parse(parquet)[0]) == from_csv
    assert from_csv[1][0] == Decimal("1E-11")


@pytest.mark.parametrize(
    ("overrides", "column", "expected"),
    [
        ({"BilledCost": "12.5.0"}, "BilledCost", "a decimal number"),
        ({"BilledCost": "NaN"}, "BilledCost", "a finite decimal number"),
        ({"ChargePeriodStart": "yesterday"}, "ChargePeriodStart", "a time like"),
        (
            {"ChargeCategory": "Refund"},
            "ChargeCategory",
            "Usage, Purchase, Tax, Credit or Adjustment",
        ),
        ({"ChargePeriodEnd": "2026-09-30T23:00:00Z"}, "ChargePeriodEnd", "a time not before"),
        ({"BillingCurrency": "EUR"}, "BillingCurrency", "one currency per import (USD"),
        ({"ConsumedQuantity": "-5"}, "ConsumedQuantity", "zero or more"),
        ({"Tags": "not-json"}, "Tags", "a JSON object"),
        ({"BillingAccountId": "NULL"}, "BillingAccountId", "a value"),
    ],
)
def test_one_bad_row_in_the_middle_is_refused_with_file_line_and_column(
    tmp_path: Path, overrides: dict[str, str], column: str, expected: str
) -> None:
    path = write(tmp_path / "bill.csv", row(), row(), row(**overrides), row())
    with pytest.raises(InputError) as caught:
        parse(path)
    problem = caught.value.problem
    assert not isinstance(problem, str)
    assert problem.source == str(path)
    assert problem.line == 4
    assert problem.column == HEADER.split(",").index(column) + 1
    assert problem.field == column
    assert expected in problem.expected
    assert f"{path}:4:{problem.column}: {column}: expected" in str(caught.value)


def test_a_row_with_the_wrong_number_of_fields_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "bill.csv", row(), "1.0,acct-1,USD")
    with pytest.raises(InputError, match=r"bill.csv:3: expected 20 fields as in the header"):
        parse(path)


def test_blank_lines_are_no_rows(tmp_path: Path) -> None:
    """A spreadsheet that saved an extra line break at the end (or between rows) still reads,
    and a bad row after a blank line keeps its own line number."""
    path = tmp_path / "bill.csv"
    path.write_text(HEADER + "\n" + row() + "\n\n" + row(BilledCost="2") + "\n\n")
    records, _ = parse(path)
    assert [r.billed_cost for r in records] == [Decimal("1.25"), Decimal("2")]
    path.write_text(HEADER + "\n" + row() + "\n\n" + row(BilledCost="x") + "\n")
    with pytest.raises(InputError, match=r"bill\.csv:4:"):
        parse(path)


def test_a_second_currency_names_where_the_first_was_seen(tmp_path: Path) -> None:
    first = write(tmp_path / "september.csv", row(), row())
    second = write(tmp_path / "october.csv", row(), row(BillingCurrency="EUR"))
    with pytest.raises(InputError) as caught:
        parse(first, second)
    assert f"{second}:3:" in str(caught.value)
    assert "one currency per import (USD, as at september.csv:2)" in str(caught.value)


def test_a_quoted_field_spanning_lines_keeps_later_line_numbers_right(tmp_path: Path) -> None:
    multi = row(ChargeDescription='"two\nlines"')
    path = write(tmp_path / "bill.csv", multi, row(BilledCost="x"))
    with pytest.raises(InputError) as caught:
        parse(path)
    assert not isinstance(caught.value.problem, str)
    assert caught.value.problem.line == 4  # the record after the two-line one starts on line 4


def test_quarantine_sets_bad_rows_aside_and_keeps_the_rest(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bill.csv", row(), row(BilledCost="oops"), row(ChargeCategory="x"), row()
    )
    records, problems = parse(path, quarantine=True)
    assert len(records) == 2
    assert problems.count == 2
    assert [p.line for p in problems.problems] == [3, 4]


def test_a_billing_period_outside_the_requested_window_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "bill.csv", row())
    september = Window(datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))
    with pytest.raises(InputError, match="a billing period inside the requested window"):
        parse(path, window=september)


def test_a_file_that_is_not_focus_says_which_columns_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("date,amount\n2026-10-01,5\n")
    with pytest.raises(InputError, match=r"other.csv:1: expected a FOCUS 1.0-1.2 header"):
        parse(path)


def test_azure_reversals_with_negative_usage_at_negative_cost_are_accepted(tmp_path: Path) -> None:
    path = write(tmp_path / "bill.csv", row(ConsumedQuantity="-0.0013", BilledCost="-0.0128"))
    records, _ = parse(path)
    assert records[0].consumed_quantity == Decimal("-0.0013")


def test_a_one_time_charge_may_be_an_instant_but_never_end_before_it_starts(
    tmp_path: Path,
) -> None:
    instant = row(ChargePeriodEnd="2026-10-01T00:00:00Z")
    records, _ = parse(write(tmp_path / "instant.csv", instant))
    assert records[0].charge_period_end == records[0].charge_period_start
    backwards = row(ChargePeriodEnd="2026-09-30T23:00:00Z")
    with pytest.raises(InputError, match="ChargePeriodEnd: expected a time not before"):
        parse(write(tmp_path / "backwards.csv", backwards))


def test_corrections_keep_the_period_they_correct(tmp_path: Path) -> None:
    correction = row(
        ChargeClass="Correction",
        BillingPeriodStart="2026-11-01T00:00:00Z",
        BillingPeriodEnd="2026-12-01T00:00:00Z",
        BilledCost="-0.25",
    )
    records, _ = parse(write(tmp_path / "bill.csv", correction))
    assert records[0].is_correction
    assert records[0].charge_period_start == datetime(2026, 10, 1, tzinfo=UTC)
    assert records[0].billing_period_start == datetime(2026, 11, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("AWS", "aws"),
        ("Amazon Web Services", "aws"),
        ("Microsoft", "azure"),
        ("Google Cloud", "gcp"),
        ("Oracle", "oci"),
        ("Some Cloud Co.", "some-cloud-co"),
    ],
)
def test_provider_names_map_to_the_configuration_vocabulary(name: str, key: str) -> None:
    assert provider_key(name) == key
