"""Engine, sessions, the declarative base, and the column types that keep money exact.

PostgreSQL stores amounts as unconstrained NUMERIC. SQLite has no decimal type (a NUMERIC column
there turns amounts into 8-byte floats), so on SQLite an amount is stored as its exact decimal
text, and `money_sum()` adds such text with Python's `Decimal` through an aggregate registered on
every SQLite connection. Either way an amount reads back exactly as it was written.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    Numeric,
    String,
    create_engine,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.functions import GenericFunction
from sqlalchemy.types import TypeDecorator, TypeEngine

from app.money import EXACT_SUM
from app.periods import as_utc

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Exact(TypeDecorator[Decimal]):
    """An exact decimal: NUMERIC on PostgreSQL, decimal text on SQLite."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            # VARCHAR gives the column TEXT affinity; a type name containing "DEC" or "NUM"
            # would give it NUMERIC affinity and SQLite would turn the text back into a float.
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            if isinstance(value, float):
                raise TypeError("refusing to store a float as an exact amount; use Decimal")
            value = Decimal(value)
        if not value.is_finite():
            raise ValueError(f"refusing to store a non-finite amount: {value}")
        if dialect.name == "sqlite":
            return format(value, "f")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            return value
        if isinstance(value, float):
            # Only reachable if something wrote a float behind hubmeter's back.
            raise TypeError("an exact amount column returned a float")
        return Decimal(str(value))


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores `timestamptz`; SQLite stores the naive UTC value as ISO text, which sorts
    and compares correctly as text.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError("refusing to store a naive datetime: hubmeter's times are UTC-aware")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"a timestamp column returned {type(value).__name__}")
        return as_utc(value)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class money_sum(GenericFunction[Decimal]):
    """SUM over an `Exact` column that stays exact on both databases."""

    type = Exact()
    inherit_cache = True
    name = "money_sum"


@compiles(money_sum, "postgresql")
def _money_sum_postgresql(element: money_sum, compiler: Any, **kw: Any) -> str:
    return f"sum({compiler.process(element.clauses, **kw)})"


@compiles(money_sum, "sqlite")
def _money_sum_sqlite(element: money_sum, compiler: Any, **kw: Any) -> str:
    return f"decimal_sum({compiler.process(element.clauses, **kw)})"


class _DecimalSum:
    """SQLite aggregate: exact sum of decimal text; NULL when every input is NULL, like SUM.

    Adds in `EXACT_SUM`, as PostgreSQL's SUM over NUMERIC does, so the same rows sum to the same
    value on both databases (the default context would round at 28 significant digits)."""

    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: str | int | None) -> None:
        if value is None:
            return
        if isinstance(value, float):
            raise TypeError("decimal_sum() got a float")
        amount = Decimal(value)
        self.total = amount if self.total is None else EXACT_SUM.add(self.total, amount)

    def finalize(self) -> str | None:
        return None if self.total is None else format(self.total, "f")


def _configure_sqlite(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.create_aggregate("decimal_sum", 1, _DecimalSum)  # type: ignore[arg-type]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA busy_timeout = 30000")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url` with hubmeter's per-dialect set-up."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {"check_same_thread": False})
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _configure_sqlite)
        # pysqlite's own transaction handling defers BEGIN and breaks savepoints; take control.
        event.listen(engine, "connect", _disable_pysqlite_autobegin)
        event.listen(engine, "begin", _emit_begin)
    return engine


def _disable_pysqlite_autobegin(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _emit_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN")


def take_sqlite_write_lock(session: Session) -> None:
    """On SQLite, take the database's write lock now, waiting (busy_timeout) while another
    connection holds it. Call it before the transaction reads anything: one that has read
    cannot wait for a writer (its snapshot would be stale, so SQLite refuses at once with
    "database is locked"); one that writes first waits its turn, and then reads everything the
    other committed. The statement writes nothing. Does nothing on other databases."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("UPDATE alembic_version SET version_num = version_num WHERE 0"))


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit when the block succeeds, roll everything back when it raises."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
