"""Results of cost queries, kept while the allocations they read are unchanged.

Attribution never edits a run's allocations: a re-run is a new run, and `attribution_day` is
switched to it. So the answer to a cost query is fixed by the query and by which run is in
force on each day of its range. The cache keys every result by both, reads the (small) list of
runs in force on each request, and so serves a new run's numbers from the moment it is in
force. Entries also expire after `ttl_seconds`, a bound on staleness should anything ever
change allocations in place. Usernames never change for a user id, so they are kept too.

How far the bill reaches (`service.billed_until`, which month to date needs) reads a month of
cost lines; billed lines only change with a new cost ingestion batch, so it is kept for as long
as the cost batches are the same ones (and `ttl_seconds` at most).

Each process has its own cache; nothing is shared, so replicas never disagree for long.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from datetime import date
from typing import TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.attribution.models import AttributionDay
from app.attribution.rules import Period
from app.costapi import service
from app.ingestion.models import BatchKind, IngestionBatch

T = TypeVar("T")

DEFAULT_ROWS = 200_000  # about 60 MB of cost rows at most
DEFAULT_TTL_SECONDS = 300.0


def runs_in_force(*, session: Session, period: Period) -> tuple[tuple[date, int], ...]:
    """Which run is in force on each attributed day of the range."""
    return tuple(
        (day, run_id)
        for day, run_id in session.execute(
            select(AttributionDay.day, AttributionDay.run_id)
            .where(AttributionDay.day >= period.start, AttributionDay.day < period.end)
            .order_by(AttributionDay.day)
        ).all()
    )


class CostCache:
    """A least-recently-used cache of cost query results, bounded by their rows."""

    def __init__(
        self, *, max_rows: int = DEFAULT_ROWS, ttl_seconds: float = DEFAULT_TTL_SECONDS
    ) -> None:
        self.max_rows = max_rows
        self.ttl_seconds = ttl_seconds
        self._entries: OrderedDict[Hashable, tuple[float, int, object]] = OrderedDict()
        self._rows = 0
        self._usernames: OrderedDict[int, str] = OrderedDict()
        self._billed: OrderedDict[Hashable, tuple[float, date | None]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_rows > 0

    @property
    def rows_held(self) -> int:
        return self._rows

    def get_or_compute(
        self,
        *,
        session: Session,
        key: Hashable,
        period: Period,
        compute: Callable[[], T],
        rows: Callable[[T], int],
        clock: Callable[[], float] = time.monotonic,
    ) -> T:
        """The result remembered for `key` over `period`, or `compute()`'s, remembered.

        `key` must name everything the result depends on besides the allocations in force
        (scope, range, grouping, page, and any names shown); `rows(result)` is its size.
        """
        if not self.enabled:
            return compute()
        # Read the runs in force before the allocations: if a new run comes into force in
        # between, the fresher result is filed under the older runs, never the reverse.
        full_key = (key, runs_in_force(session=session, period=period))
        now = clock()
        with self._lock:
            found = self._entries.get(full_key)
            if found is not None and now - found[0] < self.ttl_seconds:
                self._entries.move_to_end(full_key)
                self.hits += 1
                return found[2]  # type: ignore[return-value]  # stored by this method as T
        result = compute()
        size = rows(result) + 1
        with self._lock:
            self.misses += 1
            if size > self.max_rows:
                return result
            previous = self._entries.pop(full_key, None)
            if previous is not None:
                self._rows -= previous[1]
            self._entries[full_key] = (now, size, result)
            self._rows += size
            while self._rows > self.max_rows:
                _, (_, evicted_size, _) = self._entries.popitem(last=False)
                self._rows -= evicted_size
        return result

    def usernames(self, *, session: Session, user_ids: Iterable[int]) -> dict[int, str]:
        """Usernames by id, from memory where known (a user id's name never changes)."""
        wanted = set(user_ids)
        if not self.enabled:
            return service.usernames(session=session, user_ids=wanted)
        with self._lock:
            known = {i: self._usernames[i] for i in wanted if i in self._usernames}
        missing = wanted - known.keys()
        if missing:
            fetched = service.usernames(session=session, user_ids=missing)
            known.update(fetched)
            with self._lock:
                self._usernames.update(fetched)
                while len(self._usernames) > self.max_rows:
                    self._usernames.popitem(last=False)
        return known

    def billed_until(
        self,
        *,
        session: Session,
        period: Period,
        clock: Callable[[], float] = time.monotonic,
    ) -> date | None:
        """`service.billed_until`, remembered while no cost batch has been written since."""
        if not self.enabled:
            return service.billed_until(session=session, period=period)
        # Batches are never deleted (superseded ones are marked), so a batch committed since,
        # even one with a lower id than the newest, changes the count.
        count, newest = session.execute(
            select(func.count(), func.max(IngestionBatch.id)).where(
                IngestionBatch.kind == BatchKind.costs.value
            )
        ).one()
        key = (period, count, newest)
        now = clock()
        with self._lock:
            found = self._billed.get(key)
            if found is not None and now - found[0] < self.ttl_seconds:
                self._billed.move_to_end(key)
                return found[1]
        reached = service.billed_until(session=session, period=period)
        with self._lock:
            self._billed[key] = (now, reached)
            while len(self._billed) > 64:  # a few months, each under a few batch counts
                self._billed.popitem(last=False)
        return reached
