"""The offline usage source: the same series as Prometheus holds, from an OpenMetrics file.

The file is read once, streaming, and each series the queries use is reduced to per-hour sums,
counts and last values as it goes; then the queries of `app.usage.queries` are evaluated on those
in Python, with the same label matching and aggregation as PromQL, and reported through
`Observations.add` like the Prometheus source. Same data, same rows.

It parses the subset of OpenMetrics that kube-state-metrics, cAdvisor and the dirsize exporter
produce (and `promtool tsdb create-blocks-from openmetrics` reads): `# HELP/TYPE/UNIT` lines,
samples `name{label="value",...} value timestamp` with the timestamp in seconds, and `# EOF`.
Anything else is refused with its file, line and column, and nothing of the file is used.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from pathlib import Path
from typing import TextIO

from app.errors import BadValue, InputError, InputProblem
from app.usage.metering import Observations, parse_sample_value
from app.usage.queries import CPU_LOOKBACK_HOURS, RESOURCES, Query
from app.usage.sources import Progress

MS_PER_HOUR = 3_600_000
LATEST_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z: later is a timestamp in the wrong unit
PROGRESS_EVERY_LINES = 200_000


# How a series is reduced while reading.
_COUNT = 1  # samples per hour
_SUM = 2  # sum and count of values per hour
_LAST = 3  # last value per hour (and the hour before the window, for counter increases)

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(slots=True)
class _Series:
    """One series of a metric the queries use, and its per-hour reduction."""

    metric: str
    labels: dict[str, str]
    reduce: int
    counts: dict[int, int] = field(default_factory=dict)
    sums: dict[int, int | Decimal] = field(default_factory=dict)
    last: dict[int, tuple[int, int | Decimal]] = field(default_factory=dict)


def _reduction(metric: str, labels: dict[str, str]) -> int | None:
    """How a series is kept, or None when no query selects it (mirrors the PromQL selectors)."""
    if metric == "kube_pod_labels":
        return _COUNT if labels.get("label_component") == "singleuser-server" else None
    if metric == "kube_pod_annotations":
        return _COUNT if labels.get("annotation_hub_jupyter_org_username") else None
    if metric == "kube_pod_container_resource_requests":
        return _SUM if labels.get("resource") in RESOURCES else None
    if metric in ("container_memory_working_set_bytes", "container_cpu_usage_seconds_total"):
        if labels.get("container", "") in ("", "POD"):
            return None
        return _SUM if metric == "container_memory_working_set_bytes" else _LAST
    if metric == "dirsize_total_size_bytes":
        return _SUM if labels.get("namespace") else None
    return None


class OpenMetricsUsageSource:
    """Observes a cluster's usage from an OpenMetrics export of its Prometheus series."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def description(self) -> str:
        return f"openmetrics {self.path}"

    def fetch(self, *, first_hour: int, end_hour: int, progress: Progress | None) -> Observations:
        return read_openmetrics(
            self.path, first_hour=first_hour, end_hour=end_hour, progress=progress
        )

    def fetch_everything(self, *, progress: Progress | None) -> Observations:
        """Every hour the file holds (for an offline import without a window)."""
        return read_openmetrics(self.path, progress=progress)


def read_openmetrics(
    path: Path,
    *,
    first_hour: int | None = None,
    end_hour: int | None = None,
    progress: Progress | None = None,
) -> Observations:
    """Observations for the hours `[first_hour, end_hour)` (epoch seconds; None: unbounded)."""
    source = str(path)
    try:
        total_bytes = path.stat().st_size
        stream = path.open(encoding="utf-8", newline="\n")
    except OSError as exc:
        raise InputError(
            InputProblem(source, None, None, None, "a readable OpenMetrics file", exc.strerror)
        ) from exc
    with stream:
        try:
            series = _read_series(stream, source, first_hour, end_hour, total_bytes, progress)
        except UnicodeDecodeError as exc:
            raise InputError(
                InputProblem(source, None, None, None, "UTF-8 text", f"byte {exc.start}")
            ) from exc
    observations = Observations()
    try:
        _evaluate(series, observations, first_hour, end_hour)
    except BadValue as exc:
        raise InputError(exc.at(source, None)) from exc
    return observations


