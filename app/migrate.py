"""Schema migrations from code: upgrade, downgrade, and the state /readyz reports."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Apply migrations up to `revision` in one transaction per run."""
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


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
