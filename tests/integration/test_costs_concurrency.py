"""Two cost imports at once, for real, on both databases: the first is held open inside its
transaction until the second has started and is waiting (or, without a lock, has done its
work); then both commit. However they interleave, every row is there once, the account's other
kind of source is still refused, and estimates never overlap the bill. Usage ingestion takes
turns through the same lock, so it is raced here too."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, func, select, text
from sqlalchemy.orm import Session

from app import migrate
from app.costs import ingest
from app.costs.estimates import Driver, EstimateTarget
from app.costs.models import CostLine, PriceBookSku
from app.db import make_sessionmaker, transaction
from app.errors import InputError
from app.hubs.models import Cluster
from app.ingestion.models import BatchKind, BatchStatus, IngestionBatch
from app.periods import Window
from app.synthetic import ScenarioSpec, generate
from app.usage import service as usage_service
from app.usage.models import UsageHour
from app.usage.openmetrics import OpenMetricsUsageSource
from tests.integration.conftest import CLUSTER as USAGE_CLUSTER
from tests.integration.conftest import UsageScenario

NOW = datetime(2026, 10, 20, 12, tzinfo=UTC)
CLUSTER = "atlantic"
# Only there so that a broken synchronisation fails the test instead of hanging it; nothing
# here is timed.
GIVE_UP_AFTER_SECONDS = 120

Work = Callable[[Session], Any]


@dataclass
class Outcome:
    result: Any = None
    error: BaseException | None = None


@pytest.fixture(scope="module")
def bill(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Three days of a generated GCP bill: the export as JSONL and the same charges as FOCUS."""
    return generate(
        ScenarioSpec(hubs=2, users_per_hub=2, days=3, seed=7, late_cost_fraction=0.2),
        tmp_path_factory.mktemp("bill"),
    )


def _window(bill: Any) -> Window:
    return Window(bill.period_start, bill.period_end)


def race(engine: Engine, first: Work, second: Work) -> tuple[Outcome, Outcome]:
    """Run `first` in its own transaction and keep it open, uncommitted, until `second`, in
    another transaction on another connection, is waiting on a lock or has done its work; then
    let both commit. Returns how each ended."""
    factory = make_sessionmaker(engine)
    postgres = engine.dialect.name == "postgresql"
    outcomes = (Outcome(), Outcome())
    first_done = threading.Event()
    release = threading.Event()
    second_started = threading.Event()
    second_writing = threading.Event()
    second_done = threading.Event()
    second_pid: list[int] = []

    def run_first() -> None:
        try:
            with transaction(factory) as session:
                outcomes[0].result = first(session)
                first_done.set()
                release.wait()
        except BaseException as exc:
            outcomes[0].error = exc
        finally:
            first_done.set()

    def run_second() -> None:
        try:
            with transaction(factory) as session:
                connection = session.connection()
                if postgres:
                    second_pid.append(
                        int(connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())
                    )
                else:
                    event.listen(connection, "before_cursor_execute", on_statement)
                second_started.set()
                try:
                    outcomes[1].result = second(session)
                finally:
                    second_done.set()
        except BaseException as exc:
            outcomes[1].error = exc
        finally:
            second_started.set()
            second_done.set()

    def on_statement(_conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
        # SQLite: the first import holds the database's write lock, so a write statement of
        # the second one cannot get past its start until the first commits.
        if statement.lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE"}:
            second_writing.set()

    def second_waits_on_a_lock() -> bool:
        if not postgres:
            return second_writing.is_set()
        with engine.connect() as observer:
            state = observer.execute(
                text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                {"pid": second_pid[0]},
            ).scalar()
        return state == "Lock"

    first_thread = threading.Thread(target=run_first)
    first_thread.start()
    first_done.wait()
    if outcomes[0].error is not None:
        release.set()
        first_thread.join()
        raise outcomes[0].error
    second_thread = threading.Thread(target=run_second)
    second_thread.start()
    second_started.wait()
    give_up = time.monotonic() + GIVE_UP_AFTER_SECONDS
    while not (second_done.wait(0.02) or second_waits_on_a_lock()):
        if time.monotonic() > give_up:
            release.set()
            pytest.fail("the second import neither waited on a lock nor finished")
    release.set()
    first_thread.join()
    second_thread.join()
    return outcomes


def _migrated(engine: Engine) -> Engine:
    migrate.upgrade(engine)
    return engine


def _lines(engine: Engine, **where: Any) -> list[CostLine]:
    with Session(engine) as session:
        query = select(CostLine)
        for name, value in where.items():
            query = query.where(getattr(CostLine, name) == value)
        return list(session.scalars(query))


def _identities(lines: list[CostLine]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            line.source,
            line.sku_id,
            line.sub_account_id,
            line.charge_period_start,
            line.charge_category,
            repr(sorted((line.labels or {}).items())),
            line.is_correction,
        )
        for line in lines
    )


