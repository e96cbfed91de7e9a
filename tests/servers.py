"""Start real PostgreSQL and Prometheus servers for the tests, from Debian's packages.

Each server runs as a child process on a free loopback port, in a temporary directory, and is
stopped when the test session ends. Where a binary is missing the tests that need it skip with
the reason, unless HUBMETER_REQUIRE_SERVERS=1 (set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REQUIRE_SERVERS = os.environ.get("HUBMETER_REQUIRE_SERVERS") == "1"


def unavailable(reason: str) -> None:
    """Skip the test with `reason`, or fail it where servers are required."""
    if REQUIRE_SERVERS:
        pytest.fail(f"{reason} (HUBMETER_REQUIRE_SERVERS=1 makes this a failure)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_bindir() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "postgres").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def _version_key(path: str) -> int:
    try:
        return int(Path(path).parent.name)
    except ValueError:
        return 0


def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"server exited with {process.returncode}: {log.read_text()[-2000:]}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(
        f"server did not listen on {port} within {timeout}s: {log.read_text()[-2000:]}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Postgres:
    url: str
    port: int
    process: subprocess.Popen[bytes]


@contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A throw-away PostgreSQL cluster. PostgreSQL refuses to run as root, so as root the
    server runs as the `postgres` user in a directory that user owns (outside pytest's own
    temporary directories, which only root may enter)."""
    bindir = postgres_bindir()
    if bindir is None:
        unavailable("PostgreSQL server binaries not found (Debian package `postgresql`)")
        raise AssertionError("unreachable")
    workdir = Path(tempfile.mkdtemp(prefix="hubmeter-postgres-"))
    data = workdir / "data"
    log = workdir / "postgres.log"
    run_as: dict[str, Any] = {}
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root and there is no `postgres` user to run PostgreSQL as")
            raise AssertionError("unreachable") from None
        os.chown(workdir, user.pw_uid, user.pw_gid)
        run_as = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    initdb = subprocess.run(
        [
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        ],
        capture_output=True,
        text=True,
        **run_as,
    )
    if initdb.returncode != 0:
        raise RuntimeError(f"initdb failed: {initdb.stderr[-2000:]}")
    port = free_port()
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-k",
                str(workdir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            **run_as,
        )
    try:
        _wait_for_port(port, process, log, timeout=60)
        url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        _wait_for_postgres(url)
        yield Postgres(url=url, port=port, process=process)
    finally:
        _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)


def _wait_for_postgres(url: str) -> None:
    import psycopg

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(conninfo, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def create_database(server_url: str, name: str) -> str:
    """A fresh database on the server; returns its URL."""
    import psycopg

    conninfo = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@dataclass
class Prometheus:
    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        _stop(self.process)


def prometheus_binaries() -> tuple[str, str] | None:
    prometheus = shutil.which("prometheus")
    promtool = shutil.which("promtool")
    if prometheus and promtool:
        return prometheus, promtool
    return None


def backfill(openmetrics_file: Path, data_dir: Path) -> None:
    """Load an OpenMetrics file into TSDB blocks with promtool (slow: build once, reuse)."""
    binaries = prometheus_binaries()
    if binaries is None:
        unavailable("prometheus/promtool not found (Debian package `prometheus`)")
        raise AssertionError("unreachable")
    data_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            binaries[1],
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(openmetrics_file),
            str(data_dir),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"promtool backfill failed: {result.stderr[-3000:]}")


@contextmanager
def prometheus_server(data_dir: Path, *, port: int | None = None) -> Iterator[Prometheus]:
    """A Prometheus server over an existing TSDB directory, scraping nothing.

    Backfilled blocks are as old as the generated data, so retention is set far out or the
    server would delete them on start-up.
    """
    binaries = prometheus_binaries()
    if binaries is None:
        unavailable("prometheus/promtool not found (Debian package `prometheus`)")
        raise AssertionError("unreachable")
    port = port or free_port()
    config = data_dir.parent / f"prometheus-{port}.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    log = data_dir.parent / f"prometheus-{port}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binaries[0],
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address=127.0.0.1:{port}",
                "--query.max-samples=200000000",
                "--log.level=warn",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_port(port, process, log, timeout=60)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus not ready: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield Prometheus(url=url, port=port, data_dir=data_dir, process=process)
    finally:
        _stop(process)
