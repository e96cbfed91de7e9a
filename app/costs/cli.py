"""The `hubmeter` commands of this domain, registered on the root command by app.cli.

hubmeter ingest costs --source gcp-bigquery --table PROJECT.DATASET.TABLE --start T --end T
hubmeter ingest costs --source gcp-export FILE... --start T --end T
hubmeter ingest costs --source focus FILE... [--start T --end T]
hubmeter ingest costs --source estimate --cluster NAME --start T --end T
                      [--cpu-sku SKU] [--memory-sku SKU] [--storage-sku SKU]
    (all: [--quarantine] [--format table|json])
hubmeter costs show --start T --end T --group-by day|service|provider|charge-category|project
                    [--include-estimates] [--format table|csv|json]
hubmeter costs imports [--limit N] [--format table|json]
hubmeter costs prices refresh --service NAME... [--currency USD]
hubmeter costs prices show [--search TEXT] [--format table|csv|json]
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from app.errors import UsageError
from app.periods import Window, iso, parse_window
from app.tables import write_csv

console = Console()
err = Console(stderr=True, soft_wrap=True)

costs_cli = typer.Typer(
    help="What the clouds billed: totals, imports, and the list-price book.", no_args_is_help=True
)
prices_cli = typer.Typer(
    help="List prices from the Cloud Billing Catalog, for estimates.", no_args_is_help=True
)
costs_cli.add_typer(prices_cli, name="prices")

TIME_HELP = "UTC: a date (2026-10-01) or an ISO time (2026-10-01T06:00:00Z)"
GCP_EXPORT_NEEDS_A_WINDOW = (
    "--source gcp-export needs --start and --end: the usage start times the files were "
    "extracted for. The import replaces every line of the billing account starting in that "
    "window, so it cannot be guessed from the files: a partial extract (one _PARTITIONTIME "
    "partition, with late rows of earlier days) would delete those days' other lines"
)
# Files this large get a progress bar.
PROGRESS_MIN_BYTES = 20 * 1024 * 1024


class InputKind(StrEnum):
    gcp_bigquery = "gcp-bigquery"
    gcp_export = "gcp-export"
    focus = "focus"
    estimate = "estimate"


class FocusReplace(StrEnum):
    billing_period = "billing-period"
    window = "window"


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class ReportFormat(StrEnum):
    table = "table"
    json = "json"


def register(cli: typer.Typer, ingest: typer.Typer) -> None:
    """Add this domain's commands to the root command and the `ingest` group."""
    ingest.command("costs")(ingest_costs)
    cli.add_typer(costs_cli, name="costs")


def _window(start: str | None, end: str | None, *, required: bool) -> Window | None:
    if start is None and end is None and not required:
        return None
    if start is None or end is None:
        raise UsageError("give both --start and --end (UTC; the end is exclusive)")
    return parse_window(start, end)


