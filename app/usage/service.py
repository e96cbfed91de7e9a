"""Usage in the database: ingest a cluster's window of hours, and read usage back per user.

An ingest fetches the whole window first (no database work while Prometheus is being asked),
then, in the caller's transaction: syncs the configured hubs, opens an ingestion batch, deletes
the cluster's rows in the window, writes the new ones, and moves the watermark. The caller
commits once, so a failed or killed ingest leaves the database as it was, and an ingest repeated
for the same window replaces its rows instead of adding to them.
"""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from time import monotonic
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.config import Cluster, ConfigError, HubmeterConfig
from app.db import money_sum
from app.hubs import service as hub_service
from app.hubs.models import Hub, HubUser
from app.ingestion import service as ingestion_service
from app.ingestion.models import BatchKind
from app.periods import HOUR, as_utc, floor_hour
from app.usage.metering import (
    QUANTITY_NAMES,
    MeteredRow,
    NamespaceSummary,
    Observations,
    Quantities,
    aggregate_unmatched,
    meter,
)
from app.usage.models import UsageHour
from app.usage.openmetrics import OpenMetricsUsageSource
from app.usage.prometheus import PrometheusUsageSource, RetryPolicy
from app.usage.sources import Progress, UsageSource, UsageSourceError

DEFAULT_FIRST_WINDOW = timedelta(days=7)
KIND = BatchKind.usage.value


class WindowError(ValueError):
    """A window that cannot be metered (not on whole hours, or ending before it starts)."""


class SourceKind(StrEnum):
    prometheus = "prometheus"
    openmetrics = "openmetrics"


# --- windows ---------------------------------------------------------------------------------


def require_whole_hour(moment: datetime, what: str) -> datetime:
    """`moment` in UTC, refused unless it is the start of an hour."""
    if moment.tzinfo is None:
        raise WindowError(f"{what} must carry a timezone (UTC)")
    moment = as_utc(moment)
    if moment != floor_hour(moment):
        raise WindowError(
            f"{what} {moment:%Y-%m-%dT%H:%M:%SZ} is not on a whole hour: usage is metered in "
            "whole UTC hours"
        )
    return moment


def last_complete_hour_end(now: datetime, *, scrape_interval_seconds: int) -> datetime:
    """Where a scheduled ingest stops: the end of the last whole hour whose last scrape has had
    time to land (two scrape intervals), so an hour is never metered half-scraped."""
    return floor_hour(now - timedelta(seconds=2 * scrape_interval_seconds))


def resolve_window(
    *,
    session: Session,
    cluster: Cluster,
    start: datetime | None,
    end: datetime | None,
    now: datetime,
) -> tuple[datetime, datetime]:
    """The window to ingest: as given, else from the cluster's watermark (or the last 7 days)
    up to the last complete hour. An empty window (start == end) means "up to date"."""
    if end is None:
        end = last_complete_hour_end(now, scrape_interval_seconds=cluster.scrape_interval_seconds)
    end = require_whole_hour(end, "the end")
    if start is None:
        mark = ingestion_service.get_watermark(session=session, kind=KIND, source=cluster.name)
        start = mark if mark is not None else end - DEFAULT_FIRST_WINDOW
        start = min(start, end)
    start = require_whole_hour(start, "the start")
    if start > end:
        raise WindowError(
            f"the start {start:%Y-%m-%dT%H:%MZ} is after the end {end:%Y-%m-%dT%H:%MZ}"
        )
    return start, end


# --- sources ---------------------------------------------------------------------------------


def choose_source_kind(cluster: Cluster, wanted: SourceKind | None) -> SourceKind:
    """The source to read a cluster from: as asked, else Prometheus where configured."""
    if wanted is None:
        if cluster.prometheus is not None:
            return SourceKind.prometheus
        if cluster.openmetrics_file is not None:
            return SourceKind.openmetrics
        raise ConfigError(
            f"cluster {cluster.name} has neither `prometheus` nor `openmetrics_file` configured"
        )
    return wanted


