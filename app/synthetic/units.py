"""Units the generator counts in: seconds and bytes, as integers."""

from __future__ import annotations

SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86_400
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4
