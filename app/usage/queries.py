"""The PromQL hubmeter meters Zero-to-JupyterHub clusters with, one query per measurement.

Every query is evaluated as a range query with a one-hour step at `h + 1h - 1ms` for each whole
hour `[h, h + 1h)`: from Prometheus 3 range selectors are left-open and right-closed at
millisecond resolution, so `[1h]` there covers exactly the samples with `h <= t < h + 1h`
(before 3 they are closed, and the source writes `[3599999ms]` instead of every `[1h]`; see
`PrometheusUsageSource.hour_range`). Usage is metered
from the samples themselves (`*_over_time`), never from instant-vector lookback: backfilled or
remote-read data has no staleness markers, and lookback would stretch every pod by up to five
minutes past its last scrape.

Values are per scrape sample; `app.usage.metering` multiplies by the scrape interval. The
OpenMetrics source (`app.usage.openmetrics`) evaluates the same queries in Python, and both feed
`Observations`, so the two paths cannot drift apart unnoticed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# kube-state-metrics v2 names extended resources with dots and slashes turned into underscores.
GPU_RESOURCES = ("nvidia_com_gpu", "amd_com_gpu")
RESOURCES = ("memory", "cpu", *GPU_RESOURCES)

# A pod is a user server when KubeSpawner labelled it so; hub, proxy and every other pod of the
# cluster is left out.
SINGLEUSER = 'kube_pod_labels{label_component="singleuser-server"}'

# cAdvisor reports each container, plus the pod's own cgroup (container="") and, on older
# kubelets, the pause container ("POD"); those two would count the pod twice.
CONTAINERS = 'container!="", container!="POD"'

# How far back the CPU counter's previous value is looked for: a series with no sample in the
# hour before (a scrape gap, a Prometheus restart) counts from that value, not from zero, as
# long as it was seen this recently; only a series not seen for that long counts as new.
CPU_LOOKBACK_HOURS = 6

# "This (namespace, pod[, uid]) was a user server during the hour."
_IS_SERVER = f"last_over_time({SINGLEUSER}[1h])"


class Query(StrEnum):
    server_samples = "server_samples"
    username_annotations = "username_annotations"
    requests = "requests"
    memory_usage = "memory_usage"
    cpu_usage = "cpu_usage"
    storage_sum = "storage_sum"
    storage_count = "storage_count"


@dataclass(frozen=True)
class UsageQuery:
    name: Query
    promql: str
    what: str


QUERIES: tuple[UsageQuery, ...] = (
    UsageQuery(
        Query.server_samples,
        # How many times in the hour each server pod was seen, and its username label. Taking
        # the max over identical label sets keeps a second kube-state-metrics replica (HA
        # setups scrape both) from doubling the count.
        f"""
max by (namespace, pod, uid, label_hub_jupyter_org_username) (
  count_over_time({SINGLEUSER}[1h])
)""",
        "scrapes of each single-user server pod (server time)",
    ),
    UsageQuery(
        Query.username_annotations,
        # The raw username, where kube-state-metrics is allowed to export the
        # hub.jupyter.org/username annotation (`--metric-annotations-allowlist`). It is the only
        # certain source: the label is escaped and cut at 63 characters.
        """
max by (namespace, pod, uid, annotation_hub_jupyter_org_username) (
  last_over_time(kube_pod_annotations{annotation_hub_jupyter_org_username!=""}[1h])
)""",
        "raw usernames from pod annotations",
    ),
    UsageQuery(
        Query.requests,
        # Sum of the requested memory, CPU and GPUs of each server pod over the hour's scrapes:
        # what the scheduler reserved for it on a node, which is what the node bill follows.
        # Containers are added up (sidecars reserve capacity too); max over replicas as above.
        f"""
sum by (namespace, pod, uid, resource) (
  max by (namespace, pod, uid, container, resource) (
    sum_over_time(kube_pod_container_resource_requests{{resource=~"{"|".join(RESOURCES)}"}}[1h])
  )
)
and on (namespace, pod, uid) {_IS_SERVER}""",
        "requested memory, CPU and GPUs",
    ),
    UsageQuery(
        Query.memory_usage,
        # Sum of the working set (what the kernel would not reclaim, the figure the OOM killer
        # and `kubectl top` use) over the hour's scrapes. cAdvisor has no pod uid, so servers
        # are matched on (namespace, pod); a pod name belongs to one user.
        f"""
sum by (namespace, pod) (
  sum_over_time(container_memory_working_set_bytes{{{CONTAINERS}}}[1h])
)
and on (namespace, pod) {_IS_SERVER}""",
        "memory actually used (working set)",
    ),
    UsageQuery(
        Query.cpu_usage,
        # CPU-seconds used in the hour, per container series: its last counter value in the
        # hour minus its last value before the hour (looking back CPU_LOOKBACK_HOURS, so that
        # after a scrape gap the hour does not count the container's whole lifetime again).
        # A series not seen before is new in the hour and counts from zero; one that went
        # backwards restarted, and counts its value since the restart.
        f"""
sum by (namespace, pod) (
    (
        last_over_time(container_cpu_usage_seconds_total{{{CONTAINERS}}}[1h])
      - last_over_time(
          container_cpu_usage_seconds_total{{{CONTAINERS}}}[{CPU_LOOKBACK_HOURS}h] offset 1h
        )
    ) >= 0
  or
    last_over_time(container_cpu_usage_seconds_total{{{CONTAINERS}}}[1h])
)
and on (namespace, pod) {_IS_SERVER}""",
        "CPU actually used (cAdvisor counter increase)",
    ),
    UsageQuery(
        Query.storage_sum,
        # Home directory sizes from the dirsize exporter, summed over the hour's samples; with
        # the count below this gives the hour's mean size. Summing both over duplicate series
        # (an exporter restart, two replicas) leaves the mean unchanged.
        """
sum by (namespace, directory) (sum_over_time(dirsize_total_size_bytes[1h]))""",
        "home directory sizes (sum of samples)",
    ),
    UsageQuery(
        Query.storage_count,
        """
sum by (namespace, directory) (count_over_time(dirsize_total_size_bytes[1h]))""",
        "home directory sizes (number of samples)",
    ),
)