def _read_series(
    stream: TextIO,
    source: str,
    first_hour: int | None,
    end_hour: int | None,
    total_bytes: int,
    progress: Progress | None,
) -> list[_Series]:
    """Every selected series, reduced per hour. The hot loop: one pass, little work per line."""
    # Hours as millisecond bounds; counters also keep the hour before the window.
    low_ms = (first_hour - 3600) * 1000 if first_hour is not None else -(1 << 62)
    window_low_ms = first_hour * 1000 if first_hour is not None else -(1 << 62)
    high_ms = end_hour * 1000 if end_hour is not None else 1 << 62
    known: dict[str, _Series | None] = {}
    selected: list[_Series] = []
    prefix = "\0"  # the text before the value of the previous line's series, plus a space
    current: _Series | None = None
    seen_eof = False
    bytes_read = 0
    line_number = 0
    for line_number, line in enumerate(stream, start=1):
        bytes_read += len(line)
        if line_number % PROGRESS_EVERY_LINES == 0 and progress is not None:
            progress(bytes_read, total_bytes)
        if seen_eof:
            raise _input_error(
                source, line_number, 1, None, "nothing after '# EOF'", line.rstrip("\r\n")[:40]
            )
        if line.startswith(prefix):
            rest = line[len(prefix) :]
        else:
            if line.startswith("#"):
                seen_eof = _comment(line, source, line_number)
                prefix = "\0"
                continue
            if not line.strip():
                continue
            try:
                series_text, rest = _split_series(line)
            except BadValue as problem:
                raise InputError(problem.at(source, line_number)) from None
            if series_text not in known:
                try:
                    metric, labels = _parse_series(series_text)
                except BadValue as problem:
                    raise InputError(problem.at(source, line_number)) from None
                reduce = _reduction(metric, labels)
                found = _Series(metric, labels, reduce) if reduce is not None else None
                known[series_text] = found
                if found is not None:
                    selected.append(found)
            current = known[series_text]
            prefix = series_text + " "
            rest = rest[1:]
        parts = rest.split()
        if len(parts) < 2 or (len(parts) > 2 and parts[2] != "#"):
            raise _input_error(
                source,
                line_number,
                len(prefix) + 1,
                None,
                "a value and a timestamp in seconds after the labels",
                rest.strip(),
            )
        value_text, time_text = parts[0], parts[1]
        try:
            ms = int(time_text) * 1000
        except ValueError:
            ms = _milliseconds(time_text, source, line_number, len(prefix) + len(value_text) + 2)
        if ms > LATEST_MS:
            raise _input_error(
                source,
                line_number,
                len(prefix) + len(value_text) + 2,
                "timestamp",
                "seconds since 1970 (OpenMetrics; this looks like milliseconds)",
                time_text,
            )
        reduce = current.reduce if current is not None else _COUNT
        if reduce == _COUNT:
            # The value is not used, but a file with garbage in it is not a file to trust.
            try:
                float(value_text)
            except ValueError:
                raise _input_error(
                    source, line_number, len(prefix) + 1, "value", "a number", value_text
                ) from None
            if current is not None and window_low_ms <= ms < high_ms:
                hour = ms // MS_PER_HOUR * 3600
                current.counts[hour] = current.counts.get(hour, 0) + 1
            continue
        assert current is not None
        if ms < low_ms or ms >= high_ms:
            continue
        try:
            value: int | Decimal = int(value_text)
        except ValueError:
            try:
                value = parse_sample_value(value_text)
            except BadValue:
                raise _input_error(
                    source, line_number, len(prefix) + 1, "value", "a finite number", value_text
                ) from None
        hour = ms // MS_PER_HOUR * 3600
        if reduce == _SUM:
            if ms >= window_low_ms:
                current.sums[hour] = current.sums.get(hour, 0) + value
                current.counts[hour] = current.counts.get(hour, 0) + 1
        else:
            last = current.last.get(hour)
            if last is None or ms >= last[0]:
                current.last[hour] = (ms, value)
    if not seen_eof:
        raise _input_error(
            source,
            line_number + 1,
            1,
            None,
            "'# EOF' as the last line (the file may have been cut short)",
            None,
        )
    if progress is not None:
        progress(total_bytes, total_bytes)
    return selected


def _comment(line: str, source: str, line_number: int) -> bool:
    """True for `# EOF`; other comments are metadata the queries do not need."""
    text = line.rstrip("\r\n")
    if text == "# EOF":
        return True
    if text.startswith(("# HELP ", "# TYPE ", "# UNIT ")) or text == "#":
        return False
    raise _input_error(
        source, line_number, 1, None, "'# HELP', '# TYPE', '# UNIT' or '# EOF'", text[:40]
    )


