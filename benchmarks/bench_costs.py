"""A million-row FOCUS CSV into PostgreSQL, against PostgreSQL's own COPY of the same rows.

    .venv/bin/python -m benchmarks.bench_costs [--rows 1000000] [--data DIR]

Builds the file once (cached in DIR, default .hubmeter-bench/): a generated month of the
synthetic GCP bill as FOCUS, its rows repeated across more projects until the file has the rows
asked for. Starts a throw-away PostgreSQL (tests.servers.postgres_server), then in a child
process (so its peak memory is the import's alone) runs `hubmeter ingest costs --source focus`'s
code path in one transaction, twice: a first import, and a re-import that replaces every row.

The floor is PostgreSQL's own `COPY cost_line (...) FROM STDIN` of the very rows the import
stored (exported with COPY TO, loaded into a fresh copy of the migrated schema): what the same
table, indexes and server cost without any parsing. Prints time, rows/s, peak memory and the
ratio to the floor. Targets (issue 3): under 30 s and under 1 GB peak memory.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from app import migrate
from app.db import make_engine
from tests import servers

COLUMNS_SQL = "batch_id, " + ", ".join(
    __import__("app.costs.records", fromlist=["STORED_COLUMNS"]).STORED_COLUMNS
)


def build_file(rows: int, data: Path) -> Path:
    """The FOCUS CSV with `rows` rows, built once."""
    target = data / f"focus-{rows}.csv"
    if target.exists():
        return target
    from app.synthetic import ScenarioSpec, generate

    data.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    manifest = generate(
        ScenarioSpec(hubs=4, users_per_hub=2, days=30, seed=42, cost_rows_per_hour=None),
        data / "month",
    )
    with manifest.focus_file.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        template = list(reader)
    sub_account = header.index("SubAccountId")
    resource_id = header.index("ResourceId")
    partial = target.with_suffix(".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        written = 0
        copy = 0
        while written < rows:
            for values in template:
                if written == rows:
                    break
                if copy:
                    values = list(values)
                    if values[sub_account]:
                        values[sub_account] = f"{values[sub_account]}-{copy}"
                    if values[resource_id]:
                        values[resource_id] = f"{values[resource_id]}-{copy}"
                writer.writerow(values)
                written += 1
            copy += 1
    partial.rename(target)
    size = target.stat().st_size / 2**20
    print(
        f"built {target} ({rows} rows, {size:.0f} MiB) from {len(template)} generated rows in "
        f"{time.perf_counter() - started:.1f}s"
    )
    return target


def child_import(database_url: str, path: Path) -> None:
    """Run in a child process: two imports of the file, figures as JSON on stdout."""
    from app.costs import ingest
    from app.db import make_sessionmaker, transaction

    engine = make_engine(database_url)
    factory = make_sessionmaker(engine)
    figures = {}
    for name in ("first", "again"):
        started = time.perf_counter()
        with transaction(factory) as session:
            report = ingest.ingest_focus_files(session=session, paths=[path], now=datetime.now(UTC))
        figures[name] = {
            "seconds": time.perf_counter() - started,
            "rows": report.rows_written,
            "superseded": report.rows_superseded,
        }
    figures["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    engine.dispose()
    print(json.dumps(figures))


def floor_copy(server_url: str, source_url: str, work: Path) -> tuple[float, int]:
    """Seconds PostgreSQL's own COPY takes to load the stored rows into an empty schema."""
    dump = work / "cost_line.copy"
    batches = work / "batch.copy"
    conninfo = source_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as connection, connection.cursor() as cursor:
        with (
            dump.open("wb") as out,
            cursor.copy(
                f"COPY (SELECT {COLUMNS_SQL} FROM cost_line) TO STDOUT"  # noqa: S608 - constants
            ) as copy,
        ):
            for chunk in copy:
                out.write(chunk)
        with batches.open("wb") as out, cursor.copy("COPY ingestion_batch TO STDOUT") as copy:
            for chunk in copy:
                out.write(chunk)
    floor_url = servers.create_database(server_url, "hubmeter_floor")
    engine = make_engine(floor_url)
    migrate.upgrade(engine)
    engine.dispose()
    conninfo = floor_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as connection, connection.cursor() as cursor:
        with batches.open("rb") as source, cursor.copy("COPY ingestion_batch FROM STDIN") as copy:
            copy.write(source.read())
        connection.commit()
        started = time.perf_counter()
        with (
            dump.open("rb") as source,
            cursor.copy(f"COPY cost_line ({COLUMNS_SQL}) FROM STDIN") as copy,
        ):
            while chunk := source.read(1 << 20):
                copy.write(chunk)
        connection.commit()
        seconds = time.perf_counter() - started
        cursor.execute("SELECT count(*) FROM cost_line")
        row = cursor.fetchone()
        count = int(row[0]) if row else 0
    return seconds, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, default=Path(".hubmeter-bench"))
    parser.add_argument(
        "--child", nargs=2, metavar=("DATABASE_URL", "FILE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child_import(args.child[0], Path(args.child[1]))
        return
    path = build_file(args.rows, args.data)
    with servers.postgres_server() as server, tempfile.TemporaryDirectory() as work:
        url = servers.create_database(server.url, "hubmeter_bench")
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        result = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_costs", "--child", url, str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            sys.exit(f"the import failed:\n{result.stderr[-4000:]}")
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        floor_seconds, floor_rows = floor_copy(server.url, url, Path(work))
    size = path.stat().st_size / 2**20
    first, again = figures["first"], figures["again"]
    peak = figures["peak_rss_bytes"] / 2**20
    print(f"file: {path} ({first['rows']} rows, {size:.0f} MiB)")
    print(
        f"import:     {first['seconds']:6.1f} s  {first['rows'] / first['seconds']:9.0f} rows/s"
        f"  (target < 30 s)"
    )
    print(
        f"re-import:  {again['seconds']:6.1f} s  {again['rows'] / again['seconds']:9.0f} rows/s"
        f"  ({again['superseded']} rows replaced in the same transaction)"
    )
    print(f"floor COPY: {floor_seconds:6.1f} s  {floor_rows / floor_seconds:9.0f} rows/s")
    print(f"ratio to the floor: {first['seconds'] / floor_seconds:.2f}x")
    print(f"peak memory of the importing process: {peak:.0f} MiB (target < 1024 MiB)")


if __name__ == "__main__":
    main()
