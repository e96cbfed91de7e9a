"""What to generate: the scenario a caller asks for, validated."""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass

from app.synthetic.units import SECONDS_PER_DAY, SECONDS_PER_HOUR


@dataclass(frozen=True)
class ScenarioSpec:
    """A synthetic set of clusters, hubs and users, and the period they are observed for."""

    hubs: int = 4  # per cluster
    users_per_hub: int = 10
    days: int = 3
    start: dt.date = dt.date(2026, 10, 1)  # the period starts at 00:00 UTC of this day
    seed: int = 0
    clusters: int = 1
    scrape_interval_seconds: int = 60
    storage_interval_seconds: int = 300
    annotations: bool = True  # kube-state-metrics exports the username annotation
    gpu_hub_every: int = 0  # 0 = no GPU hubs; n = every n-th hub requests GPUs
    unmatched_namespace: bool = True  # one singleuser namespace that no hub in the config names
    cost_rows_per_hour: int | None = None  # approximate bill rows per hour; None = natural size
    late_cost_fraction: float = 0.05  # share of bill rows exported days late

    def __post_init__(self) -> None:
        for name in ("hubs", "users_per_hub", "days", "clusters"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("scrape_interval_seconds", "storage_interval_seconds"):
            interval = getattr(self, name)
            # Samples must land on hour boundaries, or "a sample at exactly h belongs to H" and the
            # hourly truth would depend on how an hour is cut.
            if interval < 1 or SECONDS_PER_HOUR % interval:
                raise ValueError(f"{name} must divide 3600 seconds, got {interval}")
        if self.gpu_hub_every < 0:
            raise ValueError(f"gpu_hub_every must be 0 or more, got {self.gpu_hub_every}")
        if self.cost_rows_per_hour is not None and self.cost_rows_per_hour < 1:
            raise ValueError(f"cost_rows_per_hour must be positive, got {self.cost_rows_per_hour}")
        if not 0 <= self.late_cost_fraction <= 1:
            raise ValueError(f"late_cost_fraction must be in [0, 1], got {self.late_cost_fraction}")

    @property
    def period_start(self) -> dt.datetime:
        return dt.datetime(self.start.year, self.start.month, self.start.day, tzinfo=dt.UTC)

    @property
    def period_end(self) -> dt.datetime:
        return self.period_start + dt.timedelta(days=self.days)

    @property
    def period_start_epoch(self) -> int:
        return calendar.timegm(self.start.timetuple())

    @property
    def period_end_epoch(self) -> int:
        return self.period_start_epoch + self.days * SECONDS_PER_DAY

    @property
    def hours(self) -> int:
        return self.days * 24
