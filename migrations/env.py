"""Alembic environment: runs migrations on the connection hubmeter hands it, or on the database
named by HUBMETER_DATABASE_URL when run as plain `alembic`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

import app.models  # noqa: F401 - registers every table on Base.metadata
from app.config import get_settings
from app.db import Base, make_engine

# Fail fast instead of queueing behind a long transaction, and never hold a lock for long.
POSTGRES_LOCK_TIMEOUT = "5s"
POSTGRES_STATEMENT_TIMEOUT = "300s"


def run_on(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SET lock_timeout = '{POSTGRES_LOCK_TIMEOUT}'"))
        connection.execute(text(f"SET statement_timeout = '{POSTGRES_STATEMENT_TIMEOUT}'"))
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        user_module_prefix="app.db.",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or get_settings().database_url
    engine = make_engine(url)
    with engine.connect() as connection:
        run_on(connection)
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit(
        "hubmeter migrations run online only: point HUBMETER_DATABASE_URL at a database"
    )
run_migrations_online()