def make_source(
    *,
    config: HubmeterConfig,
    cluster: Cluster,
    kind: SourceKind,
    file: Path | None = None,
    retry: RetryPolicy | None = None,
    concurrency: int = 2,
) -> UsageSource:
    """The configured usage source of a cluster (`file` overrides its openmetrics_file)."""
    if kind is SourceKind.prometheus:
        if cluster.prometheus is None:
            raise ConfigError(f"cluster {cluster.name} has no `prometheus` section")
        return PrometheusUsageSource(
            cluster_name=cluster.name,
            prometheus=cluster.prometheus,
            chunk_hours=config.ingestion.query_chunk_hours,
            retry=retry,
            concurrency=concurrency,
        )
    path = file or cluster.openmetrics_file
    if path is None:
        raise ConfigError(
            f"cluster {cluster.name} has no `openmetrics_file`; pass --file with an export"
        )
    return OpenMetricsUsageSource(path)


# --- ingest ----------------------------------------------------------------------------------


@dataclass
class IngestReport:
    """What one ingest of one cluster's window did."""

    cluster: str
    source: str
    window_start: datetime
    window_end: datetime
    batch_id: int
    rows: int
    rows_replaced: int
    hubs: int
    users: int
    new_users: int
    hub_level_rows: int
    unmatched: dict[str, NamespaceSummary] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    fetch_seconds: float = 0.0
    store_seconds: float = 0.0

    def figures(self) -> dict[str, Any]:
        """Flat figures for the job run record."""
        return {
            "cluster": self.cluster,
            "source": self.source,
            "batch_id": self.batch_id,
            "rows": self.rows,
            "rows_replaced": self.rows_replaced,
            "hubs": self.hubs,
            "users": self.users,
            "new_users": self.new_users,
            "unmatched_namespaces": ",".join(sorted(self.unmatched)),
            "warnings": len(self.warnings),
            "fetch_seconds": round(self.fetch_seconds, 3),
            "store_seconds": round(self.store_seconds, 3),
        }


def ingest_cluster(
    *,
    session: Session,
    config: HubmeterConfig,
    cluster_name: str,
    source: UsageSource,
    window_start: datetime | None,
    window_end: datetime | None,
    now: datetime,
    progress: Progress | None = None,
) -> IngestReport | None:
    """Fetch `[window_start, window_end)` from `source` and store it, replacing the window.

    With no window, an OpenMetrics file is imported whole: every hour it holds up to the last
    complete one. Returns None when there was nothing to import.
    """
    with _without_gc_pauses():
        return _ingest_cluster(
            session=session,
            config=config,
            cluster_name=cluster_name,
            source=source,
            window_start=window_start,
            window_end=window_end,
            now=now,
            progress=progress,
        )


