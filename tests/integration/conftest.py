"""Session fixtures for tests against a real Prometheus, for any domain to reuse.

Two small generated scenarios are backfilled with promtool into one TSDB, once per test
session (promtool does only tens of thousands of samples a second here), and a Prometheus
server is started over a copy of it:

- `annotated`: 3 hubs x 6 users x 2 days from 2026-10-01, one-minute scrapes, a GPU hub,
  kube-state-metrics exporting the username annotation;
- `unannotated`: 2 hubs x 5 users x 1 day from 2026-09-01, 30-second scrapes, no annotation, so
  usernames come from the escaped (and truncated) labels.

Their periods do not overlap, so the same cluster and hub names can share the server. Tests
that use them should carry `pytest.mark.xdist_group("prometheus")`, so that `pytest -n 2 --dist
loadgroup` builds all this on one worker only.
"""

from __future__ import annotations

import csv
import datetime as dt
import shutil
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import HubmeterConfig, load_config
from app.synthetic import Manifest, ScenarioSpec, generate
from app.usage.metering import QUANTITY_NAMES, Quantities
from tests import servers

CLUSTER = "atlantic"

SCENARIOS = {
    "annotated": ScenarioSpec(hubs=3, users_per_hub=6, days=2, seed=7, gpu_hub_every=3),
    "unannotated": ScenarioSpec(
        hubs=2,
        users_per_hub=5,
        days=1,
        seed=8,
        start=dt.date(2026, 9, 1),
        annotations=False,
        scrape_interval_seconds=30,
        storage_interval_seconds=600,
    ),
}

# (namespace, raw username or None, hour) -> usage; None is a hub's shared directory, or all of
# a namespace that no hub names (its users are summed per namespace and hour).
TruthKey = tuple[str, str | None, dt.datetime]


@dataclass(frozen=True)
class UsageScenario:
    name: str
    manifest: Manifest

    @property
    def openmetrics_file(self) -> Path:
        return self.manifest.openmetrics_files[CLUSTER]

    def config_file(
        self, directory: Path, *, prometheus_url: str | None, chunk_hours: int = 24
    ) -> Path:
        """The scenario's hubmeter.yaml, pointed at `prometheus_url`, written in `directory`."""
        document: dict[str, Any] = yaml.safe_load(self.manifest.config_file.read_text())
        for cluster in document["clusters"]:
            cluster["openmetrics_file"] = str(self.manifest.out_dir / cluster["openmetrics_file"])
            if prometheus_url is not None:
                cluster["prometheus"] = {"url": prometheus_url, "timeout_seconds": 30}
        document["ingestion"] = {"query_chunk_hours": chunk_hours}
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"hubmeter-{self.name}.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
        return path

    def config(
        self, directory: Path, *, prometheus_url: str | None, chunk_hours: int = 24
    ) -> HubmeterConfig:
        return load_config(
            self.config_file(directory, prometheus_url=prometheus_url, chunk_hours=chunk_hours)
        )

    def truth(
        self, start: dt.datetime | None = None, end: dt.datetime | None = None
    ) -> dict[TruthKey, Quantities]:
        """The generator's ground truth in `[start, end)`, keyed as hubmeter stores usage."""
        truth: dict[TruthKey, Quantities] = defaultdict(Quantities)
        with self.manifest.usage_truth_file.open(encoding="utf-8", newline="") as stream:
            for row in csv.DictReader(stream):
                hour = dt.datetime.fromisoformat(row["hour"].replace("Z", "+00:00"))
                if (start and hour < start) or (end and hour >= end):
                    continue
                if not row["hub"] or row["username"] == "_shared":
                    username = None
                else:
                    username = row["username"]
                values = Quantities(**{name: Decimal(row[name]) for name in QUANTITY_NAMES})
                truth[(row["namespace"], username, hour)].add(values)
        return dict(truth)


@pytest.fixture(scope="session")
def usage_scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, UsageScenario]:
    """The generated scenarios (files and ground truth), by name."""
    root = tmp_path_factory.mktemp("usage-scenarios")
    return {
        name: UsageScenario(name, generate(spec, root / name)) for name, spec in SCENARIOS.items()
    }


@pytest.fixture(scope="session")
def prometheus_blocks(
    usage_scenarios: dict[str, UsageScenario], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A TSDB directory holding every scenario, never opened by a server (copy it to serve)."""
    if servers.prometheus_binaries() is None:
        servers.unavailable("prometheus/promtool not found (Debian package `prometheus`)")
    blocks = tmp_path_factory.mktemp("prometheus-blocks") / "data"
    for scenario in usage_scenarios.values():
        servers.backfill(scenario.openmetrics_file, blocks)
    return blocks


def serve_copy(blocks: Path, directory: Path) -> Path:
    """A copy of `blocks` for a server of its own (a server writes into its data directory)."""
    target = directory / "data"
    shutil.copytree(blocks, target)
    return target


@pytest.fixture(scope="session")
def prometheus(
    prometheus_blocks: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[servers.Prometheus]:
    """A Prometheus server over the scenarios, shared by the session: do not stop it (start
    your own with `serve_copy` and `servers.prometheus_server` to do that)."""
    data = serve_copy(prometheus_blocks, tmp_path_factory.mktemp("prometheus-served"))
    with servers.prometheus_server(data) as server:
        yield server
