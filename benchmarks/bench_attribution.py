"""Attribution of a month: 100 hubs, 20,000 users, about 1,000,000 user-hours of usage and
500,000 cost lines, on SQLite and on PostgreSQL.

    .venv/bin/python -m benchmarks.bench_attribution [--database sqlite|postgresql|both]
        [--hubs 100] [--users 20000] [--user-hours 1000000] [--cost-lines 500000] [--days 30]

The data is written straight into the tables in bulk (COPY on PostgreSQL, executemany on
SQLite; not timed): two clusters, hourly node, storage, cluster-fee, disk and egress lines with
the cluster's label, a bucket per hub with its hub label, a few dedicated-project hubs, and users
working in sessions. Each measurement runs in a child process, so its peak RSS is its own:

- floor: read exactly the inputs attribution reads (the grouped cost query and every day's
  usage rows), and nothing else: the time no attribution can beat on this database;
- attribute: `attribute_period` for the month and the commit (a new run, ~1M allocation rows);
- again: the same command once more, which finds nothing changed and writes nothing;
- revised: one hour of one day's bill revised, then the month again (a new run, one day differs).

Printed: wall time and the child's CPU time (PostgreSQL's own work is in its server process),
input rows per second, allocation rows written per second, peak RSS and the ratio of the
attribution's time to the floor. On a shared machine the wall time swings with the load average
printed beside it; the CPU time much less. Target from issue 4: under 20 s and under
2 GB on this 2-core machine, on both databases.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select, text

from app import migrate
from app.attribution import service
from app.attribution.models import Allocation
from app.attribution.rules import Period
from app.config import (
    Attribution,
    Cluster,
    Community,
    CostMatch,
    Hub,
    HubmeterConfig,
)
from app.costs.models import CostLine
from app.db import make_engine, make_sessionmaker, transaction
from app.hubs import service as hub_service
from app.hubs.models import HubUser
from app.ingestion.models import IngestionBatch

GIB = 1024**3
START = date(2026, 10, 1)
NOW = datetime(2026, 11, 5, tzinfo=UTC)
CLUSTERS = ("atlantic", "pacific")
NODES_PER_CLUSTER = 145


def scenario_config(hubs: int) -> HubmeterConfig:
    per_cluster = hubs // len(CLUSTERS)
    hub_entries = []
    communities = []
    for n in range(hubs):
        cluster = CLUSTERS[n // per_cluster if n // per_cluster < len(CLUSTERS) else -1]
        community = f"community-{n // 2:03d}"  # two hubs per community
        if n % 2 == 0:
            communities.append(
                Community(
                    id=community,
                    name=f"Community {n // 2}",
                    billing_email=f"billing@{community}.example.org",
                    plan="cost-recovery",
                )
            )
        dedicated = CostMatch(projects=[f"hub-{n:03d}-dedicated"]) if n % 10 == 1 else CostMatch()
        hub_entries.append(
            Hub(name=f"hub-{n:03d}", cluster=cluster, community=community, dedicated=dedicated)
        )
    return HubmeterConfig(
        clusters=[
            Cluster(
                name=name,
                provider="gcp",
                costs=CostMatch(
                    projects=[f"{name}-project"], labels={"goog-k8s-cluster-name": name}
                ),
            )
            for name in CLUSTERS
        ],
        communities=communities,
        hubs=hub_entries,
        attribution=Attribution(),
    )


# --- loading the data (not timed) ---------------------------------------------------------------


def load(engine: Engine, args: argparse.Namespace) -> dict[str, int]:
    config = scenario_config(args.hubs)
    migrate.upgrade(engine)
    factory = make_sessionmaker(engine)
    rng = random.Random(4)
    with transaction(factory) as session:
        hub_service.sync_from_config(session=session, config=config, now=NOW)
        session.flush()
        hubs = {
            hub.name: (hub.id, hub.cluster_name, hub.namespace)
            for c in CLUSTERS
            for hub in hub_service.hubs_by_namespace(session=session, cluster_name=c).values()
        }
        batch = IngestionBatch(
            kind="bench",
            source="bench",
            window_start=NOW,
            window_end=NOW,
            started_at=NOW,
            finished_at=NOW,
            stats={},
        )
        session.add(batch)
        session.flush()
        users_per_hub = args.users // args.hubs
        user_rows = [
            {"hub_id": hub_id, "username": f"user-{n:05d}", "first_seen_at": NOW}
            for hub_id, _, _ in hubs.values()
            for n in range(users_per_hub)
        ]
        session.execute(insert(HubUser), user_rows)
        users = [
            (hub_id, user_id, cluster, namespace)
            for (hub_id, cluster, namespace) in hubs.values()
            for user_id in session.scalars(select(HubUser.id).where(HubUser.hub_id == hub_id))
        ]
        connection = session.connection()
        # Usage ingestion writes a window of hours for every user at once: rows of the same
        # hours sit together, as here.
        usage_rows = sorted(_usage_rows(rng, batch.id, users, args), key=lambda row: row[5])
        usage = _copy(connection, "usage_hour", iter(usage_rows))
        del usage_rows
        costs = _copy(connection, "cost_line", _cost_rows(rng, batch.id, config, args))
    if engine.dialect.name == "postgresql":
        # As after a real ingestion: statistics up to date and no autovacuum of the fresh
        # tables competing with the measurements.
        with engine.connect() as connection:
            autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
            autocommit.execute(text("VACUUM ANALYZE"))
    return {"usage_rows": usage, "cost_lines": costs, "users": len(users)}


USAGE_COLUMNS = (
    "batch_id", "cluster_name", "namespace", "hub_id", "user_id", "hour", "server_seconds",
    "memory_request_byte_seconds", "cpu_request_core_seconds", "memory_usage_byte_seconds",
    "cpu_usage_core_seconds", "gpu_request_seconds", "home_storage_byte_seconds",
)  # fmt: skip
COST_COLUMNS = (
    "batch_id", "source", "source_row", "estimated", "provider", "billing_account_id",
    "sub_account_id", "service_name", "sku_description", "resource_name", "charge_period_start",
    "charge_period_end", "charge_category", "is_correction", "billed_cost", "credits", "net_cost",
    "currency", "consumed_quantity", "consumed_unit", "component", "labels", "extra",
)  # fmt: skip


def _usage_rows(
    rng: random.Random,
    batch_id: int,
    users: list[tuple[int, int, str, str]],
    args: argparse.Namespace,
) -> Iterator[tuple[Any, ...]]:
    """Users work in sessions of a few hours; together about `user_hours` rows."""
    hours = args.days * 24
    per_user = args.user_hours / len(users)
    start = datetime.combine(START, datetime.min.time(), UTC)
    for hub_id, user_id, cluster, namespace in users:
        taken: set[int] = set()
        target = max(1, round(rng.gauss(per_user, per_user / 3)))
        while len(taken) < min(target, hours):
            first = rng.randrange(hours)
            taken.update(range(first, min(hours, first + rng.randrange(1, 9))))
        memory = rng.choice((1, 2, 4, 8)) * GIB * 3600
        stored = rng.randrange(10**8, 5 * 10**10) * 3600
        for hour in sorted(taken):
            yield (
                batch_id, cluster, namespace, hub_id, user_id, start + timedelta(hours=hour),
                Decimal(3600), Decimal(memory), Decimal(rng.choice((1800, 3600, 7200))),
                Decimal(memory * rng.randrange(20, 100) // 100), Decimal(rng.randrange(0, 3600)),
                Decimal(0), Decimal(stored),
            )  # fmt: skip


def _cost_rows(
    rng: random.Random, batch_id: int, config: HubmeterConfig, args: argparse.Namespace
) -> Iterator[tuple[Any, ...]]:
    start = datetime.combine(START, datetime.min.time(), UTC)
    other_rows = (
        len(CLUSTERS) * 4
        + len(config.hubs)
        + 2 * sum(1 for h in config.hubs if h.dedicated.projects)
    )
    nodes = max(1, (args.cost_lines // (args.days * 24) - other_rows) // (2 * len(CLUSTERS)))
    row = 0

    def line(
        hour: datetime, project: str | None, service_name: str, sku: str, cost: Decimal,
        component: str, labels: dict[str, str], quantity: Decimal | None = None,
        unit: str | None = None, resource: str | None = None,
    ) -> tuple[Any, ...]:  # fmt: skip
        nonlocal row
        row += 1
        return (
            batch_id, "bench-export.jsonl", str(row), False, "gcp", "ACCOUNT", project,
            service_name, sku, resource, hour, hour + timedelta(hours=1), "usage", False, cost,
            Decimal(0), cost, "USD", quantity, unit, component,
            json.dumps(dict(sorted(labels.items()))), "{}",
        )  # fmt: skip

    for h in range(args.days * 24):
        hour = start + timedelta(hours=h)
        for cluster in CLUSTERS:
            project = f"{cluster}-project"
            labels = {"goog-k8s-cluster-name": cluster, "goog-k8s-node-pool-name": "user"}
            for node in range(nodes):
                name = f"gke-{cluster}-user-{node:04x}"
                yield line(hour, project, "Compute Engine", "N2 Instance Core running in Americas",
                           Decimal(rng.randrange(100_000, 130_000)).scaleb(-6), "compute", labels,
                           Decimal(4 * 3600), "seconds", name)  # fmt: skip
                yield line(hour, project, "Compute Engine", "N2 Instance Ram running in Americas",
                           Decimal(rng.randrange(120_000, 140_000)).scaleb(-6), "compute", labels,
                           Decimal(32 * GIB * 3600), "byte-seconds", name)  # fmt: skip
            cluster_labels = {"goog-k8s-cluster-name": cluster}
            for service_name, sku, component in (
                ("Cloud Filestore", "Filestore Basic HDD Capacity", "home_storage"),
                ("Kubernetes Engine", "Regional Kubernetes Clusters", "core"),
                ("Compute Engine", "Storage PD Capacity", "core"),
                ("Networking", "Network Internet Egress", "networking"),
            ):
                yield line(hour, project, service_name, sku,
                           Decimal(rng.randrange(50_000, 900_000)).scaleb(-6), component,
                           cluster_labels)  # fmt: skip
        for hub in config.hubs:
            yield line(hour, f"{hub.cluster}-project", "Cloud Storage", "Standard Storage",
                       Decimal(rng.randrange(1_000, 90_000)).scaleb(-6), "object_storage",
                       {"2i2c:hub-name": hub.name})  # fmt: skip
            for project in hub.dedicated.projects:
                yield line(hour, project, "Compute Engine", "N2 Instance Core running in Americas",
                           Decimal("0.063222"), "compute", {})  # fmt: skip
                yield line(hour, project, "Compute Engine", "N2 Instance Ram running in Americas",
                           Decimal("0.067792"), "compute", {})  # fmt: skip


def _copy(connection: Any, table: str, rows: Iterator[tuple[Any, ...]]) -> int:
    columns = USAGE_COLUMNS if table == "usage_hour" else COST_COLUMNS
    raw = connection.connection.dbapi_connection
    count = 0
    if connection.dialect.name == "postgresql":
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
                count += 1
        return count
    statement = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"  # noqa: S608 - fixed names
    )
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(tuple(_sqlite_value(value) for value in row))
        if len(chunk) == 50_000:
            raw.executemany(statement, chunk)
            count += len(chunk)
            chunk = []
    raw.executemany(statement, chunk)
    return count + len(chunk)


def _sqlite_value(value: Any) -> Any:
    # What the column types write on SQLite: decimal text, naive UTC timestamps as text.
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, bool):
        return int(value)
    return value


# --- the measurements (each in its own process) ---------------------------------------------


def measure(url: str, phase: str, args: argparse.Namespace) -> dict[str, Any]:
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    config = scenario_config(args.hubs)
    period = Period(START, START + timedelta(days=args.days))
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    began = time.perf_counter()
    figures: dict[str, Any] = {}
    if phase == "floor":
        with factory() as session:
            figures.update(service.read_inputs(session=session, config=config, period=period))
    else:
        if phase == "revised":
            # A late revision of one hour of one day's home storage, as a re-export brings it.
            revised_hour = datetime.combine(START + timedelta(days=2), datetime.min.time(), UTC)
            with transaction(factory) as session:
                line = session.scalars(
                    select(CostLine).where(
                        CostLine.component == "home_storage",
                        CostLine.sub_account_id == f"{CLUSTERS[0]}-project",
                        CostLine.charge_period_start == revised_hour + timedelta(hours=5),
                    )
                ).one()
                line.net_cost += Decimal("1.000000")
            began = time.perf_counter()
        with transaction(factory) as session:
            report = service.attribute_period(
                session=session, config=config, period=period, now=NOW, created_by="bench"
            )
        figures["changed"] = report.changed
        figures["allocations"] = report.allocation_rows if report.changed else 0
        figures["balanced"] = report.balanced
        figures["days_with_new_inputs"] = len(report.days_with_new_inputs)
    figures["seconds"] = time.perf_counter() - began
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures["cpu_seconds"] = usage.ru_utime + usage.ru_stime - cpu_before
    figures["peak_rss_mb"] = peak_rss_mb()
    if phase == "attribute":
        with factory() as session:
            figures["allocation_rows"] = session.scalar(
                select(func.count()).select_from(Allocation)
            )
    engine.dispose()
    return figures


def peak_rss_mb() -> float:
    """This process's own peak RSS. (ru_maxrss is no good in a child: Linux carries the
    parent's high-water mark across exec.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(url: str, phase: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "benchmarks.bench_attribution", "--child", phase, "--url", url,
        "--hubs", str(args.hubs), "--days", str(args.days),
    ]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def run(url: str, label: str, args: argparse.Namespace) -> None:
    engine = make_engine(url)
    began = time.perf_counter()
    counts = load(engine, args)
    engine.dispose()
    print(
        f"[{label}] loaded {counts['usage_rows']:,} usage rows ({counts['users']:,} users) and "
        f"{counts['cost_lines']:,} cost lines in {time.perf_counter() - began:.1f} s (not timed); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        flush=True,
    )
    floor = child(url, "floor", args)
    inputs = counts["usage_rows"] + counts["cost_lines"]
    print(
        f"[{label}] floor (read the inputs only): {floor['seconds']:.2f} s "
        f"(CPU {floor['cpu_seconds']:.2f} s), {inputs / floor['seconds']:,.0f} input rows/s, "
        f"{floor['cost_groups']:,} cost groups, peak RSS {floor['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    for phase in ("attribute", "again", "revised"):
        figures = child(url, phase, args)
        seconds = figures["seconds"]
        written = figures["allocations"]
        print(
            f"[{label}] {phase}: {seconds:.2f} s (CPU {figures['cpu_seconds']:.2f} s), "
            f"{inputs / seconds:,.0f} input rows/s, "
            f"{written:,} allocations written ({written / seconds:,.0f}/s), "
            f"peak RSS {figures['peak_rss_mb']:.0f} MB, {seconds / floor['seconds']:.1f}x the "
            f"floor; changed={figures['changed']}, days with new inputs="
            f"{figures['days_with_new_inputs']}, balanced={figures['balanced']}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--hubs", type=int, default=100)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--user-hours", type=int, default=1_000_000)
    parser.add_argument("--cost-lines", type=int, default=500_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.url, args.child, args)))
        return
    if args.database in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="hubmeter-bench-") as tmp:
            run(f"sqlite:///{Path(tmp) / 'bench.db'}", "sqlite", args)
    if args.database in ("postgresql", "both"):
        from tests import servers

        with servers.postgres_server() as server:
            run(servers.create_database(server.url, "bench_attribution"), "postgresql", args)


if __name__ == "__main__":
    main()
