"""Month to date, the month-end forecast and the budget alert: the formula, and the API."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from app.costapi.forecast import AlertState, forecast_month
from tests.api.conftest import Client, World

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
