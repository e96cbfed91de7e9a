"""`hubmeter attribute` and `hubmeter allocations export|explain|runs`."""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from app.attribution import service
from app.attribution.rules import REASONS, Period, PolicyError, describe_rule
from app.errors import UsageError
from app.hubs import service as hub_service
from app.money import exact_difference, format_amount
from app.periods import DAY, next_month, parse_day, parse_month
from app.tables import write_csv

# Sentences are not wrapped at 80 columns when the output is piped (scripts grep it).
console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

PERIOD_HELP = "Periods are whole UTC days, half-open: --end is the first day NOT included."


def register(cli: typer.Typer, ingest: typer.Typer) -> None:
    """Add this domain's commands to the root command and the `ingest` group."""
    cli.command("attribute", help=_help(attribute, PERIOD_HELP))(attribute)
    allocations = typer.Typer(
        help="Export the allocations in force, explain one, and list attribution runs.",
        no_args_is_help=True,
    )
    allocations.command("export", help=_help(export, PERIOD_HELP))(export)
    allocations.command("explain", help=_help(explain))(explain)
    allocations.command("runs", help=_help(runs))(runs)
    cli.add_typer(allocations, name="allocations")


def _help(command: Any, *extra: str) -> str:
    """A command's docstring as help text: paragraphs kept, lines within them joined (the
    help formatter would otherwise keep the source's line breaks)."""
    paragraphs = inspect.cleandoc(command.__doc__ or "").split("\n\n")
    return "\n\n".join([" ".join(p.split()) for p in paragraphs] + list(extra))


def _widen_when_piped() -> None:
    """Piped or captured output gets room for whole table rows (a terminal keeps its width)."""
    if not console.is_terminal:
        console.width = 160


def parse_period(start: str | None, end: str | None, month: str | None) -> Period:
    """The period a command names: --start/--end (end exclusive) or --month YYYY-MM."""
    if month is not None:
        if start is not None or end is not None:
            raise UsageError("give either --month or --start/--end, not both")
        first = parse_month(month)
        return Period(first, next_month(first))
    if start is None or end is None:
        raise UsageError("give --start DATE and --end DATE (end exclusive), or --month YYYY-MM")
    first_day, end_day = parse_day(start, "--start"), parse_day(end, "--end")
    if end_day <= first_day:
        raise UsageError(
            f"{end_day} must be after --start {first_day} (the end day is not included; "
            f"for one day use --end {first_day + DAY})",
            field="--end",
        )
    return Period(first_day, end_day)


StartOption = Annotated[str | None, typer.Option("--start", help="First day, YYYY-MM-DD.")]
EndOption = Annotated[
    str | None, typer.Option("--end", help="Day after the last one, YYYY-MM-DD (exclusive).")
]
MonthOption = Annotated[str | None, typer.Option("--month", help="A calendar month, YYYY-MM.")]


def attribute(
    ctx: typer.Context,
    start: StartOption = None,
    end: EndOption = None,
    month: MonthOption = None,
    note: Annotated[str | None, typer.Option(help="Why this run was made (kept with it).")] = None,
    output_format: Annotated[
        str, typer.Option("--format", help="table (for people) or json (for scripts).")
    ] = "table",
) -> None:
    """Divide the period's cloud bill among hubs and users, and put the result in force.

    Prints the totals per community, the unattributed amount with its reasons, the estimated
    share, the check that every day's allocations add up to its cost lines exactly (both
    summed by the database), and what changed against the runs this one replaces. A period
    whose inputs have not changed since it was last attributed is left as it is; a run that
    does not add up is refused (exit status 1) and nothing of it is stored.
    """
    from app.clock import utcnow
    from app.db import transaction
    from app.runtime import runtime

    if output_format not in ("table", "json"):
        raise UsageError(f"expected table or json, got {output_format!r}", field="--format")
    period = parse_period(start, end, month)
    rt = runtime(ctx)
    _widen_when_piped()
    config = rt.config
    try:
        with transaction(rt.session_factory) as session:
            report = service.attribute_period(
                session=session,
                config=config,
                period=period,
                now=utcnow(),
                created_by="cli",
                note=note,
            )
            names = hub_service.community_names(session=session)
    except (service.AttributionError, PolicyError) as exc:
        raise UsageError(str(exc)) from exc
    except service.ConservationError as exc:
        # Refused inside the transaction: nothing was stored. Say what did not add up.
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from exc
    if output_format == "json":
        console.print_json(json.dumps(report_json(report)))
    else:
        print_report(report, names)