def _split_series(line: str) -> tuple[str, str]:
    """(series text, the rest of the line starting with its separating space)."""
    name = _METRIC_NAME.match(line)
    if name is None:
        raise BadValue("metric name", "a metric name", line.split(" ", 1)[0][:40], column=1)
    position = name.end()
    if position < len(line) and line[position] == "{":
        position = _skip_labels(line, position)
    if position >= len(line) or line[position] not in " \t":
        got = line[position:].rstrip("\r\n")[:20]
        raise BadValue(None, "a space and the sample value", got, column=position + 1)
    return line[:position], line[position:]


def _skip_labels(line: str, position: int) -> int:
    """The position just past the `}` closing the label set that opens at `position`."""
    in_value = False
    index = position + 1
    length = len(line)
    while index < length:
        char = line[index]
        if in_value:
            if char == "\\":
                index += 1
            elif char == '"':
                in_value = False
        elif char == '"':
            in_value = True
        elif char == "}":
            return index + 1
        elif char == "\n":
            break
        index += 1
    raise BadValue("labels", "'}' closing the labels", column=index + 1)


def _parse_series(text: str) -> tuple[str, dict[str, str]]:
    name_match = _METRIC_NAME.match(text)
    assert name_match is not None  # _split_series checked it
    labels: dict[str, str] = {}
    position = name_match.end()
    if position == len(text):
        return text, labels
    position += 1  # past "{"
    while True:
        if text[position] == "}":
            break
        label = _LABEL_NAME.match(text, position)
        label_column = position + 1
        if label is None:
            raise BadValue(
                "labels", "a label name", text[position : position + 20], column=position + 1
            )
        position = label.end()
        if text[position : position + 2] != '="':
            raise BadValue(label.group(), 'an "=" and a quoted value', column=position + 1)
        value, position = _label_value(text, position + 2)
        if label.group() in labels:
            raise BadValue(label.group(), "each label once", label.group(), column=label_column)
        labels[label.group()] = value
        if text[position] == ",":
            position += 1
        elif text[position] != "}":
            raise BadValue(
                "labels", "',' or '}' after a label", text[position], column=position + 1
            )
    return name_match.group(), labels


def _label_value(text: str, position: int) -> tuple[str, int]:
    """The unescaped value starting at `position` and the position after its closing quote."""
    out: list[str] = []
    start = position
    while True:
        char = text[position]
        if char == '"':
            return "".join(out), position + 1
        if char == "\\":
            escaped = _ESCAPES.get(text[position + 1])
            if escaped is None:
                raise BadValue("label value", r"an escape \\, \" or \n", column=position + 1)
            out.append(escaped)
            position += 2
            continue
        out.append(char)
        position += 1
        if position - start > 100_000:
            raise BadValue("label value", "a label value shorter than 100000", column=start)


def _milliseconds(text: str, source: str, line_number: int, column: int) -> int:
    try:
        seconds = Decimal(text)
    except InvalidOperation:
        seconds = Decimal("NaN")
    if not seconds.is_finite():
        raise _input_error(source, line_number, column, "timestamp", "seconds since 1970", text)
    return int((seconds * 1000).to_integral_value(ROUND_FLOOR))


def _input_error(
    source: str, line: int, column: int, field_name: str | None, expected: str, got: str | None
) -> InputError:
    return InputError(InputProblem(source, line, column, field_name, expected, got))


# --- the queries, evaluated on the reduced series ------------------------------------------


