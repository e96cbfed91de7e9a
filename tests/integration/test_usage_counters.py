"""The CPU counter across a scrape gap, from an OpenMetrics file and from a real Prometheus
loaded with the same samples: the hour after the gap counts what was used since the last
sample before it, never the container's whole lifetime again."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from app.config import PrometheusSource
from app.usage.metering import Observations, meter
from app.usage.openmetrics import read_openmetrics
from app.usage.prometheus import PrometheusUsageSource, RetryPolicy
from tests import servers

pytestmark = [pytest.mark.prometheus, pytest.mark.xdist_group("prometheus")]

T0 = 1_790_812_800  # 2026-10-01T00:00:00Z
HOURS = 5
GAP = (1, 2)  # hours with no CPU sample at all (the kubelet was not scraped)
CORES = Decimal("0.5")
SERVER = (
    'kube_pod_labels{namespace="ocean",pod="jupyter-alice",uid="u1",'
    'label_component="singleuser-server",label_hub_jupyter_org_username="alice"}'
)
CPU = (
    'container_cpu_usage_seconds_total{namespace="ocean",pod="jupyter-alice",'
    'container="notebook",id="/kubepods/u1/c1"}'
)
# The counter starts at T0 and runs at half a core. Per hour: the first counts from zero to its
# last sample (:59); the one after the gap from the last sample before it; the last as usual.
EXPECTED = {0: CORES * 3540, 3: CORES * 3 * 3600, 4: CORES * 3600}


def openmetrics(path: Path) -> Path:
    lines = []
    for minute in range(HOURS * 60):
        t = T0 + minute * 60
        lines.append(f"{SERVER} 1 {t}")
        if minute // 60 not in GAP:
            lines.append(f"{CPU} {CORES * minute * 60} {t}")
    lines.sort(key=lambda line: line.split("{")[0])  # one metric family at a time
    path.write_text("\n".join([*lines, "# EOF"]) + "\n", encoding="utf-8")
    return path


def cpu_by_hour(observations: object) -> dict[int, Decimal]:
    result = meter(observations, scrape_interval_seconds=60)  # type: ignore[arg-type]
    return {
        (int(row.hour.timestamp()) - T0) // 3600: row.quantities.cpu_usage_core_seconds
        for row in result.rows
        if row.quantities.cpu_usage_core_seconds
    }


def from_prometheus(file: Path, tmp_path: Path, *, end_hour: int) -> Observations:
    """The file's samples backfilled into a real Prometheus, fetched back from T0."""
    blocks = tmp_path / "blocks"
    servers.backfill(file, blocks)
    with servers.prometheus_server(blocks) as server:
        source = PrometheusUsageSource(
            cluster_name="atlantic",
            prometheus=PrometheusSource(url=server.url),
            chunk_hours=2,
            retry=RetryPolicy(attempts=2, backoff_seconds=0.01),
        )
        return source.fetch(first_hour=T0, end_hour=end_hour, progress=None)


def test_a_scrape_gap_does_not_count_the_counter_again(tmp_path: Path) -> None:
    file = openmetrics(tmp_path / "usage.om")
    from_file = cpu_by_hour(read_openmetrics(file, first_hour=T0, end_hour=T0 + HOURS * 3600))
    assert from_file == EXPECTED

    observations = from_prometheus(file, tmp_path, end_hour=T0 + HOURS * 3600)
    assert cpu_by_hour(observations) == EXPECTED


def test_a_sample_at_the_last_millisecond_of_an_hour_counts_in_that_hour_only(
    tmp_path: Path,
) -> None:
    """Prometheus before 3 reads a range's left end too; the hour range is chosen so that a
    sample at h + 1h - 1ms is read by hour h alone, as the OpenMetrics reader counts it."""
    bob = SERVER.replace("alice", "bob").replace("u1", "u2")
    file = tmp_path / "edge.om"
    file.write_text(f"{bob} 1 {T0 + 3599.999}\n{bob} 1 {T0 + 3600}\n# EOF\n", encoding="utf-8")

    def server_hours(observations: object) -> dict[int, Decimal]:
        result = meter(observations, scrape_interval_seconds=60)  # type: ignore[arg-type]
        return {
            (int(row.hour.timestamp()) - T0) // 3600: row.quantities.server_seconds
            for row in result.rows
        }

    expected = {0: Decimal(60), 1: Decimal(60)}
    assert server_hours(read_openmetrics(file, first_hour=T0, end_hour=T0 + 7200)) == expected
    assert server_hours(from_prometheus(file, tmp_path, end_hour=T0 + 7200)) == expected
