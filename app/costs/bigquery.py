"""The GCP billing export, read where it lives with google-cloud-bigquery.

One parametrised query per import (see `app.costs.gcp_export.export_query`): the table name is
validated before it goes into the SQL, the usage window and the partition range are query
parameters. The export table is partitioned by day (`_PARTITIONTIME`); rows that arrive late for
usage in the window sit in later partitions, so the partition range runs from one day before the
window (partition days follow Pacific time) to `partition_margin_after` days after its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from app.costs.gcp_export import export_query, validate_table
from app.periods import Window

PARTITION_MARGIN_BEFORE = timedelta(days=1)
# Late rows and credits keep coming until the invoice month closes, early in the next month.
PARTITION_MARGIN_AFTER = timedelta(days=40)


def make_client(*, project: str, api_endpoint: str | None = None) -> Any:
    """A BigQuery client billing queries to `project`. With `api_endpoint` (an emulator or a test
    server) it sends no credentials; otherwise Google's default credentials are used."""
    from google.cloud import bigquery

    if api_endpoint:
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": api_endpoint},
        )
    return bigquery.Client(project=project)


def table_project(table: str) -> str:
    """The project a validated `PROJECT.DATASET.TABLE` lives in."""
    return validate_table(table).rsplit(".", 2)[0]


def export_groups(
    *,
    client: Any,
    table: str,
    window: Window,
    partition_filter: bool = True,
    partition_margin_after: timedelta = PARTITION_MARGIN_AFTER,
    page_size: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The grouped export rows of usage starting in `window`, page by page as they arrive."""
    from google.cloud import bigquery

    sql = export_query(table, partition_filter=partition_filter)
    parameters = [
        bigquery.ScalarQueryParameter("usage_start", "TIMESTAMP", window.start),
        bigquery.ScalarQueryParameter("usage_end", "TIMESTAMP", window.end),
    ]
    if partition_filter:
        parameters += [
            bigquery.ScalarQueryParameter(
                "partition_start", "TIMESTAMP", window.start - PARTITION_MARGIN_BEFORE
            ),
            bigquery.ScalarQueryParameter(
                "partition_end", "TIMESTAMP", window.end + partition_margin_after
            ),
        ]
    config = bigquery.QueryJobConfig(query_parameters=parameters, use_legacy_sql=False)
    rows = client.query_and_wait(sql, job_config=config, page_size=page_size)
    for row in rows:
        yield dict(row.items())