def report_json(report: service.RunReport) -> dict[str, Any]:
    """The report of a run as JSON, amounts as exact decimal strings."""
    return {
        "period": {"start": report.period.start.isoformat(), "end": report.period.end.isoformat()},
        "run_id": report.run_id,
        "changed": report.changed,
        "runs_in_force": report.runs_in_force,
        "previous_run_ids": report.previous_run_ids,
        "currency": report.currency,
        "cost_total": format_amount(report.cost_total),
        "allocated_total": format_amount(report.allocated_total),
        "unattributed_total": format_amount(report.unattributed_total),
        "estimated_total": format_amount(report.estimated_total),
        "allocations_total": format_amount(report.allocations_total),
        "balanced": report.balanced,
        "by_community": {k: format_amount(v) for k, v in report.by_community.items()},
        "unattributed_by_reason": {
            k: format_amount(v) for k, v in report.unattributed_by_reason.items()
        },
        "days": [
            {
                "day": d.day.isoformat(),
                "cost": format_amount(d.cost),
                "allocated": format_amount(d.allocated),
                "difference": format_amount(d.difference),
                "estimated": format_amount(d.estimated),
            }
            for d in report.days
        ],
        "changes": {
            "days_with_new_inputs": [d.isoformat() for d in report.days_with_new_inputs],
            "hubs": [c.to_json() for c in report.hub_changes],
            "communities": [c.to_json() for c in report.community_changes],
            "unattributed": [c.to_json() for c in report.reason_changes],
        },
    }


def print_report(report: service.RunReport, community_names: dict[str, str]) -> None:
    """The report of a run, for people."""
    period = report.period
    days = len(report.days)
    if report.changed:
        replaces = (
            f" (replaces run {', '.join(map(str, report.previous_run_ids))})"
            if report.previous_run_ids
            else ""
        )
        console.print(
            f"Attribution of {period.start} .. {period.end} (exclusive, {days} days, "
            f"{report.currency}): run {report.run_id} is now in force{replaces}."
        )
    else:
        console.print(
            f"No changes for {period.start} .. {period.end} (exclusive): the cost lines, usage "
            f"and policy of every day are the same as when run(s) "
            f"{', '.join(map(str, report.runs_in_force))} attributed them; nothing was written."
        )
    table = Table(show_edge=False, box=None, pad_edge=False)
    table.add_column("community")
    table.add_column("name")
    table.add_column(f"amount ({report.currency})", justify="right")
    for community_id, amount in report.by_community.items():
        table.add_row(community_id, escape(community_names.get(community_id, "")), _amount(amount))
    table.add_section()
    table.add_row("attributed to hubs", "", _amount(report.allocated_total))
    table.add_row("unattributed", "", _amount(report.unattributed_total))
    for reason, amount in report.unattributed_by_reason.items():
        table.add_row(f"  {reason}", escape(REASONS.get(reason, "")), _amount(amount))
    table.add_section()
    # Both figures are the database's own sums (allocations in force; the cost lines' net
    # cost, sliced into days as attribution slices them): not the attribution's bookkeeping.
    total = report.allocations_total
    table.add_row("allocations, total", "in the database", _amount(total))
    table.add_row("net cost of the cost lines", "in the database", _amount(report.cost_total))
    difference = exact_difference(total, report.cost_total)
    balanced_days = sum(1 for d in report.days if d.difference == 0)
    check = (
        f"adds up exactly: {balanced_days} of {days} days"
        if report.balanced
        else f"DOES NOT ADD UP on {days - balanced_days} day(s)"
    )
    table.add_row("difference", check, _amount(difference))
    share = (
        f"{report.estimated_total / report.cost_total * 100:.2f}% of the cost"
        if report.cost_total
        else ""
    )
    table.add_row("estimated (bill not arrived)", share, _amount(report.estimated_total))
    console.print(table)
    if report.changed and report.previous_run_ids:
        _print_changes(report)


