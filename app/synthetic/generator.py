"""generate(): write a scenario's files and their ground truth, one stream at a time."""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.synthetic.bill import bill_charges
from app.synthetic.config_file import write_config
from app.synthetic.cost_truth import CostTruthTotals
from app.synthetic.focus_export import FOCUS_COLUMNS, focus_rows
from app.synthetic.gcp_export import export_line
from app.synthetic.layout import (
    BILLING_EXPORT_FILE,
    CONFIG_FILE,
    COST_TRUTH_FILE,
    FOCUS_FILE,
    MANIFEST_FILE,
    USAGE_TRUTH_FILE,
    openmetrics_file,
)
from app.synthetic.manifest import Manifest
from app.synthetic.spec import ScenarioSpec
from app.synthetic.topology import Topology, build_topology
from app.synthetic.usage_metrics import write_usage_metrics
from app.synthetic.usage_truth import ClusterHourlyDemand, write_usage_truth


def generate(
    spec: ScenarioSpec, out_dir: Path, *, progress: Callable[[str], None] | None = None
) -> Manifest:
    """Write the scenario into `out_dir` (created if needed; earlier files are overwritten).

    manifest.json is written last, so a directory with a manifest is a complete run.
    """
    report = progress or _quiet
    out_dir = out_dir.resolve()
    (out_dir / USAGE_TRUTH_FILE).parent.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST_FILE).unlink(missing_ok=True)

    topology = build_topology(spec)
    write_config(spec, topology, out_dir / CONFIG_FILE)
    usage = write_usage_truth(spec, topology, out_dir / USAGE_TRUTH_FILE, report)

    series = samples = 0
    openmetrics_files = {}
    for cluster in topology.clusters:
        path = out_dir / openmetrics_file(cluster.name)
        written = write_usage_metrics(spec, cluster, path, report)
        series, samples = series + written.series, samples + written.samples
        openmetrics_files[cluster.name] = path

    report("writing the bill")
    bill = _write_bill(spec, topology, usage.demand, out_dir)
    cost_truth_rows = bill.totals.write(out_dir / COST_TRUTH_FILE)

    manifest = Manifest(
        spec=spec,
        out_dir=out_dir,
        period_start=spec.period_start,
        period_end=spec.period_end,
        config_file=out_dir / CONFIG_FILE,
        openmetrics_files=openmetrics_files,
        billing_export_file=out_dir / BILLING_EXPORT_FILE,
        focus_file=out_dir / FOCUS_FILE,
        usage_truth_file=out_dir / USAGE_TRUTH_FILE,
        cost_truth_file=out_dir / COST_TRUTH_FILE,
        series=series,
        samples=samples,
        bill_rows=bill.export_rows,
        focus_rows=bill.focus_rows,
        usage_truth_rows=usage.rows,
        cost_truth_rows=cost_truth_rows,
        total_net_cost=bill.totals.total,
    )
    (out_dir / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
    report(f"done: {out_dir}")
    return manifest


def _quiet(_message: str) -> None:
    return None


@dataclass
class _BillWritten:
    export_rows: int
    focus_rows: int
    totals: CostTruthTotals


def _write_bill(
    spec: ScenarioSpec, topology: Topology, demand: dict[str, ClusterHourlyDemand], out_dir: Path
) -> _BillWritten:
    """Both exports and the cost truth in one pass over the charges."""
    written = _BillWritten(0, 0, CostTruthTotals())
    with (
        (out_dir / BILLING_EXPORT_FILE).open("w", encoding="utf-8", newline="\n") as export,
        (out_dir / FOCUS_FILE).open("w", encoding="utf-8", newline="") as focus_stream,
    ):
        focus = csv.writer(focus_stream, lineterminator="\n")
        focus.writerow(FOCUS_COLUMNS)
        for charge in bill_charges(spec, topology, demand):
            export.write(export_line(charge))
            rows = focus_rows(charge)
            focus.writerows(rows)
            written.export_rows += 1
            written.focus_rows += len(rows)
            written.totals.add(charge)
    return written
