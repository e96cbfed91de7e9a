"""Run one job: record it, do the work in one transaction, record how it ended.

One run of a job at a time, across processes and machines: two schedulers (two API workers or
replicas with the embedded scheduler), two CronJob pods, or an operator's `hubmeter jobs run`
next to the schedule would otherwise do the same work twice (twice the Prometheus queries and
BigQuery scans) and, on SQLite, collide. The second finds the first's run and is skipped
(`JobSkipped`), recording nothing.

A run whose process died without recording an outcome (killed, out of memory) must neither
block the job nor stay `running` forever: the next run of the job marks it failed. Whether
that earlier process is gone is known for certain: every run holds a lock on its job for as
long as it works, which is released when the process ends, however it ends (on PostgreSQL a
session-level advisory lock, on SQLite a file lock beside the database). A
SIGTERM (a CronJob's deadline, a pod stopping) is turned into an exit that records the run as
failed before the process goes.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import signal
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import transaction
from app.ingestion.service import lock_source, source_lock_key
from app.periods import iso
from app.runtime import Runtime
from app.scheduling.models import JobRun, JobStatus

log = logging.getLogger(__name__)
T = TypeVar("T")

LOCK_KIND = "job"


class JobSkipped(Exception):
    """Another process is running this job right now; this run did nothing."""


def run_job(
    runtime: Runtime,
    job_name: str,
    work: Callable[[Session], T],
    *,
    window: tuple[datetime | None, datetime | None] = (None, None),
    figures: Callable[[T], dict[str, Any]] | None = None,
) -> T:
    """Run `work` in one transaction and record the run. Re-raises the work's exception;
    raises JobSkipped (recording nothing) while another process runs the same job."""
    with _turn(runtime, job_name) as held:
        run_id = _start(runtime, job_name, window, certain=held)
        log.info("job %s started", job_name, extra={"job": job_name, "job_run_id": run_id})
        try:
            with _terminated_as_exit(), transaction(runtime.session_factory) as session:
                result = work(session)
        except BaseException as exc:
            _finish(
                runtime,
                run_id,
                status=JobStatus.failed,
                error=f"{type(exc).__name__}: {exc}"[:4000],
                detail={"traceback": traceback.format_exc(limit=20)[-8000:]},
            )
            log.error(
                "job %s failed: %s", job_name, exc, extra={"job": job_name, "job_run_id": run_id}
            )
            raise
        _finish(
            runtime,
            run_id,
            status=JobStatus.succeeded,
            detail={"figures": _jsonable(figures(result)) if figures else {}},
        )
    log.info("job %s succeeded", job_name, extra={"job": job_name, "job_run_id": run_id})
    return result


@contextmanager
def _turn(runtime: Runtime, job_name: str) -> Iterator[bool]:
    """Hold the job's lock for the whole run (yields True), or raise JobSkipped at once if
    another process holds it. The operating system or the database server releases it when
    its holder dies, however it dies. PostgreSQL: a session-level advisory lock on a
    connection of its own. SQLite: an exclusive `flock` on a file beside the database (the
    database's own write lock cannot serve: a run holds it through its work, and a second run
    would wait on it instead of being skipped). A database without a file yields False:
    `_start` then tells a live run from a dead one by its process."""
    engine = runtime.engine
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file:"):
            yield False
            return
        with _file_lock(runtime, Path(database), job_name):
            yield True
        return
    if engine.dialect.name != "postgresql":
        yield False
        return
    key = source_lock_key(LOCK_KIND, job_name)
    with engine.connect() as connection:
        if not connection.scalar(select(func.pg_try_advisory_lock(key))):
            connection.rollback()
            raise JobSkipped(_running_message(runtime, job_name))
        connection.commit()
        try:
            yield True
        finally:
            _unlock(connection, key)


def job_lock_path(database: Path, job_name: str) -> Path:
    """The file beside a SQLite database whose flock a run of `job_name` holds."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", job_name)[:80]
    digest = hashlib.blake2b(job_name.encode(), digest_size=4).hexdigest()
    return database.with_name(f"{database.name}.{safe}-{digest}.lock")


@contextmanager
def _file_lock(runtime: Runtime, database: Path, job_name: str) -> Iterator[None]:
    """An exclusive, non-blocking flock on the job's lock file; JobSkipped if held."""
    with job_lock_path(database, job_name).open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobSkipped(_running_message(runtime, job_name)) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _unlock(connection: Connection, key: int) -> None:
    """Release the job's lock; if that fails, drop the connection rather than let the pool
    keep a connection that still holds it (every later run would be skipped)."""
    try:
        released = connection.scalar(select(func.pg_advisory_unlock(key)))
        connection.commit()
    except Exception:
        released = False
        log.warning("could not release the job lock; closing its connection", exc_info=True)
    if not released:
        connection.invalidate()


def _running_message(runtime: Runtime, job_name: str) -> str:
    with runtime.session_factory() as session:
        other = session.scalars(
            select(JobRun)
            .where(JobRun.job_name == job_name, JobRun.status == JobStatus.running)
            .order_by(JobRun.id.desc())
            .limit(1)
        ).first()
    since = f" (job run {other.id}, since {iso(other.started_at)})" if other else ""
    return f"job {job_name} is already running in another process{since}; skipped"


def _start(
    runtime: Runtime,
    job_name: str,
    window: tuple[datetime | None, datetime | None],
    *,
    certain: bool,
) -> int:
    """Record the run as running, after marking the job's dead runs failed. With `certain`
    (the job's lock is held), every earlier `running` run is dead; otherwise one whose
    process is still alive on this machine means the job is running: JobSkipped."""
    live: JobRun | None = None
    with transaction(runtime.session_factory) as session:
        # Take turns for the check and the insert (a write first: on SQLite, the write lock).
        # Another key than the run's own lock, which this process may be holding already.
        lock_source(session=session, kind=f"{LOCK_KIND}-record", source=job_name)
        now = utcnow()
        for earlier in session.scalars(
            select(JobRun).where(JobRun.job_name == job_name, JobRun.status == JobStatus.running)
        ):
            if not certain and _alive(earlier):
                live = earlier
                continue
            earlier.status = JobStatus.failed
            earlier.finished_at = now
            earlier.error = (
                "abandoned: its process ended without recording how the run ended (killed, "
                "or out of memory); nothing it did was kept"
            )
        if live is None:
            run = JobRun(
                job_name=job_name,
                started_at=now,
                status=JobStatus.running,
                window_start=window[0],
                window_end=window[1],
                detail={"host": socket.gethostname(), "pid": os.getpid()},
            )
            session.add(run)
            session.flush()
            return run.id
    assert live is not None
    raise JobSkipped(
        f"job {job_name} is already running (job run {live.id}, process {live.detail.get('pid')}"
        f", since {iso(live.started_at)}); skipped"
    )


def _alive(run: JobRun) -> bool:
    """Whether the process of a `running` run is still alive. Only a process on this machine
    can be checked; a run recorded without its process (or elsewhere) counts as alive."""
    detail = run.detail or {}
    pid = detail.get("pid")
    if detail.get("host") != socket.gethostname() or not isinstance(pid, int):
        return True
    if pid == os.getpid():
        # This process: a run of the same job in another thread (the embedded scheduler
        # and a command in one process) is alive; this thread's own earlier runs all ended.
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _finish(
    runtime: Runtime,
    run_id: int,
    *,
    status: JobStatus,
    detail: dict[str, Any],
    error: str | None = None,
) -> None:
    """Record how the run ended: one UPDATE, which writes before it reads anything (on SQLite
    a transaction that read first could not wait for another writer to finish)."""
    with transaction(runtime.session_factory) as session:
        session.execute(
            update(JobRun)
            .where(JobRun.id == run_id)
            .values(status=status, finished_at=utcnow(), error=error, detail=detail)
            .execution_options(synchronize_session=False)
        )


@contextmanager
def _terminated_as_exit() -> Iterator[None]:
    """While the work runs in the main thread, SIGTERM exits through the failure path (the
    transaction rolls back and the run is recorded as failed) instead of killing the process
    where it stands."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _jsonable(figures: dict[str, Any]) -> dict[str, Any]:
    return {
        key: (str(value) if not isinstance(value, int | str | bool) else value)
        for key, value in figures.items()
    }