def _current_batches(engine: Engine) -> list[IngestionBatch]:
    with Session(engine) as session:
        return list(
            session.scalars(
                select(IngestionBatch)
                .where(
                    IngestionBatch.kind == BatchKind.costs,
                    IngestionBatch.status == BatchStatus.complete,
                )
                .order_by(IngestionBatch.id)
            )
        )


@pytest.mark.parametrize("bill_format", ["gcp-export", "focus"])
def test_the_same_bill_imported_twice_at_once_is_there_once(
    fresh_engine: Engine, bill: Any, bill_format: str
) -> None:
    engine = _migrated(fresh_engine)

    def gcp_export(session: Session) -> Any:
        return ingest.ingest_gcp_export_files(
            session=session, paths=[bill.billing_export_file], now=NOW, window=_window(bill)
        )

    def focus(session: Session) -> Any:
        return ingest.ingest_focus_files(session=session, paths=[bill.focus_file], now=NOW)

    work = gcp_export if bill_format == "gcp-export" else focus
    with transaction(make_sessionmaker(engine)) as session:
        alone = work(session)  # what is there before: the replaced rows are row-locked too
    first, second = race(engine, work, work)
    assert first.error is None, first.error
    assert second.error is None, second.error

    lines = _lines(engine)
    assert len(lines) == alone.rows_written == second.result.rows_written
    assert len(set(_identities(lines))) == len(lines)
    assert sum((line.net_cost for line in lines), Decimal(0)) == bill.total_net_cost
    # The second import saw the first's lines and replaced them, and its batch is the only
    # one in force.
    assert second.result.rows_superseded == first.result.rows_written
    current = _current_batches(engine)
    assert [b.id for b in current] == [s.batch_id for s in second.result.batches]
    assert {line.batch_id for line in lines} == {b.id for b in current}


def test_the_same_account_from_two_kinds_of_source_at_once_is_refused(
    fresh_engine: Engine, bill: Any
) -> None:
    engine = _migrated(fresh_engine)
    first, second = race(
        engine,
        lambda session: ingest.ingest_gcp_export_files(
            session=session, paths=[bill.billing_export_file], now=NOW, window=_window(bill)
        ),
        lambda session: ingest.ingest_focus_files(
            session=session, paths=[bill.focus_file], now=NOW
        ),
    )
    assert first.error is None, first.error
    assert isinstance(second.error, InputError), second.error
    assert "would count them twice" in str(second.error)
    lines = _lines(engine)
    assert {line.source.split(":")[0] for line in lines} == {"gcp-billing-export"}
    assert sum((line.net_cost for line in lines), Decimal(0)) == bill.total_net_cost


def _metered_cluster_with_prices(engine: Engine, bill: Any) -> None:
    """An hour of usage for every hour of the bill, and the list prices to estimate it with."""
    with transaction(make_sessionmaker(engine)) as session:
        session.add(Cluster(name=CLUSTER, provider="gcp", updated_at=NOW))
        usage_batch = IngestionBatch(
            kind=BatchKind.usage,
            source=CLUSTER,
            window_start=bill.period_start,
            window_end=bill.period_end,
            started_at=NOW,
            finished_at=NOW,
            stats={},
        )
        session.add(usage_batch)
        session.flush()
        hour = bill.period_start
        while hour < bill.period_end:
            session.add(
                UsageHour(
                    batch_id=usage_batch.id,
                    cluster_name=CLUSTER,
                    namespace="ns",
                    hour=hour,
                    server_seconds=Decimal(3600),
                    memory_request_byte_seconds=Decimal(3600 * 2**30),
                    cpu_request_core_seconds=Decimal(1800),
                    memory_usage_byte_seconds=Decimal(0),
                    cpu_usage_core_seconds=Decimal(0),
                    gpu_request_seconds=Decimal(0),
                    home_storage_byte_seconds=Decimal(0),
                )
            )
            hour += timedelta(hours=1)
        session.add(
            PriceBookSku(
                sku_id="CPU-1",
                service_id="6F81-5844-456A",
                service_name="Compute Engine",
                sku_description="N2 Instance Core running in Americas",
                regions=["us-central1"],
                usage_unit="h",
                base_unit="s",
                base_unit_conversion_factor=Decimal(3600),
                currency="USD",
                unit_price=Decimal("0.031611"),
                tiers=[],
                fetched_at=NOW,
            )
        )


