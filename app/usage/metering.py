"""The pure core of usage metering: query results in, hourly usage per namespace and user out.

Both sources (Prometheus and an OpenMetrics file) report what they evaluated through
`Observations.add`, which is where numbers are checked and rounded; `meter` then applies the
formulas. Nothing here reads the clock, the network or the database.

Formulas, with Δ the cluster's scrape interval and hour H = [h, h + 1h):

    server_seconds              = scrapes of the user's server pods in H * Δ
    memory_request_byte_seconds = Σ memory-request samples in H * Δ
    cpu_request_core_seconds    = Σ CPU-request samples in H * Δ
    gpu_request_seconds         = Σ GPU-request samples in H * Δ
    memory_usage_byte_seconds   = Σ working-set samples in H * Δ
    cpu_usage_core_seconds      = Σ over counter series (last sample in H - last sample before
                                  H, up to six hours back, or the last sample in H when there
                                  was none or the counter restarted)
    home_storage_byte_seconds   = round-half-even(mean of the directory's samples in H * 3600)

CPU figures are rounded to 1e-6 core-seconds (half-even): Prometheus adds them as binary
floats, so their last digits are noise; byte and sample counts are integers and exact.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any, NamedTuple

from app.errors import BadValue
from app.money import EXACT
from app.usage.queries import GPU_RESOURCES, Query
from app.usage.usernames import (
    KnownUsers,
    UsernameSource,
    home_directory_owner,
    resolve_pod_username,
)

SECONDS_PER_HOUR = 3600
CPU_RESOLUTION = Decimal("0.000001")  # core-seconds; see the module docstring
ZERO = Decimal(0)
FLOAT_MAX_EXPONENT = 308

PodId = tuple[str, str, str]  # namespace, pod, uid
PodHour = tuple[int, str, str, str]  # hour (epoch seconds), namespace, pod, uid
PodNameHour = tuple[int, str, str]  # hour, namespace, pod
DirectoryHour = tuple[int, str, str]  # hour, namespace, directory


def tidy(value: Decimal) -> Decimal:
    """`value` without trailing zeros or exponent, so integers stay integers when stored."""
    if value == value.to_integral_value():
        return Decimal(int(value))
    return value.normalize(EXACT)


def parse_sample_value(text: str) -> Decimal:
    """A sample value as Prometheus or an exporter writes it, exactly as written."""
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise BadValue(None, "a number", text) from exc
    # Prometheus and the exporters hold 64-bit floats; anything larger is garbage, and writing
    # it out in full (1e400000000) would take the process down.
    if not value.is_finite() or (value and value.adjusted() > FLOAT_MAX_EXPONENT):
        raise BadValue(None, "a finite number that fits a 64-bit float", text)
    return value


def round_cpu(value: Number) -> Decimal:
    """CPU cores and core-seconds at the stated resolution of 1e-6."""
    if isinstance(value, int):
        return Decimal(value)
    return tidy(value.quantize(CPU_RESOLUTION, rounding=ROUND_HALF_EVEN, context=EXACT))


def parse_number(text: str) -> Number:
    """`parse_sample_value`, with a fast path for the integers most samples and sums are."""
    if text.isdigit() and text.isascii():
        return int(text)
    return parse_sample_value(text)


FLOAT_EXACT_INTEGERS = 2**53  # every integer below this is exact in a float64


Number = int | Decimal  # exact either way: counts and byte sums stay int, which is faster


@dataclass
class Observations:
    """What a source saw in a window, hour by hour, per pod and per home directory.

    Hours are epoch seconds of the hour's start. Values are sums over samples (not yet times
    the scrape interval), except CPU usage, which is already core-seconds.
    """

    server_samples: dict[PodHour, int] = field(default_factory=dict)
    username_labels: dict[PodId, str] = field(default_factory=dict)
    username_annotations: dict[PodId, str] = field(default_factory=dict)
    requests: dict[tuple[int, str, str, str, str], Number] = field(default_factory=dict)
    memory_usage: dict[PodNameHour, Number] = field(default_factory=dict)
    cpu_usage: dict[PodNameHour, Decimal] = field(default_factory=dict)
    storage_sum: dict[DirectoryHour, Number] = field(default_factory=dict)
    storage_count: dict[DirectoryHour, int] = field(default_factory=dict)
    # Integer sums at or above 2**53 from Prometheus, whose float64 cannot hold them exactly.
    inexact_values: int = 0

    def add(self, query: Query, labels: Mapping[str, str], hour: int, value: Number) -> None:
        """Record one value of one query's result for the hour starting at `hour`."""
        if isinstance(value, Decimal) and not value.is_finite():
            raise BadValue(str(query), "a finite number", str(value))
        self.add_series(query, labels, ((hour, value),))

    def add_series(
        self, query: Query, labels: Mapping[str, str], points: Iterable[tuple[int, Number]]
    ) -> None:
        """Record one series of one query's result: (hour, value) points, values finite."""
        namespace = labels.get("namespace", "")
        if not namespace:
            raise BadValue(str(query), "a result with a namespace label", str(dict(labels)))
        pod = labels.get("pod", "")
        uid = labels.get("uid", "")
        if query is Query.server_samples:
            self.username_labels[(namespace, pod, uid)] = labels.get(
                "label_hub_jupyter_org_username", ""
            )
            samples = self.server_samples
            for hour, value in points:
                key = (hour, namespace, pod, uid)
                samples[key] = samples.get(key, 0) + _whole(query, value)
        elif query is Query.username_annotations:
            name = labels.get("annotation_hub_jupyter_org_username", "")
            if name:
                self.username_annotations[(namespace, pod, uid)] = name
        elif query is Query.requests:
            kind = _RESOURCE_KIND.get(labels.get("resource", ""))
            if kind is None:
                return
            requests = self.requests
            for hour, value in points:
                request_key = (hour, namespace, pod, uid, kind)
                requested = round_cpu(value) if kind == "cpu" else value
                requests[request_key] = requests.get(request_key, 0) + requested
        elif query is Query.memory_usage:
            for hour, value in points:
                self.memory_usage[(hour, namespace, pod)] = value
        elif query is Query.cpu_usage:
            for hour, value in points:
                self.cpu_usage[(hour, namespace, pod)] = round_cpu(value)
        elif query is Query.storage_sum:
            directory = labels.get("directory", "")
            for hour, value in points:
                self.storage_sum[(hour, namespace, directory)] = value
        elif query is Query.storage_count:
            directory = labels.get("directory", "")
            for hour, value in points:
                self.storage_count[(hour, namespace, directory)] = _whole(query, value)
        else:  # pragma: no cover - every Query member is handled above
            raise AssertionError(query)

    def hours(self) -> set[int]:
        """Every hour something was observed in."""
        seen: set[int] = set()
        for observed in (
            self.server_samples,
            self.requests,
            self.memory_usage,
            self.cpu_usage,
            self.storage_count,
        ):
            seen.update(key[0] for key in observed)
        return seen


