"""`hubmeter jobs`: list the scheduled jobs, run one now, and show recent runs."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from app.config import ConfigError
from app.errors import UsageError
from app.runtime import runtime
from app.scheduling.models import JobRun

log = logging.getLogger("hubmeter.jobs")
console = Console(soft_wrap=True)
jobs_app = typer.Typer(
    help="The scheduled jobs: list them, run one now (what the CronJobs call), see recent runs.",
    no_args_is_help=True,
)


@jobs_app.command("list")
def list_jobs() -> None:
    """The scheduled jobs and when each runs (UTC)."""
    from jobs.schedule import SCHEDULE

    for job in SCHEDULE:
        every = "hourly" if job.cadence.every_hours == 1 else f"every {job.cadence.every_hours} h"
        console.print(f"{job.name:<20} {every} at :{job.cadence.minute:02d}  {job.description}")


@jobs_app.command("run")
def run(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="A job from `jobs list`.")]
) -> None:
    """Run one scheduled job now; exits non-zero if it did not do all of its work. What it
    does goes to the log, as JSON with HUBMETER_LOG_FORMAT=json (the CronJobs' setting)."""
    from app.logs import configure_logging
    from jobs.schedule import job_named

    try:
        job = job_named(name)
    except KeyError as exc:
        raise UsageError(str(exc.args[0])) from None
    rt = runtime(ctx)
    configure_logging(log_format=rt.settings.log_format, level=rt.settings.log_level)
    from jobs.runner import JobSkipped

    try:
        outcome = job.run(rt)
    except JobSkipped as exc:
        log.info("%s: %s", job.name, exc)
        return
    except ConfigError as exc:
        # The configuration is at fault, not the run: status 2, as from every command.
        log.error("%s failed: %s", job.name, exc)
        raise typer.Exit(2) from None
    except Exception as exc:
        log.error("%s failed: %s", job.name, exc)
        raise typer.Exit(1) from None
    log.info("%s: %s", job.name, outcome)


@jobs_app.command("runs")
def runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
) -> None:
    """The latest job runs: what ran, for which window, how it ended and why."""
    with runtime(ctx).session_factory() as session:
        rows = session.scalars(select(JobRun).order_by(JobRun.id.desc()).limit(limit)).all()
    table = Table("id", "job", "started", "status", "window", "error")
    for row in rows:
        window = (
            f"{row.window_start:%Y-%m-%d %H:%M} .. {row.window_end:%Y-%m-%d %H:%M}"
            if row.window_start and row.window_end
            else ""
        )
        table.add_row(
            str(row.id),
            row.job_name,
            f"{row.started_at:%Y-%m-%d %H:%M:%S}",
            row.status,
            window,
            (row.error or "")[:80],
        )
    console.print(table)


def register(cli: typer.Typer, ingest: typer.Typer) -> None:
    """Add `hubmeter jobs`."""
    cli.add_typer(jobs_app, name="jobs")
