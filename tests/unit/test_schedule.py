"""The schedule: when jobs run, and that the shipped CronJobs match it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

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


def test_every_cronjob_runs_a_scheduled_job_at_its_cadence() -> None:
    shipped = {}
    for document in yaml.safe_load_all(CRONJOBS.read_text()):
        container = document["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][:2] == ["jobs", "run"]
        shipped[container["args"][2]] = document["spec"]["schedule"]
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
