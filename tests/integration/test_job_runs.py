"""One run of a job at a time across processes, dead runs found and closed, SIGTERM recorded:
on SQLite and PostgreSQL, with real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app import migrate
from app.clock import utcnow
from app.config import Settings
from app.ingestion.service import source_lock_key
from app.runtime import Runtime
from app.scheduling.models import JobRun, JobStatus
from jobs.runner import LOCK_KIND, JobSkipped, job_lock_path, run_job

JOB = "ingest_usage:atlantic"
GIVE_UP_AFTER_SECONDS = 60  # only so that a broken test fails instead of hanging
# Another process's run of the job: it holds the job's file lock and keeps working.
HOLD_LOCK = """
import fcntl, sys, time
handle = open(sys.argv[1], "a")
fcntl.flock(handle, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(60)
"""
# A job whose work writes a row, says it has started, and then takes its time.
SLOW_JOB = """
import sys, time
from pathlib import Path
from sqlalchemy import text
from app.config import Settings
from app.db import make_engine
from app.runtime import Runtime
from jobs.runner import run_job

url, started, job = sys.argv[1:4]

def work(session):
    session.execute(text(
        "INSERT INTO community (id, name, billing_email, currency, plan, active, updated_at) "
        "VALUES ('x', 'X', 'x@x.org', 'USD', 'p', true, '2026-01-01')"
    ))
    session.flush()
    Path(started).touch()
    time.sleep(60)

run_job(Runtime(settings=Settings(), _engine=make_engine(url)), job, work)
"""


@pytest.fixture
def runtime(fresh_engine: Engine) -> Runtime:
    migrate.upgrade(fresh_engine)
    return Runtime(settings=Settings(), _engine=fresh_engine)


def runs(engine: Engine) -> list[tuple[str, str | None]]:
    with Session(engine) as session:
        return [
            (run.status, run.error) for run in session.scalars(select(JobRun).order_by(JobRun.id))
        ]


def running_row(engine: Engine, pid: int) -> int:
    """A run another process is (or was) working on."""
    with Session(engine) as session:
        run = JobRun(
            job_name=JOB,
            started_at=utcnow() - timedelta(minutes=5),
            status=JobStatus.running,
            detail={"host": socket.gethostname(), "pid": pid},
        )
        session.add(run)
        session.commit()
        return run.id


def test_a_job_another_live_process_runs_is_skipped_and_a_dead_ones_run_is_closed(
    runtime: Runtime, db_kind: str
) -> None:
    engine = runtime.engine
    # The other process holds the job's lock while it works: a file lock beside a SQLite
    # database, an advisory lock on PostgreSQL (taken here on its behalf).
    database = Path(engine.url.database or "")
    lock = str(job_lock_path(database, JOB)) if db_kind == "sqlite" else os.devnull
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, lock], stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout is not None
        assert other.stdout.readline().strip() == "locked"
        running_row(engine, other.pid)
        if db_kind == "postgresql":
            holder = engine.connect()
            holder.scalar(select(func.pg_advisory_lock(source_lock_key(LOCK_KIND, JOB))))
            holder.commit()
        with pytest.raises(JobSkipped, match="already running"):
            run_job(runtime, JOB, lambda session: "done")
        assert runs(engine) == [("running", None)]  # nothing recorded for the skipped run
    finally:
        other.kill()
        other.wait()
        if other.stdout is not None:
            other.stdout.close()
        if db_kind == "postgresql":
            holder.invalidate()  # the process is gone: so is its connection, and its lock
            holder.close()

    assert run_job(runtime, JOB, lambda session: "done") == "done"
    (first_status, first_error), second = runs(engine)
    assert first_status == "failed"
    assert first_error is not None
    assert first_error.startswith("abandoned")
    assert second == ("succeeded", None)


def test_sigterm_mid_job_records_the_run_as_failed_and_keeps_nothing(
    runtime: Runtime, db_kind: str, tmp_path: Path
) -> None:
    url = runtime.engine.url.render_as_string(hide_password=False)
    started = tmp_path / "started"
    job = subprocess.Popen(
        [sys.executable, "-c", SLOW_JOB, url, str(started), JOB],
        cwd=Path(__file__).parents[2],
        env=dict(os.environ),
    )
    deadline = time.monotonic() + GIVE_UP_AFTER_SECONDS
    while not started.exists():
        assert job.poll() is None, "the job ended before its work began"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # A second run of the job meanwhile is skipped at once, although the first holds the
    # database's write lock (on SQLite) for as long as its work lasts.
    with pytest.raises(JobSkipped):
        run_job(runtime, JOB, lambda session: "done")
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=GIVE_UP_AFTER_SECONDS) == 128 + signal.SIGTERM
    ((status, error),) = runs(runtime.engine)
    assert status == "failed"
    assert error is not None
    assert error.startswith("SystemExit")
    with Session(runtime.engine) as session:
        assert session.scalar(select(func.count()).select_from(JobRun)) == 1
        assert not session.execute(
            select(JobRun.id).where(JobRun.status == JobStatus.running)
        ).all()
        # The work's insert was rolled back.
        from app.hubs.models import Community

        assert session.get(Community, "x") is None
