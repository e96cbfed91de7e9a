"""Month to date, the month-end forecast and the budget alert: the formula, and the API."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app import migrate
from app.attribution.rules import Period
from app.attribution.service import attribute_period
from app.auth import service as token_service
from app.auth.models import Role
from app.config import Cluster as ConfigCluster
from app.config import Community as ConfigCommunity
from app.config import CostMatch, HubmeterConfig
from app.config import Hub as ConfigHub
from app.costapi import service as costapi_service
from app.costapi.forecast import AlertState, forecast_month
from app.costs import service as cost_service
from app.costs.models import CostLine
from app.hubs import service as hub_service
from app.hubs.models import Hub
from app.ingestion.models import IngestionBatch
from app.periods import Window
from app.usage.models import UsageHour
from tests.api.conftest import Client, World, make_app

MONTH = date(2026, 10, 1)


def daily(amounts: dict[int, str]) -> dict[date, Decimal]:
    return {date(2026, 10, day): Decimal(value) for day, value in amounts.items()}


def test_the_forecast_extends_the_last_seven_days() -> None:
    # Ten days at 10, then a course starts: 30 a day from the 11th to the 14th.
    amounts = dict.fromkeys(range(1, 11), "10") | dict.fromkeys(range(11, 15), "30")
    result = forecast_month(
        month=MONTH,
        today=date(2026, 10, 15),
        currency="USD",
        daily=daily(amounts),
        attributed_days=daily(amounts).keys(),
        budget=Decimal("1000"),
    )
    assert result.month_to_date == Decimal(220)
    assert result.days_attributed == 14
    # The last 7 days: 3 x 10 + 4 x 30 = 150, 150 / 7 a day for the 17 days left.
    assert result.run_rate_per_day == Decimal("21.43")
    assert result.forecast == Decimal("584.29")  # 220 + 150/7 x 17 = 584.2857...
    assert result.budget_used_percent == Decimal("22.00")
    assert result.budget_remaining == Decimal(780)
    assert result.projected_overrun == Decimal(0)
    assert result.alert_state == AlertState.ok


def test_days_not_attributed_yet_are_forecast_and_today_never_counts() -> None:
    # The formula alone; which days count is the service's call, tested through the API with
    # a real attribution run below.
    amounts = {1: "5", 2: "5", 3: "5", 20: "999"}
    result = forecast_month(
        month=MONTH,
        today=date(2026, 10, 20),
        currency="USD",
        daily=daily(amounts),
        attributed_days=daily(amounts).keys(),
        budget=None,
    )
    # The 20th is today: its partial bill is left out; the 4th to the 19th await the bill.
    assert result.month_to_date == Decimal(15)
    assert result.days_attributed == 3
    assert result.forecast == Decimal("155.00")  # 15 + 5 x 28
    assert result.alert_state == AlertState.no_budget
    assert result.budget_used_percent is None
    assert result.projected_overrun is None


@pytest.mark.parametrize(
    ("budget", "state", "overrun"),
    [
        ("14.99", AlertState.over_budget, "125.01"),  # the 15 spent so far is already over
        ("15", AlertState.forecast_over_budget, "125.00"),  # spending exactly it is not over
        ("139.99", AlertState.forecast_over_budget, "0.01"),
        ("140", AlertState.at_risk, "0"),
        ("155.55", AlertState.at_risk, "0"),  # 140 is 90.003% of it
        ("155.56", AlertState.ok, "0"),  # 140 is 89.997% of it
    ],
)
def test_alert_states(budget: str, state: AlertState, overrun: str) -> None:
    days = [date(2026, 2, d) for d in (1, 2, 3)]
    result = forecast_month(
        month=date(2026, 2, 1),
        today=date(2026, 2, 4),
        currency="USD",
        daily=dict.fromkeys(days, Decimal(5)),
        attributed_days=days,
        budget=Decimal(budget),
    )
    assert result.forecast == Decimal("140.00")  # February: 15 + 5 x 25
    assert result.alert_state == state
    assert result.projected_overrun == Decimal(overrun)


def test_no_attributed_day_yet() -> None:
    result = forecast_month(
        month=MONTH,
        today=date(2026, 10, 1),
        currency="USD",
        daily={},
        attributed_days=[],
        budget=Decimal("10"),
    )
    assert result.forecast is None
    assert result.run_rate_per_day is None
    assert result.alert_state == AlertState.no_data


def test_a_past_month_is_its_own_forecast() -> None:
    amounts = dict.fromkeys(range(1, 32), "1.005")
    result = forecast_month(
        month=MONTH,
        today=date(2027, 1, 5),
        currency="USD",
        daily=daily(amounts),
        attributed_days=daily(amounts).keys(),
        budget=Decimal("31.155"),
    )
    assert result.month_to_date == Decimal("31.155")
    assert result.forecast == Decimal("31.16")  # rounded half-even to the cent
    assert result.alert_state == AlertState.forecast_over_budget


def test_a_hubs_month_to_date_through_the_api(world: World, client_as: Client) -> None:
    hub = world.hub_ids["ocean"]
    body = client_as("viewer-ocean").get(f"/api/v1/hubs/{hub}/month-to-date").json()
    assert body["month"] == "2026-10"
    # Today is the 21st: the 1st to the 20th are complete, the 21st (estimated) is not counted.
    assert body["days_attributed"] == 20
    assert body["last_attributed_day"] == "2026-10-20"
    start, cutoff = date(2026, 10, 1), date(2026, 10, 21)
    month_to_date = world.expected(start, cutoff, hub="ocean")
    assert Decimal(body["month_to_date"]) == month_to_date
    last_week = world.expected(cutoff - timedelta(days=7), cutoff, hub="ocean")
    forecast = (month_to_date + last_week / 7 * 11).quantize(Decimal("0.01"))
    assert Decimal(body["forecast"]) == forecast
    assert body["budget"] == "2500.00"
    assert Decimal(body["budget_used_percent"]) == (month_to_date * 100 / 2500).quantize(
        Decimal("0.01")
    )
    assert body["alert_state"] == "ok"


def test_a_community_sees_its_hubs_budgets(world: World, client_as: Client) -> None:
    body = (
        client_as("viewer-climate").get("/api/v1/communities/climate-school/month-to-date").json()
    )
    (hub,) = body["hubs"]
    # climate's budget is 100 a month; it spends about 27 a day.
    assert hub["alert_state"] == "over_budget"
    assert Decimal(hub["projected_overrun"]) == Decimal(hub["forecast"]) - 100
    assert body["alert_state"] == "over_budget"
    assert body["budget"] == "100"
    assert body["month_to_date"] == hub["month_to_date"]


def test_finance_sees_every_hub_and_can_filter_by_state(world: World, client_as: Client) -> None:
    client = client_as("finance")
    everything = client.get("/api/v1/month-to-date").json()
    assert [h["hub"]["name"] for h in everything["hubs"]] == ["ocean", "ocean-staging", "climate"]
    states = {h["hub"]["name"]: h["alert_state"] for h in everything["hubs"]}
    assert states == {"ocean": "ok", "ocean-staging": "no_budget", "climate": "over_budget"}
    over = client.get("/api/v1/month-to-date", params={"alert_state": "over_budget"}).json()
    assert [h["hub"]["name"] for h in over["hubs"]] == ["climate"]
    table = client.get("/api/v1/month-to-date", params={"format": "csv"}).text
    assert table.splitlines()[0].startswith("hub_id,hub_name,cluster,community_id,month,")
    assert len(table.splitlines()) == 4


def test_a_month_that_has_not_started_is_refused(world: World, client_as: Client) -> None:
    hub = world.hub_ids["ocean"]
    response = client_as("viewer-ocean").get(
        f"/api/v1/hubs/{hub}/month-to-date", params={"month": "2026-11"}
    )
    assert response.status_code == 422
    assert "has not started" in response.json()["detail"]
    past = (
        client_as("viewer-ocean")
        .get(f"/api/v1/hubs/{hub}/month-to-date", params={"month": "2026-09"})
        .json()
    )
    assert past["days_attributed"] == 0
    assert past["alert_state"] == "no_data"


def test_on_the_first_day_of_a_month_no_day_counts_yet(world: World) -> None:
    # The month so far is no days at all: nothing to read, everything still to forecast.
    with Session(world.engine) as session:
        hubs = list(session.scalars(select(Hub).order_by(Hub.id)))
        months = costapi_service.month_to_date(session=session, hubs=hubs, month=MONTH, today=MONTH)
    assert [m.hub_id for m in months] == [hub.id for hub in hubs]
    for month in months:
        assert month.forecast.days_attributed == 0
        assert month.forecast.month_to_date == 0
        assert month.forecast.forecast is None


# --- the bill lags usage: what a real attribution run leaves in force ---------------------


LAG_TODAY = date(2026, 10, 21)
LAG_NOW = datetime(2026, 10, 21, 9, 30, tzinfo=UTC)


def lagging_config() -> HubmeterConfig:
    return HubmeterConfig(
        clusters=[
            ConfigCluster(
                name="atlantic", provider="gcp", costs=CostMatch(projects=["atlantic-project"])
            )
        ],
        communities=[
            ConfigCommunity(
                id="ocean-lab",
                name="Ocean Lab",
                billing_email="a@ocean.example.org",
                plan="cost-recovery",
            )
        ],
        hubs=[
            ConfigHub(
                name="ocean",
                cluster="atlantic",
                community="ocean-lab",
                monthly_budget=Decimal("1000"),
            )
        ],
    )


def daily_line(batch_id: int, day: int, amount: str, *, estimated: bool = False) -> CostLine:
    """One day of the cluster's shared compute, billed (or a list-price estimate)."""
    start = datetime(2026, 10, day, tzinfo=UTC)
    return CostLine(
        batch_id=batch_id,
        source="bill",
        source_row=f"{day}-{estimated}",
        estimated=estimated,
        provider="gcp",
        billing_account_id="ACCOUNT",
        sub_account_id="atlantic-project",
        service_name="Compute Engine",
        sku_description="N2 Instance Ram running in Americas",
        charge_period_start=start,
        charge_period_end=start + timedelta(days=1),
        charge_category="usage",
        billed_cost=Decimal(amount),
        credits=Decimal(0),
        net_cost=Decimal(amount),
        currency="USD",
        component="compute",
        labels={},
    )


