"""The schema on both databases: migrations match the models, amounts and times come back exactly
as written, and the invariants every table must keep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, Float, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

import app.models as models
from app import migrate
from app.db import Exact, make_engine, money_sum

NOW = datetime(2026, 10, 1, 12, 30, tzinfo=UTC)
AMOUNTS = ["0.00000080000", "123456789.123456789", "-0.00000000001", "0", "1E-17"]


def make_batch(session: Session) -> models.IngestionBatch:
    batch = models.IngestionBatch(
        kind="costs",
        source="test",
        window_start=NOW,
        window_end=NOW,
        started_at=NOW,
        finished_at=NOW,
        stats={},
    )
    session.add(batch)
    session.flush()
    return batch


def make_cost_line(
    batch: models.IngestionBatch, amount: Decimal, row: str = "1"
) -> models.CostLine:
    return models.CostLine(
        batch_id=batch.id,
        source="test",
        source_row=row,
        provider="AWS",
        charge_period_start=NOW,
        charge_period_end=NOW + timedelta(hours=1),
        charge_category="usage",
        billed_cost=amount,
        credits=Decimal(0),
        net_cost=amount,
        currency="USD",
        component="other",
        labels={},
        extra={},
    )


def test_migrations_match_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, models.Base.metadata)
    assert diff == [], f"models and migrations differ; write a migration: {diff}"


def test_amounts_come_back_exactly_as_written(session: Session) -> None:
    batch = make_batch(session)
    for i, amount in enumerate(AMOUNTS):
        session.add(make_cost_line(batch, Decimal(amount), row=str(i)))
    session.flush()
    session.expunge_all()
    stored = session.scalars(select(models.CostLine.net_cost).order_by(models.CostLine.id)).all()
    assert [str(value) for value in stored] == [str(Decimal(a)) for a in AMOUNTS]
    assert stored[0] == Decimal("0.00000080000")
    assert stored[1] == Decimal("123456789.123456789")


def test_sums_in_the_database_are_exact(session: Session) -> None:
    batch = make_batch(session)
    # 0.1 + 0.2 in binary floating point is 0.30000000000000004.
    for i, amount in enumerate(["0.1", "0.2", "0.00000080000", "123456789.123456789"]):
        session.add(make_cost_line(batch, Decimal(amount), row=str(i)))
    session.flush()
    total = session.scalar(select(money_sum(models.CostLine.net_cost)))
    assert total == Decimal("123456789.42345758900")
    empty = session.scalar(
        select(money_sum(models.CostLine.net_cost)).where(models.CostLine.id < 0)
    )
    assert empty is None


# GCP amounts as stored (15 significant digits, exponents down to 1e-38) next to thousands.
GCP_SHAPED = [
    "1234.56",
    "1.23456789012345E-12",
    "-9.87654321098765E-24",
    "4.20000000000001E-25",
    "7654.32101234567",
    "0.00000080000",
    "-1234.5",
]


def test_sums_of_gcp_shaped_amounts_in_the_database_are_exact(session: Session) -> None:
    batch = make_batch(session)
    for i, amount in enumerate(GCP_SHAPED):
        session.add(make_cost_line(batch, Decimal(amount), row=str(i)))
    session.flush()
    exact = sum((Fraction(Decimal(a)) for a in GCP_SHAPED), Fraction(0))
    # Whatever the calling thread's context (here Python's default of 28 digits, which rounded
    # SQLite's sum to 7654.381013145671234567890113 while PostgreSQL's SUM was exact).
    with localcontext() as context:
        context.prec = 28
        total = session.scalar(select(money_sum(models.CostLine.net_cost)))
    assert total is not None
    assert Fraction(total) == exact
    assert total == Decimal("7654.381013145671234567890113993456789012351")


def test_a_float_is_refused_as_an_amount(session: Session) -> None:
    batch = make_batch(session)
    session.add(make_cost_line(batch, 0.1))  # type: ignore[arg-type]
    with pytest.raises(Exception, match="refusing to store a float"):
        session.flush()


def test_times_come_back_as_the_same_utc_instant(session: Session) -> None:
    batch = make_batch(session)
    line = make_cost_line(batch, Decimal(1))
    line.charge_period_start = datetime(2026, 10, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    session.add(line)
    session.flush()
    session.expunge_all()
    stored = session.scalars(select(models.CostLine.charge_period_start)).one()
    assert stored == datetime(2026, 10, 1, 12, 30, tzinfo=UTC)
    assert stored.tzinfo is not None
    assert stored.utcoffset() == timedelta(0)


def test_no_money_or_quantity_column_is_a_float() -> None:
    for table in models.Base.metadata.tables.values():
        for column in table.columns:
            assert not isinstance(column.type, Float), f"{table.name}.{column.name} is a float"
    money = [
        c
        for t in models.Base.metadata.tables.values()
        for c in t.columns
        if isinstance(c.type, Exact)
    ]
    assert len(money) > 20


TENANT_KEYS = {"community_id", "hub_id", "invoice_id"}
NOT_TENANT_OWNED = {
    "cluster",
    "community",
    "ingestion_batch",
    "watermark",
    "cost_line",
    "attribution_run",
    "invoice_number_series",
    "job_run",
    "api_token",
    "audit_event",
    "attribution_day",
    "price_book_sku",
}


def test_every_tenant_owned_table_carries_its_tenant_key() -> None:
    for name, table in models.Base.metadata.tables.items():
        if name in NOT_TENANT_OWNED:
            continue
        assert TENANT_KEYS & set(table.columns.keys()), f"{name} has no tenant key"


def test_upgrade_downgrade_upgrade(fresh_engine: Engine) -> None:
    migrate.upgrade(fresh_engine)
    assert migrate.is_at_head(fresh_engine)
    assert "allocation" in inspect(fresh_engine).get_table_names()
    migrate.downgrade(fresh_engine, "base")
    assert set(inspect(fresh_engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(fresh_engine)
    assert migrate.is_at_head(fresh_engine)


def test_the_audit_log_is_append_only_on_postgresql(postgres_database: str) -> None:
    # SQLite deployments are single-user demos; the trigger guards the production database.
    engine = make_engine(postgres_database)
    migrate.upgrade(engine)
    connection = engine.connect()
    session = Session(bind=connection)
    session.add(
        models.AuditEvent(
            occurred_at=NOW, actor="t", action="create", entity_type="x", entity_id="1", detail={}
        )
    )
    session.flush()
    with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
        session.execute(text("UPDATE audit_event SET actor = 'someone else'"))
    with pytest.raises(DBAPIError, match="append-only"), session.begin_nested():
        session.execute(text("DELETE FROM audit_event"))
    session.rollback()
    connection.close()
    engine.dispose()


def test_two_migration_runs_at_once_take_turns(postgres_server_url: str) -> None:
    """Two pods (or a migration Job and an operator) upgrading an empty PostgreSQL database at
    the same moment: the second waits for the first and finds the schema at head."""
    import threading

    from tests import servers

    engine = make_engine(servers.create_database(postgres_server_url, "migrations_at_once"))
    failures: list[BaseException] = []
    start = threading.Barrier(2)

    def run() -> None:
        try:
            start.wait()
            migrate.upgrade(engine)
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert migrate.is_at_head(engine)
    engine.dispose()