def test_an_estimate_made_while_the_bill_is_imported_does_not_overlap_it(
    fresh_engine: Engine, bill: Any
) -> None:
    engine = _migrated(fresh_engine)
    _metered_cluster_with_prices(engine, bill)
    target = EstimateTarget(
        cluster=CLUSTER,
        provider="gcp",
        sub_account_id=f"{CLUSTER}-project",
        labels={"goog-k8s-cluster-name": CLUSTER},
    )
    with transaction(make_sessionmaker(engine)) as session:
        before = ingest.ingest_estimates(
            session=session, target=target, window=_window(bill), skus={Driver.cpu: "CPU-1"},
            now=NOW,
        )  # fmt: skip
    assert before.rows_written == 72  # nothing billed yet: every hour is estimated

    first, second = race(
        engine,
        lambda session: ingest.ingest_gcp_export_files(
            session=session, paths=[bill.billing_export_file], now=NOW, window=_window(bill)
        ),
        lambda session: ingest.ingest_estimates(
            session=session, target=target, window=_window(bill), skus={Driver.cpu: "CPU-1"},
            now=NOW,
        ),
    )  # fmt: skip
    assert first.error is None, first.error
    assert second.error is None, second.error
    # The bill reached every hour: the estimate made after it (having waited) found nothing
    # left to estimate, and the bill retired the earlier estimates.
    assert second.result.rows_written == 0
    assert first.result.estimates_retired == 72
    assert _lines(engine, estimated=True) == []
    real = _lines(engine)
    assert sum((line.net_cost for line in real), Decimal(0)) == bill.total_net_cost


def test_a_lock_taken_twice_in_one_transaction_does_not_wait_on_itself(
    session: Session,
) -> None:
    """An estimate's import takes its locks again inside `import_records`; that must neither
    wait nor fail, on either database."""
    from app.ingestion.service import lock_source

    for _ in range(2):
        lock_source(session=session, kind=BatchKind.costs, source="estimate:atlantic")
        lock_source(session=session, kind=BatchKind.costs, source="estimates:gcp")
    assert session.scalar(select(func.count()).select_from(CostLine)) == 0


def test_two_usage_ingests_of_one_cluster_at_once_store_its_hours_once(
    fresh_engine: Engine, usage_scenarios: dict[str, UsageScenario], tmp_path: Path
) -> None:
    """Usage ingestion takes turns through the same lock (`lock_source`) as cost imports."""
    engine = _migrated(fresh_engine)
    scenario = usage_scenarios["annotated"]
    config = scenario.config(tmp_path, prometheus_url=None)
    start = scenario.manifest.period_start
    end = start + timedelta(hours=6)

    def work(session: Session) -> usage_service.IngestReport | None:
        return usage_service.ingest_cluster(
            session=session,
            config=config,
            cluster_name=USAGE_CLUSTER,
            source=OpenMetricsUsageSource(scenario.openmetrics_file),
            window_start=start,
            window_end=end,
            now=NOW,
        )

    with transaction(make_sessionmaker(engine)) as session:
        alone = work(session)  # hubs and users exist, and the replaced rows are row-locked
    assert alone is not None
    first, second = race(engine, work, work)
    assert first.error is None, first.error
    assert second.error is None, second.error
    assert second.result.rows_replaced == first.result.rows == alone.rows
    with Session(engine) as session:
        keys = session.execute(select(UsageHour.namespace, UsageHour.user_id, UsageHour.hour)).all()
        current = session.scalars(
            select(IngestionBatch.id).where(
                IngestionBatch.kind == BatchKind.usage,
                IngestionBatch.status == BatchStatus.complete,
            )
        ).all()
    assert len(keys) == len(set(keys)) == alone.rows
    assert current == [second.result.batch_id]