_RESOURCE_KIND = {"memory": "memory", "cpu": "cpu", **dict.fromkeys(GPU_RESOURCES, "gpu")}


def _whole(query: Query, value: Number) -> int:
    if type(value) is int and value >= 0:
        return value
    if value != value.to_integral_value() or value < 0:  # type: ignore[union-attr]  # Decimal
        raise BadValue(str(query), "a count of samples", str(value))
    return int(value)


@dataclass(slots=True)
class Quantities:
    """Usage of one row, in exact base units."""

    server_seconds: Decimal = ZERO
    memory_request_byte_seconds: Decimal = ZERO
    cpu_request_core_seconds: Decimal = ZERO
    memory_usage_byte_seconds: Decimal = ZERO
    cpu_usage_core_seconds: Decimal = ZERO
    gpu_request_seconds: Decimal = ZERO
    home_storage_byte_seconds: Decimal = ZERO

    def add(self, other: Quantities) -> None:
        for name in QUANTITY_NAMES:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def is_zero(self) -> bool:
        return all(getattr(self, name) == 0 for name in QUANTITY_NAMES)

    def as_dict(self) -> dict[str, Decimal]:
        return {name: tidy(getattr(self, name)) for name in QUANTITY_NAMES}

    def values(self) -> tuple[Decimal, ...]:
        """The quantities in the order of QUANTITY_NAMES."""
        return (
            self.server_seconds,
            self.memory_request_byte_seconds,
            self.cpu_request_core_seconds,
            self.memory_usage_byte_seconds,
            self.cpu_usage_core_seconds,
            self.gpu_request_seconds,
            self.home_storage_byte_seconds,
        )


