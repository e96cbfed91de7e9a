"""`hubmeter` as the CronJobs and operators call it: its log lines and its errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def test_a_scheduled_job_logs_as_json_when_the_cronjobs_ask(tmp_path: Path) -> None:
    """The CronJobs set HUBMETER_LOG_FORMAT=json: what `jobs run` says, failures included, is
    then one JSON object per line, for the cluster's log collector."""
    env = {
        **os.environ,
        "HUBMETER_DATABASE_URL": f"sqlite:///{tmp_path / 'hubmeter.db'}",
        "HUBMETER_CONFIG": str(Path(__file__).parents[2] / "app/examples/hubmeter.yaml"),
        "HUBMETER_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-c", "from app.cli import main; main()"]
    subprocess.run([*command, "db", "upgrade"], env=env, check=True, capture_output=True)
    # The configuration was never applied, so attribution refuses: a failure to log, and the
    # configuration's fault (status 2, as from every command).
    done = subprocess.run(
        [*command, "jobs", "run", "attribute"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    records = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert records
    assert records[-1]["level"] == "error"
    assert "attribute failed" in records[-1]["message"]
    assert "config apply" in records[-1]["message"]


def test_a_bad_setting_in_the_environment_is_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "HUBMETER_PORT": "eight thousand"}
    done = subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", "db", "current"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: HUBMETER_PORT: Input should be a valid integer, unable to parse string as an "
        "integer"
    ]


def test_serve_gives_the_app_the_servers_connection_pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Deployment runs `hubmeter serve`: its engine must test connections before use and
    recycle them (a restarted PostgreSQL otherwise answers the next requests with errors)."""
    import uvicorn
    from typer.testing import CliRunner

    from app.cli import cli
    from app.main import SERVER_POOL

    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **_options: served.append(app))
    url = f"sqlite:///{tmp_path / 'hubmeter.db'}"
    result = CliRunner().invoke(cli, ["--database-url", url, "serve", "--port", "8999"])
    assert result.exit_code == 0, result.output
    (app,) = served
    engine = app.state.session_factory.kw["bind"]
    assert engine.pool._pre_ping is True
    assert engine.pool._recycle == SERVER_POOL["pool_recycle"]
    engine.dispose()
