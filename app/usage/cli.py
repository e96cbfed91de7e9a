"""The `hubmeter` commands of this domain, registered on the root command by app.cli.

hubmeter ingest usage [--cluster NAME]... [--start T --end T] [--source prometheus|openmetrics]
                      [--file PATH]
hubmeter usage show [--hub NAME] [--cluster C] --start T --end T [--by total|day|hour]
                    [--format table|csv|json]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from app.config import ConfigError
from app.errors import InputError, UsageError
from app.money import format_amount
from app.periods import parse_time, require_after
from app.runtime import runtime
from app.tables import write_csv
from app.usage.metering import Quantities
from app.usage.service import Grouping, SourceKind, WindowError, require_whole_hour
from app.usage.sources import Progress as ProgressCallback
from app.usage.units import DISPLAY_PLACES, DISPLAY_UNITS, in_display_units

console = Console()
err = Console(stderr=True, soft_wrap=True)

TIME_HELP = "UTC, a date (2026-10-01) or an ISO time on a whole hour (2026-10-01T06:00Z)"
# Places in machine-readable output; the table rounds further for reading.
EXPORT_PLACES = DISPLAY_PLACES
TABLE_PLACES = 2


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _hour_option(text: str | None, field: str) -> datetime | None:
    """An optional --start or --end: a time on a whole UTC hour, or UsageError."""
    if text is None:
        return None
    try:
        return require_whole_hour(parse_time(text, field), field)
    except WindowError as exc:
        raise UsageError(str(exc)) from None


def register(cli: typer.Typer, ingest: typer.Typer) -> None:
    """Add this domain's commands to the root command and the `ingest` group."""
    usage_cli = typer.Typer(help="Hourly usage per hub and user.", no_args_is_help=True)
    cli.add_typer(usage_cli, name="usage")
    ingest.command("usage")(ingest_usage_command)
    usage_cli.command("show")(show_usage_command)


def ingest_usage_command(
    ctx: typer.Context,
    cluster: Annotated[
        list[str] | None,
        typer.Option("--cluster", help="Cluster to ingest (repeatable; default: every cluster)."),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help=f"First hour, {TIME_HELP}. Default: where the last ingest stopped."),
    ] = None,
    end: Annotated[
        str | None, typer.Option(help=f"End (exclusive), {TIME_HELP}. Default: the last hour.")
    ] = None,
    source: Annotated[
        SourceKind | None,
        typer.Option(help="Where usage comes from (default: prometheus when configured)."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            help="An OpenMetrics export to read instead of the cluster's openmetrics_file.",
        ),
    ] = None,
) -> None:
    """Meter usage per hub, user and hour; re-ingesting a window replaces it.

    Without --start, each cluster continues from its watermark (the first run takes the last
    7 days); an OpenMetrics file without --start/--end is imported whole.
    """
    from jobs.ingest_usage import ingest_usage

    start_at = _hour_option(start, "--start")
    end_at = _hour_option(end, "--end")
    if file is not None and source is SourceKind.prometheus:
        raise UsageError("--file is an OpenMetrics export; drop --source prometheus")
    if start_at is not None and end_at is not None:
        require_after(start_at, end_at)
    rt = runtime(ctx)
    with _progress_bars() as progress:
        try:
            outcomes = ingest_usage(
                rt,
                clusters=cluster,
                start=start_at,
                end=end_at,
                source=source,
                file=file,
                progress=progress,
            )
        except WindowError as exc:
            raise UsageError(str(exc)) from None
    failures = [outcome for outcome in outcomes if outcome.error is not None]
    done = [outcome for outcome in outcomes if outcome.report is not None]
    if done:
        table = Table(title="usage ingested", title_justify="left")
        for column in ("cluster", "window (UTC)", "rows", "replaced", "hubs", "users (new)"):
            table.add_column(column, justify="right" if column[0] in "rhu" else "left")
        table.add_column("unmatched namespaces")
        for outcome in done:
            report = outcome.report
            assert report is not None
            table.add_row(
                report.cluster,
                _window_text(report.window_start, report.window_end),
                str(report.rows),
                str(report.rows_replaced),
                str(report.hubs),
                f"{report.users} ({report.new_users})",
                ", ".join(sorted(report.unmatched)) or "-",
            )
        console.print(table)
    for outcome in done:
        report = outcome.report
        assert report is not None
        console.print(f"[dim]{report.cluster}: from {escape(report.source)}[/]")
        for namespace, summary in sorted(report.unmatched.items()):
            hours = in_display_units(summary.quantities, TABLE_PLACES)
            console.print(
                f"[yellow]{report.cluster}: namespace {escape(namespace)} matches no configured "
                f"hub[/]: {summary.users} user(s), {hours['server_hours']} server hours, "
                f"{hours['memory_request_gib_hours']} GiB-hours requested, kept as "
                f"{summary.rows} unattributed row(s)"
            )
        for warning in report.warnings:
            console.print(f"[yellow]{report.cluster}: {escape(warning)}[/]")
    for outcome in outcomes:
        if outcome.skipped is not None:
            console.print(f"{outcome.cluster}: {outcome.skipped}")
        if outcome.up_to_date:
            where = _window_text(*outcome.window) if outcome.window else "the file"
            console.print(f"{outcome.cluster}: up to date ({where} has no new hours)")
    for outcome in failures:
        err.print(
            f"[bold red]error:[/] usage of cluster {outcome.cluster} not ingested, nothing "
            f"written: {escape(str(outcome.error))}",
            highlight=False,
        )
    if failures:
        bad_input = all(isinstance(o.error, InputError | ConfigError) for o in failures)
        # SystemExit, not typer.Exit: the root command runs click without standalone mode, which
        # would turn typer.Exit into a return value and the process would exit 0.
        raise SystemExit(2 if bad_input else 1)