QUANTITY_NAMES = tuple(f.name for f in fields(Quantities))


class MeteredRow(NamedTuple):
    """Usage of one user of one namespace in one hour.

    `username` is None for bytes stored outside any user's home (a hub's `_shared` directory)
    and, after `aggregate_unmatched`, for all of a namespace no hub names. (A named tuple: a
    week of a thousand users is ~180,000 of them, and a frozen dataclass costs twice as much.)
    """

    namespace: str
    username: str | None
    hour: datetime
    quantities: Quantities


@dataclass
class MeteringNotes:
    """What a person should know about how the users were told apart."""

    usernames_by_source: dict[str, int] = field(default_factory=dict)
    # Labels cut at 63 characters with no annotation and no usable pod name: users sharing the
    # label's first 63 characters are counted as one.
    merged_truncated_labels: dict[str, list[str]] = field(default_factory=dict)
    # A pod name that resolved to two users in one hour (a custom pod name template).
    ambiguous_pod_names: list[str] = field(default_factory=list)
    # Directories that are no user's home (e.g. `_shared`): their bytes stay with the hub.
    hub_level_directories: dict[str, list[str]] = field(default_factory=dict)
    # More scrapes in an hour than the configured scrape interval allows.
    oversampled_pods: list[str] = field(default_factory=list)
    max_samples_per_pod_hour: int = 0

    inexact_values: int = 0

    def warnings(self, scrape_interval_seconds: int) -> list[str]:
        """Lines an operator should read after an ingest."""
        lines: list[str] = []
        if self.inexact_values:
            lines.append(
                f"{self.inexact_values} hourly sum(s) reached 2^53, beyond what Prometheus' "
                "64-bit floats hold exactly: their last digits may be off (shorten the scrape "
                "interval's sums by ingesting from an OpenMetrics export, which is exact)"
            )
        for namespace, labels in sorted(self.merged_truncated_labels.items()):
            lines.append(
                f"{namespace}: {len(labels)} username label(s) cut at 63 characters and no "
                "hub.jupyter.org/username annotation exported: users sharing a label's first "
                "63 characters are counted as one (export the annotation with kube-state-metrics "
                "--metric-annotations-allowlist=pods=[hub.jupyter.org/username])"
            )
        if self.ambiguous_pod_names:
            lines.append(
                f"{len(self.ambiguous_pod_names)} pod name(s) belonged to two users within one "
                f"hour; their cAdvisor usage went to one of them: {self.ambiguous_pod_names[:5]}"
            )
        if self.oversampled_pods:
            lines.append(
                f"up to {self.max_samples_per_pod_hour} scrapes of a pod in one hour, more than "
                f"a {scrape_interval_seconds}s scrape interval allows: check the cluster's "
                f"scrape_interval_seconds (e.g. {self.oversampled_pods[0]})"
            )
        return lines

    def as_stats(self) -> dict[str, Any]:
        return {
            "usernames_by_source": dict(sorted(self.usernames_by_source.items())),
            "merged_truncated_labels": {
                ns: sorted(labels) for ns, labels in sorted(self.merged_truncated_labels.items())
            },
            "ambiguous_pod_names": sorted(self.ambiguous_pod_names),
            "hub_level_directories": {
                ns: sorted(dirs) for ns, dirs in sorted(self.hub_level_directories.items())
            },
            "oversampled_pods": sorted(self.oversampled_pods)[:20],
            "inexact_values": self.inexact_values,
        }


