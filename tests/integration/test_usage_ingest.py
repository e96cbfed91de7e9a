"""Usage ingestion against a real Prometheus loaded with generated data, on SQLite and PostgreSQL:
the stored rows are exactly what the samples imply, per hub, user and hour."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from app import migrate
from app.config import HubmeterConfig, Settings
from app.db import make_engine
from app.hubs.models import Hub, HubUser
from app.ingestion.models import BatchStatus, IngestionBatch, Watermark
from app.runtime import Runtime
from app.scheduling.models import JobRun, JobStatus
from app.usage import service as usage_service
from app.usage.metering import QUANTITY_NAMES, Quantities, meter
from app.usage.models import UsageHour
from app.usage.openmetrics import OpenMetricsUsageSource
from app.usage.prometheus import PrometheusUsageSource, RetryPolicy
from app.usage.service import SourceKind
from app.usage.sources import UsageSourceError
from jobs.ingest_usage import ingest_usage
from tests import servers
from tests.integration.conftest import CLUSTER, TruthKey, UsageScenario, serve_copy

pytestmark = [pytest.mark.prometheus, pytest.mark.xdist_group("prometheus")]

HOUR = dt.timedelta(hours=1)
MINUTE = dt.timedelta(minutes=1)
NOW = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def stored(session: Session) -> dict[TruthKey, Quantities]:
    """The usage rows in the database, keyed like the truth."""
    query = (
        select(UsageHour, HubUser.username)
        .outerjoin(HubUser, HubUser.id == UsageHour.user_id)
        .order_by(UsageHour.id)
    )
    rows: dict[TruthKey, Quantities] = {}
    for usage, username in session.execute(query):
        key = (usage.namespace, username, usage.hour)
        assert key not in rows, f"two rows for {key}"
        rows[key] = Quantities(**{name: getattr(usage, name) for name in QUANTITY_NAMES})
    return rows


def assert_same_usage(
    actual: dict[TruthKey, Quantities], expected: dict[TruthKey, Quantities]
) -> None:
    missing = sorted(set(expected) - set(actual), key=str)
    extra = sorted(set(actual) - set(expected), key=str)
    assert not missing, f"{len(missing)} rows missing, e.g. {missing[:3]}"
    assert not extra, f"{len(extra)} rows too many, e.g. {extra[:3]}"
    wrong = [key for key in expected if actual[key] != expected[key]]
    assert not wrong, f"{len(wrong)} rows differ, e.g. {wrong[0]}: {actual[wrong[0]]} != " + str(
        expected[wrong[0]]
    )


def ingest(
    session: Session,
    config: HubmeterConfig,
    source: Any,
    start: dt.datetime | None,
    end: dt.datetime | None,
    now: dt.datetime = NOW,
) -> usage_service.IngestReport:
    report = usage_service.ingest_cluster(
        session=session,
        config=config,
        cluster_name=CLUSTER,
        source=source,
        window_start=start,
        window_end=end,
        now=now,
    )
    assert report is not None
    return report


def prometheus_source(config: HubmeterConfig) -> PrometheusUsageSource:
    cluster = config.cluster(CLUSTER)
    assert cluster.prometheus is not None
    return PrometheusUsageSource(
        cluster_name=CLUSTER,
        prometheus=cluster.prometheus,
        chunk_hours=config.ingestion.query_chunk_hours,
        retry=RetryPolicy(attempts=2, backoff_seconds=0.01),
    )


@pytest.mark.parametrize("scenario_name", ["annotated", "unannotated"])
def test_ingested_usage_is_the_generators_truth_per_hub_user_and_hour(
    session: Session,
    usage_scenarios: dict[str, UsageScenario],
    prometheus: servers.Prometheus,
    tmp_path: Path,
    scenario_name: str,
) -> None:
    scenario = usage_scenarios[scenario_name]
    # Seven-hour chunks: the window does not divide evenly, so the last chunk is a short one.
    config = scenario.config(tmp_path, prometheus_url=prometheus.url, chunk_hours=7)
    start, end = scenario.manifest.period_start, scenario.manifest.period_end
    report = ingest(session, config, prometheus_source(config), start, end)

    assert_same_usage(stored(session), scenario.truth())
    hubs = scenario.manifest.spec.hubs
    assert report.hubs == hubs
    assert report.rows == len(scenario.truth())
    assert report.rows_replaced == 0
    # The namespace no hub names is kept, summed per hour, and reported.
    assert list(report.unmatched) == ["workshop-unlisted"]
    unmatched = session.scalars(
        select(UsageHour).where(UsageHour.namespace == "workshop-unlisted")
    ).all()
    assert unmatched
    assert all(row.hub_id is None and row.user_id is None for row in unmatched)
    assert report.unmatched["workshop-unlisted"].rows == len(unmatched)
    # Every configured user was told apart, the colliding labels included.
    users = session.scalar(select(func.count()).select_from(HubUser))
    assert users == report.users == hubs * scenario.manifest.spec.users_per_hub
    assert not report.warnings
    batch = session.get_one(IngestionBatch, report.batch_id)
    assert batch.kind == "usage"
    assert batch.source == CLUSTER
    assert batch.row_count == report.rows
    assert batch.stats["unmatched_namespaces"]["workshop-unlisted"]["rows"] == len(unmatched)
    by_source = batch.stats["usernames_by_source"]
    if scenario.manifest.spec.annotations:
        assert set(by_source) == {"annotation"}
    else:
        assert set(by_source) == {"label", "pod_name"}


def test_the_openmetrics_file_gives_the_same_rows_as_prometheus(
    usage_scenarios: dict[str, UsageScenario], prometheus: servers.Prometheus, tmp_path: Path
) -> None:
    scenario = usage_scenarios["annotated"]
    config = scenario.config(tmp_path, prometheus_url=prometheus.url, chunk_hours=5)
    start = scenario.manifest.period_start
    windows = [
        (start, scenario.manifest.period_end),
        # Starting mid-period: CPU of the first hour needs the hour before the window.
        (start + 13 * HOUR, start + 31 * HOUR),
    ]
    for first, end in windows:
        first_hour, end_hour = int(first.timestamp()), int(end.timestamp())
        from_prometheus = prometheus_source(config).fetch(
            first_hour=first_hour, end_hour=end_hour, progress=None
        )
        from_file = OpenMetricsUsageSource(scenario.openmetrics_file).fetch(
            first_hour=first_hour, end_hour=end_hour, progress=None
        )
        assert from_file == from_prometheus
        rows = meter(from_prometheus, scrape_interval_seconds=60).rows
        assert rows == meter(from_file, scrape_interval_seconds=60).rows
        truth = scenario.truth(first, end)
        assert len({(r.namespace, r.hour) for r in rows}) == len(
            {(key[0], key[2]) for key in truth}
        )


def test_reingesting_a_window_replaces_it(
    session: Session,
    usage_scenarios: dict[str, UsageScenario],
    prometheus: servers.Prometheus,
    tmp_path: Path,
) -> None:
    scenario = usage_scenarios["annotated"]
    config = scenario.config(tmp_path, prometheus_url=prometheus.url)
    start, end = scenario.manifest.period_start, scenario.manifest.period_end
    first = ingest(session, config, prometheus_source(config), start, end)
    # The same window again, then a part of it, from the other source.
    again = ingest(session, config, prometheus_source(config), start, end)
    part = ingest(
        session, config, OpenMetricsUsageSource(scenario.openmetrics_file), start + 6 * HOUR,
        start + 30 * HOUR,
    )  # fmt: skip

    assert_same_usage(stored(session), scenario.truth())
    assert again.rows_replaced == first.rows
    assert part.rows_replaced == len(scenario.truth(start + 6 * HOUR, start + 30 * HOUR))
    batches = {b.id: b for b in session.scalars(select(IngestionBatch))}
    assert batches[first.batch_id].status == BatchStatus.superseded
    assert batches[first.batch_id].superseded_by_id == again.batch_id
    # The part covers only some of the second batch's window, which stays current for the rest.
    assert batches[again.batch_id].status == BatchStatus.complete
    assert batches[part.batch_id].status == BatchStatus.complete
    assert part.new_users == 0
    assert again.new_users == 0
    assert first.new_users == first.users


def test_a_source_that_no_longer_has_stored_hours_cannot_erase_them(
    session: Session,
    usage_scenarios: dict[str, UsageScenario],
    prometheus: servers.Prometheus,
    tmp_path: Path,
) -> None:
    scenario = usage_scenarios["annotated"]
    config = scenario.config(tmp_path, prometheus_url=prometheus.url)
    start = scenario.manifest.period_start
    ingest(session, config, prometheus_source(config), start, start + 6 * HOUR)
    before = stored(session)

    # Hours before the data begins have nothing stored: an ingest reaching back is fine.
    report = ingest(session, config, prometheus_source(config), start - 3 * HOUR, start + HOUR)
    assert report.rows == len(scenario.truth(start, start + HOUR))
    # ...but hours without a single sample are pointed out, not passed over in silence.
    assert report.warnings[0].startswith("no samples at all for 3 of the window's 4 hour(s)")
    assert_same_usage(stored(session), before)

    # An export that does not cover stored hours (as Prometheus past its retention) is refused.
    empty = tmp_path / "empty.om"
    empty.write_text("# EOF\n")
    with pytest.raises(UsageSourceError, match="no samples at all for 6 hour"):
        ingest(session, config, OpenMetricsUsageSource(empty), start, start + 6 * HOUR)
    assert_same_usage(stored(session), before)


def test_the_watermark_lets_the_schedule_continue_where_it_stopped(
    session: Session,
    usage_scenarios: dict[str, UsageScenario],
    prometheus: servers.Prometheus,
    tmp_path: Path,
) -> None:
    scenario = usage_scenarios["annotated"]
    config = scenario.config(tmp_path, prometheus_url=prometheus.url)
    cluster = config.cluster(CLUSTER)
    start = scenario.manifest.period_start
    now = start + 20 * HOUR + dt.timedelta(minutes=30)

    # Never run: the last 7 days up to the last complete hour.
    window = usage_service.resolve_window(
        session=session, cluster=cluster, start=None, end=None, now=now
    )
    assert window == (start + 20 * HOUR - dt.timedelta(days=7), start + 20 * HOUR)
    ingest(session, config, prometheus_source(config), start, start + 20 * HOUR)

    # The next run picks up at 20:00 and, an hour later, takes the one new hour.
    later = now + HOUR
    window = usage_service.resolve_window(
        session=session, cluster=cluster, start=None, end=None, now=later
    )
    assert window == (start + 20 * HOUR, start + 21 * HOUR)
    ingest(session, config, prometheus_source(config), *window)
    assert_same_usage(stored(session), scenario.truth(start, start + 21 * HOUR))

    # Re-ingesting an old window does not move it back, and a later window that would leave
    # a gap does not move it forward.
    ingest(session, config, prometheus_source(config), start, start + 2 * HOUR)
    ingest(session, config, prometheus_source(config), start + 30 * HOUR, start + 32 * HOUR)
    mark = session.get_one(Watermark, ("usage", CLUSTER))
    assert mark.through == start + 21 * HOUR
    # An hour whose last scrapes may still be landing waits for the next run.
    just_after = start + 22 * HOUR + dt.timedelta(seconds=30)
    window = usage_service.resolve_window(
        session=session, cluster=cluster, start=None, end=None, now=just_after
    )
    assert window == (start + 21 * HOUR, start + 21 * HOUR)

    # A window typed to reach past the last complete hour (the end of the month, mid-month)
    # stores what there is so far, but the watermark stops at the last complete hour: the
    # schedule meters the rest once it is whole, instead of skipping it.
    report = ingest(
        session,
        config,
        prometheus_source(config),
        start + 21 * HOUR,
        start + 24 * HOUR,
        now=start + 22 * HOUR + dt.timedelta(minutes=5),
    )
    assert any("not complete yet" in warning for warning in report.warnings)
    session.refresh(mark)
    assert mark.through == start + 22 * HOUR
    window = usage_service.resolve_window(
        session=session, cluster=cluster, start=None, end=None, now=start + 24 * HOUR + 5 * MINUTE
    )
    assert window == (start + 22 * HOUR, start + 24 * HOUR)


def test_killing_prometheus_mid_ingest_leaves_the_database_as_it_was_and_a_rerun_completes(
    fresh_engine: Engine,
    usage_scenarios: dict[str, UsageScenario],
    prometheus_blocks: Path,
    tmp_path: Path,
) -> None:
    scenario = usage_scenarios["annotated"]
    migrate.upgrade(fresh_engine)
    data = serve_copy(prometheus_blocks, tmp_path)
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}"
    config_file = scenario.config_file(tmp_path, prometheus_url=url, chunk_hours=4)
    runtime = Runtime(settings=Settings(), config_path=config_file, _engine=fresh_engine)
    start, end = scenario.manifest.period_start, scenario.manifest.period_end
    retry = RetryPolicy(attempts=3, backoff_seconds=0.01)

    def snapshot() -> dict[str, Any]:
        with Session(fresh_engine) as session:
            return {
                "usage": stored(session),
                "batches": session.scalars(select(IngestionBatch.id)).all(),
                "watermark": session.scalars(select(Watermark.through)).all(),
                "users": session.scalars(select(HubUser.username)).all(),
                "hubs": session.scalars(select(Hub.name)).all(),
            }

    with servers.prometheus_server(data, port=port) as server:
        (first,) = ingest_usage(runtime, start=start, end=start + 12 * HOUR, retry=retry, now=NOW)
        assert first.report is not None
        before = snapshot()
        assert before["usage"]

        def kill_after_the_first_chunk(cluster: str, kind: SourceKind) -> Any:
            def progress(done: int, total: int) -> None:
                if done == 1:
                    server.process.kill()
                    server.process.wait()

            return progress

        (failed,) = ingest_usage(
            runtime, start=start, end=end, retry=retry, progress=kill_after_the_first_chunk, now=NOW
        )
    assert isinstance(failed.error, UsageSourceError)
    assert "no answer from Prometheus after 3 attempts" in str(failed.error)
    assert snapshot() == before
    with Session(fresh_engine) as session:
        runs = session.scalars(select(JobRun).order_by(JobRun.id)).all()
        assert [run.status for run in runs] == [JobStatus.succeeded, JobStatus.failed]
        assert runs[1].error is not None
        assert "no answer from Prometheus" in runs[1].error
        assert runs[1].window_start == start
        assert runs[1].window_end == end

    with servers.prometheus_server(data, port=port):
        (rerun,) = ingest_usage(runtime, start=start, end=end, retry=retry, now=NOW)
    assert rerun.error is None
    assert rerun.report is not None
    with Session(fresh_engine) as session:
        assert_same_usage(stored(session), scenario.truth())
        assert session.get_one(Watermark, ("usage", CLUSTER)).through == end


def test_the_command_line_ingests_and_shows_usage(
    usage_scenarios: dict[str, UsageScenario],
    prometheus: servers.Prometheus,
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from app.cli import cli

    scenario = usage_scenarios["annotated"]
    config_file = scenario.config_file(tmp_path, prometheus_url=prometheus.url)
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    base = ["--config", str(config_file), "--database-url", database]
    assert runner.invoke(cli, [*base, "db", "upgrade"]).exit_code == 0
    period = ["--start", "2026-10-01", "--end", "2026-10-03T00:00:00Z"]

    ingested = runner.invoke(cli, [*base, "ingest", "usage", "--cluster", CLUSTER, *period])
    assert ingested.exit_code == 0, ingested.output
    assert "workshop-unlisted matches no configured hub" in ingested.output

    hub = next(iter(scenario.truth()))[0]
    hub_name = next(h.name for h in load_hubs(config_file) if h.k8s_namespace == hub)
    shown = runner.invoke(
        cli, [*base, "usage", "show", "--hub", hub_name, *period, "--format", "json"]
    )
    assert shown.exit_code == 0, shown.output
    lines = json.loads(shown.output)
    expected: dict[str | None, Decimal] = {}
    for (namespace, username, _hour), quantities in scenario.truth().items():
        if namespace == hub:
            expected[username] = expected.get(username, Decimal(0)) + quantities.server_seconds
    assert {line["user"]: Decimal(line["server_hours"]) for line in lines} == {
        user: (seconds / 3600).quantize(Decimal("0.000001")) for user, seconds in expected.items()
    }

    as_csv = runner.invoke(
        cli, [*base, "usage", "show", "--hub", hub_name, *period, "--by", "day", "--format", "csv"]
    )
    assert as_csv.exit_code == 0, as_csv.output
    assert as_csv.output.splitlines()[0].startswith("day,user,server_hours,")

    not_on_the_hour = runner.invoke(
        cli, [*base, "ingest", "usage", "--start", "2026-10-01T00:30Z", "--end", "2026-10-02"]
    )
    assert not_on_the_hour.exit_code != 0


def load_hubs(config_file: Path) -> list[Any]:
    from app.config import load_config

    return list(load_config(config_file).hubs)


def test_an_unreachable_prometheus_fails_the_command_and_writes_nothing(
    usage_scenarios: dict[str, UsageScenario], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from app.cli import cli

    scenario = usage_scenarios["annotated"]
    url = f"http://127.0.0.1:{servers.free_port()}"  # nothing listens there
    config_file = scenario.config_file(tmp_path, prometheus_url=url)
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()
    base = ["--config", str(config_file), "--database-url", database]
    assert runner.invoke(cli, [*base, "db", "upgrade"]).exit_code == 0
    # Quick retries keep the test fast; the default backs off for seconds.
    monkeypatch.setattr(
        "app.usage.prometheus.DEFAULT_RETRY", RetryPolicy(attempts=2, backoff_seconds=0.01)
    )
    result = runner.invoke(
        cli, [*base, "ingest", "usage", "--start", "2026-10-01", "--end", "2026-10-01T03:00Z"]
    )
    assert result.exit_code == 1
    assert "nothing written" in result.output
    assert "no answer from Prometheus after 2 attempts" in result.output
    with Session(make_engine(database)) as session:
        assert session.scalar(select(func.count()).select_from(UsageHour)) == 0
        assert session.scalar(select(func.count()).select_from(IngestionBatch)) == 0
        (run,) = session.scalars(select(JobRun)).all()
        assert run.status == JobStatus.failed
