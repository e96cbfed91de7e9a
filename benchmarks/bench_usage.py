"""Usage ingestion from a real Prometheus: one cluster, 50 hubs, 1,000 users, a week of 1-minute
scrapes, and half of it (the first 3.5 days of the same data), so the figures show how the cost
grows with the window.

    .venv/bin/python -m benchmarks.bench_usage [--hubs 50] [--users-per-hub 20] [--days 7]
                                               [--postgres] [--openmetrics] [--runs 3]

The scenario is generated and backfilled with promtool once (promtool does some tens of
thousands of samples a second here, so the week takes tens of minutes) and cached under
benchmarks/.data/, which is git-ignored. Each measurement runs in a child process on a fresh
SQLite database (or, with --postgres, a fresh database on a throw-away PostgreSQL server) and
prints: wall time of the whole ingest (queries, metering
and the database transaction), rows per second, the child's peak RSS, Prometheus' own
evaluation time for the same queries (its `stats=all` execTotalTime, queried one at a time: the
floor no client can beat) and the ratio of the ingest's wall time to that floor.

Target from issue 6: the week in under 15 s on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from app import migrate
from app.db import make_engine, make_sessionmaker, transaction
from app.synthetic import ScenarioSpec, generate, read_manifest
from app.usage import service as usage_service
from app.usage.openmetrics import OpenMetricsUsageSource
from app.usage.prometheus import PrometheusUsageSource
from app.usage.queries import QUERIES
from tests import servers
from tests.integration.conftest import CLUSTER, UsageScenario

DATA = Path(__file__).parent / ".data"
HOUR = 3600
NOW = datetime(2027, 1, 1, tzinfo=UTC)


def scenario_dir(spec: ScenarioSpec) -> Path:
    return DATA / f"usage-h{spec.hubs}-u{spec.users_per_hub}-d{spec.days}-s{spec.seed}"


def build(spec: ScenarioSpec) -> tuple[UsageScenario, Path]:
    """The scenario and its backfilled TSDB, from the cache or built now (slow, once)."""
    root = scenario_dir(spec)
    blocks = root / "tsdb"
    done = root / "backfilled"
    if done.exists():
        return UsageScenario("bench", read_manifest(root / "scenario")), blocks
    if servers.prometheus_binaries() is None:
        sys.exit("prometheus/promtool not found: apt-get install prometheus")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    print(f"generating {spec.hubs} hubs x {spec.users_per_hub} users x {spec.days} days ...")
    manifest = generate(spec, root / "scenario")
    print(
        f"  {manifest.series:,} series, {manifest.samples:,} samples; backfilling with promtool "
        "(once; this takes a while) ...",
        flush=True,
    )
    began = time.monotonic()
    servers.backfill(manifest.openmetrics_files[CLUSTER], blocks)
    print(f"  backfilled in {time.monotonic() - began:.0f} s")
    done.write_text("ok\n")
    return UsageScenario("bench", manifest), blocks


def prometheus_floor(url: str, first_hour: int, end_hour: int, chunk_hours: int) -> dict[str, Any]:
    """Prometheus' own time for the same queries, asked one at a time, without hubmeter."""
    exec_seconds = 0.0
    http_seconds = 0.0
    points = 0
    with requests.Session() as session:
        for start in range(first_hour, end_hour, chunk_hours * HOUR):
            hours = min(chunk_hours, (end_hour - start) // HOUR)
            for query in QUERIES:
                began = time.monotonic()
                response = session.get(
                    f"{url}/api/v1/query_range",
                    params={
                        "query": query.promql,
                        "start": f"{start + HOUR - 0.001:.3f}",
                        "end": f"{start + hours * HOUR - 0.001:.3f}",
                        "step": str(HOUR),
                        "stats": "all",
                    },
                    timeout=600,
                )
                response.raise_for_status()
                data = response.json()["data"]
                http_seconds += time.monotonic() - began
                exec_seconds += float(data["stats"]["timings"]["execTotalTime"])
                points += sum(len(series["values"]) for series in data["result"])
    return {"exec_seconds": exec_seconds, "http_seconds": http_seconds, "points": points}


def measure(args: argparse.Namespace) -> None:
    """One ingest in this (child) process; prints its figures as JSON on the last line."""
    spec = _spec(args)
    scenario, _blocks = build(spec)
    start = scenario.manifest.period_start
    end = start + timedelta(hours=args.hours)
    with tempfile.TemporaryDirectory() as tmp:
        database = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        engine = make_engine(database)
        migrate.upgrade(engine)
        config = scenario.config(Path(tmp), prometheus_url=args.url, chunk_hours=args.chunk_hours)
        cluster = config.cluster(CLUSTER)
        if args.source == "openmetrics":
            source: Any = OpenMetricsUsageSource(scenario.openmetrics_file)
        else:
            assert cluster.prometheus is not None
            source = PrometheusUsageSource(
                cluster_name=CLUSTER,
                prometheus=cluster.prometheus,
                chunk_hours=args.chunk_hours,
                concurrency=args.concurrency,
            )
        began = time.monotonic()
        with transaction(make_sessionmaker(engine)) as session:
            report = usage_service.ingest_cluster(
                session=session,
                config=config,
                cluster_name=CLUSTER,
                source=source,
                window_start=start,
                window_end=end,
                now=NOW,
            )
            assert report is not None
            before_commit = time.monotonic()
        wall = time.monotonic() - began
        engine.dispose()
    truth_rows = len(scenario.truth(start, end))
    figures = {
        "source": args.source,
        "hours": args.hours,
        "rows": report.rows,
        "rows_match_truth": report.rows == truth_rows,
        "wall_seconds": wall,
        "fetch_seconds": report.fetch_seconds,
        "store_seconds": report.store_seconds,
        "commit_seconds": wall - (before_commit - began),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "requests": getattr(source, "timings", None) and source.timings.requests,
        "points": getattr(source, "timings", None) and source.timings.points,
    }
    print(json.dumps(figures))


def _spec(args: argparse.Namespace) -> ScenarioSpec:
    return ScenarioSpec(
        hubs=args.hubs, users_per_hub=args.users_per_hub, days=args.days, seed=args.seed
    )


def _child(args: argparse.Namespace, url: str, hours: int, source: str) -> dict[str, Any]:
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_usage",
        "--measure",
        f"--hubs={args.hubs}",
        f"--users-per-hub={args.users_per_hub}",
        f"--days={args.days}",
        f"--seed={args.seed}",
        f"--url={url}",
        f"--hours={hours}",
        f"--source={source}",
        f"--chunk-hours={args.chunk_hours}",
        f"--concurrency={args.concurrency}",
    ]
    if args.postgres_server:
        name = f"bench_usage_{time.monotonic_ns()}"
        command.append(f"--database-url={servers.create_database(args.postgres_server, name)}")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"measurement failed:\n{done.stdout}\n{done.stderr}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hubs", type=int, default=50)
    parser.add_argument("--users-per-hub", type=int, default=20)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-hours", type=int, default=24)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="measure on PostgreSQL (a throw-away server) instead of a fresh SQLite file",
    )
    parser.add_argument(
        "--openmetrics", action="store_true", help="also time the OpenMetrics file path"
    )
    parser.add_argument("--runs", type=int, default=3, help="measurements per size (best kept)")
    # Internal: one measurement in a child process.
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--hours", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--source", default="prometheus", help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args)
        return
    if args.postgres:
        with servers.postgres_server() as postgres:
            args.postgres_server = postgres.url
            run(args)
    else:
        args.postgres_server = None
        run(args)


