"""The `hubmeter` command: set up the database, check configuration, run jobs, serve the API."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from app import migrate
from app.config import ConfigError, Settings, get_settings, load_config
from app.errors import InputError, UsageError
from app.runtime import Runtime, runtime

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

cli = typer.Typer(
    name="hubmeter",
    help="Usage metering, cost attribution and billing for hosted JupyterHubs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_cli = typer.Typer(help="Create and upgrade the database schema.", no_args_is_help=True)
config_cli = typer.Typer(help="Check the YAML configuration and apply it.", no_args_is_help=True)
ingest_cli = typer.Typer(
    help="Pull usage from each cluster's Prometheus and costs from the clouds' billing exports.",
    no_args_is_help=True,
)
cli.add_typer(db_cli, name="db")
cli.add_typer(config_cli, name="config")
cli.add_typer(ingest_cli, name="ingest")


@cli.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="YAML configuration (default: $HUBMETER_CONFIG).", dir_okay=False
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="Database URL (default: $HUBMETER_DATABASE_URL, else a SQLite file)."),
    ] = None,
) -> None:
    settings = get_settings()
    if database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    ctx.obj = Runtime(settings=settings, config_path=config)
    ctx.call_on_close(ctx.obj.close)


@db_cli.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = "heads") -> None:
    """Apply schema migrations (to the latest by default). Safe to run again."""
    rt = runtime(ctx)
    before = migrate.current_revision(rt.engine)
    migrate.upgrade(rt.engine, revision)
    after = migrate.current_revision(rt.engine)
    console.print(f"database at revision {after} (was {before or 'empty'})")


@db_cli.command("downgrade")
def db_downgrade(ctx: typer.Context, revision: str) -> None:
    """Revert schema migrations down to REVISION ("base" removes every table)."""
    rt = runtime(ctx)
    migrate.downgrade(rt.engine, revision)
    console.print(f"database at revision {migrate.current_revision(rt.engine) or 'base'}")


@db_cli.command("current")
def db_current(ctx: typer.Context) -> None:
    """Show the schema revision of the database and the latest one this version knows."""
    rt = runtime(ctx)
    current = migrate.current_revision(rt.engine)
    head = migrate.head_revision()
    state = "up to date" if current == head else "needs `hubmeter db upgrade`"
    console.print(f"current {current or 'empty'}, latest {head}: {state}")


@config_cli.command("check")
def config_check(
    file: Annotated[Path, typer.Argument(help="The YAML file to validate.", dir_okay=False)],
) -> None:
    """Validate a configuration file; errors name the key path, the line and what was expected."""
    config = load_config(file)
    console.print(
        f"{file}: ok: {len(config.clusters)} cluster(s), {len(config.communities)} "
        f"communit{'y' if len(config.communities) == 1 else 'ies'}, {len(config.hubs)} hub(s)"
    )


@config_cli.command("apply")
def config_apply(ctx: typer.Context) -> None:
    """Write the configuration's clusters, communities and hubs to the database."""
    from app.clock import utcnow
    from app.db import transaction
    from app.hubs import service as hub_service

    rt = runtime(ctx)
    with transaction(rt.session_factory) as session:
        report = hub_service.sync_from_config(session=session, config=rt.config, now=utcnow())
    for what, items in (
        ("created", report.created),
        ("updated", report.updated),
        ("deactivated", report.deactivated),
    ):
        for item in items:
            console.print(f"{what} {item}")
    if not (report.created or report.updated or report.deactivated):
        console.print("database already matches the configuration")


@cli.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: $HUBMETER_HOST).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: $HUBMETER_PORT).")] = None,
) -> None:
    """Serve the API (reference at /docs), /healthz, /readyz and /metrics."""
    import uvicorn

    from app.logs import configure_logging
    from app.main import create_app

    rt = runtime(ctx)
    settings: Settings = rt.settings
    if rt.config_path is not None:
        settings = settings.model_copy(update={"config": rt.config_path})
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    # The app builds its own engine, with the server's pool (pre-ping, recycling, enough
    # connections for its threads), unless one was handed to this command (tests).
    app = create_app(settings, engine=rt.given_engine)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
    )


