"""Ground truth of the bill: net cost per day, cluster, class, hub and component."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

from app.synthetic.charges import Charge
from app.synthetic.decimals import plain
from app.synthetic.timefmt import iso_day

COST_TRUTH_COLUMNS = ("day", "cluster", "class", "hub", "component", "net_cost")

_Key = tuple[str, str, str, str, str]


class CostTruthTotals:
    """Sums net cost (cost plus credits) exactly while the charges stream past."""

    def __init__(self) -> None:
        self._net: dict[_Key, Decimal] = {}
        self.total = Decimal(0)

    def add(self, charge: Charge) -> None:
        truth = charge.truth
        key = (
            iso_day(charge.hour_start),
            truth.cluster,
            truth.cost_class.value,
            truth.hub,
            truth.component.value,
        )
        net = charge.net_cost
        self._net[key] = self._net.get(key, Decimal(0)) + net
        self.total += net

    def write(self, path: Path) -> int:
        """Write truth/costs_daily.csv, sorted; returns the number of rows."""
        with path.open("w", encoding="utf-8", newline="") as stream:
            out = csv.writer(stream, lineterminator="\n")
            out.writerow(COST_TRUTH_COLUMNS)
            for key in sorted(self._net):
                out.writerow([*key, plain(self._net[key])])
        return len(self._net)
