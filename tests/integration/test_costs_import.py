"""Cost imports on both databases: one current copy of every row however often a bill is
imported, late GCP rows picked up, bad files refused whole, estimates replaced by the bill."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app import migrate
from app.costs import ingest, service
from app.costs.estimates import Driver, EstimateTarget
from app.costs.models import CostLine, PriceBookSku
from app.db import make_sessionmaker, transaction
from app.errors import InputError
from app.hubs.models import Cluster
from app.ingestion.models import BatchStatus, IngestionBatch
from app.periods import Window
from app.synthetic import ScenarioSpec, generate
from app.usage.models import UsageHour

NOW = datetime(2026, 10, 20, 12, tzinfo=UTC)
# Bundled with its licence (CC BY 4.0) in tests/data/focus-sample/.
SAMPLE = Path(__file__).resolve().parents[1] / "data" / "focus-sample" / "focus_sample.csv"


@pytest.fixture(scope="module")
def bill(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Three days of a generated GCP bill: the export as JSONL and the same charges as FOCUS."""
    return generate(
        ScenarioSpec(hubs=2, users_per_hub=2, days=3, seed=7, late_cost_fraction=0.2),
        tmp_path_factory.mktemp("bill"),
    )


def line_count(session: Session, **where: Any) -> int:
    query = select(func.count()).select_from(CostLine)
    for name, value in where.items():
        query = query.where(getattr(CostLine, name) == value)
    return int(session.scalar(query) or 0)


def net_total(session: Session) -> Decimal:
    return sum((line.net_cost for line in session.scalars(select(CostLine))), Decimal(0))


def test_importing_the_focus_sample_twice_leaves_one_copy(session: Session) -> None:
    first = ingest.ingest_focus_files(session=session, paths=[SAMPLE], now=NOW)
    assert first.rows_written == 1000
    again = ingest.ingest_focus_files(session=session, paths=[SAMPLE], now=NOW)
    assert again.rows_written == 1000
    assert again.rows_superseded == 1000
    assert line_count(session) == 1000
    window = Window(datetime(2024, 9, 1, tzinfo=UTC), datetime(2024, 11, 1, tzinfo=UTC))
    by_provider = {
        t.key: t.net_cost
        for t in service.cost_totals(
            session=session, window=window, group_by=service.GroupBy.provider
        )
    }
    assert by_provider == {
        "aws": Decimal("18.00663861840"),
        "azure": Decimal("1.97651418586"),
        "oci": Decimal("0.53707392473"),
    }
    by_category = {
        t.key: t.billed_cost
        for t in service.cost_totals(
            session=session, window=window, group_by=service.GroupBy.charge_category
        )
    }
    assert by_category == {
        "usage": Decimal("22.86192672899"),
        "credit": Decimal("-2.61370000000"),
        "adjustment": Decimal("0.27200000000"),
    }
    superseded = session.scalars(
        select(IngestionBatch).where(IngestionBatch.status == BatchStatus.superseded)
    ).all()
    assert {b.id for b in superseded} == {b for s in again.batches for b in s.replaced_batch_ids}


