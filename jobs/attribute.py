"""Scheduled attribution: divide the trailing window's bill (or a month's) among hubs and users.

Late cloud data keeps arriving for days, so each run attributes the trailing window
(`ingestion.trailing_days`, default 5 days, through today), and, while the previous month's
invoice is still open (the first `INVOICE_MONTH_CLOSE_DAYS` days of a month), that whole month
too. Days whose cost lines, usage and policy have not changed since the run in force keep it:
a run that finds nothing new writes nothing, so the job can run every hour. One job run, one
transaction: killed, it changes nothing. A run whose allocations do not add up to the cost
lines in the database is refused inside that transaction (`service.ConservationError`): the job
run fails, and nothing of it is stored.

    python -m jobs.attribute                 # the trailing window
    python -m jobs.attribute --month 2026-10 # a calendar month
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date, datetime, timedelta
from typing import Any

from app.attribution import service
from app.attribution.rules import Period
from app.clock import utcnow
from app.config import get_settings
from app.errors import UsageError
from app.periods import next_month, parse_month, with_open_invoice_month
from app.runtime import Runtime
from jobs.runner import JobSkipped, run_job

log = logging.getLogger(__name__)
JOB_NAME = "attribute"


def trailing_period(today: date, trailing_days: int) -> Period:
    """The days a scheduled run attributes on `today`: the trailing days through today,
    widened to the start of the previous month while that month is still open."""
    start = with_open_invoice_month(today - timedelta(days=trailing_days), today)
    return Period(start, today + timedelta(days=1))


def month_period(month: str) -> Period:
    """A calendar month given as YYYY-MM (or UsageError)."""
    first = parse_month(month)
    return Period(first, next_month(first))


def figures(report: service.RunReport) -> dict[str, Any]:
    """What the job run records (and /metrics shows as hubmeter_job_last_figure)."""
    return {
        "amount_attributed": report.allocated_total,
        "unattributed_amount": report.unattributed_total,
        "estimated_amount": report.estimated_total,
        "cost_total": report.cost_total,
        "changed": int(report.changed),
        "run_id": report.run_id or 0,
        "allocations": report.allocation_rows,
        "days_with_new_inputs": len(report.days_with_new_inputs),
    }


def attribute(
    runtime: Runtime, *, period: Period | None = None, now: datetime | None = None
) -> service.RunReport:
    """Attribute `period` (default: the trailing window) as one recorded job run."""
    now = now or utcnow()
    if period is None:
        period = trailing_period(now.date(), runtime.config.ingestion.trailing_days)
    config = runtime.config
    chosen = period
    return run_job(
        runtime,
        JOB_NAME,
        lambda session: service.attribute_period(
            session=session,
            config=config,
            period=chosen,
            now=now,
            created_by=f"job:{JOB_NAME}",
        ),
        window=(period.start_datetime, period.end_datetime),
        figures=figures,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Attribute the trailing window, or a month.")
    parser.add_argument("--month", help="a calendar month, YYYY-MM, instead of the window")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    runtime = Runtime(settings=get_settings())
    try:
        period = month_period(args.month) if args.month else None
        report = attribute(runtime, period=period)
    except JobSkipped as exc:
        log.info("%s", exc)
        return 0
    except (UsageError, ValueError) as exc:
        log.error("attribution failed: %s", exc)
        return 2
    except Exception as exc:
        log.error("attribution failed: %s", exc)
        return 1
    log.info("attribution: %s", figures(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
