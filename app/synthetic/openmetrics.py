"""Writing OpenMetrics text: family headers, escaped labels, one series at a time.

The layout follows what `promtool tsdb create-blocks-from openmetrics` and the prometheus_client
parser expect: each family once and contiguous, each series contiguous and in time order,
timestamps in seconds, `# EOF` at the end.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, TextIO

Labels = Sequence[tuple[str, str]]


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_labels(labels: Labels) -> str:
    return ",".join(f'{name}="{escape_label_value(value)}"' for name, value in labels)


class OpenMetricsWriter:
    """Streams families and series to a text file and counts what it wrote."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._families: set[str] = set()
        self._family: str | None = None
        self.series = 0
        self.samples = 0

    def family(self, name: str, kind: Literal["gauge", "counter"], help_text: str) -> None:
        if name in self._families:
            raise ValueError(f"metric family {name} written twice: families must be contiguous")
        self._families.add(name)
        self._family = name
        self._stream.write(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")

    def constant_series(self, sample_name: str, labels: Labels, value: str, times: range) -> None:
        """A series whose value does not change, sampled at `times`."""
        head = f"{self._sample_prefix(sample_name, labels)} {value} "
        self._stream.write("".join([f"{head}{t}\n" for t in times]))
        self.series += 1
        self.samples += len(times)

    def series_values(
        self, sample_name: str, labels: Labels, times: range, values: Iterable[object]
    ) -> None:
        """A series with one value per time; the values are written with str()."""
        head = self._sample_prefix(sample_name, labels) + " "
        self._stream.write(
            "".join([f"{head}{v} {t}\n" for t, v in zip(times, values, strict=True)])
        )
        self.series += 1
        self.samples += len(times)

    def stretches(
        self, sample_name: str, labels: Labels, stretches: Iterable[tuple[range, str]]
    ) -> None:
        """One series made of stretches of equal values, for slowly changing gauges."""
        head = self._sample_prefix(sample_name, labels) + " "
        count = 0
        for times, value in stretches:
            start = f"{head}{value} "
            self._stream.write("".join([f"{start}{t}\n" for t in times]))
            count += len(times)
        self.series += 1
        self.samples += count

    def finish(self) -> None:
        self._stream.write("# EOF\n")

    def _sample_prefix(self, sample_name: str, labels: Labels) -> str:
        if self._family is None or not sample_name.startswith(self._family):
            raise ValueError(f"sample {sample_name} written outside its family")
        return f"{sample_name}{{{render_labels(labels)}}}"