def _focus_file(path: Path, rows: list[list[str]], header: list[str]) -> Path:
    import csv

    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_a_revised_focus_delivery_replaces_the_billing_period_and_keeps_corrections(
    session: Session, bill: Any, tmp_path: Path
) -> None:
    import csv

    with bill.focus_file.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    billed = header.index("BilledCost")
    ingest.ingest_focus_files(session=session, paths=[bill.focus_file], now=NOW)
    # The revision drops the last row and doubles the first one's cost.
    revised = [list(r) for r in rows[:-1]]
    revised[0][billed] = str(Decimal(revised[0][billed]) * 2)
    report = ingest.ingest_focus_files(
        session=session, paths=[_focus_file(tmp_path / "revised.csv", revised, header)], now=NOW
    )
    assert report.rows_superseded == len(rows)
    assert line_count(session) == len(rows) - 1
    expected = sum((Decimal(r[billed]) for r in revised), Decimal(0))
    assert net_total(session) == expected
    # A correction delivered with November's bill applies to October and survives a
    # re-delivery of October.
    correction = list(revised[0])
    for name, value in (
        ("ChargeClass", "Correction"),
        ("BillingPeriodStart", "2026-11-01T00:00:00Z"),
        ("BillingPeriodEnd", "2026-12-01T00:00:00Z"),
        ("BilledCost", "-1.5"),
    ):
        correction[header.index(name)] = value
    november = _focus_file(tmp_path / "november.csv", [correction], header)
    ingest.ingest_focus_files(session=session, paths=[november], now=NOW)
    ingest.ingest_focus_files(session=session, paths=[tmp_path / "revised.csv"], now=NOW)
    corrections = session.scalars(select(CostLine).where(CostLine.is_correction)).all()
    assert [(c.net_cost, c.charge_period_start.month) for c in corrections] == [
        (Decimal("-1.5"), 10)
    ]
    assert net_total(session) == expected - Decimal("1.5")


def test_a_bad_row_in_the_middle_refuses_the_file_and_changes_nothing(
    fresh_engine: Engine, bill: Any, tmp_path: Path
) -> None:
    migrate.upgrade(fresh_engine)
    factory = make_sessionmaker(fresh_engine)
    with transaction(factory) as session:
        ingest.ingest_focus_files(session=session, paths=[bill.focus_file], now=NOW)
    lines = bill.focus_file.read_text().splitlines()
    middle = len(lines) // 2
    lines[middle] = lines[middle].replace("USD", "US Dollars", 1)
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as caught, transaction(factory) as session:
        ingest.ingest_focus_files(session=session, paths=[broken], now=NOW)
    assert f"broken.csv:{middle + 1}:" in str(caught.value)
    with transaction(factory) as session:
        assert line_count(session) == len(lines) - 1  # the first import, untouched
        batches = session.scalars(select(IngestionBatch)).all()
        assert all(b.status == BatchStatus.complete for b in batches)
        assert len(batches) == 1


def test_quarantine_imports_the_good_rows_and_records_the_bad(
    session: Session, bill: Any, tmp_path: Path
) -> None:
    lines = bill.focus_file.read_text().splitlines()
    lines[5] = lines[5].replace("Usage", "Usage?", 1)
    path = tmp_path / "some-bad.csv"
    path.write_text("\n".join(lines) + "\n")
    report = ingest.ingest_focus_files(session=session, paths=[path], now=NOW, quarantine=True)
    assert report.problems.count == 1
    assert report.problems.problems[0].line == 6
    assert line_count(session) == len(lines) - 2
    batch = session.get_one(IngestionBatch, report.batches[0].batch_id)
    assert batch.stats["quarantined_rows"] == 1
    assert batch.stats["quarantined"][0]["line"] == 6


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_a_gcp_re_extraction_picks_up_late_rows_and_counts_nothing_twice(
    session: Session, bill: Any, tmp_path: Path
) -> None:
    rows = [json.loads(line) for line in bill.billing_export_file.read_text().splitlines()]
    first_day_end = "2026-10-02 00:00:00"
    on_time = [r for r in rows if r["export_time"] < first_day_end]
    late = [r for r in rows if r["export_time"] >= first_day_end]
    assert late, "the generated bill has late rows"
    window = Window(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 4, tzinfo=UTC))
    early = _jsonl(tmp_path / "early.jsonl", on_time)
    ingest.ingest_gcp_export_files(session=session, paths=[early], now=NOW, window=window)
    partial_total = net_total(session)
    report = ingest.ingest_gcp_export_files(
        session=session, paths=[bill.billing_export_file], now=NOW, window=window
    )
    again = ingest.ingest_gcp_export_files(
        session=session, paths=[bill.billing_export_file], now=NOW, window=window
    )
    assert again.rows_superseded == report.rows_written
    assert net_total(session) == bill.total_net_cost
    assert net_total(session) != partial_total
    assert line_count(session) == report.rows_written
    per_day: dict[str, Decimal] = defaultdict(Decimal)
    for line in session.scalars(select(CostLine)):
        per_day[line.charge_period_start.date().isoformat()] += line.net_cost
    truth: dict[str, Decimal] = defaultdict(Decimal)
    for line in bill.cost_truth_file.read_text().splitlines()[1:]:
        day, *_, amount = line.split(",")
        truth[day] += Decimal(amount)
    assert dict(per_day) == dict(truth)