def _register_domains() -> None:
    from app.attribution import cli as attribution_cli
    from app.auth import cli as auth_cli
    from app.costs import cli as costs_cli
    from app.scheduling import cli as scheduling_cli
    from app.synthetic import cli as synthetic_cli
    from app.usage import cli as usage_cli

    domains = (
        usage_cli,
        costs_cli,
        attribution_cli,
        auth_cli,
        scheduling_cli,
    )
    for domain in domains:
        domain.register(cli, ingest_cli)
    cli.add_typer(synthetic_cli.app)


_register_domains()


@cli.command()
def demo(
    ctx: typer.Context,
    directory: Annotated[
        Path, typer.Option("--dir", help="Where the demo keeps its data and SQLite database.")
    ] = Path(".hubmeter-demo"),
    month: Annotated[
        str | None, typer.Option(help="Month to generate, YYYY-MM (default: last month).")
    ] = None,
    hubs: Annotated[int, typer.Option(min=1, max=200)] = 5,
    users_per_hub: Annotated[int, typer.Option(min=1, max=500)] = 12,
    seed: int = 0,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the API when the jobs are done.")
    ] = True,
    port: Annotated[int | None, typer.Option(help="Port (default: $HUBMETER_PORT).")] = None,
) -> None:
    """Generate a month for a synthetic cluster, run every job on it, and serve the API."""
    from app import demo as demo_module
    from app.clock import utcnow
    from app.periods import parse_month, previous_month

    start = previous_month(utcnow().date()) if month is None else parse_month(month)
    spec = demo_module.scenario_for(start, hubs=hubs, users_per_hub=users_per_hub, seed=seed)
    result = demo_module.run_demo(
        directory=directory,
        spec=spec,
        say=lambda line: console.print(line, highlight=False),
        base_settings=runtime(ctx).settings,
    )
    settings = result.runtime.settings
    base = f"http://{settings.host}:{port or settings.port}"
    first_hub = result.runtime.config.hubs[0]
    console.print("\nAPI tokens (shown once, valid 30 days):", highlight=False)
    for who, token in result.tokens.items():
        console.print(f"  {who:<24} {token}", highlight=False)
    console.print(
        "\nTry:\n"
        f"  curl -H 'Authorization: Bearer {result.tokens[first_hub.community]}' \\\n"
        f"    '{base}/api/v1/hubs?format=csv'\n"
        f"  curl -H 'Authorization: Bearer {result.tokens[first_hub.community]}' \\\n"
        f"    '{base}/api/v1/hubs/1/costs?start={result.period.start}&end={result.period.end}"
        "&interval=month&by=user'\n"
        f"  {base}/docs   (the API reference)   {base}/readyz   {base}/metrics",
        highlight=False,
    )
    if not serve_after:
        return
    import uvicorn

    from app.logs import configure_logging
    from app.main import create_app

    configure_logging(log_format=settings.log_format, level=settings.log_level)
    app = create_app(settings, engine=result.runtime.engine, config=result.runtime.config)
    console.print(f"\nserving on {base} (Ctrl-C to stop)", highlight=False)
    uvicorn.run(app, host=settings.host, port=port or settings.port, log_config=None)


def main() -> None:
    """Console entry point: known problems become one clear line and exit status 2.

    Click handles its own usage errors (standalone mode); hubmeter's own errors about
    configuration, input files or how a command was called propagate to here.
    """
    from google.api_core.exceptions import GoogleAPIError
    from google.auth.exceptions import GoogleAuthError
    from pydantic import ValidationError

    try:
        cli()
    except (ConfigError, UsageError, InputError) as exc:
        _fail(str(exc))
    except ValidationError as exc:
        if exc.title != Settings.__name__:
            raise
        # A setting from the environment that is not what it should be.
        _fail(
            "; ".join(
                f"HUBMETER_{'_'.join(map(str, error['loc'])).upper()}: {error['msg']}"
                for error in exc.errors()
            )
        )
    except GoogleAuthError as exc:
        _fail(
            f"no usable Google credentials ({exc}); set GOOGLE_APPLICATION_CREDENTIALS to a "
            "service account key file, or run where Application Default Credentials exist"
        )
    except GoogleAPIError as exc:
        _fail(f"Google Cloud answered: {exc}")


def _fail(message: str) -> NoReturn:
    """One clear line, and exit status 2."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    sys.exit(2)


if __name__ == "__main__":
    main()