@dataclass
class MeteringResult:
    rows: list[MeteredRow]
    notes: MeteringNotes


# Positions in a row's accumulator, in the order of QUANTITY_NAMES.
_SERVER, _MEMORY_REQUEST, _CPU_REQUEST, _MEMORY_USAGE, _CPU_USAGE, _GPU, _STORAGE = range(7)
_REQUEST_SLOT = {"memory": _MEMORY_REQUEST, "cpu": _CPU_REQUEST, "gpu": _GPU}


def meter(
    observations: Observations,
    *,
    scrape_interval_seconds: int,
    known_usernames: Mapping[str, Iterable[str]] | None = None,
) -> MeteringResult:
    """Hourly usage per (namespace, user) from what a source observed. `known_usernames`
    (namespace -> raw usernames, such as a hub's users so far) lets a slug that cannot be
    unescaped (KubeSpawner's safe scheme) find its user; the window's annotations count too."""
    step = scrape_interval_seconds
    notes = MeteringNotes(inexact_values=observations.inexact_values)
    known = _known_users(observations, known_usernames or {})
    usernames = _pod_usernames(observations, notes, known)
    # Home directories also find the users whose servers ran in this window.
    known = _known_users(observations, known_usernames or {}, usernames)
    # Plain lists of int or Decimal while adding up: a week of a thousand users is a few
    # hundred thousand rows, and this is most of the time metering takes.
    by_row: dict[tuple[str, str | None, int], list[Number]] = {}
    user_of_pod_name: dict[PodNameHour, str] = {}
    samples_allowed = SECONDS_PER_HOUR // scrape_interval_seconds

    def row_of(key: tuple[str, str | None, int]) -> list[Number]:
        row = by_row.get(key)
        if row is None:
            row = by_row[key] = [0, 0, 0, 0, 0, 0, 0]
        return row

    for (hour, namespace, pod, uid), count in observations.server_samples.items():
        username = usernames[(namespace, pod, uid)]
        row_of((namespace, username, hour))[_SERVER] += count * step
        if count > samples_allowed:
            notes.oversampled_pods.append(f"{namespace}/{pod}")
            notes.max_samples_per_pod_hour = max(notes.max_samples_per_pod_hour, count)
        earlier = user_of_pod_name.setdefault((hour, namespace, pod), username)
        if earlier != username:
            notes.ambiguous_pod_names.append(f"{namespace}/{pod}")

    for (hour, namespace, pod, uid, kind), total in observations.requests.items():
        pod_username = usernames.get((namespace, pod, uid))
        if pod_username is None:
            continue  # not a server pod in this hour (a source that did not filter)
        row_of((namespace, pod_username, hour))[_REQUEST_SLOT[kind]] += total * step

    for (hour, namespace, pod), total in observations.memory_usage.items():
        owner = user_of_pod_name.get((hour, namespace, pod))
        if owner is not None:
            row_of((namespace, owner, hour))[_MEMORY_USAGE] += total * step

    for (hour, namespace, pod), core_seconds in observations.cpu_usage.items():
        owner = user_of_pod_name.get((hour, namespace, pod))
        if owner is not None:
            row_of((namespace, owner, hour))[_CPU_USAGE] += core_seconds

    owners: dict[tuple[str, str], str | None] = {}
    for (hour, namespace, directory), count in observations.storage_count.items():
        if count <= 0:
            continue
        if (namespace, directory) not in owners:
            owners[(namespace, directory)] = home_directory_owner(directory, known.get(namespace))
            if owners[(namespace, directory)] is None:
                notes.hub_level_directories.setdefault(namespace, []).append(directory)
        total = observations.storage_sum.get((hour, namespace, directory), 0)
        row_of((namespace, owners[(namespace, directory)], hour))[_STORAGE] += _mean_times_hour(
            total, count
        )

    hours = {hour: datetime.fromtimestamp(hour, UTC) for _ns, _user, hour in by_row}
    rows = [
        MeteredRow(
            namespace,
            username,
            hours[hour],
            Quantities(*(Decimal(v) if type(v) is int else tidy(v) for v in values)),  # type: ignore[arg-type]
        )
        for (namespace, username, hour), values in by_row.items()
        if any(values)
    ]
    rows.sort(key=lambda r: (r.namespace, r.username or "", r.username is not None, r.hour))
    return MeteringResult(rows=rows, notes=notes)