def test_the_same_account_from_two_kinds_of_source_is_refused(session: Session, bill: Any) -> None:
    ingest.ingest_gcp_export_files(
        session=session,
        paths=[bill.billing_export_file],
        now=NOW,
        window=Window(bill.period_start, bill.period_end),
    )
    with pytest.raises(InputError, match="would count them twice"):
        ingest.ingest_focus_files(session=session, paths=[bill.focus_file], now=NOW)


def test_a_gcp_export_file_needs_its_window_and_a_partial_extract_deletes_nothing(
    fresh_engine: Engine, bill: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from app.cli import cli
    from app.errors import UsageError

    migrate.upgrade(fresh_engine)
    # The command's engine is the fixture's, which the fixture disposes of.
    monkeypatch.setattr("app.runtime.make_engine", lambda *_args, **_kw: fresh_engine)
    runner = CliRunner()
    command = [
        "--database-url",
        fresh_engine.url.render_as_string(hide_password=False),
        "ingest",
        "costs",
        "--source",
        "gcp-export",
    ]
    whole = runner.invoke(
        cli,
        [*command, str(bill.billing_export_file), "--start", "2026-10-01", "--end", "2026-10-04"],
    )
    assert whole.exit_code == 0, whole.output
    # One _PARTITIONTIME partition extracted alone: the rows exported on 2026-10-05, late rows
    # of all three days.
    rows = [json.loads(line) for line in bill.billing_export_file.read_text().splitlines()]
    partition = [r for r in rows if r["export_time"].startswith("2026-10-05")]
    assert len({r["usage_start_time"][:10] for r in partition}) == 3
    assert len(partition) < len(rows)
    extract = _jsonl(tmp_path / "one-partition.jsonl", partition)

    refused = runner.invoke(cli, [*command, str(extract)])
    assert isinstance(refused.exception, UsageError), refused.output
    message = str(refused.exception)
    assert "--source gcp-export needs --start and --end" in message
    assert "partial extract" in message
    with transaction(make_sessionmaker(fresh_engine)) as session:
        assert net_total(session) == bill.total_net_cost  # nothing was deleted


def _price(
    sku_id: str, description: str, usage_unit: str, base_unit: str, factor: int, price: str
) -> PriceBookSku:
    return PriceBookSku(
        sku_id=sku_id,
        service_id="6F81-5844-456A",
        service_name="Compute Engine",
        sku_description=description,
        regions=["us-central1"],
        usage_unit=usage_unit,
        base_unit=base_unit,
        base_unit_conversion_factor=Decimal(factor),
        currency="USD",
        unit_price=Decimal(price),
        tiers=[],
        fetched_at=NOW,
    )


def test_estimates_fill_hours_the_bill_has_not_reached_and_the_bill_replaces_them(
    session: Session, bill: Any, tmp_path: Path
) -> None:
    cluster = "atlantic"
    session.add(Cluster(name=cluster, provider="gcp", updated_at=NOW))
    usage_batch = IngestionBatch(
        kind="usage",
        source=f"prometheus:{cluster}",
        window_start=NOW,
        window_end=NOW,
        started_at=NOW,
        finished_at=NOW,
        stats={},
    )
    session.add(usage_batch)
    session.flush()
    start = datetime(2026, 10, 1, tzinfo=UTC)
    for hour in range(72):
        session.add(
            UsageHour(
                batch_id=usage_batch.id,
                cluster_name=cluster,
                namespace="ns",
                hour=start + timedelta(hours=hour),
                server_seconds=Decimal(3600),
                memory_request_byte_seconds=Decimal(3600 * 2**30),
                cpu_request_core_seconds=Decimal("1800"),
                memory_usage_byte_seconds=Decimal(0),
                cpu_usage_core_seconds=Decimal(0),
                gpu_request_seconds=Decimal(0),
                home_storage_byte_seconds=Decimal(0),
            )
        )
    session.add(_price("CPU-1", "N2 Instance Core running in Americas", "h", "s", 3600, "0.031611"))
    session.add(
        _price(
            "RAM-1",
            "N2 Instance Ram running in Americas",
            "GiBy.h",
            "By.s",
            3600 * 2**30,
            "0.004237",
        )
    )
    session.flush()
    target = EstimateTarget(
        cluster=cluster,
        provider="gcp",
        sub_account_id=f"{cluster}-project",
        labels={"goog-k8s-cluster-name": cluster},
    )
    window = Window(start, start + timedelta(days=3))
    # The bill has reached the first day only.
    rows = [json.loads(line) for line in bill.billing_export_file.read_text().splitlines()]
    day_one = [r for r in rows if r["usage_start_time"] < "2026-10-02"]
    ingest.ingest_gcp_export_files(
        session=session,
        paths=[_jsonl(tmp_path / "d1.jsonl", day_one)],
        now=NOW,
        window=Window(start, start + timedelta(days=1)),
    )
    report = ingest.ingest_estimates(
        session=session,
        target=target,
        window=window,
        skus={Driver.cpu: "CPU-1", Driver.memory: "N2 Instance Ram running in Americas"},
        now=NOW,
    )
    estimates = session.scalars(select(CostLine).where(CostLine.estimated)).all()
    assert report.rows_written == len(estimates) == 48 * 2
    assert min(e.charge_period_start for e in estimates) == start + timedelta(days=1)
    cpu_hour = next(e for e in estimates if e.sku_id == "CPU-1")
    assert cpu_hour.net_cost == Decimal("0.0158055")  # 0.5 core-hours x 0.031611
    memory_hour = next(e for e in estimates if e.sku_id == "RAM-1")
    assert memory_hour.net_cost == Decimal("0.004237")  # 1 GiB-hour
    assert memory_hour.labels == {"goog-k8s-cluster-name": cluster}
    # Running the estimate again replaces it.
    ingest.ingest_estimates(
        session=session,
        target=target,
        window=window,
        skus={Driver.cpu: "CPU-1", Driver.memory: "RAM-1"},
        now=NOW,
    )
    assert line_count(session, estimated=True) == 96
    # The bill arrives for everything: the estimates go.
    real = ingest.ingest_gcp_export_files(
        session=session, paths=[bill.billing_export_file], now=NOW, window=window
    )
    assert real.estimates_retired == 96
    assert line_count(session, estimated=True) == 0
    assert net_total(session) == bill.total_net_cost


def test_an_unknown_sku_or_a_sku_in_the_wrong_unit_is_a_clear_error(session: Session) -> None:
    session.add(_price("DISK-1", "Storage PD Capacity", "GiBy.mo", "By.s", 2**30 * 2628000, "0.04"))
    session.flush()
    target = EstimateTarget(cluster="c", provider="gcp")
    window = Window(NOW, NOW + timedelta(hours=1))
    with pytest.raises(InputError, match="no SKU 'nope' in the price book"):
        ingest.ingest_estimates(
            session=session, target=target, window=window, skus={Driver.cpu: "nope"}, now=NOW
        )
    with pytest.raises(InputError, match="choose a SKU priced in s"):
        ingest.ingest_estimates(
            session=session, target=target, window=window, skus={Driver.cpu: "DISK-1"}, now=NOW
        )


def test_focus_files_that_add_to_each_other_replace_only_their_window(
    fresh_engine: Engine, bill: Any, tmp_path: Path
) -> None:
    """OCI's cost reports each add hours to the billing period rather than re-deliver it:
    importing the next one as a re-delivery would drop the first one's costs, so that is
    refused, and `--replace window` imports it next to the first."""
    import csv

    with bill.focus_file.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = list(reader)
    start = header.index("ChargePeriodStart")
    billed = header.index("BilledCost")
    days = sorted({row[start][:10] for row in rows})
    first_day = [row for row in rows if row[start][:10] == days[0]]
    second_day = [row for row in rows if row[start][:10] == days[1]]
    day1 = _focus_file(tmp_path / "day1.csv", first_day, header)
    day2 = _focus_file(tmp_path / "day2.csv", second_day, header)
    total = sum((Decimal(row[billed]) for row in first_day + second_day), Decimal(0))

    migrate.upgrade(fresh_engine)
    factory = make_sessionmaker(fresh_engine)
    with transaction(factory) as session:
        ingest.ingest_focus_files(session=session, paths=[day1], now=NOW)
    with pytest.raises(InputError) as caught, transaction(factory) as session:
        ingest.ingest_focus_files(session=session, paths=[day2], now=NOW)
    assert "--replace window" in str(caught.value)
    with transaction(factory) as session:
        assert line_count(session) == len(first_day)  # refused whole

    second = Window(
        datetime.fromisoformat(days[1]).replace(tzinfo=UTC),
        datetime.fromisoformat(days[1]).replace(tzinfo=UTC) + timedelta(days=1),
    )
    for _ in range(2):  # a re-delivered file replaces itself
        with transaction(factory) as session:
            ingest.ingest_focus_files(
                session=session,
                paths=[day2],
                now=NOW,
                window=second,
                replace=service.Replace.charge_window,
            )
        with transaction(factory) as session:
            assert line_count(session) == len(first_day) + len(second_day)
            assert net_total(session) == total
    # A row outside the window is refused, naming its line.
    with pytest.raises(InputError, match=r"day1\.csv:2"), transaction(factory) as session:
        ingest.ingest_focus_files(
            session=session, paths=[day1], now=NOW, window=second,
            replace=service.Replace.charge_window,
        )  # fmt: skip


def test_gcp_costs_add_up_per_invoice_month(session: Session, bill: Any, tmp_path: Path) -> None:
    """GCP invoices months in Pacific time: a line early on the 1st (UTC) belongs to the month
    before's invoice, and `costs show --group-by invoice-month` says so."""
    rows = [json.loads(line) for line in bill.billing_export_file.read_text().splitlines()]
    for row in rows:
        # Usage before 07:00 UTC on October 1st is September's in Pacific time.
        early = row["usage_start_time"] < "2026-10-01 07"
        row["invoice"]["month"] = "202609" if early else "202610"
    relabelled = _jsonl(tmp_path / "invoices.jsonl", rows)
    window = Window(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 4, tzinfo=UTC))
    ingest.ingest_gcp_export_files(session=session, paths=[relabelled], now=NOW, window=window)
    totals = service.cost_totals(
        session=session, window=window, group_by=service.GroupBy.invoice_month
    )
    by_month = {t.key: t.net_cost for t in totals}
    assert set(by_month) == {"202609", "202610"}
    assert sum(by_month.values(), Decimal(0)) == net_total(session)
    september = sum(
        (line.net_cost for line in session.scalars(select(CostLine)) if line.charge_period_start
         < datetime(2026, 10, 1, 7, tzinfo=UTC)),
        Decimal(0),
    )  # fmt: skip
    assert by_month["202609"] == september
