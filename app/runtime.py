"""What a command or job needs at hand: settings, the database, and the configuration."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import typer
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import ConfigError, HubmeterConfig, Settings, load_config
from app.db import make_engine, make_sessionmaker


@dataclass
class Runtime:
    settings: Settings
    config_path: Path | None = None
    _engine: Engine | None = field(default=None, repr=False)

    @property
    def given_engine(self) -> Engine | None:
        """The engine this runtime was handed, if any (else `engine` makes one)."""
        return self._engine

    @cached_property
    def engine(self) -> Engine:
        return self._engine or make_engine(self.settings.database_url)

    @cached_property
    def session_factory(self) -> sessionmaker[Session]:
        return make_sessionmaker(self.engine)

    def close(self) -> None:
        """Release the database connections this runtime opened (a command ends with this)."""
        engine = self.__dict__.get("engine")
        if engine is not None and self._engine is None:
            engine.dispose()

    @cached_property
    def config(self) -> HubmeterConfig:
        path = self.config_path or self.settings.config
        if path is None:
            raise ConfigError(
                "no configuration file: pass --config FILE or set HUBMETER_CONFIG "
                "(see app/examples/hubmeter.yaml)"
            )
        return load_config(path)


def runtime(ctx: typer.Context) -> Runtime:
    """The Runtime the `hubmeter` command built for this invocation."""
    value = ctx.find_root().obj
    if not isinstance(value, Runtime):
        raise RuntimeError("command called outside the hubmeter CLI")
    return value
