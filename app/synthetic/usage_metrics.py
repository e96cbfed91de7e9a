"""The per-cluster OpenMetrics file: what Prometheus would hold for the period.

Each metric family is written in its own pass over the cluster's pods, which are regenerated
from their seeds every time, so memory stays flat however long the period is.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.synthetic.decimals import from_thousandths, plain, thousandths_text
from app.synthetic.home_storage import (
    SHARED_DIRECTORY,
    constant_stretches,
    home_directory_sizes,
    shared_directory_sizes,
)
from app.synthetic.openmetrics import OpenMetricsWriter
from app.synthetic.pods import Pod, cluster_pods, cpu_usage_millis, user_pods, working_set_bytes
from app.synthetic.spec import ScenarioSpec
from app.synthetic.topology import Cluster


def write_usage_metrics(
    spec: ScenarioSpec, cluster: Cluster, path: Path, progress: Callable[[str], None]
) -> OpenMetricsWriter:
    """Write the cluster's file; the returned writer holds the series and sample counts."""
    families: list[tuple[str, Callable[[OpenMetricsWriter, ScenarioSpec, Cluster], None]]] = [
        ("kube_node_labels", _node_labels),
        ("kube_pod_labels", _pod_labels),
        ("kube_pod_container_resource_requests", _resource_requests),
        ("container_cpu_usage_seconds", _cpu_usage),
        ("container_memory_working_set_bytes", _working_set),
        ("dirsize_total_size_bytes", _directory_sizes),
    ]
    if spec.annotations:
        families.insert(2, ("kube_pod_annotations", _pod_annotations))
    with path.open("w", encoding="utf-8", newline="\n") as stream:
        writer = OpenMetricsWriter(stream)
        for name, write_family in families:
            progress(f"{cluster.name}: writing {name}")
            write_family(writer, spec, cluster)
        writer.finish()
    return writer


def _node_labels(writer: OpenMetricsWriter, spec: ScenarioSpec, cluster: Cluster) -> None:
    writer.family("kube_node_labels", "gauge", "Kubernetes labels converted to Prometheus labels.")
    times = range(spec.period_start_epoch, spec.period_end_epoch, spec.scrape_interval_seconds)
    for pool in cluster.pools:
        for node in pool.nodes:
            labels = [
                ("node", node),
                ("label_cloud_google_com_gke_nodepool", pool.name),
                ("label_node_kubernetes_io_instance_type", pool.machine.name),
            ]
            writer.constant_series("kube_node_labels", labels, "1", times)


def _pod_identity(pod: Pod) -> list[tuple[str, str]]:
    return [("namespace", pod.namespace), ("pod", pod.name), ("uid", pod.uid)]


def _pod_labels(writer: OpenMetricsWriter, spec: ScenarioSpec, cluster: Cluster) -> None:
    writer.family("kube_pod_labels", "gauge", "Kubernetes labels converted to Prometheus labels.")
    for pod in cluster_pods(spec, cluster):
        labels = [*_pod_identity(pod), ("label_component", pod.component), ("label_app", pod.app)]
        if pod.user is not None:
            labels.append(("label_hub_jupyter_org_username", pod.user.label_value))
        writer.constant_series(
            "kube_pod_labels", labels, "1", pod.sample_times(spec.scrape_interval_seconds)
        )


def _pod_annotations(writer: OpenMetricsWriter, spec: ScenarioSpec, cluster: Cluster) -> None:
    writer.family(
        "kube_pod_annotations", "gauge", "Kubernetes annotations converted to Prometheus labels."
    )
    for pod in cluster_pods(spec, cluster):
        labels = _pod_identity(pod)
        if pod.user is not None:
            labels.append(("annotation_hub_jupyter_org_username", pod.user.username))
        writer.constant_series(
            "kube_pod_annotations", labels, "1", pod.sample_times(spec.scrape_interval_seconds)
        )


def _resource_requests(writer: OpenMetricsWriter, spec: ScenarioSpec, cluster: Cluster) -> None:
    name = "kube_pod_container_resource_requests"
    writer.family(name, "gauge", "The number of requested request resource by a container.")
    for pod in cluster_pods(spec, cluster):
        times = pod.sample_times(spec.scrape_interval_seconds)
        identity = [*_pod_identity(pod), ("container", pod.container), ("node", pod.node)]
        memory = [*identity, ("resource", "memory"), ("unit", "byte")]
        writer.constant_series(name, memory, str(pod.memory_request_bytes), times)
        cpu = [*identity, ("resource", "cpu"), ("unit", "core")]
        writer.constant_series(
            name, cpu, plain(from_thousandths(pod.cpu_request_millicores)), times
        )
        if pod.gpu_request:
            gpu = [*identity, ("resource", "nvidia_com_gpu"), ("unit", "integer")]
            writer.constant_series(name, gpu, str(pod.gpu_request), times)


def _cadvisor_labels(pod: Pod) -> list[tuple[str, str]]:
    return [
        ("namespace", pod.namespace),
        ("pod", pod.name),
        ("container", pod.container),
        ("id", f"/kubepods/burstable/pod{pod.uid}/{pod.container_id}"),
        ("node", pod.node),
    ]


def _cpu_usage(writer: OpenMetricsWriter, spec: ScenarioSpec, cluster: Cluster) -> None:
    writer.family(
        "container_cpu_usage_seconds", "counter", "Cumulative cpu time consumed in seconds."
    )
    step = spec.scrape_interval_seconds
    for pod in cluster_pods(spec, cluster):
        times = pod.sample_times(step)
        values = map(thousandths_text, cpu_usage_millis(pod, len(times), step))
        writer.series_values(
            "container_cpu_usage_seconds_total", _cadvisor_labels(pod), times, values
        )


def _working_set(writer: OpenMetricsWriter, spec: ScenarioSpec, cluster: Cluster) -> None:
    writer.family("container_memory_working_set_bytes", "gauge", "Current working set in bytes.")
    for pod in cluster_pods(spec, cluster):
        times = pod.sample_times(spec.scrape_interval_seconds)
        values = working_set_bytes(pod, len(times))
        writer.series_values(
            "container_memory_working_set_bytes", _cadvisor_labels(pod), times, values
        )


def _directory_sizes(writer: OpenMetricsWriter, spec: ScenarioSpec, cluster: Cluster) -> None:
    name = "dirsize_total_size_bytes"
    writer.family(name, "gauge", "Total size of the directory, in bytes.")
    for hub in cluster.hubs:
        for user in hub.users:
            pods = user_pods(spec, cluster, hub, user)
            changes = home_directory_sizes(spec, cluster, hub, user, pods)
            labels = [("namespace", hub.namespace), ("directory", user.escaped)]
            writer.stretches(
                name, labels, ((t, str(s)) for t, s in constant_stretches(changes, spec))
            )
        shared = shared_directory_sizes(spec, cluster, hub)
        labels = [("namespace", hub.namespace), ("directory", SHARED_DIRECTORY)]
        writer.stretches(name, labels, ((t, str(s)) for t, s in constant_stretches(shared, spec)))
