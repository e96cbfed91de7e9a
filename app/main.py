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
from app.attribution import views as attribution_views
from app.auth import views as auth_views
from app.config import HubmeterConfig, Settings, get_settings, load_config
from app.costapi import cache as cost_cache
from app.costapi import views as cost_views
from app.db import make_engine, make_sessionmaker
from app.hubs import views as hub_views
from app.logs import configure_logging
from app.observability import CostCacheCollector, RequestMiddleware, make_registry
from app.problems import install_problem_handlers, problem_responses

# Every request in flight holds a connection from the pool for its whole life. A pool smaller
# than the requests in flight opens and closes a connection for each one beyond it (a new
# PostgreSQL backend each time: that churn, not the queries, was most of the database's work
# under load). Forty covers the worker threads of one process; stale connections are
# tested before use and replaced after half an hour.
SERVER_POOL = {"pool_size": 40, "max_overflow": 10, "pool_pre_ping": True, "pool_recycle": 1800}

API_DESCRIPTION = """\
What each community's hubs and users cost, from hubmeter's own allocations of the cloud bill.

**Access.** Send `Authorization: Bearer <token>` with a token from `hubmeter tokens create`.
A *viewer* token reads one community's hubs, users and costs, and nothing else (another
community's ids answer 404, exactly like ids that do not exist); *finance* reads every
community; *admin* also manages tokens.

**Conventions.** Dates are UTC days as `YYYY-MM-DD`; ranges are half-open `[start, end)`.
Amounts and quantities are exact decimal strings, never floats. Tables are also served as CSV
(`format=csv` or `Accept: text/csv`). Lists grow, so they are paginated with `limit`/`offset`
over a stable order, and say `total` and `next_offset`. Errors are `application/problem+json`.
"""

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    config: HubmeterConfig | None = None,
    cost_cache_rows: int | None = None,
) -> FastAPI:
    """Build the application. Tests pass their own engine; the server builds one from settings.

    `cost_cache_rows` bounds the cache of cost query results (0 turns it off; default from
    `HUBMETER_COST_CACHE_ROWS`)."""
    settings = settings or get_settings()
    if cost_cache_rows is None:
        cost_cache_rows = settings.cost_cache_rows
    if engine is None:
        engine = make_engine(settings.database_url, **SERVER_POOL)
    if config is None and settings.config is not None:
        config = load_config(settings.config)
    session_factory = make_sessionmaker(engine)
    registry, latency = make_registry(session_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("hubmeter %s serving", __version__)
        scheduler = None
        if settings.scheduler_enabled:
            # One machine without Kubernetes: the service runs the scheduled jobs itself.
            from app.runtime import Runtime
            from jobs.schedule import EmbeddedScheduler

            scheduler = EmbeddedScheduler(
                Runtime(settings=settings, config_path=settings.config, _engine=engine)
            )
            scheduler.start()
            log.info("embedded scheduler started")
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.stop()

    app = FastAPI(
        title="hubmeter",
        version=__version__,
        summary="Usage metering, cost attribution and billing for hosted JupyterHubs.",
        description=API_DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.config = config
    app.state.cost_cache = cost_cache.CostCache(max_rows=cost_cache_rows)
    registry.register(CostCacheCollector(app.state.cost_cache))
    app.add_middleware(RequestMiddleware, latency=latency)
    install_problem_handlers(app)
    for router in (auth_views.router, hub_views.router, cost_views.router):
        app.include_router(router)
    # Describe the problem documents the attribution routes answer with, like every other's.
    app.include_router(attribution_views.router, responses=problem_responses(401, 403, 404, 422))

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

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        description="Request latency by route template, and each job's last success, last "
        "failure and figures (rows ingested, amount attributed, unattributed amount).",
        response_class=PlainTextResponse,
        responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
    )
    def metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


def create_app_from_environment() -> FastAPI:
    """Entry point for `uvicorn --factory app.main:create_app_from_environment`."""
    settings = get_settings()
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    return create_app(settings)
