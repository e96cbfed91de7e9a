"""The cost API under load: "a hub's costs by user for a month", against a year of allocations.

    .venv/bin/python -m benchmarks.bench_api [--hubs 100] [--users 20000] [--days 365]
                                             [--seconds 20] [--rate 300] [--workers 2]

Starts a throw-away PostgreSQL (tests.servers.postgres_server), bulk-loads the hubs, users and a
year of daily allocations with COPY (two attribution runs for the last two months, the older
kept as attribution keeps it), serves the app with uvicorn in separate processes, and drives it
with `wrk` (Debian package `wrk`; a Python asyncio/httpx client when wrk is missing). Prints
load figures, query plans, latency percentiles, requests per second, the server's peak memory,
and the ratio of each to a trivial endpoint (/healthz) of the same app on the same run.

Targets from issue 5: p99 under 50 ms and at least 300 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg

from app import migrate
from app.auth import service as token_service
from app.auth.models import Role
from app.db import make_engine, make_sessionmaker, transaction
from tests import servers

COMPONENTS_PER_HUB = ("core", "networking", "object_storage")
ACTIVE_SHARE = 0.4  # users who run a server on a given day
FIRST_DAY = date(2025, 11, 1)
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


@dataclass
class Dataset:
    hubs: int
    users: int
    days: int
    rows: int = 0
    hub_ids: list[int] | None = None
    months: list[date] | None = None


def _amounts(rng: random.Random, count: int) -> list[str]:
    """Decimal text with 11 places, from integers: no float ever touches an amount."""
    out = []
    for _ in range(count):
        units = rng.randrange(1, 4 * 10**11)
        out.append(f"{units // 10**11}.{units % 10**11:011d}")
    return out


def load(conninfo: str, data: Dataset, seed: int = 0) -> None:
    """Communities, hubs, users, runs, attribution days and allocations, by COPY."""
    rng = random.Random(seed)
    users_per_hub = data.users // data.hubs
    now = NOW.isoformat()
    with psycopg.connect(conninfo, autocommit=False) as conn:
        cur = conn.cursor()
        clusters = [f"cluster-{i}" for i in range(max(1, data.hubs // 25))]
        for name in clusters:
            cur.execute(
                "INSERT INTO cluster (name, provider, updated_at) VALUES (%s, 'gcp', %s)",
                (name, now),
            )
        communities = [f"community-{i:03d}" for i in range(max(1, data.hubs // 2))]
        with cur.copy(
            "COPY community (id, name, billing_email, currency, plan, active, updated_at) "
            "FROM STDIN"
        ) as copy:
            for cid in communities:
                copy.write_row((cid, cid.title(), f"billing@{cid}.org", "USD", "p", True, now))
        hubs: list[tuple[int, str, str]] = []  # id, cluster, community
        with cur.copy(
            "COPY hub (id, cluster_name, name, namespace, community_id, monthly_budget, active,"
            " updated_at) FROM STDIN"
        ) as copy:
            for i in range(data.hubs):
                hub_id = i + 1
                cluster = clusters[i % len(clusters)]
                community = communities[i % len(communities)]
                budget = "3000.00" if i % 2 == 0 else None
                copy.write_row(
                    (hub_id, cluster, f"hub-{i:03d}", f"hub-{i:03d}", community, budget, True, now)
                )
                hubs.append((hub_id, cluster, community))
        cur.execute("SELECT setval('hub_id_seq', %s)", (data.hubs,))
        with cur.copy("COPY hub_user (id, hub_id, username, first_seen_at) FROM STDIN") as copy:
            for hub_id, _, _ in hubs:
                for u in range(users_per_hub):
                    user_id = (hub_id - 1) * users_per_hub + u + 1
                    copy.write_row((user_id, hub_id, f"user-{user_id}@example.org", now))
        cur.execute("SELECT setval('hub_user_id_seq', %s)", (data.hubs * users_per_hub,))

        days = [FIRST_DAY + timedelta(days=i) for i in range(data.days)]
        months = sorted({d.replace(day=1) for d in days})
        run_for_month: dict[date, int] = {}
        older_run_for_month: dict[date, int] = {}
        for month in months:
            for older in (True, False) if month >= months[-2] else (False,):
                cur.execute(
                    "INSERT INTO attribution_run (period_start, period_end, created_at,"
                    " created_by, policy, inputs_sha256, currency, cost_total, allocated_total,"
                    " unattributed_total, estimated_total, summary) VALUES (%s, %s, %s, 'bench',"
                    " '{}', %s, 'USD', 0, 0, 0, 0, '{}') RETURNING id",
                    (month, (month + timedelta(days=32)).replace(day=1), now, "0" * 64),
                )
                run_id = cur.fetchone()[0]  # type: ignore[index]
                (older_run_for_month if older else run_for_month)[month] = run_id
        with cur.copy("COPY attribution_day (day, run_id) FROM STDIN") as copy:
            for day in days:
                copy.write_row((day, run_for_month[day.replace(day=1)]))

        # Bulk-load the way a restore does: foreign keys unchecked (the generator only writes
        # ids it created) and the indexes built once at the end instead of row by row.
        cur.execute("SET session_replication_role = replica")
        index_definitions = [
            row[0]
            for row in cur.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'allocation'"
                " AND indexname <> 'pk_allocation'"
            ).fetchall()
        ]
        for definition in index_definitions:
            name = definition.split(" INDEX ", 1)[1].split(" ON ", 1)[0]
            cur.execute(f"DROP INDEX {name}")
        amounts = _amounts(rng, 4096)
        active = [rng.random() < ACTIVE_SHARE for _ in range(8192)]
        columns = (
            "run_id, day, cluster_name, community_id, hub_id, user_id, component, rule, amount,"
            " currency, estimated, basis"
        )
        rows = 0
        with cur.copy(f"COPY allocation ({columns}) FROM STDIN") as copy:
            for day in days:
                month = day.replace(day=1)
                runs = [run_for_month[month]]
                if month in older_run_for_month:
                    runs.append(older_run_for_month[month])
                for run_id in runs:
                    prefix = f"{run_id}\t{day.isoformat()}\t"
                    buffer = io.StringIO()
                    for hub_id, cluster, community in hubs:
                        hub_part = f"{prefix}{cluster}\t{community}\t{hub_id}\t"
                        first_user = (hub_id - 1) * users_per_hub + 1
                        k = (hub_id * 7919 + day.toordinal()) % 4096
                        for u in range(users_per_hub):
                            user_id = first_user + u
                            amount = amounts[(k + u) % 4096]
                            buffer.write(
                                f"{hub_part}{user_id}\thome_storage\thome_storage_by_bytes\t"
                                f"{amount[:-2]}\tUSD\tf\t{{}}\n"
                            )
                            if active[(k + u * 31) % 8192]:
                                buffer.write(
                                    f"{hub_part}{user_id}\tcompute\tcompute_by_memory\t"
                                    f"{amount}\tUSD\tf\t{{}}\n"
                                )
                                rows += 1
                        for component in COMPONENTS_PER_HUB:
                            buffer.write(
                                f"{hub_part}\\N\t{component}\thub_shared\t{amounts[k]}\tUSD\tf"
                                "\t{}\n"
                            )
                        rows += users_per_hub + len(COMPONENTS_PER_HUB)
                    for cluster in clusters:
                        buffer.write(
                            f"{prefix}{cluster}\t\\N\t\\N\t\\N\tsupport\tunattributed\t"
                            f"{amounts[7]}\tUSD\tf\t{{}}\n"
                        )
                        rows += 1
                    copy.write(buffer.getvalue())
        cur.execute("SET maintenance_work_mem = '512MB'")
        for definition in index_definitions:
            cur.execute(definition)
        cur.execute("SET session_replication_role = DEFAULT")
        conn.commit()
    data.rows = rows
    data.hub_ids = [h[0] for h in hubs]
    data.months = months


def create_tokens(url: str) -> dict[str, str]:
    engine = make_engine(url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            _, finance = token_service.create_token(
                session=session,
                name="bench finance",
                role=Role.finance,
                community_id=None,
                created_by="bench",
                now=datetime.now(UTC),
            )
        return {"finance": finance}
    finally:
        engine.dispose()


def explain(conninfo: str, hub_id: int, month: date) -> str:
    """The plan of the query the endpoint runs, as PostgreSQL executes it."""
    end = (month + timedelta(days=32)).replace(day=1)
    sql = (
        "SELECT allocation.user_id, allocation.currency, sum(allocation.amount),"
        " max(CASE WHEN allocation.estimated THEN 1 ELSE 0 END), count(*) OVER ()"
        " FROM allocation JOIN attribution_day ON attribution_day.run_id = allocation.run_id"
        " AND attribution_day.day = allocation.day"
        " WHERE attribution_day.day >= %(s)s AND attribution_day.day < %(e)s"
        " AND allocation.day >= %(s)s AND allocation.day < %(e)s AND allocation.hub_id = %(h)s"
        " GROUP BY allocation.user_id, allocation.currency"
    )
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "EXPLAIN (ANALYZE, BUFFERS) " + sql, {"s": month, "e": end, "h": hub_id}
        ).fetchall()
    return "\n".join(r[0] for r in rows)


@dataclass
class LoadResult:
    tool: str
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


WRK_SCRIPT = """
local paths = {%s}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
end
done = function(summary, latency, requests)
  io.write(string.format("JSON {\\"requests\\": %%d, \\"seconds\\": %%f, \\"p50\\": %%f,"
    .. " \\"p90\\": %%f, \\"p99\\": %%f, \\"max\\": %%f, \\"errors\\": %%d}\\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3,
    latency:percentile(90) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
"""


def run_wrk(base: str, paths: list[str], token: str, seconds: int, connections: int) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % ", ".join(json.dumps(p) for p in paths))
    try:
        output = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{seconds}s",
                "--timeout",
                "10s",
                "-H",
                f"Authorization: Bearer {token}",
                "-s",
                script.name,
                base,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    figures = json.loads(re.search(r"^JSON (.*)$", output, re.M).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return LoadResult(
        tool="wrk",
        requests=figures["requests"],
        seconds=figures["seconds"],
        p50_ms=figures["p50"],
        p90_ms=figures["p90"],
        p99_ms=figures["p99"],
        max_ms=figures["max"],
        errors=figures["errors"] + (int(non_2xx.group(1)) if non_2xx else 0),
    )


def run_python_client(
    base: str, paths: list[str], token: str, seconds: int, connections: int
) -> LoadResult:
    """An asyncio/httpx load generator, for machines without wrk (it costs more CPU)."""
    import httpx

    async def main() -> LoadResult:
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds
        counter = 0
        async with httpx.AsyncClient(
            base_url=base,
            headers={"Authorization": f"Bearer {token}"},
            limits=httpx.Limits(max_connections=connections),
            timeout=10,
        ) as client:

            async def worker() -> None:
                nonlocal errors, counter
                while time.perf_counter() < deadline:
                    counter += 1
                    started = time.perf_counter()
                    response = await client.get(paths[counter % len(paths)])
                    latencies.append((time.perf_counter() - started) * 1000)
                    if response.status_code >= 300:
                        errors += 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = time.perf_counter() - started
        quantiles = statistics.quantiles(latencies, n=100)
        return LoadResult(
            "python-httpx",
            len(latencies),
            elapsed,
            quantiles[49],
            quantiles[89],
            quantiles[98],
            max(latencies),
            errors,
        )

    return asyncio.run(main())


def run_paced(
    base: str, paths: list[str], token: str, rate: float, seconds: int, connections: int = 64
) -> LoadResult:
    """Open-loop load: request i is due at start + i / rate whether or not earlier ones have
    answered, and its latency counts from when it was due, so time spent queueing for a
    connection counts too (no coordinated omission). A minimal HTTP/1.1 keep-alive client on
    asyncio streams, so the generator itself stays light on this small machine."""
    host, port = base.removeprefix("http://").split(":")
    header = f"Host: {host}\r\nAuthorization: Bearer {token}\r\n\r\n"

    async def main() -> LoadResult:
        idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        for _ in range(connections):
            idle.put_nowait(await asyncio.open_connection(host, int(port)))
        latencies: list[float] = []
        errors = 0
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.05
        total = int(rate * seconds)

        async def one(index: int) -> None:
            nonlocal errors
            due = start + index / rate
            await asyncio.sleep(max(0.0, due - loop.time()))
            reader, writer = await idle.get()
            try:
                path = paths[index % len(paths)]
                writer.write(f"GET {path} HTTP/1.1\r\n{header}".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                await reader.readexactly(length)
                latencies.append((loop.time() - due) * 1000)
                if status >= 300:
                    errors += 1
            finally:
                idle.put_nowait((reader, writer))

        began = loop.time()
        await asyncio.gather(*(one(i) for i in range(total)))
        elapsed = loop.time() - began
        while not idle.empty():
            _, writer = idle.get_nowait()
            writer.close()
        q = statistics.quantiles(latencies, n=100)
        return LoadResult(
            f"paced {rate:.0f}/s",
            len(latencies),
            elapsed,
            q[49],
            q[89],
            q[98],
            max(latencies),
            errors,
        )

    return asyncio.run(main())


def peak_rss_mib(pids: list[int]) -> float:
    """Peak resident memory (VmHWM) summed over the server's processes."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        if match:
            total += int(match.group(1))
    return total / 1024


def child_pids(pid: int) -> list[int]:
    found = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in children:
        found.extend(child_pids(int(child)))
    return found


def app_without_cost_cache() -> object:
    """The app as `create_app_from_environment` builds it, with the cost cache turned off."""
    from app.config import get_settings
    from app.logs import configure_logging
    from app.main import create_app

    settings = get_settings()
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    return create_app(settings, cost_cache_rows=0)


def serve(
    url: str, port: int, workers: int, log: Path, *, cached: bool = True
) -> subprocess.Popen[bytes]:
    """The app in `workers` processes sharing one listening socket (see `serve_workers`)."""
    env = {
        **os.environ,
        "HUBMETER_DATABASE_URL": url,
        "HUBMETER_LOG_FORMAT": "json",
        "HUBMETER_LOG_LEVEL": "INFO",
    }
    command = [sys.executable, "-m", "benchmarks.bench_api", "--serve", str(port)]
    if not cached:
        command.append("--no-cost-cache")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--workers", str(workers)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return process
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {log.read_text()[-3000:]}") from None
            time.sleep(0.2)


def serve_workers(port: int, workers: int, *, cached: bool = True) -> None:
    """Run uvicorn in `workers` forked processes on one TCP socket.

    Not `uvicorn --workers`: that hands its workers a socket made without IPPROTO_TCP, so
    asyncio never sets TCP_NODELAY on the connections, and every response waits for the
    client's delayed ACK (about 40 ms): 350 requests/s for an empty endpoint here.
    """
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    sock.set_inheritable(True)
    children = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:
            factory = (
                "app.main:create_app_from_environment"
                if cached
                else "benchmarks.bench_api:app_without_cost_cache"
            )
            config = uvicorn.Config(
                factory,
                factory=True,
                log_config=None,
                access_log=False,
                log_level="warning",
            )
            uvicorn.Server(config).run(sockets=[sock])
            os._exit(0)
        children.append(pid)

    def stop(signum: int, _frame: object) -> None:
        for child in children:
            os.kill(child, signal.SIGINT)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for child in children:
        os.waitpid(child, 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--hubs", type=int, default=100)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--seconds", type=int, default=20, help="each load run")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--rate", type=int, default=300, help="requests/s of the open-loop (latency) runs"
    )
    parser.add_argument(
        "--database-url",
        help="measure an already loaded database (from an earlier run) instead of loading one",
    )
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--no-cost-cache", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_workers(args.serve, args.workers, cached=not args.no_cost_cache)
        return

    data = Dataset(hubs=args.hubs, users=args.users, days=args.days)
    if args.database_url:
        url = args.database_url
        describe_existing(url.replace("postgresql+psycopg://", "postgresql://"), data)
        measure(url, data, args)
        return
    with servers.postgres_server() as server:
        url = servers.create_database(server.url, "hubmeter_bench")
        conninfo = url.replace("postgresql+psycopg://", "postgresql://")
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        started = time.perf_counter()
        load(conninfo, data)
        loaded = time.perf_counter() - started
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) allocation")
            conn.execute("ANALYZE")
        ready = time.perf_counter() - started
        print(
            f"load: {data.rows:,} allocation rows in {loaded:.1f} s by COPY "
            f"({data.rows / loaded:,.0f} rows/s); {ready:.1f} s with VACUUM ANALYZE"
        )
        measure(url, data, args)