@contextmanager
def _progress(paths: list[Path]) -> Iterator[Callable[[int], None] | None]:
    total = sum(path.stat().st_size for path in paths if path.exists())
    if total < PROGRESS_MIN_BYTES or not err.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("reading"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("reading", total=total)
        yield lambda position: progress.update(task, completed=position)


def ingest_costs(
    ctx: typer.Context,
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Bill files (gcp-export, focus); .gz is read as it is.", dir_okay=False
        ),
    ] = None,
    source: Annotated[
        InputKind | None,
        typer.Option(
            "--source",
            help="What to read: gcp-bigquery, gcp-export, focus or estimate.",
            case_sensitive=False,
        ),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(help="gcp-bigquery: the export table, PROJECT.DATASET.TABLE."),
    ] = None,
    billing_project: Annotated[
        str | None,
        typer.Option(help="gcp-bigquery: project the query runs in (default: the table's)."),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(help=f"Window start, {TIME_HELP}; required except with --source focus."),
    ] = None,
    end: Annotated[str | None, typer.Option(help=f"Window end (exclusive), {TIME_HELP}.")] = None,
    cluster: Annotated[str | None, typer.Option(help="estimate: the cluster.")] = None,
    cpu_sku: Annotated[
        str | None, typer.Option(help="estimate: price-book SKU (id or description) for CPU.")
    ] = None,
    memory_sku: Annotated[
        str | None, typer.Option(help="estimate: price-book SKU for memory.")
    ] = None,
    storage_sku: Annotated[
        str | None, typer.Option(help="estimate: price-book SKU for home storage.")
    ] = None,
    quarantine: Annotated[
        bool,
        typer.Option(help="Set bad rows aside and report them, instead of refusing the import."),
    ] = False,
    replace: Annotated[
        FocusReplace | None,
        typer.Option(
            "--replace",
            help="focus: what the files replace. billing-period: the earlier delivery of each "
            "billing period, whole (AWS, Azure re-deliver the month); window: the lines whose "
            "charge starts in --start/--end (files that add to each other, as OCI's).",
            case_sensitive=False,
        ),
    ] = None,
    partition_filter: Annotated[
        bool,
        typer.Option(help="gcp-bigquery: filter on _PARTITIONTIME (off for unpartitioned copies)."),
    ] = True,
    output: Annotated[
        ReportFormat, typer.Option("--format", help="How to print what was done.")
    ] = ReportFormat.table,
) -> None:
    """Import cloud costs. Re-importing a source's window replaces what it imported before."""
    from app.clock import utcnow
    from app.costs import ingest
    from app.costs.estimates import Driver
    from app.costs.service import Replace
    from app.db import transaction
    from app.runtime import runtime

    if source is None:
        choices = ", ".join(kind.value for kind in InputKind)
        raise UsageError(f"say what to read with --source: one of {choices}")
    rt = runtime(ctx)
    paths = list(files or [])
    now = utcnow()
    if source in (InputKind.gcp_export, InputKind.focus):
        if not paths:
            raise UsageError(f"--source {source.value} reads FILE arguments; none given")
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise UsageError(f"no such file: {', '.join(missing)}")
        if source is InputKind.gcp_export and start is None and end is None:
            raise UsageError(GCP_EXPORT_NEEDS_A_WINDOW)
        by_window = replace is FocusReplace.window
        if by_window and (start is None or end is None):
            raise UsageError(
                "--replace window replaces the charges starting in --start/--end: give both",
                field="--replace",
            )
        window = _window(start, end, required=source is InputKind.gcp_export or by_window)
    elif paths:
        raise UsageError(f"--source {source.value} reads no files; drop {paths[0]}")
    else:
        window = _window(start, end, required=True)
    if replace is not None and source is not InputKind.focus:
        raise UsageError("--replace is for --source focus", field="--replace")

    with transaction(rt.session_factory) as session:
        if source is InputKind.focus:
            with _progress(paths) as progress:
                report = ingest.ingest_focus_files(
                    session=session, paths=paths, now=now, window=window,
                    quarantine=quarantine, progress=progress,
                    replace=Replace.charge_window
                    if replace is FocusReplace.window
                    else Replace.billing_period,
                )  # fmt: skip
        elif source is InputKind.gcp_export:
            assert window is not None
            with _progress(paths) as progress:
                report = ingest.ingest_gcp_export_files(
                    session=session, paths=paths, now=now, window=window,
                    quarantine=quarantine, progress=progress,
                )  # fmt: skip
        elif source is InputKind.gcp_bigquery:
            assert window is not None
            if table is None:
                raise UsageError("--source gcp-bigquery needs --table PROJECT.DATASET.TABLE")
            from app.costs import bigquery as bigquery_source

            try:
                project = billing_project or bigquery_source.table_project(table)
            except ValueError as exc:
                raise UsageError(str(exc), field="--table") from exc
            client = bigquery_source.make_client(
                project=project, api_endpoint=rt.settings.bigquery_api_endpoint
            )
            report = ingest.ingest_gcp_bigquery(
                session=session, client=client, table=table, window=window, now=now,
                quarantine=quarantine, partition_filter=partition_filter,
            )  # fmt: skip
        else:
            assert window is not None
            if cluster is None:
                raise UsageError("--source estimate needs --cluster NAME")
            skus = {
                driver: sku
                for driver, sku in (
                    (Driver.cpu, cpu_sku),
                    (Driver.memory, memory_sku),
                    (Driver.home_storage, storage_sku),
                )
                if sku
            }
            report = ingest.ingest_estimates(
                session=session,
                target=ingest.estimate_target(rt.config, cluster),
                window=window,
                skus=skus,
                now=now,
            )
    _print_report(report, output)


