"""What a run wrote: the spec, the period, the files and their sizes, the bill's total."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from app.synthetic.decimals import plain
from app.synthetic.layout import MANIFEST_FILE
from app.synthetic.spec import ScenarioSpec

_PATH_FIELDS = (
    "config_file",
    "billing_export_file",
    "focus_file",
    "usage_truth_file",
    "cost_truth_file",
)


@dataclass(frozen=True)
class Manifest:
    """Paths are absolute here and relative to the output directory in manifest.json, so the
    same spec gives the same bytes wherever it is written."""

    spec: ScenarioSpec
    out_dir: Path
    period_start: dt.datetime  # UTC, inclusive
    period_end: dt.datetime  # UTC, exclusive
    config_file: Path
    openmetrics_files: Mapping[str, Path]  # cluster name -> file
    billing_export_file: Path
    focus_file: Path
    usage_truth_file: Path
    cost_truth_file: Path
    series: int  # OpenMetrics series, all clusters
    samples: int  # OpenMetrics samples, all clusters
    bill_rows: int  # rows of the GCP export
    focus_rows: int  # rows of the FOCUS file (credits are rows of their own there)
    usage_truth_rows: int
    cost_truth_rows: int
    total_net_cost: Decimal  # cost plus credits of the whole bill, USD

    def to_json(self) -> str:
        spec = dataclasses.asdict(self.spec)
        spec["start"] = self.spec.start.isoformat()
        document: dict[str, Any] = {
            "spec": spec,
            "period_start": _iso(self.period_start),
            "period_end": _iso(self.period_end),
            "files": {
                **{name: self._relative(getattr(self, name)) for name in _PATH_FIELDS},
                "openmetrics_files": {
                    cluster: self._relative(path)
                    for cluster, path in self.openmetrics_files.items()
                },
            },
            "counts": {
                "series": self.series,
                "samples": self.samples,
                "bill_rows": self.bill_rows,
                "focus_rows": self.focus_rows,
                "usage_truth_rows": self.usage_truth_rows,
                "cost_truth_rows": self.cost_truth_rows,
            },
            "total_net_cost": plain(self.total_net_cost),
        }
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"

    def _relative(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()


def read_manifest(out_dir: Path) -> Manifest:
    """The manifest of an earlier run, e.g. to reuse large benchmark data without regenerating."""
    document = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    spec_fields = dict(document["spec"])
    spec_fields["start"] = dt.date.fromisoformat(spec_fields["start"])
    files, counts = document["files"], document["counts"]
    return Manifest(
        spec=ScenarioSpec(**spec_fields),
        out_dir=out_dir,
        period_start=dt.datetime.fromisoformat(document["period_start"]),
        period_end=dt.datetime.fromisoformat(document["period_end"]),
        openmetrics_files={c: out_dir / p for c, p in files["openmetrics_files"].items()},
        **{name: out_dir / files[name] for name in _PATH_FIELDS},
        **counts,
        total_net_cost=Decimal(document["total_net_cost"]),
    )


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
