"""The scheduled cost jobs record every way they can fail, and one failing export does not stop
the others: the real google-cloud-bigquery and google-cloud-billing clients, against local
endpoints or without credentials, and real job runs in a database that commits."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app import migrate
from app.config import Settings
from app.costs.models import CostLine, PriceBookSku
from app.runtime import Runtime
from app.scheduling.models import JobRun, JobStatus
from app.synthetic import ScenarioSpec, generate
from jobs import ingest_costs as cost_jobs
from jobs.schedule import JobError
from jobs.schedule import ingest_costs as scheduled_ingest_costs
from tests.fakes.bigquery import FakeBigQuery, fake_bigquery
from tests.fakes.catalog import FakeCatalog, FakeService, FakeSku, fake_catalog

TABLE = "hub-billing.billing_export.gcp_billing_export_v1_01A2B3_C4D5E6_F7A8B9"
MISSING_TABLE = "hub-billing.billing_export.gcp_billing_export_v1_not_there"
# The trailing window at this time covers the generated bill (2026-10-01 to 2026-10-04).
NOW = datetime(2026, 10, 4, 0, 20, tzinfo=UTC)


@pytest.fixture(scope="module")
def bill(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return generate(
        ScenarioSpec(hubs=2, users_per_hub=2, days=3, seed=11, late_cost_fraction=0.2),
        tmp_path_factory.mktemp("bill"),
    )


@pytest.fixture
def no_google_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Google's default credentials point at a file that is not there: making a client fails
    at once, as it does on a machine without them (and nothing is looked up on the network)."""
    missing = str(tmp_path / "no-such-credentials.json")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", missing)
    return missing


def _runtime(engine: Engine, config_path: Path | None = None, **settings: Any) -> Runtime:
    migrate.upgrade(engine)
    return Runtime(settings=Settings(**settings), config_path=config_path, _engine=engine)


def _runs(engine: Engine) -> list[JobRun]:
    with Session(engine) as session:
        return list(session.scalars(select(JobRun).order_by(JobRun.id)))


@pytest.mark.parametrize(
    ("table", "endpoint", "reason"),
    [
        ("hub-billing.billing_export.my-export", "http://127.0.0.1:9", "PROJECT.DATASET.TABLE"),
        (TABLE, None, "no-such-credentials.json"),
    ],
    ids=["a table name the query refuses", "no credentials for the client"],
)
def test_a_bigquery_client_that_cannot_be_made_is_a_failed_job_run(
    fresh_engine: Engine,
    bill: Any,
    no_google_credentials: str,
    table: str,
    endpoint: str | None,
    reason: str,
) -> None:
    runtime = _runtime(fresh_engine, bill.config_file, bigquery_api_endpoint=endpoint)
    with pytest.raises(Exception, match=re.escape(reason)):
        cost_jobs.ingest_gcp_bigquery(runtime, table=table, now=NOW)
    (run,) = _runs(fresh_engine)
    assert (run.job_name, run.status) == (f"{cost_jobs.JOB_NAME}:{table}", JobStatus.failed)
    assert run.finished_at is not None
    assert reason in (run.error or "")


def _catalog() -> FakeCatalog:
    core = FakeSku(
        "CP-1", "N2 Instance Core running in Americas", "h", "hour", "s", Decimal(3600),
        Decimal("0.031611"),
    )  # fmt: skip
    return FakeCatalog([FakeService("6F81-5844-456A", "Compute Engine", (core,))])


def test_the_price_book_refresh_records_a_catalog_that_fails(
    fresh_engine: Engine, no_google_credentials: str
) -> None:
    # A service the catalog does not have: found out from the catalog itself.
    with fake_catalog(_catalog()) as url:
        runtime = _runtime(fresh_engine, billing_catalog_api_endpoint=url)
        with pytest.raises(LookupError, match="no service 'Cloud Spanner'"):
            cost_jobs.refresh_price_book(runtime, services=["Cloud Spanner"], now=NOW)
        assert cost_jobs.refresh_price_book(runtime, services=["Compute Engine"], now=NOW) == 1
    # No endpoint and no credentials: the client cannot even be made.
    runtime = _runtime(fresh_engine)
    with pytest.raises(Exception, match=r"no-such-credentials\.json"):
        cost_jobs.refresh_price_book(runtime, services=["Compute Engine"], now=NOW)

    runs = _runs(fresh_engine)
    assert [(r.job_name, r.status) for r in runs] == [
        (cost_jobs.PRICE_BOOK_JOB_NAME, JobStatus.failed),
        (cost_jobs.PRICE_BOOK_JOB_NAME, JobStatus.succeeded),
        (cost_jobs.PRICE_BOOK_JOB_NAME, JobStatus.failed),
    ]
    assert "no service 'Cloud Spanner'" in (runs[0].error or "")
    assert "no-such-credentials.json" in (runs[2].error or "")
    with Session(fresh_engine) as session:  # the failed runs left the price book alone
        assert [p.sku_id for p in session.scalars(select(PriceBookSku))] == ["CP-1"]


def _config_with_exports(bill: Any, directory: Path) -> Path:
    document = yaml.safe_load(bill.config_file.read_text())
    # The export that fails comes first: the one after it must still be pulled.
    document["ingestion"] = {
        "bigquery_exports": [{"table": MISSING_TABLE}, {"table": TABLE}],
    }
    for cluster in document["clusters"]:
        cluster["costs"]["estimate_skus"] = {"cpu": "no-such-sku"}
        cluster["openmetrics_file"] = str(bill.out_dir / cluster["openmetrics_file"])
    path = directory / "hubmeter.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_one_failing_export_does_not_stop_the_others_or_the_estimates(
    fresh_engine: Engine, bill: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cost_jobs, "utcnow", lambda: NOW)
    fake = FakeBigQuery(project="hub-billing", page_size=100)
    fake.load_jsonl(TABLE, bill.billing_export_file)
    with fake_bigquery(fake) as url:
        runtime = _runtime(
            fresh_engine, _config_with_exports(bill, tmp_path), bigquery_api_endpoint=url
        )
        with pytest.raises(JobError) as raised:
            scheduled_ingest_costs(runtime)

    message = str(raised.value)
    assert f"{MISSING_TABLE} (404 " in message
    assert "estimates for atlantic (" in message
    assert "no SKU 'no-such-sku' in the price book" in message
    assert f"{TABLE}: " in message  # what was done is said too
    runs = _runs(fresh_engine)
    assert [(r.job_name, r.status) for r in runs] == [
        (f"{cost_jobs.JOB_NAME}:{MISSING_TABLE}", JobStatus.failed),
        (f"{cost_jobs.JOB_NAME}:{TABLE}", JobStatus.succeeded),
        (f"{cost_jobs.ESTIMATE_JOB_NAME}:atlantic", JobStatus.failed),
    ]
    assert MISSING_TABLE in (runs[0].error or "")
    with Session(fresh_engine) as session:
        lines = session.scalars(select(CostLine)).all()
    assert sum((line.net_cost for line in lines), Decimal(0)) == bill.total_net_cost
