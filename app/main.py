"""The web application: health, readiness, metrics, and the routers of each domain."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text

from app import __version__, migrate
from app.config import HubmeterConfig, Settings, get_settings, load_config
from app.db import make_engine, make_sessionmaker
from app.logs import configure_logging
from app.observability import make_registry, request_middleware
from app.problems import install_problem_handlers

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    config: HubmeterConfig | None = None,
) -> FastAPI:
    """Build the application. Tests pass their own engine; the server builds one from settings."""
    settings = settings or get_settings()
    if engine is None:
        engine = make_engine(settings.database_url, pool_pre_ping=True)
    if config is None and settings.config is not None:
        config = load_config(settings.config)
    session_factory = make_sessionmaker(engine)
    registry, latency = make_registry(session_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("hubmeter %s serving", __version__)
        yield

    app = FastAPI(
        title="hubmeter",
        version=__version__,
        summary="Usage metering, cost attribution and billing for hosted JupyterHubs.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.config = config
    app.middleware("http")(request_middleware(latency))
    install_problem_handlers(app)

    @app.get("/healthz", tags=["operations"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="The database answers and its schema is at the latest migration",
        responses={503: {"description": "not ready, with the reason"}},
    )
    def readyz() -> JSONResponse:
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            current = migrate.current_revision(engine)
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "reason": f"database unreachable: {type(exc).__name__}"},
                status_code=503,
            )
        head = migrate.head_revision()
        if current != head:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "reason": "database schema is not at the latest migration; "
                    "run `hubmeter db upgrade`",
                    "current_revision": current,
                    "head_revision": head,
                },
                status_code=503,
            )
        return JSONResponse({"status": "ready", "revision": current})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    def metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def create_app_from_environment() -> FastAPI:
    """Entry point for `uvicorn --factory app.main:create_app_from_environment`."""
    settings = get_settings()
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    return create_app(settings)
