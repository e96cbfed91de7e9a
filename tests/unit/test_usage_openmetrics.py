"""The OpenMetrics source: a file is read whole or refused with its file, line and column."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from app.errors import InputError
from app.usage.metering import meter
from app.usage.openmetrics import OpenMetricsUsageSource, read_openmetrics

T0 = 1_790_812_800  # 2026-10-01T00:00:00Z
DIRSIZE = 'dirsize_total_size_bytes{namespace="ocean",directory="alice"}'  # 61 characters
SERVER = (
    'kube_pod_labels{namespace="ocean",pod="jupyter-alice",uid="u1",'
    'label_component="singleuser-server",label_hub_jupyter_org_username="alice"}'
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "usage.om"
    path.write_text(text, encoding="utf-8")
    return path


def problem(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as caught:
        read_openmetrics(path)
    message = str(caught.value)
    assert message.startswith(str(path) + ":")
    return message.removeprefix(str(path))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"{DIRSIZE} 1 {T0}\n",
            ":2:1: expected '# EOF' as the last line (the file may have been cut short)",
        ),
        ("# EOF\nfoo 1 2\n", ":2:1: expected nothing after '# EOF', got 'foo 1 2'"),
        (f"{DIRSIZE} abc {T0}\n# EOF\n", ":1:63: value: expected a finite number, got 'abc'"),
        (f"{DIRSIZE} NaN {T0}\n# EOF\n", ":1:63: value: expected a finite number, got 'NaN'"),
        (
            f"{DIRSIZE} 1 {T0}\n{DIRSIZE} 1 17908x\n# EOF\n",
            ":2:65: timestamp: expected seconds since 1970, got '17908x'",
        ),
        (
            f"{DIRSIZE} 1 1790812800000\n# EOF\n",
            ":1:65: timestamp: expected seconds since 1970 (OpenMetrics; this looks like "
            "milliseconds), got '1790812800000'",
        ),
        (
            f"{DIRSIZE} 1\n# EOF\n",
            ":1:63: expected a value and a timestamp in seconds after the labels, got '1'",
        ),
        (
            'dirsize_total_size_bytes{namespace="a",directory="d 1 2\n# EOF\n',
            ":1:57: labels: expected '}' closing the labels",
        ),
        (
            'x{namespace="a",9dir="d"} 1 2\n# EOF\n',
            ":1:17: labels: expected a label name, got '9dir=\"d\"}'",
        ),
        (
            'x{namespace="a\\q"} 1 2\n# EOF\n',
            ':1:15: label value: expected an escape \\\\, \\" or \\n',
        ),
        ('x{namespace "a"} 1 2\n# EOF\n', ':1:12: namespace: expected an "=" and a quoted value'),
        (
            'x{namespace="a",namespace="b"} 1 2\n# EOF\n',
            ":1:17: namespace: expected each label once, got 'namespace'",
        ),
        ("9foo 1 2\n# EOF\n", ":1:1: metric name: expected a metric name, got '9foo'"),
        (
            "# a comment\n# EOF\n",
            ":1:1: expected '# HELP', '# TYPE', '# UNIT' or '# EOF', got '# a comment'",
        ),
        ('x{a="b"}1 2\n# EOF\n', ":1:9: expected a space and the sample value, got '1 2'"),
        # Series hubmeter does not use are still checked: garbage there means a broken export.
        ('kube_node_labels{node="n"} zz 2\n# EOF\n', ":1:28: value: expected a number, got 'zz'"),
    ],
)
def test_malformed_files_are_refused_where_they_go_wrong(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert problem(tmp_path, text) == expected


def test_a_result_hubmeter_cannot_meter_says_which_query_and_what_was_wrong(
    tmp_path: Path,
) -> None:
    # Well-formed OpenMetrics, but a series without the namespace every usage row needs.
    text = f'kube_pod_annotations{{pod="p",annotation_hub_jupyter_org_username="a"}} 1 {T0}\n'
    assert problem(tmp_path, text + "# EOF\n") == (
        ": username_annotations: expected a result with a namespace label, "
        "got \"{'pod': 'p', 'annotation_hub_jupyter_org_username': 'a'}\""
    )


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "usage.om"
    path.write_bytes(b"x 1 2\n\xff\xfe\n# EOF\n")
    with pytest.raises(InputError, match="expected UTF-8 text"):
        read_openmetrics(path)


def test_a_missing_file_is_reported_by_name(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"missing\.om: expected a readable OpenMetrics file"):
        read_openmetrics(tmp_path / "missing.om")


def test_metadata_escapes_exemplars_and_fractional_timestamps_are_understood(
    tmp_path: Path,
) -> None:
    text = "\n".join(
        [
            "# HELP kube_pod_labels Kubernetes labels converted to Prometheus labels.",
            "# TYPE kube_pod_labels gauge",
            "# UNIT kube_pod_labels",
            # A label value with an escaped quote, backslash and a '}' inside.
            'kube_pod_labels{namespace="ocean",pod="jupyter-x",uid="u",'
            'label_component="singleuser-server",label_hub_jupyter_org_username="x",'
            'label_note="a \\"quoted\\" \\\\ {brace}"} 1 1790812800.5',
            'kube_pod_annotations{namespace="ocean",pod="jupyter-x",uid="u",'
            'annotation_hub_jupyter_org_username="CORP\\\\jdoe"} 1 1790812800',
            'container_cpu_usage_seconds_total{namespace="ocean",pod="jupyter-x",'
            'container="notebook",id="c"} 12.5 1790812800 # {trace_id="t"} 1 1790812800',
            "",
            "# EOF",
        ]
    )
    result = meter(read_openmetrics(write(tmp_path, text)), scrape_interval_seconds=60)
    (row,) = result.rows
    assert row.username == "CORP\\jdoe"
    assert row.quantities.server_seconds == 60
    assert row.quantities.cpu_usage_core_seconds == Decimal("12.5")


def test_only_the_window_is_read(tmp_path: Path) -> None:
    lines = [f"{SERVER} 1 {T0 + minute * 60}" for minute in range(0, 180, 10)]
    path = write(tmp_path, "\n".join([*lines, "# EOF"]) + "\n")
    observations = read_openmetrics(path, first_hour=T0 + 3600, end_hour=T0 + 7200)
    assert observations.hours() == {T0 + 3600}
    assert sum(observations.server_samples.values()) == 6


def test_the_source_reports_progress_in_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, f"{SERVER} 1 {T0}\n# EOF\n")
    seen: list[tuple[int, int]] = []
    source = OpenMetricsUsageSource(path)
    source.fetch(
        first_hour=T0, end_hour=T0 + 3600, progress=lambda done, total: seen.append((done, total))
    )
    size = path.stat().st_size
    assert seen[-1] == (size, size)
    assert source.description == f"openmetrics {path}"