def run(args: argparse.Namespace) -> None:
    """Build (or reuse) the data, start Prometheus, measure both sizes and print the figures."""
    spec = _spec(args)
    scenario, blocks = build(spec)
    print(
        f"scenario: 1 cluster, {spec.hubs} hubs, {spec.hubs * spec.users_per_hub} users, "
        f"{spec.days} days, {spec.scrape_interval_seconds}-second scrapes: "
        f"{scenario.manifest.samples:,} samples in {scenario.manifest.series:,} series"
    )
    print(
        f"hubmeter: {args.chunk_hours}-hour query chunks, {args.concurrency} concurrent "
        f"queries, database {'PostgreSQL' if args.postgres_server else 'SQLite'} (fresh per "
        f"run); best of {args.runs}"
    )
    sizes = [("full", spec.days * 24), ("half (first 3.5 days)", spec.days * 12)]
    with servers.prometheus_server(blocks) as prometheus:
        first_hour = int(scenario.manifest.period_start.timestamp())
        results = []
        for label, hours in sizes:
            floor = prometheus_floor(
                prometheus.url, first_hour, first_hour + hours * HOUR, args.chunk_hours
            )
            runs = [_child(args, prometheus.url, hours, "prometheus") for _ in range(args.runs)]
            best = min(runs, key=lambda run: run["wall_seconds"])
            results.append((label, hours, best, floor))
        print()
        header = (
            f"{'window':<22} {'rows':>8} {'wall s':>7} {'rows/s':>8} {'fetch s':>8} "
            f"{'store s':>8} {'peak MiB':>9} {'prom s':>7} {'ratio':>6}  ok"
        )
        print(header)
        for label, _hours, best, floor in results:
            ratio = best["wall_seconds"] / floor["exec_seconds"]
            print(
                f"{label:<22} {best['rows']:>8,} {best['wall_seconds']:>7.2f} "
                f"{best['rows'] / best['wall_seconds']:>8,.0f} {best['fetch_seconds']:>8.2f} "
                f"{best['store_seconds'] + best['commit_seconds']:>8.2f} "
                f"{best['peak_rss_mib']:>9.0f} {floor['exec_seconds']:>7.2f} {ratio:>6.1f}  "
                f"{'yes' if best['rows_match_truth'] else 'NO: rows differ from the truth'}"
            )
        print()
        for label, _hours, best, floor in results:
            print(
                f"{label}: {best['requests']} requests, {best['points']:,} points; Prometheus "
                f"alone: {floor['exec_seconds']:.2f} s evaluating, {floor['http_seconds']:.2f} s "
                f"with HTTP and JSON, one query at a time"
            )
    if args.openmetrics:
        om = _child(args, "http://unused", spec.days * 24, "openmetrics")
        size = scenario.openmetrics_file.stat().st_size / 2**30
        print(
            f"openmetrics file ({size:.1f} GiB, {scenario.manifest.samples:,} samples): "
            f"{om['wall_seconds']:.1f} s, {scenario.manifest.samples / om['fetch_seconds']:,.0f} "
            f"samples/s parsed, peak {om['peak_rss_mib']:.0f} MiB, rows match: "
            f"{'yes' if om['rows_match_truth'] else 'NO'}"
        )
    print("target: the full week in under 15 s")


if __name__ == "__main__":
    main()
