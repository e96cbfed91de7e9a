"""The schedule: when jobs run, that the shipped CronJobs match it, and that one failing part of
a scheduled job does not stop the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from jobs.schedule import SCHEDULE, Cadence, job_named

CRONJOBS = Path(__file__).parents[2] / "deploy" / "kubernetes" / "cronjobs.yaml"


@pytest.mark.parametrize(
    ("cadence", "now", "expected"),
    [
        (Cadence(minute=7), "2026-10-01T10:06:59", "2026-10-01T10:07:00"),
        (Cadence(minute=7), "2026-10-01T10:07:00", "2026-10-01T11:07:00"),
        (Cadence(minute=23, every_hours=6), "2026-10-01T06:30:00", "2026-10-01T12:23:00"),
        (Cadence(minute=31, every_hours=24), "2026-10-31T23:59:00", "2026-11-01T00:31:00"),
    ],
)
def test_the_next_run_time(cadence: Cadence, now: str, expected: str) -> None:
    moment = datetime.fromisoformat(now).replace(tzinfo=UTC)
    assert cadence.next_after(moment) == datetime.fromisoformat(expected).replace(tzinfo=UTC)


def test_the_next_run_time_counts_utc_hours_whatever_the_clock_says() -> None:
    # 08:30 at UTC+2 is 06:30 UTC: every six hours from midnight UTC, the next is 12:23 UTC.
    moment = datetime.fromisoformat("2026-10-01T08:30:00+02:00")
    assert Cadence(minute=23, every_hours=6).next_after(moment) == datetime(
        2026, 10, 1, 12, 23, tzinfo=UTC
    )
    # 10:50 at UTC+5:30 is 05:20 UTC: the next 7 minutes past a UTC hour is 06:07 UTC.
    india = datetime.fromisoformat("2026-10-01T10:50:00+05:30")
    assert Cadence(minute=7).next_after(india) == datetime(2026, 10, 1, 6, 7, tzinfo=UTC)


def test_every_cronjob_runs_a_scheduled_job_at_its_cadence() -> None:
    shipped = {}
    for document in yaml.safe_load_all(CRONJOBS.read_text()):
        container = document["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][:2] == ["jobs", "run"]
        shipped[container["args"][2]] = document["spec"]["schedule"]
        # Without it Kubernetes reads the schedule in the controller manager's local time.
        assert document["spec"]["timeZone"] == "Etc/UTC"
    assert set(shipped) == {job.name for job in SCHEDULE}
    for name, cron in shipped.items():
        minute, hour, *_ = cron.split()
        cadence = job_named(name).cadence
        assert int(minute) == cadence.minute
        every = 1 if hour == "*" else 24 if hour.isdigit() else int(hour.removeprefix("*/"))
        assert every == cadence.every_hours


def test_an_unknown_job_is_named_with_the_known_ones() -> None:
    with pytest.raises(KeyError, match="ingest-usage"):
        job_named("ingest-usage-typo")


def test_every_export_and_estimate_runs_though_one_fails_and_all_failures_are_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.config import HubmeterConfig
    from jobs import ingest_costs as cost_jobs
    from jobs.schedule import JobError, ingest_costs

    config = HubmeterConfig.model_validate(
        {
            "clusters": [
                {"name": name, "provider": "gcp", "costs": {"estimate_skus": {"cpu": "CP-1"}}}
                for name in ("east", "west")
            ],
            "communities": [
                {"id": "lab", "name": "Lab", "billing_email": "a@b.org", "plan": "cost-recovery"}
            ],
            "hubs": [{"name": "lab-hub", "cluster": "east", "community": "lab"}],
            "ingestion": {
                "bigquery_exports": [
                    {"table": f"billing-project.export.{name}"} for name in ("one", "two", "three")
                ]
            },
        }
    )
    called: list[str] = []

    def pull(runtime: Any, *, table: str, billing_project: str | None) -> Any:
        called.append(table)
        if table.endswith(".one"):
            raise RuntimeError("403 Access Denied")
        return SimpleNamespace(rows_written=10)

    def estimate(runtime: Any, *, cluster: str, skus: dict[Any, str]) -> Any:
        called.append(cluster)
        if cluster == "west":
            raise LookupError("no SKU 'CP-1' in the price book")
        return SimpleNamespace(rows_written=5)

    monkeypatch.setattr(cost_jobs, "ingest_gcp_bigquery", pull)
    monkeypatch.setattr(cost_jobs, "estimate_costs", estimate)
    with pytest.raises(JobError) as raised:
        ingest_costs(SimpleNamespace(config=config))  # type: ignore[arg-type]
    assert called == [
        "billing-project.export.one",
        "billing-project.export.two",
        "billing-project.export.three",
        "east",
        "west",
    ]
    assert str(raised.value) == (
        "costs not ingested for billing-project.export.one (403 Access Denied); "
        "estimates for west (no SKU 'CP-1' in the price book) "
        "(done: billing-project.export.two: 10 lines; billing-project.export.three: 10 lines; "
        "estimates for east: 5 lines)"
    )


def test_each_export_is_a_job_of_its_own_whose_name_fits_the_job_run() -> None:
    from jobs.ingest_costs import JOB_NAME_MAX_LENGTH, export_job_name

    table = "billing-project.billing_export.gcp_billing_export_v1_01ABCD_234567_89EF01"
    assert export_job_name(table) == f"ingest_costs:{table}"
    long_dataset = "billing-project." + "d" * 200 + ".gcp_billing_export_v1_01ABCD_234567_89EF0"
    names = {export_job_name(long_dataset + end) for end in ("1", "2")}
    assert len(names) == 2
    assert all(len(name) == JOB_NAME_MAX_LENGTH for name in names)
    assert all(name.startswith("ingest_costs:billing-project.ddd") for name in names)