@contextmanager
def _without_gc_pauses() -> Iterator[None]:
    """Hold the cyclic garbage collector while a window is metered and stored.

    An ingest builds millions of small objects that live until it ends and form no cycles; the
    collector would walk them all again and again (a third of the metering time for a week of
    a thousand users). Reference counting still frees everything as usual.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _ingest_cluster(
    *,
    session: Session,
    config: HubmeterConfig,
    cluster_name: str,
    source: UsageSource,
    window_start: datetime | None,
    window_end: datetime | None,
    now: datetime,
    progress: Progress | None,
) -> IngestReport | None:
    began = monotonic()
    if window_start is None and window_end is None:
        if not isinstance(source, OpenMetricsUsageSource):
            raise ValueError("only an OpenMetrics file can be imported without a window")
        observations = source.fetch_everything(progress=progress)
        hours = observations.hours()
        if not hours:
            return None
        cluster = config.cluster(cluster_name)
        window_start = datetime.fromtimestamp(min(hours), UTC)
        window_end = min(
            datetime.fromtimestamp(max(hours), UTC) + HOUR,
            last_complete_hour_end(now, scrape_interval_seconds=cluster.scrape_interval_seconds),
        )
        if window_end <= window_start:
            return None
    elif window_start is None or window_end is None:
        raise ValueError("give both ends of the window, or neither")
    else:
        first_hour = int(require_whole_hour(window_start, "the start").timestamp())
        end_hour = int(require_whole_hour(window_end, "the end").timestamp())
        observations = source.fetch(first_hour=first_hour, end_hour=end_hour, progress=progress)
    fetched = monotonic()
    report = store_usage(
        session=session,
        config=config,
        cluster_name=cluster_name,
        window_start=window_start,
        window_end=window_end,
        observations=observations,
        source_description=source.description,
        now=now,
    )
    report.fetch_seconds = fetched - began
    report.store_seconds = monotonic() - fetched
    return report


def store_usage(
    *,
    session: Session,
    config: HubmeterConfig,
    cluster_name: str,
    window_start: datetime,
    window_end: datetime,
    observations: Observations,
    source_description: str,
    now: datetime,
) -> IngestReport:
    """Meter `observations` and replace the cluster's usage rows in the window with them."""
    cluster = config.cluster(cluster_name)
    # Hours from here on may still get samples: stored as far as they go, but not past the
    # watermark, so the schedule meters them again once they are whole.
    complete_end = last_complete_hour_end(
        now, scrape_interval_seconds=cluster.scrape_interval_seconds
    )
    # Two ingests of one cluster at once would each delete only the rows committed before they
    # began and then both insert: take turns, before reading anything.
    ingestion_service.lock_source(session=session, kind=KIND, source=cluster.name)
    hub_service.sync_from_config(session=session, config=config, now=now)
    _refuse_to_erase_history(session, cluster.name, window_start, window_end, observations)
    hubs = hub_service.hubs_by_namespace(session=session, cluster_name=cluster.name)
    metered = meter(
        observations,
        scrape_interval_seconds=cluster.scrape_interval_seconds,
        known_usernames=hub_service.usernames_by_namespace(session=session, hubs=hubs),
    )
    # A file may hold more than the window; those hours are not this batch's to replace.
    in_window = [row for row in metered.rows if window_start <= row.hour < window_end]
    rows, unmatched = aggregate_unmatched(in_window, set(hubs))

    batch = ingestion_service.start_batch(
        session=session,
        kind=KIND,
        source=cluster.name,
        window_start=window_start,
        window_end=window_end,
        now=now,
    )
    replaced = session.execute(
        delete(UsageHour).where(
            UsageHour.cluster_name == cluster.name,
            UsageHour.hour >= window_start,
            UsageHour.hour < window_end,
        )
    )
    rows_replaced = int(getattr(replaced, "rowcount", 0) or 0)
    for old in ingestion_service.overlapping_batches(
        session=session,
        kind=KIND,
        source=cluster.name,
        window_start=window_start,
        window_end=window_end,
    ):
        if old.id != batch.id:
            ingestion_service.mark_superseded(session=session, old=old, by=batch)

    user_ids, new_users = _user_ids(session, hubs, rows, now)
    values = [_row_values(row, batch.id, cluster.name, hubs, user_ids) for row in rows]
    _insert_usage_rows(session, values)

    users_seen = {(row.namespace, row.username) for row in rows if row.username is not None}
    report = IngestReport(
        cluster=cluster.name,
        source=source_description,
        window_start=window_start,
        window_end=window_end,
        batch_id=batch.id,
        rows=len(values),
        rows_replaced=rows_replaced,
        hubs=len({row.namespace for row in rows if row.namespace in hubs}),
        users=len({key for key in users_seen if key[0] in hubs}),
        new_users=new_users,
        hub_level_rows=sum(1 for row in rows if row.username is None and row.namespace in hubs),
        unmatched=unmatched,
        warnings=[
            *_silent_hours(observations, window_start, window_end),
            *metered.notes.warnings(cluster.scrape_interval_seconds),
            *_incomplete_hours(window_end, complete_end),
        ],
    )
    stats: dict[str, Any] = {
        "source": source_description,
        "hours": int((window_end - window_start) / HOUR),
        "hubs": report.hubs,
        "users": report.users,
        "new_users": new_users,
        "hub_level_rows": report.hub_level_rows,
        "unmatched_namespaces": {
            namespace: {
                "rows": summary.rows,
                "users": summary.users,
                **{name: str(value) for name, value in summary.quantities.as_dict().items()},
            }
            for namespace, summary in sorted(unmatched.items())
        },
        "warnings": report.warnings,
        **metered.notes.as_stats(),
    }
    ingestion_service.finish_batch(
        session=session,
        batch=batch,
        row_count=len(values),
        rows_superseded=rows_replaced,
        stats=stats,
        now=now,
    )
    _advance_watermark(session, cluster.name, window_start, min(window_end, complete_end), now)
    return report


