"""Attribution next to a cost import, for real, on PostgreSQL: the run reads its cost lines, a
cost import commits on another connection, and only then does the run sum the cost lines for
its conservation check. The run must see one snapshot throughout (REPEATABLE READ): it neither
splits lines its check does not count nor counts lines it did not split, so it is not refused,
and the next run picks the imported day up.

PostgreSQL only: under READ COMMITTED each statement sees every commit before it, which is what
made a run refuse here; SQLite's transactions always read one snapshot.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from app import migrate
from app.attribution import service
from app.attribution.models import AttributionRun
from app.attribution.rules import Period
from app.config import HubmeterConfig, load_config
from app.costs import ingest
from app.costs.models import CostLine
from app.db import make_engine, make_sessionmaker, money_sum, transaction
from app.hubs import service as hub_service
from app.periods import Window
from app.synthetic import Manifest, ScenarioSpec, generate
from tests import servers

NOW = datetime(2026, 11, 2, tzinfo=UTC)
DAY1 = date(2026, 10, 1)
DAY2 = date(2026, 10, 2)
PERIOD = Period(DAY1, DAY1 + timedelta(days=2))
# Only there so that a broken synchronisation fails the test instead of hanging it; nothing
# here is timed.
GIVE_UP_AFTER_SECONDS = 120


@dataclass
class Bill:
    config: HubmeterConfig
    days: dict[date, Path]  # the GCP export's rows of each day, as a file of their own


@pytest.fixture(scope="module")
def bill(tmp_path_factory: pytest.TempPathFactory) -> Bill:
    folder = tmp_path_factory.mktemp("bill")
    manifest: Manifest = generate(
        ScenarioSpec(hubs=2, users_per_hub=2, days=2, seed=7, late_cost_fraction=0), folder
    )
    lines = manifest.billing_export_file.read_text(encoding="utf-8").splitlines()
    days = {}
    for day in (DAY1, DAY2):
        path = folder / f"export-{day}.jsonl"
        mine = [line for line in lines if json.loads(line)["usage_start_time"][:10] == str(day)]
        assert mine
        path.write_text("\n".join(mine) + "\n", encoding="utf-8")
        days[day] = path
    return Bill(load_config(manifest.config_file), days)


@pytest.fixture
def engine(postgres_server_url: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    name = "attribution_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[-40:]
    engine = make_engine(servers.create_database(postgres_server_url, name.lower()))
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


def import_day(engine: Engine, bill: Bill, day: date) -> None:
    """One day of the bill, imported and committed in a transaction of its own."""
    start = datetime.combine(day, datetime.min.time(), UTC)
    with transaction(make_sessionmaker(engine)) as session:
        ingest.ingest_gcp_export_files(
            session=session,
            paths=[bill.days[day]],
            now=NOW,
            window=Window(start, start + timedelta(days=1)),
        )


def net_cost_of(engine: Engine, day: date) -> Decimal:
    start = datetime.combine(day, datetime.min.time(), UTC)
    with Session(engine) as session:
        total = session.scalar(
            select(money_sum(CostLine.net_cost)).where(
                CostLine.charge_period_start >= start,
                CostLine.charge_period_start < start + timedelta(days=1),
            )
        )
    return total or Decimal(0)


def test_a_cost_import_committing_during_a_run_does_not_make_it_refuse(
    engine: Engine, bill: Bill, monkeypatch: pytest.MonkeyPatch
) -> None:
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        hub_service.sync_from_config(session=session, config=bill.config, now=NOW)
    import_day(engine, bill, DAY1)
    load = service.load_cost_items
    imported: list[BaseException | None] = []

    def then_an_import_commits(**kwargs: Any) -> Any:
        items = load(**kwargs)
        # Another process's import, on its own connection, committed before the run reads
        # anything else (its check above all). It touches nothing the run locks, so it does
        # not wait for the run.
        worker = threading.Thread(target=lambda: imported.append(_import(engine, bill, DAY2)))
        worker.start()
        worker.join()
        return items

    monkeypatch.setattr(service, "load_cost_items", then_an_import_commits)
    with transaction(factory) as session:
        report = service.attribute_period(
            session=session, config=bill.config, period=PERIOD, now=NOW, created_by="test"
        )

    assert imported == [None]
    assert net_cost_of(engine, DAY2) > 0  # the import is in the database...
    # ...and the run saw the database as it was before it: day 2 had no cost lines yet.
    assert report.balanced
    assert [(d.day, d.cost, d.allocated) for d in report.days] == [
        (DAY1, net_cost_of(engine, DAY1), net_cost_of(engine, DAY1)),
        (DAY2, Decimal(0), Decimal(0)),
    ]

    monkeypatch.undo()
    with transaction(factory) as session:
        again = service.attribute_period(
            session=session, config=bill.config, period=PERIOD, now=NOW, created_by="test"
        )
    assert again.changed
    assert again.days_with_new_inputs == [DAY2]
    assert again.balanced
    assert [d.cost for d in again.days] == [net_cost_of(engine, DAY1), net_cost_of(engine, DAY2)]
    with Session(engine) as session:
        assert session.scalar(select(AttributionRun.id).order_by(AttributionRun.id.desc())) == (
            again.run_id
        )


def _import(engine: Engine, bill: Bill, day: date) -> BaseException | None:
    try:
        import_day(engine, bill, day)
    except BaseException as exc:  # reported by the test, in its own thread
        return exc
    return None


def waiting_for_its_turn(engine: Engine) -> bool:
    """Is a backend waiting for a lock (a run waiting for its turn)?"""
    with engine.connect() as observer:
        waiting = observer.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
        return bool(waiting.scalar_one())


def test_runs_take_turns_and_a_run_that_waited_sees_what_the_other_stored(
    engine: Engine, bill: Bill
) -> None:
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        hub_service.sync_from_config(session=session, config=bill.config, now=NOW)
    import_day(engine, bill, DAY1)
    import_day(engine, bill, DAY2)
    first_has_written = threading.Event()
    finish_first = threading.Event()
    outcomes: dict[str, Any] = {}

    def first() -> None:
        try:
            with transaction(factory) as session:
                outcomes["first"] = service.attribute_period(
                    session=session, config=bill.config, period=PERIOD, now=NOW, created_by="1"
                )
                first_has_written.set()
                assert finish_first.wait(GIVE_UP_AFTER_SECONDS)
        except BaseException as exc:  # reported below
            outcomes["first"] = exc
            first_has_written.set()

    def second() -> None:
        try:
            with transaction(factory) as session:
                outcomes["second"] = service.attribute_period(
                    session=session, config=bill.config, period=PERIOD, now=NOW, created_by="2"
                )
        except BaseException as exc:  # reported below
            outcomes["second"] = exc

    one = threading.Thread(target=first)
    one.start()
    assert first_has_written.wait(GIVE_UP_AFTER_SECONDS)
    two = threading.Thread(target=second)
    two.start()
    # The second waits for the first's turn; once the first commits, it must see its run in
    # force (not a snapshot from before it) and find nothing changed.
    give_up = time.monotonic() + GIVE_UP_AFTER_SECONDS
    while not waiting_for_its_turn(engine):
        if not two.is_alive() or time.monotonic() > give_up:
            finish_first.set()
            pytest.fail(f"the second run did not wait for the first: {outcomes.get('second')}")
        time.sleep(0.02)
    finish_first.set()
    one.join(GIVE_UP_AFTER_SECONDS)
    two.join(GIVE_UP_AFTER_SECONDS)
    first_report, second_report = outcomes["first"], outcomes["second"]
    assert isinstance(first_report, service.RunReport), first_report
    assert isinstance(second_report, service.RunReport), second_report
    assert first_report.changed
    assert not second_report.changed
    assert second_report.runs_in_force == [first_report.run_id]