def test_days_the_bill_has_not_reached_are_forecast_not_counted_as_zero(
    fresh_engine: Engine,
) -> None:
    """Usage runs to yesterday (the 20th); the bill reaches the 18th, with a list-price estimate
    for the 19th and nothing yet for the 20th. The scheduled attribution run (the trailing days
    through today) puts every day in force, the 19th with estimates and the 20th with nothing."""
    migrate.upgrade(fresh_engine)
    config = lagging_config()
    billed = {day: Decimal(10 + day) for day in range(1, 19)}
    with Session(fresh_engine) as session:
        hub_service.sync_from_config(session=session, config=config, now=LAG_NOW)
        hub = session.scalars(select(Hub)).one()
        users, _ = hub_service.get_or_create_users(
            session=session, wanted={(hub.id, "alice"), (hub.id, "bob")}, now=LAG_NOW
        )
        usage_batch = IngestionBatch(
            kind="usage",
            source="atlantic",
            window_start=datetime(2026, 10, 1, tzinfo=UTC),
            window_end=datetime(2026, 10, 21, tzinfo=UTC),
            started_at=LAG_NOW,
            finished_at=LAG_NOW,
            stats={},
        )
        cost_batch = IngestionBatch(
            kind="costs",
            source="bill",
            window_start=datetime(2026, 10, 1, tzinfo=UTC),
            window_end=datetime(2026, 10, 21, tzinfo=UTC),
            started_at=LAG_NOW,
            finished_at=LAG_NOW,
            stats={},
        )
        session.add_all([usage_batch, cost_batch])
        session.flush()
        for day in range(1, 21):
            for user_id in users.values():
                session.add(
                    UsageHour(
                        batch_id=usage_batch.id,
                        cluster_name="atlantic",
                        namespace="ocean",
                        hub_id=hub.id,
                        user_id=user_id,
                        hour=datetime(2026, 10, day, 10, tzinfo=UTC),
                        server_seconds=Decimal(3600),
                        memory_request_byte_seconds=Decimal(2**30 * 3600),
                        cpu_request_core_seconds=Decimal(0),
                        memory_usage_byte_seconds=Decimal(0),
                        cpu_usage_core_seconds=Decimal(0),
                        gpu_request_seconds=Decimal(0),
                        home_storage_byte_seconds=Decimal(0),
                    )
                )
        for day, amount in billed.items():
            session.add(daily_line(cost_batch.id, day, str(amount)))
        session.add(daily_line(cost_batch.id, 19, "29.5", estimated=True))
        _, token = token_service.create_token(
            session=session,
            name="viewer",
            role=Role.viewer,
            community_id="ocean-lab",
            created_by="test",
            now=LAG_NOW,
        )
        attribute_period(
            session=session,
            config=config,
            period=Period(date(2026, 10, 1), LAG_TODAY + timedelta(days=1)),
            now=LAG_NOW,
            created_by="test",
        )
        session.commit()
        hub_id = hub.id

    client = TestClient(make_app(fresh_engine), headers={"Authorization": f"Bearer {token}"})
    path = f"/api/v1/hubs/{hub_id}/month-to-date"
    body = client.get(path).json()
    assert body["days_attributed"] == 18
    assert body["last_attributed_day"] == "2026-10-18"
    month_to_date = sum(billed.values(), Decimal(0))
    assert Decimal(body["month_to_date"]) == month_to_date  # 351
    last_week = sum((billed[d] for d in range(12, 19)), Decimal(0))
    assert Decimal(body["run_rate_per_day"]) == last_week / 7  # 25
    # The 19th to the 31st (13 days) at the run rate of the billed days.
    assert Decimal(body["forecast"]) == month_to_date + last_week / 7 * 13  # 676
    assert Decimal(body["estimated"]) == Decimal("29.5")  # beside month_to_date, not in it
    assert body["alert_state"] == "ok"
    community = client.get("/api/v1/communities/ocean-lab/month-to-date").json()
    assert Decimal(community["month_to_date"]) == month_to_date

    # The bill for the 19th arrives and replaces its estimate; until attribution runs again, the
    # allocations in force for the 19th are still estimates, so the day does not count yet.
    with Session(fresh_engine) as session:
        arrival = IngestionBatch(
            kind="costs",
            source="bill-19",
            window_start=datetime(2026, 10, 19, tzinfo=UTC),
            window_end=datetime(2026, 10, 20, tzinfo=UTC),
            started_at=LAG_NOW,
            finished_at=LAG_NOW,
            stats={},
        )
        session.add(arrival)
        session.flush()
        session.add(daily_line(arrival.id, 19, "29"))
        session.flush()
        retired = cost_service.retire_covered_estimates(
            session=session,
            window=Window(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 10, 22, tzinfo=UTC)),
        )
        assert retired == 1
        session.commit()
    assert client.get(path).json()["days_attributed"] == 18
    with Session(fresh_engine) as session:
        attribute_period(
            session=session,
            config=config,
            period=Period(date(2026, 10, 14), LAG_TODAY + timedelta(days=1)),
            now=LAG_NOW,
            created_by="test",
        )
        session.commit()
    body = client.get(path).json()
    assert body["days_attributed"] == 19
    assert Decimal(body["month_to_date"]) == month_to_date + 29
    assert Decimal(body["estimated"]) == 0

    # Another billing account that billed only the first two days (a cluster shut down) has
    # stopped, not lagged: it holds nobody's count back.
    with Session(fresh_engine) as session:
        other = IngestionBatch(
            kind="costs",
            source="other-bill",
            window_start=datetime(2026, 10, 1, tzinfo=UTC),
            window_end=datetime(2026, 10, 3, tzinfo=UTC),
            started_at=LAG_NOW,
            finished_at=LAG_NOW,
            stats={},
        )
        session.add(other)
        session.flush()
        for day in (1, 2):
            line = daily_line(other.id, day, "3")
            line.billing_account_id = "ANOTHER"
            line.sub_account_id = "closed-project"
            session.add(line)
        session.commit()
    assert client.get(path).json()["days_attributed"] == 19

    # Once October's invoice has closed, every attributed day of it counts: the month is over.
    with Session(fresh_engine) as session:
        hubs = list(session.scalars(select(Hub)))
        lagging = costapi_service.month_to_date(
            session=session, hubs=hubs, month=MONTH, today=date(2026, 11, 2)
        )
        closed = costapi_service.month_to_date(
            session=session, hubs=hubs, month=MONTH, today=date(2026, 11, 6)
        )
    assert lagging[0].forecast.days_attributed == 19
    assert closed[0].forecast.days_attributed == 21  # in force through the 21st
    assert closed[0].forecast.month_to_date == month_to_date + 29


def test_a_hub_that_starts_mid_month_is_forecast_at_its_own_rate() -> None:
    # The hub's first allocations are on the 18th, at 100 a day; the days before it are part
    # of the month (nothing was spent) but not of the run rate.
    amounts = dict.fromkeys(range(18, 21), "100")
    result = forecast_month(
        month=MONTH,
        today=date(2026, 10, 21),
        currency="USD",
        daily=daily(amounts),
        attributed_days=[date(2026, 10, d) for d in range(1, 21)],
        budget=Decimal("1000"),
        active_from=date(2026, 10, 18),
    )
    assert result.month_to_date == Decimal(300)
    assert result.run_rate_per_day == Decimal(100)
    assert result.forecast == Decimal(1400)  # 300 + 100 x 11
    assert result.alert_state == AlertState.forecast_over_budget