def _evaluate(
    series: list[_Series],
    observations: Observations,
    first_hour: int | None,
    end_hour: int | None,
) -> None:
    """Each query of app.usage.queries, as PromQL would evaluate it on the same samples."""

    def in_window(hour: int) -> bool:
        return (first_hour is None or hour >= first_hour) and (end_hour is None or hour < end_hour)

    by_metric: dict[str, list[_Series]] = defaultdict(list)
    for item in series:
        by_metric[item.metric].append(item)

    # server_samples: max by (namespace, pod, uid, label_...) (count_over_time(...))
    server_counts: dict[tuple[int, str, str, str, str], int] = {}
    server_pods: set[tuple[int, str, str, str]] = set()
    server_pod_names: set[tuple[int, str, str]] = set()
    for item in by_metric["kube_pod_labels"]:
        namespace, pod, uid = _pod_identity(item.labels)
        label = item.labels.get("label_hub_jupyter_org_username", "")
        for hour, count in item.counts.items():
            key = (hour, namespace, pod, uid, label)
            server_counts[key] = max(server_counts.get(key, 0), count)
            server_pods.add((hour, namespace, pod, uid))
            server_pod_names.add((hour, namespace, pod))
    for (hour, namespace, pod, uid, label), count in sorted(server_counts.items()):
        labels = {"namespace": namespace, "pod": pod, "uid": uid}
        labels["label_hub_jupyter_org_username"] = label
        observations.add(Query.server_samples, labels, hour, Decimal(count))

    for item in by_metric["kube_pod_annotations"]:
        if item.counts:
            hour = min(item.counts)
            observations.add(Query.username_annotations, item.labels, hour, Decimal(1))

    # requests: sum by (namespace, pod, uid, resource) (max by (..., container, resource)
    #           (sum_over_time(...))) and on (namespace, pod, uid) <server in the hour>
    per_container: dict[tuple[int, str, str, str, str, str], int | Decimal] = {}
    for item in by_metric["kube_pod_container_resource_requests"]:
        namespace, pod, uid = _pod_identity(item.labels)
        container = item.labels.get("container", "")
        resource = item.labels.get("resource", "")
        for hour, total in item.sums.items():
            container_key = (hour, namespace, pod, uid, container, resource)
            earlier = per_container.get(container_key)
            per_container[container_key] = total if earlier is None else max(earlier, total)
    per_pod: dict[tuple[int, str, str, str, str], int | Decimal] = defaultdict(int)
    for (hour, namespace, pod, uid, _container, resource), total in per_container.items():
        per_pod[(hour, namespace, pod, uid, resource)] += total
    for (hour, namespace, pod, uid, resource), total in sorted(per_pod.items()):
        if (hour, namespace, pod, uid) in server_pods:
            labels = {"namespace": namespace, "pod": pod, "uid": uid, "resource": resource}
            observations.add(Query.requests, labels, hour, Decimal(total))

    # memory_usage: sum by (namespace, pod) (sum_over_time(...)) and on (namespace, pod) ...
    memory: dict[tuple[int, str, str], int | Decimal] = defaultdict(int)
    for item in by_metric["container_memory_working_set_bytes"]:
        namespace, pod, _uid = _pod_identity(item.labels)
        for hour, total in item.sums.items():
            memory[(hour, namespace, pod)] += total
    for (hour, namespace, pod), total in sorted(memory.items()):
        if (hour, namespace, pod) in server_pod_names:
            labels = {"namespace": namespace, "pod": pod}
            observations.add(Query.memory_usage, labels, hour, Decimal(total))

    # cpu_usage: per series, last in the hour minus the last value in the CPU_LOOKBACK_HOURS
    # before it (when not negative), else last in the hour; sum by (namespace, pod); and on
    # (namespace, pod) ...
    cpu: dict[tuple[int, str, str], int | Decimal] = defaultdict(int)
    for item in by_metric["container_cpu_usage_seconds_total"]:
        namespace, pod, _uid = _pod_identity(item.labels)
        for hour, (_ms, last) in item.last.items():
            if not in_window(hour):
                continue
            before = None
            for back in range(1, CPU_LOOKBACK_HOURS + 1):
                before = item.last.get(hour - 3600 * back)
                if before is not None:
                    break
            used = last - before[1] if before is not None and last - before[1] >= 0 else last
            cpu[(hour, namespace, pod)] += used
    for (hour, namespace, pod), total in sorted(cpu.items()):
        if (hour, namespace, pod) in server_pod_names:
            labels = {"namespace": namespace, "pod": pod}
            observations.add(Query.cpu_usage, labels, hour, Decimal(total))

    # storage_sum / storage_count: sum by (namespace, directory) (sum|count_over_time(...))
    storage_sums: dict[tuple[int, str, str], int | Decimal] = defaultdict(int)
    storage_counts: dict[tuple[int, str, str], int] = defaultdict(int)
    for item in by_metric["dirsize_total_size_bytes"]:
        namespace = item.labels.get("namespace", "")
        directory = item.labels.get("directory", "")
        for hour, total in item.sums.items():
            storage_sums[(hour, namespace, directory)] += total
            storage_counts[(hour, namespace, directory)] += item.counts[hour]
    for (hour, namespace, directory), total in sorted(storage_sums.items()):
        labels = {"namespace": namespace, "directory": directory}
        observations.add(Query.storage_sum, labels, hour, Decimal(total))
        count = storage_counts[(hour, namespace, directory)]
        observations.add(Query.storage_count, labels, hour, Decimal(count))


def _pod_identity(labels: dict[str, str]) -> tuple[str, str, str]:
    return labels.get("namespace", ""), labels.get("pod", ""), labels.get("uid", "")
