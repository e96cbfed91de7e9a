"""Reading one value of a bill: exact amounts, UTC times, FLOAT64 amounts from the GCP export.

Pure functions. They raise `BadValue` naming what was expected; the parser that called them adds
the file, line and column.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from app.errors import BadValue
from app.periods import read_utc_time

# BigQuery's BIGNUMERIC keeps 38 decimal places; hubmeter reads GCP amounts at the same scale so
# the export through BigQuery and the same export as a file agree to the last digit.
BIGNUMERIC_QUANTUM = Decimal("1e-38")

_TIMES: dict[str, datetime] = {}
_TIMES_CACHE_LIMIT = 200_000


def parse_amount(text: str, field: str) -> Decimal:
    """An exact decimal as written (`0.00000080000`, `-1.5`, `1E-7`)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise BadValue(field, "a decimal number", text) from None
    if not value.is_finite() or "_" in text:
        raise BadValue(field, "a finite decimal number", text)
    return value


def parse_time(text: str, field: str) -> datetime:
    """A UTC time as bills write them: `2024-09-18 22:00:00` (UTC implied),
    `2026-10-01T00:00:00Z`, `2026-10-01 00:00:00.123456 UTC` (BigQuery), or with an offset."""
    cached = _TIMES.get(text)
    if cached is not None:
        return cached
    moment = read_utc_time(text)
    if moment is None:
        raise BadValue(field, "a time like 2026-10-01T00:00:00Z or 2026-10-01 00:00:00", text)
    if len(_TIMES) >= _TIMES_CACHE_LIMIT:
        _TIMES.clear()
    _TIMES[text] = moment
    return moment


def float_amount(value: object, field: str) -> Decimal:
    """A FLOAT64 amount of the GCP export as the decimal it stands for.

    BigQuery stores cost, credits and usage as binary floating point. hubmeter reads each one as
    the nearest decimal with 15 significant digits (the most a FLOAT64 carries faithfully, so
    `0.1` stays 0.1 and `1.2345678901234e-07` stays itself), at most 38 decimal places. The
    BigQuery query does the same per row with `PARSE_BIGNUMERIC(FORMAT('%.14e', x))`.
    """
    if isinstance(value, bool):
        raise BadValue(field, "a number", repr(value))
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise BadValue(field, "a number", value) from None
    elif isinstance(value, int | float):
        number = float(value)
    else:
        raise BadValue(field, "a number", repr(value))
    if not math.isfinite(number):
        raise BadValue(field, "a finite number", repr(value))
    return float64_decimal(number)


def float64_decimal(number: float) -> Decimal:
    """`PARSE_BIGNUMERIC(FORMAT('%.14e', number))`, in Python."""
    value = Decimal(format(number, ".14e"))
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)
    if exponent < -38:
        value = value.quantize(BIGNUMERIC_QUANTUM, rounding=ROUND_HALF_UP)
    return value
