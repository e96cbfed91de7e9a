"""Shared fixtures: the migrated databases (SQLite and a real PostgreSQL), sessions that roll
back after each test, and markers derived from each test's folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from app import migrate
from app.db import make_engine
from tests import servers

FOLDER_MARKERS = {"unit", "integration", "api", "web"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in FOLDER_MARKERS:
            item.add_marker(getattr(pytest.mark, folder))
        if "[postgresql" in item.nodeid or "-postgresql" in item.nodeid:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    with servers.postgres_server() as server:
        yield server.url


@pytest.fixture(scope="session")
def postgres_database(postgres_server_url: str) -> str:
    """A database migrated to head, shared by the tests that roll back their own changes."""
    return servers.create_database(postgres_server_url, "hubmeter_test")


def _engine_for(kind: str, request: pytest.FixtureRequest, tmp: Path) -> Engine:
    if kind == "sqlite":
        return make_engine(f"sqlite:///{tmp / 'hubmeter.db'}")
    url: str = request.getfixturevalue("postgres_database")
    return make_engine(url)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A migrated database: each test using it runs once on SQLite and once on PostgreSQL."""
    engine = _engine_for(request.param, request, tmp_path_factory.mktemp(request.param))
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test; the code under test
    may commit, which only releases a savepoint."""
    connection = engine.connect()
    transaction = connection.begin()
    session = Session(
        bind=connection,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
    )
    try:
        yield session
    finally:
        session.close()
        transaction.rollback()
        connection.close()


@pytest.fixture
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path, db_kind: str) -> Iterator[Engine]:
    """An empty, unmigrated database of kind `db_kind` for tests that commit for real."""
    if db_kind == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    else:
        server_url: str = request.getfixturevalue("postgres_server_url")
        name = "fresh_" + "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[-50:]
        engine = make_engine(servers.create_database(server_url, name.lower()))
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind
