"""Run one job: record it, do the work in one transaction, record how it ended."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.db import transaction
from app.runtime import Runtime
from app.scheduling.models import JobRun, JobStatus

log = logging.getLogger(__name__)
T = TypeVar("T")


class JobFailed(Exception):
    """The job's work was rolled back; the job run records why."""


def run_job(
    runtime: Runtime,
    job_name: str,
    work: Callable[[Session], T],
    *,
    window: tuple[datetime | None, datetime | None] = (None, None),
    figures: Callable[[T], dict[str, Any]] | None = None,
) -> T:
    """Run `work` in one transaction and record the run. Re-raises the work's exception."""
    with transaction(runtime.session_factory) as session:
        run = JobRun(
            job_name=job_name,
            started_at=utcnow(),
            status=JobStatus.running,
            window_start=window[0],
            window_end=window[1],
            detail={},
        )
        session.add(run)
        session.flush()
        run_id = run.id
    log.info("job %s started", job_name, extra={"job": job_name, "job_run_id": run_id})
    try:
        with transaction(runtime.session_factory) as session:
            result = work(session)
    except BaseException as exc:
        with transaction(runtime.session_factory) as session:
            failed = session.get_one(JobRun, run_id)
            failed.status = JobStatus.failed
            failed.finished_at = utcnow()
            failed.error = f"{type(exc).__name__}: {exc}"[:4000]
            failed.detail = {"traceback": traceback.format_exc(limit=20)[-8000:]}
        log.error("job %s failed: %s", job_name, exc, extra={"job": job_name, "job_run_id": run_id})
        raise
    with transaction(runtime.session_factory) as session:
        done = session.get_one(JobRun, run_id)
        done.status = JobStatus.succeeded
        done.finished_at = utcnow()
        done.detail = {"figures": _jsonable(figures(result)) if figures else {}}
    log.info("job %s succeeded", job_name, extra={"job": job_name, "job_run_id": run_id})
    return result


def _jsonable(figures: dict[str, Any]) -> dict[str, Any]:
    return {
        key: (str(value) if not isinstance(value, int | str | bool) else value)
        for key, value in figures.items()
    }