def describe_existing(conninfo: str, data: Dataset) -> None:
    with psycopg.connect(conninfo) as conn:
        data.hub_ids = [r[0] for r in conn.execute("SELECT id FROM hub ORDER BY id")]
        data.months = sorted(
            {r[0].replace(day=1) for r in conn.execute("SELECT day FROM attribution_day")}
        )
        data.rows = conn.execute("SELECT count(*) FROM allocation").fetchone()[0]  # type: ignore[index]
        data.hubs = len(data.hub_ids)
        data.users = conn.execute("SELECT count(*) FROM hub_user").fetchone()[0]  # type: ignore[index]
        data.days = conn.execute("SELECT count(*) FROM attribution_day").fetchone()[0]  # type: ignore[index]


def measure(url: str, data: Dataset, args: argparse.Namespace) -> None:
    """Serve the loaded database and put the cost endpoint and /healthz under load."""
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn:
        size = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('allocation'))"
        ).fetchone()[0]  # type: ignore[index]
    print(
        f"data: {data.hubs} hubs, {data.users:,} users, {data.days} days, "
        f"{data.rows:,} allocation rows ({size} with indexes)"
    )
    assert data.hub_ids
    assert data.months
    month = data.months[-2]
    print("\nplan of the by-user month query (one hub, the month with two runs):")
    print(explain(conninfo, data.hub_ids[0], month))

    tokens = create_tokens(url)
    rng = random.Random(1)
    cost_paths = []
    months = data.months[:-1] if len(data.months) > 1 else data.months
    for _ in range(500):
        hub = rng.choice(data.hub_ids)
        first = rng.choice(months)
        end = (first + timedelta(days=32)).replace(day=1)
        cost_paths.append(
            f"/api/v1/hubs/{hub}/costs?start={first}&end={end}&interval=month&by=user&limit=1000"
        )
    use_wrk = args.client == "wrk" or (args.client == "auto" and shutil.which("wrk"))
    saturate = run_wrk if use_wrk else run_python_client
    token = tokens["finance"]
    rate = args.rate
    table: list[tuple[str, str, LoadResult]] = []
    memory = 0.0
    for cached in (True, False):
        port = servers.free_port()
        log = Path(tempfile.mkdtemp(prefix="hubmeter-bench-")) / "server.log"
        process = serve(url, port, args.workers, log, cached=cached)
        try:
            base = f"http://127.0.0.1:{port}"
            if cached:
                request = urllib.request.Request(  # noqa: S310
                    base + cost_paths[0], headers={"Authorization": f"Bearer {token}"}
                )
                with urllib.request.urlopen(request) as response:  # noqa: S310
                    sample = json.load(response)
                print(
                    f"\nsample answer: {len(sample['rows'])} rows, total "
                    f"{sample['totals'][0]['amount']} {sample['totals'][0]['currency']}"
                )
                # Every path, three times over, so that each worker process has seen it.
                run_paced(base, cost_paths * 3, token, 100, len(cost_paths) * 3 // 100)
                healthz = ["/healthz"]
                table.append(("/healthz", "max", saturate(base, healthz, token, args.seconds, 8)))
                table.append(("/healthz", f"{rate}/s", run_paced(base, healthz, token, rate, 20)))
                costs = saturate(base, cost_paths, token, args.seconds, 8)
                table.append(("costs (cached)", "max", costs))
                table.append(
                    ("costs (cached)", f"{rate}/s", run_paced(base, cost_paths, token, rate, 20))
                )
                memory = peak_rss_mib(child_pids(process.pid))
            else:
                run_paced(base, cost_paths[:50], token, 50, 1)
                table.append(
                    ("costs (no cache)", "max", saturate(base, cost_paths, token, args.seconds, 8))
                )
                table.append(
                    ("costs (no cache)", "100/s", run_paced(base, cost_paths, token, 100, 20))
                )
        finally:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    print(
        f"\nload: 'max' = {table[0][2].tool}, 8 connections, closed loop ({args.seconds} s); "
        f"'N/s' = open loop at N requests/s for 20 s, latency counted from when each request "
        f"was due; server: uvicorn, {args.workers} worker processes; {os.cpu_count()} CPU "
        "cores shared by server, PostgreSQL and load generator"
    )
    print(
        f"{'endpoint':<18}{'load':>7}{'req/s':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
        f"{'max ms':>9}{'errors':>8}"
    )
    for label, load_name, r in table:
        print(
            f"{label:<18}{load_name:>7}{r.rps:>8.0f}{r.p50_ms:>9.2f}{r.p90_ms:>9.2f}"
            f"{r.p99_ms:>9.2f}{r.max_ms:>9.1f}{r.errors:>8}"
        )
    by_name = {(label, load_name): r for label, load_name, r in table}
    floor_max, floor_paced = by_name[("/healthz", "max")], by_name[("/healthz", f"{rate}/s")]
    for label in ("costs (cached)", "costs (no cache)"):
        r = by_name[(label, "max")]
        print(f"ratio to the floor, {label}: throughput {r.rps / floor_max.rps:.3f}x")
    paced = by_name[("costs (cached)", f"{rate}/s")]
    print(
        f"ratio to the floor at {rate}/s, costs (cached): p99 "
        f"{paced.p99_ms / floor_paced.p99_ms:.1f}x, p50 {paced.p50_ms / floor_paced.p50_ms:.1f}x"
    )
    print(f"server peak memory (RSS high-water mark, all processes): {memory:.0f} MiB")
    loader = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"benchmark process peak memory (data generation and load): {loader:.0f} MiB")
    meets = (
        paced.p99_ms < 50 and paced.errors == 0 and by_name[("costs (cached)", "max")].rps >= 300
    )
    print(
        f"target: p99 < 50 ms at {rate} requests/s, and at least 300 requests/s: "
        f"{'meets' if meets else 'MISSES'}"
    )
    print(f"machine load average (1 min) at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