def _refuse_to_erase_history(
    session: Session,
    cluster_name: str,
    window_start: datetime,
    window_end: datetime,
    observations: Observations,
) -> None:
    """Refuse to replace stored hours with nothing.

    A source with no sample at all in an hour that has usage stored does not know that hour
    (Prometheus' retention has passed it, or an export does not cover it): replacing would
    erase history. A live cluster always has samples (the dirsize exporter reports every
    home directory), so this never stops a real re-ingest.
    """
    observed = observations.hours()
    stored = session.scalars(
        select(UsageHour.hour)
        .where(
            UsageHour.cluster_name == cluster_name,
            UsageHour.hour >= window_start,
            UsageHour.hour < window_end,
        )
        .distinct()
    ).all()
    unknown = sorted(hour for hour in stored if int(hour.timestamp()) not in observed)
    if unknown:
        raise UsageSourceError(
            f"cluster {cluster_name}: the source has no samples at all for {len(unknown)} "
            f"hour(s) of the window that have usage stored ({unknown[0]:%Y-%m-%dT%H:%MZ} to "
            f"{unknown[-1]:%Y-%m-%dT%H:%MZ}); replacing them would erase that usage. Is it "
            "past Prometheus' retention, or outside the file? Ingest a window the source covers."
        )


def _silent_hours(
    observations: Observations, window_start: datetime, window_end: datetime
) -> list[str]:
    """A warning when hours of the window had no sample at all: the dirsize exporter reports
    every home directory every few minutes, so silence means missing data, not idle users."""
    observed = observations.hours()
    first = int(window_start.timestamp())
    hours = range(first, int(window_end.timestamp()), 3600)
    silent = [hour for hour in hours if hour not in observed]
    if not silent:
        return []
    since = datetime.fromtimestamp(silent[0], UTC)
    return [
        f"no samples at all for {len(silent)} of the window's {len(hours)} hour(s), from "
        f"{since:%Y-%m-%dT%H:%MZ}: they have no usage rows (check that kube-state-metrics and "
        "the dirsize exporter are scraped; re-ingest the window once they are)"
    ]


def _incomplete_hours(window_end: datetime, complete_end: datetime) -> list[str]:
    if window_end <= complete_end:
        return []
    return [
        f"the window reaches {window_end:%Y-%m-%dT%H:%MZ}, but hours from "
        f"{complete_end:%Y-%m-%dT%H:%MZ} are not complete yet: their usage so far is stored, "
        "and the scheduled ingest meters them again from there"
    ]


def _advance_watermark(
    session: Session, cluster_name: str, window_start: datetime, window_end: datetime, now: datetime
) -> None:
    """Continue the schedule from `window_end` (no later than the last complete hour), unless
    that would skip hours never ingested (a re-ingest of a later window than the watermark
    leaves a gap the schedule must fill)."""
    mark = ingestion_service.get_watermark(session=session, kind=KIND, source=cluster_name)
    if window_end <= window_start:
        return
    if mark is None or window_start <= mark:
        ingestion_service.advance_watermark(
            session=session, kind=KIND, source=cluster_name, through=window_end, now=now
        )


