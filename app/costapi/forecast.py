"""Month-to-date, a month-end forecast and the budget alert for one hub. Pure.

The forecast extends the month-to-date amount at the recent daily run rate:

    days attributed  n = days of the month before `today` that have allocations in force and
                         that the bill has reached (the caller decides which: `attributed_days`)
    run rate         r = (sum of the last min(7, n) attributed days) / min(7, n)
    forecast         F = month_to_date + r x (days_in_month - n)

Seven days cover a whole week, so weekends neither inflate nor deflate the rate; days that
are not attributed yet (the cloud bill arrives a day or two late) are forecast at the run rate
like the rest of the month. `today` itself is never counted: its bill is not complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext
from enum import StrEnum

from app.money import EXACT, ZERO, round_to_currency
from app.periods import days_in_month, month_start, next_month

RUN_RATE_DAYS = 7
# A forecast at or above this share of the budget is worth a look before it is too late.
AT_RISK_FRACTION = Decimal("0.9")
PERCENT_PLACES = Decimal("0.01")


class AlertState(StrEnum):
    """Where a hub stands against its monthly budget, worst first."""

    over_budget = "over_budget"  # the month-to-date amount already exceeds the budget
    forecast_over_budget = "forecast_over_budget"  # the month-end forecast exceeds it
    at_risk = "at_risk"  # the forecast reaches 90% of it
    ok = "ok"
    no_data = "no_data"  # a budget, but no attributed day this month yet
    no_budget = "no_budget"  # no budget configured for the hub


@dataclass(frozen=True)
class MonthForecast:
    month: date
    currency: str
    days_in_month: int
    days_attributed: int
    last_attributed_day: date | None
    month_to_date: Decimal
    estimated: Decimal
    run_rate_per_day: Decimal | None
    forecast: Decimal | None
    budget: Decimal | None
    budget_used_percent: Decimal | None
    budget_remaining: Decimal | None
    projected_overrun: Decimal | None
    alert_state: AlertState


def forecast_month(
    *,
    month: date,
    today: date,
    currency: str,
    daily: Mapping[date, Decimal],
    attributed_days: Iterable[date],
    budget: Decimal | None,
    estimated: Decimal = ZERO,
    active_from: date | None = None,
) -> MonthForecast:
    """The month-to-date amount, forecast and budget state of `month` as known on `today`.

    `daily` holds the hub's amount on each attributed day (missing days count as zero),
    `attributed_days` every day that counts as attributed (allocations in force, and billed),
    `estimated` the list-price estimate of the days before today that do not count yet; it is
    reported, never added to the month-to-date amount. `active_from` is the hub's first day
    with any allocation this month: the days before it (a hub that started mid-month) count
    in the month to date as the nothing they were, but not in the run rate.
    """
    first = month_start(month)
    cutoff = min(today, next_month(first))
    days = sorted(d for d in set(attributed_days) if first <= d < cutoff)
    length = days_in_month(first)
    with localcontext(EXACT):
        month_to_date = sum((daily.get(d, ZERO) for d in days), ZERO)
        run_rate: Decimal | None = None
        forecast: Decimal | None = None
        if days:
            active = [d for d in days if active_from is None or d >= active_from] or days
            recent = active[-RUN_RATE_DAYS:]
            exact_rate = sum((daily.get(d, ZERO) for d in recent), ZERO) / len(recent)
            run_rate = round_to_currency(exact_rate, currency)
            forecast = round_to_currency(
                month_to_date + exact_rate * (length - len(days)), currency
            )
        used_percent = remaining = overrun = None
        if budget is not None:
            remaining = budget - month_to_date
            if budget > 0:
                used_percent = (month_to_date * 100 / budget).quantize(PERCENT_PLACES)
            if forecast is not None:
                overrun = max(forecast - budget, ZERO)
    return MonthForecast(
        month=first,
        currency=currency,
        days_in_month=length,
        days_attributed=len(days),
        last_attributed_day=days[-1] if days else None,
        month_to_date=month_to_date,
        estimated=estimated,
        run_rate_per_day=run_rate,
        forecast=forecast,
        budget=budget,
        budget_used_percent=used_percent,
        budget_remaining=remaining,
        projected_overrun=overrun,
        alert_state=alert_state(month_to_date=month_to_date, forecast=forecast, budget=budget),
    )


def alert_state(
    *, month_to_date: Decimal, forecast: Decimal | None, budget: Decimal | None
) -> AlertState:
    """The budget state; spending exactly the budget is not over it."""
    if budget is None:
        return AlertState.no_budget
    if month_to_date > budget:
        return AlertState.over_budget
    if forecast is None:
        return AlertState.no_data
    if forecast > budget:
        return AlertState.forecast_over_budget
    if forecast >= budget * AT_RISK_FRACTION:
        return AlertState.at_risk
    return AlertState.ok