@contextmanager
def _progress_bars() -> Iterator[Any]:
    """A progress bar per cluster on a terminal; nothing when output goes to a file or a log."""
    if not err.is_terminal:
        yield None
        return
    bars = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )

    def factory(cluster: str, kind: SourceKind) -> ProgressCallback:
        what = "queries" if kind is SourceKind.prometheus else "bytes"
        task = bars.add_task(f"{cluster}: {what}", total=None)

        def advance(done: int, total: int) -> None:
            bars.update(task, completed=done, total=total)

        return advance

    with bars:
        yield factory


def _window_text(start: datetime, end: datetime) -> str:
    return f"[{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M})"


def show_usage_command(
    ctx: typer.Context,
    start: Annotated[str, typer.Option(help=f"First hour, {TIME_HELP}.")],
    end: Annotated[str, typer.Option(help=f"End (exclusive), {TIME_HELP}.")],
    hub: Annotated[
        str | None,
        typer.Option(help="Hub whose users to show (default: every hub and namespace)."),
    ] = None,
    cluster: Annotated[str | None, typer.Option(help="Cluster of the hub (or to list).")] = None,
    by: Annotated[
        Grouping, typer.Option(help="One line per user for the window, or per day or hour.")
    ] = Grouping.total,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table for people; csv or json for scripts.")
    ] = OutputFormat.table,
) -> None:
    """Usage per user of a hub (or per hub): server hours, GiB-hours and core-hours."""
    from app.db import transaction
    from app.usage import service

    start_at = _hour_option(start, "--start")
    end_at = _hour_option(end, "--end")
    assert start_at is not None
    assert end_at is not None
    require_after(start_at, end_at)
    rt = runtime(ctx)
    with transaction(rt.session_factory) as session:
        if hub is None:
            if by is not Grouping.total:
                raise UsageError("--by day|hour needs --hub")
            by_namespace = service.cluster_usage(
                session=session, cluster_name=cluster, start=start_at, end=end_at
            )
            records = [
                (
                    {
                        "cluster": cluster_name,
                        "hub": usage.hub,
                        "namespace": usage.namespace,
                        "users": usage.users if usage.hub is not None else None,
                        **_figures(usage.quantities, output),
                    },
                    usage.quantities,
                )
                for cluster_name, usage in by_namespace
            ]
            title = f"usage per hub {_window_text(start_at, end_at)}"
        else:
            found = service.find_hub(session=session, hub_name=hub, cluster_name=cluster)
            lines = service.hub_usage(
                session=session, hub_id=found.id, start=start_at, end=end_at, by=by
            )
            records = []
            for line in lines:
                record: dict[str, Any] = {}
                if by is not Grouping.total:
                    assert line.period is not None
                    record[by.value] = _period_text(line.period, by)
                record["user"] = line.username
                record.update(_figures(line.quantities, output))
                records.append((record, line.quantities))
            title = f"{found.cluster_name}/{found.name} {_window_text(start_at, end_at)}"
    _print_records(records, output, title)


def _figures(quantities: Quantities, output: OutputFormat) -> dict[str, Decimal]:
    places = TABLE_PLACES if output is OutputFormat.table else EXPORT_PLACES
    return dict(in_display_units(quantities, places))


def _period_text(period: datetime, by: Grouping) -> str:
    return f"{period:%Y-%m-%d}" if by is Grouping.day else f"{period:%Y-%m-%dT%H:%M:%SZ}"


def _print_records(
    lines: list[tuple[dict[str, Any], Quantities]], output: OutputFormat, title: str
) -> None:
    records = [record for record, _quantities in lines]
    if output is OutputFormat.json:
        sys.stdout.write(json.dumps(records, default=_json_value, indent=2) + "\n")
        return
    if output is OutputFormat.csv:
        names = list(records[0]) if records else _empty_columns()
        write_csv(sys.stdout, names, ([record[name] for name in names] for record in records))
        return
    if not records:
        console.print(f"{title}: no usage recorded")
        return
    table = Table(title=title, title_justify="left")
    names = list(records[0])
    for name in names:
        table.add_column(_heading(name), justify="right" if name in _UNIT_OF else "left")
    total = Quantities()
    for record, quantities in lines:
        table.add_row(*(_cell(name, record[name]) for name in names))
        total.add(quantities)
    # The total of the exact figures, rounded once (not the sum of the rounded lines).
    totals = in_display_units(total, TABLE_PLACES)
    if len(records) > 1:
        table.add_section()
        table.add_row(
            *(
                format_amount(totals[name]) if name in totals else ("total" if i == 0 else "")
                for i, name in enumerate(names)
            )
        )
    console.print(table)
    if any(record.get("user", "") is None for record in records):
        console.print(
            "[dim](hub): bytes outside any user's home, e.g. the hub's shared directory[/]"
        )


_UNIT_OF = {display: unit for _base, display, unit, _divisor in DISPLAY_UNITS}


def _heading(name: str) -> str:
    unit = _UNIT_OF.get(name)
    if unit is None:
        return name
    words = name.replace("_gib_hours", "").replace("_core_hours", "").replace("_hours", "")
    return f"{words.replace('_', ' ')} ({unit})"


def _cell(name: str, value: Any) -> str:
    if name == "user" and value is None:
        return "(hub)"
    if name == "hub" and value is None:
        return "(no hub)"
    if value is None:
        return "-"
    if isinstance(value, Decimal):
        return format_amount(value)
    return escape(str(value))


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        # As a string: JSON numbers are floats to most readers, and these are exact.
        return format_amount(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _empty_columns() -> list[str]:
    return ["user", *(display for _base, display, _unit, _divisor in DISPLAY_UNITS)]
