"""The real Prometheus the tests start holds exactly what the generator wrote.

This reads raw samples over Prometheus' HTTP API with nothing of hubmeter's in between, so it
checks the test bed itself: promtool's backfill, the server's retention, and the generator's
agreement with its own ground truth.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest

from tests import servers
from tests.integration.conftest import UsageScenario

pytestmark = pytest.mark.xdist_group("prometheus")


def instant_query(url: str, promql: str, at: float) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=30) as response:  # noqa: S310 - a loopback test server
        body = json.load(response)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_the_generated_memory_requests_come_back_from_prometheus(
    prometheus: servers.Prometheus, usage_scenarios: dict[str, UsageScenario]
) -> None:
    scenario = usage_scenarios["annotated"]
    manifest = scenario.manifest
    end = manifest.period_end.timestamp() - 0.001  # ranges are (t - d, t]: stay inside the period
    span = f"{int((manifest.period_end - manifest.period_start).total_seconds())}s"
    owner = {
        (s["metric"]["namespace"], s["metric"]["pod"], s["metric"]["uid"]): s["metric"][
            "annotation_hub_jupyter_org_username"
        ]
        for s in instant_query(prometheus.url, f"last_over_time(kube_pod_annotations[{span}])", end)
        if "annotation_hub_jupyter_org_username" in s["metric"]
    }
    requests = instant_query(
        prometheus.url,
        f'kube_pod_container_resource_requests{{resource="memory", container="notebook"}}[{span}]',
        end,
    )
    assert requests, "Prometheus returned no memory requests for the generated period"

    stored: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for series in requests:
        labels = series["metric"]
        key = (labels["namespace"], labels["pod"], labels["uid"])
        if key not in owner:  # hub and proxy pods have no username annotation
            continue
        for _timestamp, value in series["values"]:
            stored[(labels["namespace"], owner[key])] += Decimal(value)

    delta = manifest.spec.scrape_interval_seconds
    expected: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for (namespace, username, _hour), quantities in scenario.truth().items():
        if username is not None and quantities.memory_request_byte_seconds:
            expected[(namespace, username)] += quantities.memory_request_byte_seconds / delta
    # The truth sums a namespace no hub names per namespace, not per user: compare the hubs.
    hub_namespaces = {namespace for namespace, _user in expected}
    assert {k: v for k, v in stored.items() if k[0] in hub_namespaces} == dict(expected)
    assert len(expected) >= 10