def _table(*headers: str, title: str | None = None) -> Table:
    """A table that wraps long cells instead of cutting them: amounts are printed in full."""
    table = Table(title=title)
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def _print_report(report: Any, output: ReportFormat) -> None:
    from app.money import format_amount

    if output is ReportFormat.json:
        document = {
            "input": report.kind,
            "rows_read": report.rows_read,
            "rows_written": report.rows_written,
            "rows_superseded": report.rows_superseded,
            "estimates_retired": report.estimates_retired,
            "rows_quarantined": report.problems.count,
            "quarantined": [str(p) for p in report.problems.problems],
            "batches": [
                {
                    "batch_id": b.batch_id,
                    "source": b.source,
                    "window_start": iso(b.window.start),
                    "window_end": iso(b.window.end),
                    "rows": b.rows,
                    "rows_superseded": b.rows_superseded,
                    "replaced_batches": b.replaced_batch_ids,
                }
                for b in report.batches
            ],
            "totals": [
                {
                    "day": day.isoformat(),
                    "service": service,
                    "currency": currency,
                    "net_cost": format_amount(amount),
                }
                for (day, service, currency), amount in sorted(report.totals.items())
            ],
            "files": [
                {"file": str(f.path), "format": f.format, "rows": f.rows, "sha256": f.sha256}
                for f in report.files
            ],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    read = f"{report.rows_read} row(s) read, " if report.rows_read else ""
    console.print(
        f"{report.kind}: {read}{report.rows_written} cost line(s) written, "
        f"{report.rows_superseded} superseded"
        + (f", {report.estimates_retired} estimate(s) retired" if report.estimates_retired else "")
    )
    for b in report.batches:
        console.print(
            f"  batch {b.batch_id}: {escape(b.source)} {b.window}: {b.rows} line(s)"
            + (f", replaced batch(es) {b.replaced_batch_ids}" if b.replaced_batch_ids else "")
        )
    if report.totals:
        table = Table(
            "day", "service", "currency", "net cost", title="net cost per day and service"
        )
        for (day, service, currency), amount in sorted(report.totals.items()):
            table.add_row(day.isoformat(), escape(service), currency, format_amount(amount))
        console.print(table)
    if report.problems.count:
        err.print(
            f"[yellow]{report.problems.count} bad row(s) set aside (quarantine), not imported:[/]"
        )
        for problem in report.problems.problems:
            err.print(f"  {escape(str(problem))}", highlight=False)
        if report.problems.count > len(report.problems.problems):
            err.print(f"  ... and {report.problems.count - len(report.problems.problems)} more")


@costs_cli.command("show")
def show(
    ctx: typer.Context,
    start: Annotated[str, typer.Option(help=f"From, {TIME_HELP}.")],
    end: Annotated[str, typer.Option(help=f"Until (exclusive), {TIME_HELP}.")],
    group_by: Annotated[
        str,
        typer.Option(
            help="day, service, provider, charge-category, project, component, source or "
            "invoice-month (GCP's; its months run on Pacific time, so widen the window by a "
            "day on each side to hold a whole invoice)."
        ),
    ] = "day",
    include_estimates: Annotated[
        bool, typer.Option(help="Add estimated lines (their own rows, marked).")
    ] = False,
    output: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """What did the clouds bill us: billed cost, credits and net cost, exactly."""
    from app.costs import service
    from app.db import transaction
    from app.money import format_amount
    from app.runtime import runtime

    try:
        grouping = service.GroupBy(group_by)
    except ValueError:
        choices = ", ".join(g.value for g in service.GroupBy)
        raise UsageError(
            f"expected one of {choices}, got {group_by!r}", field="--group-by"
        ) from None
    window = _window(start, end, required=True)
    assert window is not None
    with transaction(runtime(ctx).session_factory) as session:
        totals = service.cost_totals(
            session=session, window=window, group_by=grouping, include_estimates=include_estimates
        )
    # Per currency, and apart for estimates: a total never mixes what was billed with what
    # was only estimated.
    sums: dict[tuple[str, bool], list[Decimal]] = {}
    for total in totals:
        bucket = sums.setdefault((total.currency, total.estimated), [Decimal(0)] * 3)
        bucket[0] += total.billed_cost
        bucket[1] += total.credits
        bucket[2] += total.net_cost
    header = [
        grouping.value,
        "currency",
        "billed_cost",
        "credits",
        "net_cost",
        "lines",
        "estimated",
    ]
    if output is OutputFormat.csv:
        write_csv(
            sys.stdout,
            header,
            (
                [t.key, t.currency, t.billed_cost, t.credits, t.net_cost, t.lines, t.estimated]
                for t in totals
            ),
        )
        return
    if output is OutputFormat.json:
        document = {
            "window_start": iso(window.start),
            "window_end": iso(window.end),
            "group_by": grouping.value,
            "rows": [
                {
                    "key": t.key,
                    "currency": t.currency,
                    "billed_cost": format_amount(t.billed_cost),
                    "credits": format_amount(t.credits),
                    "net_cost": format_amount(t.net_cost),
                    "lines": t.lines,
                    "estimated": t.estimated,
                }
                for t in totals
            ],
            "totals": [
                {
                    "currency": currency,
                    "billed_cost": format_amount(values[0]),
                    "credits": format_amount(values[1]),
                    "net_cost": format_amount(values[2]),
                    "estimated": estimated,
                }
                for (currency, estimated), values in sorted(sums.items())
            ],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return
    table = _table(*header, title=f"cloud costs {window}")
    for t in totals:
        table.add_row(
            escape(t.key), t.currency, format_amount(t.billed_cost), format_amount(t.credits),
            format_amount(t.net_cost), str(t.lines), "estimated" if t.estimated else "",
        )  # fmt: skip
    for (currency, estimated), values in sorted(sums.items()):
        table.add_row(
            "[bold]total[/]", currency, *(f"[bold]{format_amount(v)}[/]" for v in values), "",
            "estimated" if estimated else "",
        )  # fmt: skip
    console.print(table)
    if not totals:
        err.print(f"no cost lines start in {window}")


@costs_cli.command("imports")
def imports(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 30,
    output: Annotated[ReportFormat, typer.Option("--format")] = ReportFormat.table,
) -> None:
    """The latest cost imports: source, window, lines, what they replaced."""
    from app.costs import service
    from app.db import transaction
    from app.runtime import runtime

    with transaction(runtime(ctx).session_factory) as session:
        batches = service.recent_batches(session=session, limit=limit)
        rows = [
            {
                "batch_id": b.id,
                "source": b.source,
                "window_start": iso(b.window_start),
                "window_end": iso(b.window_end),
                "status": b.status,
                "rows": b.row_count,
                "rows_superseded": b.rows_superseded,
                "imported_at": iso(b.finished_at),
                "note": b.note or "",
            }
            for b in batches
        ]
    if output is ReportFormat.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = _table("batch", "source", "window", "status", "lines", "superseded", "imported", "note")
    for r in rows:
        table.add_row(
            str(r["batch_id"]), escape(str(r["source"])),
            f"[{r['window_start']}, {r['window_end']})", str(r["status"]), str(r["rows"]),
            str(r["rows_superseded"]), str(r["imported_at"]), escape(str(r["note"])),
        )  # fmt: skip
    console.print(table)


@prices_cli.command("refresh")
def prices_refresh(
    ctx: typer.Context,
    service_names: Annotated[
        list[str],
        typer.Option("--service", help="Catalog service, by name or id (repeat for several)."),
    ],
    currency: Annotated[str, typer.Option(help="Currency of the prices.")] = "USD",
) -> None:
    """Fetch list prices of services from the Cloud Billing Catalog into the price book."""
    from app.clock import utcnow
    from app.costs import catalog, service
    from app.db import transaction
    from app.runtime import runtime

    rt = runtime(ctx)
    client = catalog.make_client(api_endpoint=rt.settings.billing_catalog_api_endpoint)
    now = utcnow()
    try:
        services = catalog.find_services(client, service_names)
    except LookupError as exc:
        raise UsageError(str(exc)) from exc
    with transaction(rt.session_factory) as session:
        for name, (service_id, display_name) in services.items():
            entries = catalog.fetch_price_book(
                client, service_id=service_id, service_name=display_name,
                currency=currency.upper(), now=now,
            )  # fmt: skip
            count = service.replace_price_book(
                session=session, service_ids=[service_id], entries=entries
            )
            console.print(f"{escape(display_name)} ({service_id}): {count} SKU(s) priced")
            del name


@prices_cli.command("show")
def prices_show(
    ctx: typer.Context,
    search: Annotated[
        str | None, typer.Option(help="Only SKUs whose description or service contains this.")
    ] = None,
    output: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.table,
) -> None:
    """The price book: SKU, description, unit price per usage unit, base-unit factor."""
    from app.costs import service
    from app.db import transaction
    from app.money import format_amount
    from app.runtime import runtime

    with transaction(runtime(ctx).session_factory) as session:
        entries = service.price_book(session=session, search=search)
        rows = [
            [
                e.sku_id, e.service_name, e.sku_description, e.currency,
                format_amount(e.unit_price), e.usage_unit, e.base_unit,
                format_amount(e.base_unit_conversion_factor), ",".join(e.regions),
                iso(e.effective_at) if e.effective_at else "",
            ]
            for e in entries
        ]  # fmt: skip
    header = [
        "sku_id", "service", "description", "currency", "unit_price", "usage_unit", "base_unit",
        "base_unit_conversion_factor", "regions", "effective_at",
    ]  # fmt: skip
    if output is OutputFormat.csv:
        write_csv(sys.stdout, header, rows)
    elif output is OutputFormat.json:
        sys.stdout.write(json.dumps([dict(zip(header, r, strict=True)) for r in rows], indent=2))
        sys.stdout.write("\n")
    else:
        table = _table(*header[:8], title="price book")
        for r in rows:
            table.add_row(*(escape(str(v)) for v in r[:8]))
        console.print(table)
        if not rows:
            err.print("the price book is empty: run `hubmeter costs prices refresh --service ...`")
