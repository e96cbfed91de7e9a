"""What a usage source is to the rest of hubmeter: something that observes a window of hours."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from app.usage.metering import Observations

# (work done, work in all) for a progress bar: chunks of queries, or bytes of a file.
Progress = Callable[[int, int], None]


class UsageSourceError(Exception):
    """A source that could not be read in full, after retries; nothing of the window is used."""


class UsageSource(Protocol):
    @property
    def description(self) -> str:
        """Where the data comes from, for people and for the batch record."""
        ...

    def fetch(self, *, first_hour: int, end_hour: int, progress: Progress | None) -> Observations:
        """Everything observed in the whole hours `[first_hour, end_hour)` (epoch seconds)."""
        ...