def _user_ids(
    session: Session, hubs: dict[str, Hub], rows: Iterable[MeteredRow], now: datetime
) -> tuple[dict[tuple[str, str], int], int]:
    """Ids of every (namespace, username) in `rows` of a configured hub, creating the users seen
    for the first time, and how many were new."""
    wanted: set[tuple[int, str]] = set()
    for row in rows:
        if row.username is not None and row.namespace in hubs:
            wanted.add((hubs[row.namespace].id, row.username))
    ids, created = hub_service.get_or_create_users(session=session, wanted=wanted, now=now)
    namespace_of = {hub.id: namespace for namespace, hub in hubs.items()}
    return {
        (namespace_of[hub_id], username): user_id for (hub_id, username), user_id in ids.items()
    }, created


_INSERT_COLUMNS = (
    "batch_id",
    "cluster_name",
    "namespace",
    "hub_id",
    "user_id",
    "hour",
    *QUANTITY_NAMES,
)


def _row_values(
    row: MeteredRow,
    batch_id: int,
    cluster_name: str,
    hubs: dict[str, Hub],
    user_ids: dict[tuple[str, str], int],
) -> tuple[Any, ...]:
    """The row's values in the order of _INSERT_COLUMNS."""
    hub = hubs.get(row.namespace)
    user_id = None
    if hub is not None and row.username is not None:
        user_id = user_ids[(row.namespace, row.username)]
    return (
        batch_id,
        cluster_name,
        row.namespace,
        hub.id if hub is not None else None,
        user_id,
        row.hour,
        *row.quantities.values(),
    )


