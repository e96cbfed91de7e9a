"""Schemathesis throws generated requests, valid and not, at every operation of the OpenAPI
schema, as an admin (who may call every route): no 500s, and every answer matches the schema.

The examples per operation are bounded so that both databases take seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import Settings
from app.db import make_engine
from app.main import create_app
from tests.api.conftest import World, fresh_world, make_app

EXAMPLES_PER_OPERATION = 25


def _schema() -> schemathesis.BaseSchema:
    # The schema alone needs no data: an app on an empty in-memory database describes it.
    engine = make_engine("sqlite://")
    try:
        document = create_app(Settings(), engine=engine).openapi()
    finally:
        engine.dispose()
    config = schemathesis.Config.from_dict(
        {
            # The coverage phase enumerates boundary values of every parameter (hundreds of
            # requests per operation); generated examples reach the same code in a bounded run.
            "phases": {"coverage": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_dict(document, config=config)


schema = _schema()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzz_target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[World, FastAPI]]:
    """A world of its own: the fuzzer creates and revokes tokens that other tests rely on."""
    with fresh_world(request, request.param, "fuzz", tmp_path_factory) as world:
        yield world, make_app(world.engine)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_keeps_its_schema(
    case: schemathesis.Case, fuzz_target: tuple[World, FastAPI]
) -> None:
    world, application = fuzz_target
    case.call_and_validate(
        app=application,
        headers={"Authorization": f"Bearer {world.tokens['admin']}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            response_headers_conformance,
        ],
    )
