"""Schema migrations from code: upgrade, downgrade, and the state /readyz reports."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, func, select

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["engine"] = engine
    return config


# pg_advisory_xact_lock key: migrations take turns (two pods starting at once, a migration Job
# next to an operator's `db upgrade`); the second waits, then finds the schema at head.
_MIGRATION_LOCK_KEY = 0x6875626D_0000000D


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Apply migrations up to `revision` in one transaction per run, one run at a time."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        _take_turns(connection)
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        _take_turns(connection)
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _take_turns(connection: Connection) -> None:
    """On PostgreSQL, wait for any other migration run to commit. (A SQLite database lives on
    one machine, where migrations run from one command at a time.)"""
    if connection.dialect.name == "postgresql":
        connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))


def head_revision() -> str | None:
    """The latest revision this version of hubmeter knows (several joined by '+' while
    branches are open)."""
    heads = sorted(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads())
    return "+".join(heads) or None


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, in the same form as `head_revision`."""
    with engine.connect() as connection:
        heads = sorted(MigrationContext.configure(connection).get_current_heads())
    return "+".join(heads) or None


def is_at_head(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()