def _insert_usage_rows(session: Session, rows: list[tuple[Any, ...]]) -> None:
    """Insert rows in the session's transaction, as fast as the database takes them.

    A week of a thousand users is ~180,000 rows; the ORM's bulk insert spends seconds per
    100,000 on bookkeeping this table does not need. PostgreSQL gets COPY; other databases an
    executemany with the columns' own bind processing (so SQLite stores exactly what the
    `Exact` and `UTCDateTime` types would).
    """
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect
    columns = ", ".join(_INSERT_COLUMNS)
    if dialect.name == "postgresql":
        driver = connection.connection.driver_connection
        with (
            driver.cursor() as cursor,  # type: ignore[union-attr]  # psycopg's connection
            cursor.copy(f"COPY usage_hour ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        return
    table = UsageHour.__table__
    processors = [
        table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in _INSERT_COLUMNS
    ]
    hour_text: dict[datetime, Any] = {}  # a few distinct hours, each processed once
    hour_at = _INSERT_COLUMNS.index("hour")
    prepared = []
    for row in rows:
        values = list(row)
        for position, process in enumerate(processors):
            if process is None:
                continue
            if position == hour_at:
                hour = values[position]
                if hour not in hour_text:
                    hour_text[hour] = process(hour)
                values[position] = hour_text[hour]
            else:
                values[position] = process(values[position])
        prepared.append(tuple(values))
    marks = ", ".join(_placeholders(dialect.paramstyle, len(_INSERT_COLUMNS)))
    statement = f"INSERT INTO usage_hour ({columns}) VALUES ({marks})"  # noqa: S608 - constant names
    connection.exec_driver_sql(statement, prepared)


def _placeholders(paramstyle: str, count: int) -> list[str]:
    if paramstyle == "qmark":
        return ["?"] * count
    if paramstyle in ("format", "pyformat"):
        return ["%s"] * count
    if paramstyle == "numeric":
        return [f":{n + 1}" for n in range(count)]
    raise NotImplementedError(f"no bulk insert for paramstyle {paramstyle}")


# --- reading usage back ----------------------------------------------------------------------


class Grouping(StrEnum):
    total = "total"
    day = "day"
    hour = "hour"


@dataclass
class UsageLine:
    """Usage of one user (None: the hub's own, e.g. its shared directory) in one period
    (None: the whole window)."""

    username: str | None
    period: datetime | None
    quantities: Quantities


def find_hub(*, session: Session, hub_name: str, cluster_name: str | None) -> Hub:
    """The hub named `hub_name` (on `cluster_name`), or a ConfigError saying what exists."""
    query = select(Hub).where(Hub.name == hub_name)
    if cluster_name is not None:
        query = query.where(Hub.cluster_name == cluster_name)
    found = list(session.scalars(query))
    if len(found) == 1:
        return found[0]
    if not found:
        names = sorted(session.scalars(select(Hub.name).distinct()))
        where = f" on cluster {cluster_name}" if cluster_name else ""
        known = ", ".join(names) or "none"
        raise ConfigError(
            f"no hub named {hub_name!r}{where} in the database (known: {known}; "
            "`hubmeter config apply` or an ingest adds the configured hubs)"
        )
    clusters = ", ".join(sorted(hub.cluster_name for hub in found))
    raise ConfigError(f"hub {hub_name!r} exists on several clusters ({clusters}): pass --cluster")


def hub_usage(
    *, session: Session, hub_id: int, start: datetime, end: datetime, by: Grouping
) -> list[UsageLine]:
    """Per-user usage of a hub in `[start, end)`, in total or per day or hour."""
    columns = [getattr(UsageHour, name) for name in QUANTITY_NAMES]
    where = (UsageHour.hub_id == hub_id, UsageHour.hour >= start, UsageHour.hour < end)
    lines: list[UsageLine] = []
    if by is Grouping.total:
        query = (
            select(HubUser.username, *(money_sum(column) for column in columns))
            .select_from(UsageHour)
            .outerjoin(HubUser, HubUser.id == UsageHour.user_id)
            .where(*where)
            .group_by(HubUser.username)
        )
        for username, *sums in session.execute(query):
            lines.append(UsageLine(username, None, _quantities(sums)))
    else:
        hourly = (
            select(HubUser.username, UsageHour.hour, *columns)
            .select_from(UsageHour)
            .outerjoin(HubUser, HubUser.id == UsageHour.user_id)
            .where(*where)
        )
        merged: dict[tuple[str | None, datetime], Quantities] = defaultdict(Quantities)
        for username, hour, *values in session.execute(hourly):
            when: datetime = hour
            period = when if by is Grouping.hour else when.replace(hour=0)
            merged[(username, period)].add(_quantities(values))
        lines = [UsageLine(name, when, q) for (name, when), q in merged.items()]
    lines.sort(key=lambda line: (line.period or start, line.username is None, line.username or ""))
    return lines


@dataclass
class NamespaceUsage:
    namespace: str
    hub: str | None
    users: int
    quantities: Quantities


def cluster_usage(
    *, session: Session, cluster_name: str | None, start: datetime, end: datetime
) -> list[tuple[str, NamespaceUsage]]:
    """(cluster, usage) per namespace in `[start, end)`: hubs and namespaces that match none."""
    columns = [money_sum(getattr(UsageHour, name)) for name in QUANTITY_NAMES]
    query = (
        select(UsageHour.cluster_name, UsageHour.namespace, Hub.name, *columns)
        .select_from(UsageHour)
        .outerjoin(Hub, Hub.id == UsageHour.hub_id)
        .where(UsageHour.hour >= start, UsageHour.hour < end)
        .group_by(UsageHour.cluster_name, UsageHour.namespace, Hub.name)
    )
    users_query = (
        select(UsageHour.cluster_name, UsageHour.namespace, UsageHour.user_id)
        .where(UsageHour.hour >= start, UsageHour.hour < end, UsageHour.user_id.is_not(None))
        .distinct()
    )
    if cluster_name is not None:
        query = query.where(UsageHour.cluster_name == cluster_name)
        users_query = users_query.where(UsageHour.cluster_name == cluster_name)
    users: dict[tuple[str, str], int] = defaultdict(int)
    for cluster, namespace, _user_id in session.execute(users_query):
        users[(cluster, namespace)] += 1
    result = [
        (cluster, NamespaceUsage(namespace, hub, users[(cluster, namespace)], _quantities(sums)))
        for cluster, namespace, hub, *sums in session.execute(query)
    ]
    result.sort(key=lambda item: (item[0], item[1].hub is None, item[1].namespace))
    return result


def _quantities(values: Iterable[Decimal | None]) -> Quantities:
    return Quantities(
        **{name: value or Decimal(0) for name, value in zip(QUANTITY_NAMES, values, strict=True)}
    )
