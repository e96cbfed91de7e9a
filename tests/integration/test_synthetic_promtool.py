"""promtool, the tool that backfills Prometheus in the integration tests, accepts the generated
OpenMetrics file and stores every sample of it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from app.synthetic import ScenarioSpec, generate
from tests.servers import unavailable

pytestmark = pytest.mark.integration


def test_promtool_backfills_a_generated_file(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool not found (Debian package `prometheus`)")
        return
    # promtool is slow (tens of thousands of samples a second here): a small, sparse scenario.
    spec = ScenarioSpec(
        hubs=2, users_per_hub=5, days=1, scrape_interval_seconds=300, gpu_hub_every=2
    )
    manifest = generate(spec, tmp_path / "scenario")
    blocks = tmp_path / "blocks"
    result = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics",
         str(manifest.openmetrics_files["atlantic"]), str(blocks)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    stored = subprocess.run(
        [promtool, "tsdb", "list", str(blocks)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    # Columns: ULID, min time, max time, duration, samples, chunks, series, size.
    rows = [line.split() for line in stored.stdout.splitlines()[1:] if line.strip()]
    assert sum(int(row[4]) for row in rows) == manifest.samples
