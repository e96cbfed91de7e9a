"""The real google-cloud-bigquery and google-cloud-billing clients against local endpoints: the
export through BigQuery gives the very lines the export file gives, and the catalog fills the
price book; the commands people run print what was done."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app import migrate
from app.costs import bigquery as bigquery_source
from app.costs import catalog, ingest, service
from app.costs.files import aggregate_gcp_export
from app.costs.gcp_export import ExportAggregator, records_from_groups
from app.costs.models import CostLine, PriceBookSku
from app.costs.problems import RowProblems
from app.costs.records import CostRecord
from app.periods import Window
from app.synthetic import ScenarioSpec, generate
from app.synthetic import catalog as synthetic_catalog
from tests.fakes.bigquery import FakeBigQuery, fake_bigquery
from tests.fakes.catalog import FakeCatalog, FakeService, FakeSku, fake_catalog

TABLE = "hub-billing.billing_export.gcp_billing_export_v1_01A2B3_C4D5E6_F7A8B9"
NOW = datetime(2026, 10, 20, 12, tzinfo=UTC)
PERIOD = Window(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 4, tzinfo=UTC))


@pytest.fixture(scope="module")
def bill(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return generate(
        ScenarioSpec(hubs=3, users_per_hub=2, days=3, seed=11, late_cost_fraction=0.2),
        tmp_path_factory.mktemp("bill"),
    )


@pytest.fixture
def bigquery(bill: Any) -> Any:
    fake = FakeBigQuery(project="hub-billing", page_size=40)
    fake.load_jsonl(TABLE, bill.billing_export_file)
    # Rows that differ only in the order of their labels, and a duplicated hour of the same SKU,
    # so both sides have to group, not just copy.
    rows = fake.tables[TABLE]
    twin = json.loads(json.dumps(rows[0]))
    twin["labels"] = list(reversed(twin["labels"]))
    twin["cost"] = 0.000001
    twin["credits"] = []
    rows.append(twin)
    with fake_bigquery(fake) as url:
        yield fake, url, rows


def from_file(rows: list[dict[str, Any]], tmp_path: Path, window: Window) -> list[CostRecord]:
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    problems = RowProblems()
    aggregator = ExportAggregator(window=window, problems=problems)
    aggregate_gcp_export([path], aggregator=aggregator, reads=[])
    return list(records_from_groups(aggregator.groups(), source=str(path), problems=problems))


def by_identity(records: list[CostRecord]) -> dict[str, dict[str, Any]]:
    return {r.source_row: asdict(r) for r in records}


def test_the_export_through_bigquery_gives_the_same_lines_as_the_file(
    bigquery: Any, bill: Any, tmp_path: Path
) -> None:
    fake, url, rows = bigquery
    client = bigquery_source.make_client(project="hub-billing", api_endpoint=url)
    groups = list(bigquery_source.export_groups(client=client, table=TABLE, window=PERIOD))
    through_bigquery = list(
        records_from_groups(groups, source=f"bigquery:{TABLE}", problems=RowProblems())
    )
    through_file = from_file(rows, tmp_path, PERIOD)
    assert len(through_bigquery) == len(rows) - 1  # the twin joined its row's group
    assert by_identity(through_bigquery) == by_identity(through_file)
    total = sum((r.net_cost for r in through_bigquery), Decimal(0))
    assert total == bill.total_net_cost + Decimal("0.000001")
    # Several pages were fetched, with the query's parameters and its partition filter.
    assert len(fake.log.paths("GET")) >= 2
    (query,) = fake.queries
    assert "_PARTITIONTIME" in query["sql"]
    names = {p["name"]: p["parameterValue"]["value"] for p in query["parameters"]}
    assert names["usage_start"].startswith("2026-10-01")
    assert names["partition_start"].startswith("2026-09-30")


def test_a_pull_through_bigquery_replaces_a_file_import_of_the_same_window(
    session: Session, bigquery: Any, bill: Any
) -> None:
    _, url, rows = bigquery
    from_files = ingest.ingest_gcp_export_files(
        session=session, paths=[bill.billing_export_file], now=NOW, window=PERIOD
    )
    client = bigquery_source.make_client(project="hub-billing", api_endpoint=url)
    pulled = ingest.ingest_gcp_bigquery(
        session=session, client=client, table=TABLE, window=PERIOD, now=NOW
    )
    assert pulled.rows_superseded == from_files.rows_written
    assert pulled.rows_read == len(rows)
    lines = session.scalars(select(CostLine)).all()
    assert len(lines) == pulled.rows_written
    assert sum((line.net_cost for line in lines), Decimal(0)) == bill.total_net_cost + Decimal(
        "0.000001"
    )


def test_a_missing_table_is_a_clear_error(bigquery: Any) -> None:
    from google.api_core.exceptions import NotFound

    _, url, _ = bigquery
    client = bigquery_source.make_client(project="hub-billing", api_endpoint=url)
    with pytest.raises(NotFound, match=r"hub-billing\.billing_export\.nope was not found"):
        list(
            bigquery_source.export_groups(
                client=client, table="hub-billing.billing_export.nope", window=PERIOD
            )
        )


def _fake_catalog() -> FakeCatalog:
    services: dict[str, list[FakeSku]] = {}
    units = {
        "hour": ("h", "s"),
        "gibibyte hour": ("GiBy.h", "By.s"),
        "gibibyte month": ("GiBy.mo", "By.s"),
        "gibibyte": ("GiBy", "By"),
        "tebibyte": ("TiBy", "By"),
        "second": ("s", "s"),
        "count": ("count", "count"),
    }
    for value in vars(synthetic_catalog).values():
        if not isinstance(value, synthetic_catalog.Sku):
            continue
        usage_unit, base_unit = units[value.pricing_unit]
        services.setdefault(value.service.description, []).append(
            FakeSku(
                sku_id=value.id,
                description=value.description,
                usage_unit=usage_unit,
                usage_unit_description=value.pricing_unit,
                base_unit=base_unit,
                base_unit_conversion_factor=value.usage_units_per_pricing_unit,
                unit_price=value.list_price,
            )
        )
    for pair in synthetic_catalog.INSTANCE_SKUS.values():
        for sku in pair:
            usage_unit, base_unit = units[sku.pricing_unit]
            services["Compute Engine"].append(
                FakeSku(
                    sku.id,
                    sku.description,
                    usage_unit,
                    sku.pricing_unit,
                    base_unit,
                    sku.usage_units_per_pricing_unit,
                    sku.list_price,
                )
            )
    return FakeCatalog(
        [
            FakeService(synthetic_catalog.Service(name, "").id, name, tuple(skus))
            for name, skus in sorted(services.items())
        ],
        page_size=2,
    )


def test_the_catalog_fills_the_price_book_with_exact_list_prices(session: Session) -> None:
    fake = _fake_catalog()
    with fake_catalog(fake) as url:
        client = catalog.make_client(api_endpoint=url)
        services = catalog.find_services(client, ["Compute Engine", "cloud filestore"])
        for service_id, name in services.values():
            entries = catalog.fetch_price_book(
                client, service_id=service_id, service_name=name, currency="USD", now=NOW
            )
            service.replace_price_book(session=session, service_ids=[service_id], entries=entries)
        with pytest.raises(LookupError, match="no service 'Cloud Spanner'"):
            catalog.find_services(client, ["Cloud Spanner"])
    assert fake.currencies
    assert set(fake.currencies) == {"USD"}
    compute = [r for r in fake.log.requests if r.path.endswith("/skus")] if fake.log else []
    assert len(compute) > 2  # paged
    ram = service.find_price(session=session, sku="N2 Instance Ram running in Americas")
    assert ram.unit_price == Decimal("0.004237")
    assert ram.base_unit_conversion_factor == Decimal(3600 * 2**30)
    filestore = service.find_price(session=session, sku=synthetic_catalog.FILESTORE_CAPACITY.id)
    assert filestore.unit_price == Decimal("0.16")
    assert filestore.usage_unit == "GiBy.mo"
    count = len(session.scalars(select(PriceBookSku)).all())
    assert count == sum(
        len(s.skus)
        for s in fake.services
        if s.display_name in ("Compute Engine", "Cloud Filestore")
    )


def test_the_commands_import_show_and_list(
    fresh_engine: Engine, bill: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.cli import cli

    migrate.upgrade(fresh_engine)
    # The command's engine is the fixture's, which the fixture disposes of.
    monkeypatch.setattr("app.runtime.make_engine", lambda *_args, **_kw: fresh_engine)
    url = fresh_engine.url.render_as_string(hide_password=False)
    runner = CliRunner()
    base = ["--database-url", url]
    result = runner.invoke(
        cli,
        [*base, "ingest", "costs", "--source", "focus", str(bill.focus_file), "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["rows_superseded"] == 0
    assert document["rows_written"] == bill.focus_rows
    result = runner.invoke(
        cli,
        [
            *base,
            "costs",
            "show",
            "--start",
            "2026-10-01",
            "--end",
            "2026-11-01",
            "--group-by",
            "charge-category",
            "--format",
            "csv",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [line.split(",") for line in result.stdout.splitlines()[1:]]
    net = sum((Decimal(r[4]) for r in rows), Decimal(0))
    assert net == bill.total_net_cost
    assert {r[0] for r in rows} >= {"usage", "credit"}

    # With estimates shown, the totals keep them apart from what was billed.
    from app.costs import service as cost_service
    from app.costs.records import CostRecord
    from app.periods import Window

    hour = datetime(2026, 10, 31, 23, tzinfo=UTC)
    estimate = CostRecord(
        source="estimate:atlantic", source_row="estimate 1", provider="gcp",
        charge_period_start=hour, charge_period_end=hour + timedelta(hours=1),
        charge_category="usage", billed_cost=Decimal("7.5"), credits=Decimal(0),
        net_cost=Decimal("7.5"), currency="USD", component="compute", estimated=True,
    )  # fmt: skip
    with Session(fresh_engine) as session:
        cost_service.import_records(
            session=session, records=[estimate], kind="estimate",
            replace=cost_service.Replace.charge_window, now=datetime.now(UTC),
            window=Window(hour, hour + timedelta(hours=1)),
        )  # fmt: skip
        session.commit()
    result = runner.invoke(
        cli,
        [*base, "costs", "show", "--start", "2026-10-01", "--end", "2026-11-01",
         "--group-by", "source", "--include-estimates", "--format", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    totals = {t["estimated"]: Decimal(t["net_cost"]) for t in json.loads(result.stdout)["totals"]}
    assert totals == {False: bill.total_net_cost, True: Decimal("7.5")}

    result = runner.invoke(cli, [*base, "costs", "imports", "--format", "json"])
    assert result.exit_code == 0, result.output
    sources = [entry["source"] for entry in json.loads(result.stdout)]
    assert sources[0] == "estimate:atlantic"  # newest first
    assert sources[1].startswith("focus:gcp:")


def test_the_scheduled_re_pull_runs_twice_and_counts_everything_once(
    fresh_engine: Engine, bigquery: Any, bill: Any
) -> None:
    from app.config import Settings
    from app.ingestion.models import Watermark
    from app.runtime import Runtime
    from app.scheduling.models import JobRun
    from jobs.ingest_costs import ingest_gcp_bigquery

    _, url, _ = bigquery
    migrate.upgrade(fresh_engine)
    runtime = Runtime(
        settings=Settings(bigquery_api_endpoint=url),
        config_path=bill.config_file,
        _engine=fresh_engine,
    )
    now = datetime(2026, 10, 4, 0, 20, tzinfo=UTC)  # the trailing window covers the bill
    first = ingest_gcp_bigquery(runtime, table=TABLE, now=now)
    second = ingest_gcp_bigquery(runtime, table=TABLE, now=now)
    assert second.rows_superseded == first.rows_written
    with Session(fresh_engine) as session:
        lines = session.scalars(select(CostLine)).all()
        assert len(lines) == second.rows_written
        assert sum((line.net_cost for line in lines), Decimal(0)) == bill.total_net_cost + Decimal(
            "0.000001"
        )
        runs = session.scalars(select(JobRun).order_by(JobRun.id)).all()
        assert [(r.job_name, r.status) for r in runs] == [
            (f"ingest_costs:{TABLE}", "succeeded")
        ] * 2
        assert runs[0].detail["figures"]["rows_written"] == first.rows_written
        mark = session.get_one(Watermark, ("costs", f"bigquery:{TABLE}"))
        assert mark.through == datetime(2026, 10, 4, 1, tzinfo=UTC)