def _print_changes(report: service.RunReport) -> None:
    changed_days = report.days_with_new_inputs
    if not (report.hub_changes or report.community_changes or report.reason_changes):
        console.print(
            f"Changes against run(s) {', '.join(map(str, report.previous_run_ids))}: no amount "
            f"changed ({len(changed_days)} day(s) had new inputs)."
        )
        return
    listed = ", ".join(d.isoformat() for d in changed_days[:10])
    more = f" and {len(changed_days) - 10} more" if len(changed_days) > 10 else ""
    console.print(
        f"Changes against run(s) {', '.join(map(str, report.previous_run_ids))}, over the "
        f"{len(changed_days)} day(s) with new inputs ({listed}{more}):"
    )
    table = Table(show_edge=False, box=None, pad_edge=False)
    for column in ("", "before", "after", "difference"):
        table.add_column(column, justify="left" if not column else "right")
    for title, changes in (
        ("community", report.community_changes),
        ("hub", report.hub_changes),
        ("unattributed", report.reason_changes),
    ):
        for change in changes:
            table.add_row(
                f"{title} {escape(change.label if title == 'hub' else change.key)}",
                _amount(change.before),
                _amount(change.after),
                _signed(change.difference),
            )
    console.print(table)


def _amount(value: Decimal) -> str:
    return format_amount(value)


def _signed(value: Decimal) -> str:
    text = format_amount(value)
    return text if text.startswith("-") or text == "0" else "+" + text


# --- export -------------------------------------------------------------------------------------

EXPORT_COLUMNS = (
    "day",
    "cluster",
    "community",
    "hub",
    "user",
    "component",
    "amount",
    "currency",
    "estimated",
    "run_id",
)


def export(
    ctx: typer.Context,
    start: StartOption = None,
    end: EndOption = None,
    month: MonthOption = None,
    output_format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="File to write (CSV: standard output if omitted).",
            dir_okay=False,
        ),
    ] = None,
    run: Annotated[
        int | None, typer.Option("--run", help="Export this run instead of the runs in force.")
    ] = None,
) -> None:
    """Export allocations: one row per day, hub, user (empty for hub-level lines) and component.

    Columns: day, cluster, community, hub, user, component, amount, currency, estimated,
    run_id. Amounts are exact (decimal strings in CSV, decimal128 in Parquet, never floats).
    Rows with an empty hub are the unattributed part of the bill, so the file adds up to it.
    """
    from app.runtime import runtime

    if output_format not in ("csv", "parquet"):
        raise UsageError(f"expected csv or parquet, got {output_format!r}", field="--format")
    if output_format == "parquet" and output is None:
        raise UsageError("--format parquet writes a binary file: give --output FILE")
    period = parse_period(start, end, month)
    rt = runtime(ctx)
    _widen_when_piped()
    with rt.session_factory() as session:
        missing = (
            []
            if run is not None
            else service.days_without_attribution(session=session, period=period)
        )
        rows = service.export_rows(session=session, period=period, run_id=run)
        if output_format == "csv":
            count = _write_csv(rows, output)
        else:
            assert output is not None
            count = write_parquet(rows, output)
    if missing:
        err.print(
            f"warning: {len(missing)} day(s) of the period have no attribution yet "
            f"(first {missing[0]}): run `hubmeter attribute` for them"
        )
    if output is not None:
        err.print(f"wrote {count} row(s) to {output}")


def _write_csv(rows: Iterator[service.ExportRow], output: Path | None) -> int:
    stream: IO[str]
    if output is None:
        stream = sys.stdout
        return _csv_rows(rows, stream)
    with output.open("w", encoding="utf-8", newline="") as stream:
        return _csv_rows(rows, stream)


def _csv_rows(rows: Iterator[service.ExportRow], stream: IO[str]) -> int:
    return write_csv(
        stream,
        EXPORT_COLUMNS,
        (
            (row.day, row.cluster, row.community_id, row.hub, row.user, row.component,
             row.amount, row.currency, row.estimated, row.run_id)
            for row in rows
        ),
    )  # fmt: skip


