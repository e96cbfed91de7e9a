"""Scheduled cost ingestion: re-pull the GCP export's trailing window, estimate what the bill has
not reached, refresh the price book.

The GCP export is append-only: late usage and credits arrive for days as new rows. Each run
re-pulls the trailing window (`ingestion.trailing_days`, default 5 days, up to the current
hour), and, while the previous month's invoice is still open (the first
`app.periods.INVOICE_MONTH_CLOSE_DAYS` days of a month), the whole previous month too. The
re-pull replaces what earlier pulls imported for the window, so late rows are counted once. A
run is one job run (named `ingest_costs:<table>`, `estimate_costs:<cluster>`,
`refresh_price_book`) and one transaction: killed, it changes nothing; run twice, it replaces
itself. Everything that can fail, the Google clients included, runs inside the job run, so every
failure is recorded with its reason.

    python -m jobs.ingest_costs --table PROJECT.DATASET.TABLE
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from app.clock import utcnow
from app.config import get_settings
from app.costs import bigquery as bigquery_source
from app.costs import catalog, ingest
from app.costs import service as cost_service
from app.costs.estimates import Driver
from app.costs.service import ImportReport
from app.ingestion import service as ingestion_service
from app.ingestion.models import BatchKind
from app.periods import HOUR, Window, as_utc, day_start, floor_hour, with_open_invoice_month
from app.runtime import Runtime
from jobs.runner import JobSkipped, run_job

log = logging.getLogger(__name__)
JOB_NAME = "ingest_costs"
ESTIMATE_JOB_NAME = "estimate_costs"
PRICE_BOOK_JOB_NAME = "refresh_price_book"
JOB_NAME_MAX_LENGTH = 100  # JobRun.job_name is a String(100)


def trailing_window(now: datetime, trailing_days: int) -> Window:
    """The window a scheduled re-pull covers at `now`: the trailing days up to the end of the
    current hour, widened to the start of the previous month while that month is still open."""
    today = as_utc(now).date()
    start = with_open_invoice_month(today - timedelta(days=trailing_days), today)
    return Window(day_start(start), floor_hour(now) + HOUR)


def export_job_name(table: str) -> str:
    """`ingest_costs:<table>`: one job name per export, as per cluster for estimates, so a
    failing export stays visible on /metrics instead of hiding behind another export's later
    success. Shortened, with a hash of the table to keep it unique, to fit the job run's name
    (a dataset or table name may be far longer)."""
    name = f"{JOB_NAME}:{table}"
    if len(name) <= JOB_NAME_MAX_LENGTH:
        return name
    digest = hashlib.sha256(table.encode()).hexdigest()[:12]
    return f"{name[: JOB_NAME_MAX_LENGTH - len(digest) - 1]}~{digest}"


def ingest_gcp_bigquery(
    runtime: Runtime,
    *,
    table: str,
    window: Window | None = None,
    billing_project: str | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Re-pull the export table's trailing window (or `window`) in one job run."""
    now = now or utcnow()
    window = window or trailing_window(now, runtime.config.ingestion.trailing_days)

    def work(session: Session) -> ImportReport:
        # Inside the run, so a bad table name or missing credentials is recorded as the reason
        # it failed (`hubmeter jobs runs`, /metrics), like any other failure.
        client = bigquery_source.make_client(
            project=billing_project or bigquery_source.table_project(table),
            api_endpoint=runtime.settings.bigquery_api_endpoint,
        )
        report = ingest.ingest_gcp_bigquery(
            session=session, client=client, table=table, window=window, now=now
        )
        ingestion_service.advance_watermark(
            session=session,
            kind=BatchKind.costs,
            source=f"bigquery:{table}",
            through=window.end,
            now=now,
        )
        return report

    return run_job(
        runtime,
        export_job_name(table),
        work,
        window=(window.start, window.end),
        figures=ImportReport.figures,
    )


def estimate_costs(
    runtime: Runtime,
    *,
    cluster: str,
    skus: dict[Driver, str],
    window: Window | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Estimate the cluster's trailing hours the bill has not reached, at list price."""
    now = now or utcnow()
    window = window or trailing_window(now, runtime.config.ingestion.trailing_days)

    def work(session: Session) -> ImportReport:
        target = ingest.estimate_target(runtime.config, cluster)  # an unknown cluster: recorded
        return ingest.ingest_estimates(
            session=session, target=target, window=window, skus=skus, now=now
        )

    return run_job(
        runtime,
        f"{ESTIMATE_JOB_NAME}:{cluster}",
        work,
        window=(window.start, window.end),
        figures=ImportReport.figures,
    )


def refresh_price_book(
    runtime: Runtime, *, services: list[str], currency: str = "USD", now: datetime | None = None
) -> int:
    """Fetch the services' list prices from the Cloud Billing Catalog; returns SKUs priced."""
    now = now or utcnow()

    def work(session: Session) -> int:
        # Fetched inside the run, so an unreachable catalog or an unknown service is recorded
        # as the reason it failed; and before the session's first statement (a session opens
        # its connection and transaction on first use), so no transaction waits on the catalog.
        client = catalog.make_client(api_endpoint=runtime.settings.billing_catalog_api_endpoint)
        found = catalog.find_services(client, services)
        fetched = {
            service_id: catalog.fetch_price_book(
                client, service_id=service_id, service_name=name, currency=currency, now=now
            )
            for service_id, name in found.values()
        }
        return sum(
            cost_service.replace_price_book(session=session, service_ids=[sid], entries=entries)
            for sid, entries in fetched.items()
        )

    return run_job(runtime, PRICE_BOOK_JOB_NAME, work, figures=lambda n: {"skus": n})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Re-pull the GCP billing export's trailing window."
    )
    parser.add_argument("--table", required=True, help="PROJECT.DATASET.TABLE of the export")
    parser.add_argument("--billing-project", help="project the query runs in")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    runtime = Runtime(settings=get_settings())
    try:
        report = ingest_gcp_bigquery(
            runtime, table=args.table, billing_project=args.billing_project
        )
    except JobSkipped as exc:
        log.info("%s", exc)
        return 0
    except Exception as exc:
        log.error("cost ingestion failed: %s", exc)
        return 1
    log.info("cost ingestion: %s", report.figures())
    return 0


if __name__ == "__main__":
    sys.exit(main())