def _mean_times_hour(total: Number, count: int) -> int:
    """round-half-even(total / count * 3600), exactly."""
    if isinstance(total, int):
        quotient, remainder = divmod(total * SECONDS_PER_HOUR, count)
        twice = 2 * remainder
        if twice > count or (twice == count and quotient % 2):
            quotient += 1
        return quotient
    with localcontext(EXACT):
        return int((total * SECONDS_PER_HOUR / count).to_integral_value(ROUND_HALF_EVEN))


def _known_users(
    observations: Observations,
    known_usernames: Mapping[str, Iterable[str]],
    pod_usernames: Mapping[PodId, str] | None = None,
) -> dict[str, KnownUsers]:
    """Per namespace, the usernames known before the window, those its annotations name, and
    (once resolved) those of its server pods."""
    names: dict[str, set[str]] = defaultdict(set)
    for namespace, usernames in known_usernames.items():
        names[namespace].update(usernames)
    for (namespace, _pod, _uid), username in observations.username_annotations.items():
        names[namespace].add(username)
    for (namespace, _pod, _uid), username in (pod_usernames or {}).items():
        names[namespace].add(username)
    return {namespace: KnownUsers(usernames) for namespace, usernames in names.items()}


def _pod_usernames(
    observations: Observations, notes: MeteringNotes, known: Mapping[str, KnownUsers]
) -> dict[PodId, str]:
    usernames: dict[PodId, str] = {}
    pods_by_truncated_label: dict[tuple[str, str], set[str]] = defaultdict(set)
    for pod_id, label in observations.username_labels.items():
        namespace, pod, _uid = pod_id
        resolved = resolve_pod_username(
            annotation=observations.username_annotations.get(pod_id),
            label=label,
            pod=pod,
            known=known.get(namespace),
        )
        usernames[pod_id] = resolved.username
        source = resolved.source.value
        notes.usernames_by_source[source] = notes.usernames_by_source.get(source, 0) + 1
        if resolved.source is UsernameSource.truncated_label:
            pods_by_truncated_label[(namespace, label)].add(pod)
    for (namespace, label), pods in sorted(pods_by_truncated_label.items()):
        notes.merged_truncated_labels.setdefault(namespace, []).append(
            f"{label} ({len(pods)} pod name(s))"
        )
    return usernames


@dataclass
class NamespaceSummary:
    """What a namespace that matches no configured hub used in the window."""

    rows: int = 0
    users: int = 0
    quantities: Quantities = field(default_factory=Quantities)


def aggregate_unmatched(
    rows: Iterable[MeteredRow], hub_namespaces: set[str]
) -> tuple[list[MeteredRow], dict[str, NamespaceSummary]]:
    """Rows of configured hubs as they are; rows of other namespaces summed per namespace and
    hour (their users are not the operator's to know), with a summary of each."""
    kept: list[MeteredRow] = []
    merged: dict[tuple[str, datetime], Quantities] = defaultdict(Quantities)
    users: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.namespace in hub_namespaces:
            kept.append(row)
            continue
        merged[(row.namespace, row.hour)].add(row.quantities)
        if row.username is not None:
            users[row.namespace].add(row.username)
    summaries: dict[str, NamespaceSummary] = {}
    for (namespace, hour), quantities in sorted(merged.items()):
        kept.append(MeteredRow(namespace, None, hour, quantities))
        summary = summaries.setdefault(namespace, NamespaceSummary())
        summary.rows += 1
        summary.quantities.add(quantities)
    for namespace, summary in summaries.items():
        summary.users = len(users[namespace])
    return kept, summaries