def write_parquet(rows: Iterator[service.ExportRow], output: Path) -> int:
    """Allocations as Parquet, amounts as decimal128 with the scale the finest amount needs
    (or exact strings if some amount needs more digits than decimal128 holds)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, list[Any]] = {name: [] for name in EXPORT_COLUMNS}
    scale = 0
    integer_digits = 1
    for row in rows:
        columns["day"].append(row.day)
        columns["cluster"].append(row.cluster)
        columns["community"].append(row.community_id)
        columns["hub"].append(row.hub)
        columns["user"].append(row.user)
        columns["component"].append(row.component)
        columns["amount"].append(row.amount)
        columns["currency"].append(row.currency)
        columns["estimated"].append(row.estimated)
        columns["run_id"].append(row.run_id)
        _, digits, exponent = row.amount.as_tuple()
        assert isinstance(exponent, int)
        scale = max(scale, -exponent)
        integer_digits = max(integer_digits, len(digits) + exponent)
    amount_type: Any
    if scale + integer_digits <= 38:
        amount_type = pa.decimal128(38, scale)
        amounts = pa.array(columns["amount"], type=amount_type)
    else:
        amount_type = pa.string()
        amounts = pa.array([format_amount(a) for a in columns["amount"]], type=amount_type)
    schema = pa.schema(
        [
            ("day", pa.date32()),
            ("cluster", pa.string()),
            ("community", pa.string()),
            ("hub", pa.string()),
            ("user", pa.string()),
            ("component", pa.string()),
            ("amount", amount_type),
            ("currency", pa.string()),
            ("estimated", pa.bool_()),
            ("run_id", pa.int64()),
        ]
    )
    arrays = [
        amounts if name == "amount" else pa.array(columns[name], type=schema.field(name).type)
        for name in EXPORT_COLUMNS
    ]
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), output)
    return len(columns["day"])


# --- explain ------------------------------------------------------------------------------------


def explain(
    ctx: typer.Context,
    allocation_id: Annotated[
        int | None, typer.Option("--id", help="The allocation to explain.")
    ] = None,
    hub: Annotated[str | None, typer.Option(help="Find allocations of this hub (by name).")] = None,
    cluster: Annotated[
        str | None, typer.Option(help="The hub's cluster, if its name is not unique.")
    ] = None,
    day: Annotated[str | None, typer.Option(help="...on this day (YYYY-MM-DD).")] = None,
    user: Annotated[str | None, typer.Option(help="...of this user (canonical username).")] = None,
    component: Annotated[str | None, typer.Option(help="...of this component.")] = None,
    lines: Annotated[int, typer.Option(help="Cost lines to list (0: all of them).")] = 20,
    output_format: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
) -> None:
    """Why is my bill this? Explain one allocation: the cost lines it came from, the rule,
    and the usage shares that made it, charge period by charge period.

    Give --id, or find allocations with --hub and --day (and --user, --component): when
    several match, they are listed with their ids.
    """
    from app.runtime import runtime

    if output_format not in ("text", "json"):
        raise UsageError(f"expected text or json, got {output_format!r}", field="--format")
    rt = runtime(ctx)
    _widen_when_piped()
    with rt.session_factory() as session:
        if allocation_id is None:
            allocation_id = _find_one(session, hub, cluster, day, user, component)
            if allocation_id is None:
                return
        explanation = service.explain_allocation(
            session=session, allocation_id=allocation_id, line_limit=lines or None
        )
    if explanation is None:
        raise UsageError(f"no allocation {allocation_id}")
    if output_format == "json":
        console.print_json(explanation.model_dump_json())
        return
    _print_explanation(explanation)


def _find_one(
    session: Any,
    hub: str | None,
    cluster: str | None,
    day: str | None,
    user: str | None,
    component: str | None,
) -> int | None:
    if hub is None or day is None:
        raise UsageError("give --id N, or --hub NAME and --day YYYY-MM-DD to find allocations")
    the_day = parse_day(day, "--day")
    try:
        hub_row = service.resolve_hub(session=session, name=hub, cluster=cluster)
        user_id = (
            service.resolve_user(session=session, hub_id=hub_row.id, username=user).id
            if user is not None
            else None
        )
    except service.AttributionError as exc:
        raise UsageError(str(exc)) from exc
    found, _ = service.find_allocations(
        session=session, day=the_day, hub_id=hub_row.id, user_id=user_id, component=component
    )
    if user is None:
        found = [a for a in found if a.user_id is None] or found
    if len(found) == 1:
        return found[0].id
    if not found:
        raise UsageError(
            f"no allocation in force for hub {hub_row.cluster_name}/{hub} on {the_day}"
            + (f", user {user}" if user else "")
            + (f", component {component}" if component else "")
        )
    table = Table(title=f"{len(found)} allocations match; explain one with --id", box=None)
    for column in ("id", "user", "component", "rule", "amount", "estimated"):
        table.add_column(column, justify="right" if column in ("id", "amount") else "left")
    for a in found:
        table.add_row(
            str(a.id),
            escape(a.user or "(hub level)"),
            a.component,
            a.rule,
            f"{format_amount(a.amount)} {a.currency}",
            "yes" if a.estimated else "",
        )
    console.print(table)
    return None


def _print_explanation(x: Any) -> None:
    a = x.allocation
    console.print(
        f"[bold]Allocation {a.id}[/]: {format_amount(a.amount)} {a.currency}, {a.component}, "
        f"{a.day}, rule {a.rule} (run {x.run.id}"
        f"{', in force' if x.run.in_force else ', no longer in force'})"
    )
    console.print(escape(x.summary))
    if x.pool is not None:
        p = x.pool
        console.print(
            f"\n[bold]Cost[/]: pool {p.id}: {p.kind} ({escape(p.how)}"
            f"{': ' + escape(p.detail) if p.detail else ''}), {format_amount(p.net_cost)} "
            f"{p.currency} from {p.cost_line_count} line(s), ids {p.first_cost_line_id}.."
            f"{p.last_cost_line_id}, {p.charge_periods} charge period(s); split by "
            f"{p.driver_description} ({p.driver_unit})."
        )
        console.print(f"Which lines: {escape(x.cost_line_filter)}")
    if x.periods:
        table = Table(title="Charge period by charge period", box=None, pad_edge=False)
        for column in ("charge period", "cost", "step", "share", "of", "amount"):
            table.add_column(column, justify="right" if column in ("cost", "amount") else "left")
        for period in x.periods:
            label = f"{period.charge_period_start:%Y-%m-%d %H:%M}..{period.charge_period_end:%H:%M}"
            for n, step in enumerate(period.steps):
                table.add_row(
                    label if n == 0 else "",
                    format_amount(period.net_cost) if n == 0 else "",
                    f"{step.stage}: {step.rule}",
                    step.units_readable or "",
                    step.of_units_readable or "",
                    format_amount(step.amount),
                )
        console.print(table)
    if x.cost_lines:
        table = Table(
            title=f"Cost lines ({len(x.cost_lines)} of {x.cost_lines_now} now in the database)",
            box=None,
            pad_edge=False,
        )
        for column in ("id", "source row", "service", "sku", "project", "period", "net cost"):
            table.add_column(column, justify="right" if column == "net cost" else "left")
        for line in x.cost_lines:
            table.add_row(
                str(line.id),
                escape(f"{line.source}:{line.source_row}"),
                escape(line.service or ""),
                escape(line.sku or ""),
                escape(line.project or ""),
                f"{line.charge_period_start:%Y-%m-%d %H:%M}",
                format_amount(line.net_cost),
            )
        console.print(table)
    recomputed = "" if x.recomputed_amount is None else format_amount(x.recomputed_amount)
    console.print(
        f"Recomputed from the data now in the database: {recomputed} "
        f"({'the same' if x.reproducible else 'DIFFERENT'})"
    )
    for note in x.notes:
        console.print(f"note: {escape(note)}")


# --- runs ---------------------------------------------------------------------------------------


RUN_COLUMNS = ("run", "period", "created", "by", "cost", "unattributed", "estimated", "days")


def runs(
    ctx: typer.Context,
    run_id: Annotated[int | None, typer.Option("--id", help="Show one run in detail.")] = None,
    limit: Annotated[int, typer.Option(help="How many runs to list.")] = 20,
) -> None:
    """List attribution runs (newest first), or show one with what it changed."""
    from app.runtime import runtime

    rt = runtime(ctx)
    _widen_when_piped()
    with rt.session_factory() as session:
        if run_id is not None:
            detail = service.run_detail(session=session, run_id=run_id)
            if detail is None:
                raise UsageError(f"no attribution run {run_id}")
            console.print_json(detail.model_dump_json())
            return
        listed = service.run_summaries(session=session, limit=limit)
    table = Table(box=None, pad_edge=False)
    for column in RUN_COLUMNS:
        table.add_column(column)
    for r in listed:
        table.add_row(
            str(r.id),
            f"{r.period_start}..{r.period_end}",
            f"{r.created_at:%Y-%m-%d %H:%M}",
            escape(r.created_by),
            f"{format_amount(r.cost_total)} {r.currency}",
            format_amount(r.unattributed_total),
            format_amount(r.estimated_total),
            str(r.days_in_force),
        )
    console.print(table)


__all__ = ["describe_rule", "parse_period", "register"]
