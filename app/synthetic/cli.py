"""`hubmeter generate`: write a synthetic scenario from the command line."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from app.synthetic.generator import generate as generate_scenario
from app.synthetic.spec import ScenarioSpec

app = typer.Typer(help="Synthetic clusters, usage and bills for demos, tests and benchmarks.")

_DEFAULTS = ScenarioSpec()


@app.command()
def generate(
    out: Annotated[
        Path, typer.Option("--out", help="Directory to write into (created if needed).")
    ],
    hubs: Annotated[int, typer.Option(help="Hubs per cluster.")] = _DEFAULTS.hubs,
    users_per_hub: Annotated[int, typer.Option(help="Users per hub.")] = _DEFAULTS.users_per_hub,
    days: Annotated[int, typer.Option(help="Length of the period in days.")] = _DEFAULTS.days,
    start: Annotated[
        str, typer.Option(help="First day of the period, YYYY-MM-DD (from 00:00 UTC).")
    ] = _DEFAULTS.start.isoformat(),
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = _DEFAULTS.seed,
    clusters: Annotated[int, typer.Option(help="Number of clusters.")] = _DEFAULTS.clusters,
    scrape_interval_seconds: Annotated[
        int, typer.Option(help="Prometheus scrape interval; must divide 3600.")
    ] = _DEFAULTS.scrape_interval_seconds,
    storage_interval_seconds: Annotated[
        int, typer.Option(help="dirsize exporter interval; must divide 3600.")
    ] = _DEFAULTS.storage_interval_seconds,
    annotations: Annotated[
        bool, typer.Option(help="Export the raw username annotation (kube_pod_annotations).")
    ] = _DEFAULTS.annotations,
    gpu_hub_every: Annotated[
        int, typer.Option(help="Every n-th hub requests GPUs; 0 for none.")
    ] = _DEFAULTS.gpu_hub_every,
    unmatched_namespace: Annotated[
        bool, typer.Option(help="Add a user namespace that no configured hub names.")
    ] = _DEFAULTS.unmatched_namespace,
    cost_rows_per_hour: Annotated[
        int | None,
        typer.Option(help="Scale the bill to about this many rows an hour (per-node rows)."),
    ] = _DEFAULTS.cost_rows_per_hour,
    late_cost_fraction: Annotated[
        float, typer.Option(help="Share of bill rows exported days late.")
    ] = _DEFAULTS.late_cost_fraction,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines.")] = False,
) -> None:
    """Write usage (OpenMetrics), the bill (GCP export and FOCUS), hubmeter.yaml and the truth."""
    try:
        first_day = dt.date.fromisoformat(start)
    except ValueError as exc:
        raise typer.BadParameter(
            f"expected YYYY-MM-DD, got {start!r}", param_hint="--start"
        ) from exc
    try:
        spec = ScenarioSpec(
            hubs=hubs,
            users_per_hub=users_per_hub,
            days=days,
            start=first_day,
            seed=seed,
            clusters=clusters,
            scrape_interval_seconds=scrape_interval_seconds,
            storage_interval_seconds=storage_interval_seconds,
            annotations=annotations,
            gpu_hub_every=gpu_hub_every,
            unmatched_namespace=unmatched_namespace,
            cost_rows_per_hour=cost_rows_per_hour,
            late_cost_fraction=late_cost_fraction,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    manifest = generate_scenario(spec, out, progress=None if quiet else typer.echo)
    typer.echo(
        f"{spec.clusters} cluster(s), {spec.clusters * spec.hubs} hubs, "
        f"{spec.users_per_hub} users per hub, {spec.days} days from {spec.start.isoformat()}\n"
        f"usage:  {manifest.series:,} series, {manifest.samples:,} samples\n"
        f"bill:   {manifest.bill_rows:,} export rows, {manifest.focus_rows:,} FOCUS rows, "
        f"net {manifest.total_net_cost} USD\n"
        f"truth:  {manifest.usage_truth_rows:,} usage rows, "
        f"{manifest.cost_truth_rows:,} cost rows\n"
        f"config: {manifest.config_file}"
    )
