"""Exact money: parsing, rounding to a currency's minor unit, adding, and splitting a whole into
parts.

Pure functions on `Decimal`. Every split in hubmeter goes through `split_by_weights`, so the parts
always add up to the whole, exactly; every sum of money goes through `exact_sum` (or is computed
inside `localcontext(EXACT_SUM)`), so it is never rounded.

Why sums need their own context: Python's default decimal context keeps 28 significant digits,
and an addition whose exact result needs more is rounded silently. Cloud amounts easily need
more: GCP's FLOAT64 costs are stored with 15 significant digits and exponents down to 1e-38
(`app.costs.values.float64_decimal`), so 1234.56 + 1.23456789012345E-12 needs 30 digits and
would come out as 1234.560000000001234567890123. Two defences:

- `EXACT_SUM`: a context with a precision no sum of amounts can reach and the `Inexact` trap
  set, so an addition that would round raises `decimal.Inexact` instead of losing a digit.
  `exact_sum` adds with it; hot loops that add many amounts run inside
  `localcontext(EXACT_SUM)` (this is how attribution adds, and the SQLite `money_sum`).
- `use_exact_decimal_defaults()`, called when the `app` package is imported: the process-wide
  default context (`decimal.DefaultContext`, which every new thread starts from, and the
  importing thread's current context) gets `DEFAULT_PRECISION` digits, so no other path rounds
  a sum at 28 digits either. It does not trap: divisions elsewhere still round (at far more
  digits than they are ever quantized to).
"""

from __future__ import annotations

import decimal
from collections.abc import Hashable, Iterable, Mapping, Sequence
from decimal import (
    MAX_EMAX,
    MIN_EMIN,
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# For products and quotients that are rounded or quantized afterwards (rates, usage averages):
# enough digits for any amount a cloud bill or a year of usage can produce, so that no
# intermediate result is rounded by the context itself. Not for sums: see EXACT_SUM.
EXACT = Context(prec=60, rounding=ROUND_HALF_EVEN)

# Significant digits of an exact sum. Amounts have at most a few dozen digits (GCP: 15
# significant digits, exponents from 1e-38; bills far below 1e18), so a sum of any number of them
# needs well under a hundred; this leaves room for any input and still keeps a division that
# strays into this context cheap (it raises Inexact after 1,000 digits instead of running out of
# memory, as it would at decimal.MAX_PREC).
EXACT_SUM_PRECISION = 1_000

# Adds, subtracts and multiplies exactly or raises `decimal.Inexact`: never rounds silently.
EXACT_SUM = Context(
    prec=EXACT_SUM_PRECISION,
    rounding=ROUND_HALF_EVEN,
    Emax=MAX_EMAX,
    Emin=MIN_EMIN,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)

# The process-wide default precision (see `use_exact_decimal_defaults`): more than any sum of
# amounts needs (see EXACT_SUM_PRECISION), and cheap for the divisions that run in the default
# context before being quantized (percentages, GiB-hours for display).
DEFAULT_PRECISION = 100

# The finest step at which a split is made. Cloud bills carry up to 1e-11 (FOCUS); a whole with
# finer digits (a GCP float like 1.2345678901234e-07) is split at its own precision instead.
MIN_SPLIT_PLACES = 11

# One documented rounding mode for invoices: half-even ("banker's") rounding, applied once per
# invoice line.
INVOICE_ROUNDING = ROUND_HALF_EVEN

# ISO 4217 minor units for currencies that are not two decimal places.
_MINOR_UNITS = {"JPY": 0, "KRW": 0, "CLP": 0, "ISK": 0, "VND": 0, "BHD": 3, "KWD": 3, "OMR": 3}

ZERO = Decimal(0)


class MoneyError(ValueError):
    """An amount that is not a finite decimal number."""


def use_exact_decimal_defaults() -> None:
    """Raise the default decimal precision from Python's 28 digits to `DEFAULT_PRECISION`, for
    new threads (`decimal.DefaultContext`) and for the calling thread's current context.

    Called when the `app` package is imported, so every command, job, test and server thread
    starts with it; only ever raises the precision (a caller that chose more keeps it).
    """
    if decimal.DefaultContext.prec < DEFAULT_PRECISION:
        decimal.DefaultContext.prec = DEFAULT_PRECISION
    current = decimal.getcontext()
    if current.prec < DEFAULT_PRECISION:
        current.prec = DEFAULT_PRECISION


def exact_sum(values: Iterable[Decimal], start: Decimal = ZERO) -> Decimal:
    """`start` plus every value, exactly (in `EXACT_SUM`, whatever the current context).

    Raises `decimal.Inexact` rather than round, which no sum of amounts can make it do."""
    add = EXACT_SUM.add
    total = start
    for value in values:
        total = add(total, value)
    return total


def exact_difference(a: Decimal, b: Decimal) -> Decimal:
    """`a - b`, exactly (in `EXACT_SUM`)."""
    return EXACT_SUM.subtract(a, b)


def parse_decimal(text: str) -> Decimal:
    """Parse an amount exactly as written; refuse NaN, infinities and garbage."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation as exc:
        raise MoneyError(f"expected a decimal number, got {text!r}") from exc
    if not value.is_finite():
        raise MoneyError(f"expected a finite decimal number, got {text!r}")
    return value


def minor_unit(currency: str) -> int:
    """Decimal places of a currency's minor unit (2 unless ISO 4217 says otherwise)."""
    return _MINOR_UNITS.get(currency.upper(), 2)


def round_to_currency(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit, half-even. The only rounding invoices use."""
    return amount.quantize(Decimal(1).scaleb(-minor_unit(currency)), rounding=INVOICE_ROUNDING)


def split_places(whole: Decimal) -> int:
    """Decimal places at which `whole` is split: its own, and never coarser than 1e-11."""
    exponent = whole.as_tuple().exponent
    assert isinstance(exponent, int)
    return max(MIN_SPLIT_PLACES, -exponent)


def split_by_weights(
    whole: Decimal, weights: Mapping[K, Decimal], *, places: int | None = None
) -> dict[K, Decimal]:
    """Split `whole` in proportion to `weights` by the largest-remainder method.

    Every part is a multiple of 10**-places and the parts add up to `whole` exactly. Units left
    after flooring go to the largest remainders; ties go to the larger weight, then to the key
    that sorts first by its repr, so the result does not depend on the order of `weights`.
    Zero weights get zero. Weights must be non-negative and not all zero.

    The shares are computed in integers (the whole in units of 10**-places, the weights scaled
    to integers by a common power of ten), so every floor and remainder is exact however many
    digits the whole and the weights have: an exact sum of GCP amounts can have fifty.
    """
    if not weights:
        raise ValueError("cannot split an amount over no parts")
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must be non-negative")
    if places is None:
        places = split_places(whole)
    whole_units = units_of(whole, places)
    integer_weights = _integer_weights(weights)
    shares = Shares(list(integer_weights), list(integer_weights.values()))
    quantum = Decimal(1).scaleb(-places)
    with localcontext(EXACT_SUM):
        return {
            key: part * quantum
            for key, part in zip(shares.keys, shares.split(whole_units), strict=True)
        }


def units_of(amount: Decimal, places: int) -> int:
    """`amount` as an integer number of units of 10**-places; refuses an amount with finer
    digits than that (it cannot be split at that precision)."""
    with localcontext(EXACT_SUM):
        scaled = amount.scaleb(places)
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{amount} has more than {places} decimal places")
    return int(scaled)


class Shares(Generic[K]):
    """Integer weights, prepared for largest-remainder splits of integers: what
    `split_by_weights` splits with, and what a hot loop that has its amounts in units of the
    split precision (and its weights as integers) uses directly, with no `Decimal` per part.

    `keys` and `weights` are in the order given; `split(units)` returns the parts in that order.
    Weights must be non-negative integers, not all zero. A split gives every key the floor of
    its exact share (towards zero) and the units left over to the largest remainders; ties go to
    the larger weight, then to the key whose repr sorts first: the same parts, whatever the
    order of the keys.
    """

    __slots__ = ("_ties", "keys", "total", "weights")

    def __init__(self, keys: Sequence[K], weights: Sequence[int]) -> None:
        if len(keys) != len(weights):
            raise ValueError("one weight per key")
        if not keys:
            raise ValueError("cannot split an amount over no parts")
        if min(weights) < 0:
            raise ValueError("weights must be non-negative")
        total = sum(weights)
        if total == 0:
            raise ValueError("cannot split an amount by weights that are all zero")
        self.keys = keys
        self.weights = weights
        self.total = total
        self._ties: list[int] | None = None

    def split(self, units: int) -> list[int]:
        """`units` (an integer of any sign) in parts proportional to the weights, adding up to
        `units` exactly."""
        if units < 0:
            return [-part for part in self.split(-units)]
        total = self.total
        parts: list[int] = []
        remainders: list[int] = []
        for weight in self.weights:
            # units * weight / total = part + remainder / total, exactly.
            part, remainder = divmod(units * weight, total)
            parts.append(part)
            remainders.append(remainder)
        leftover = units - sum(parts)
        if leftover:
            # Largest remainders first; among equal remainders the order below is the index
            # order, which only matters if a run of equal remainders straddles the cut: then
            # the documented tie order (larger weight, then repr of the key) decides.
            order = sorted(range(len(parts)), key=remainders.__getitem__, reverse=True)
            if remainders[order[leftover - 1]] == remainders[order[leftover]]:
                order = sorted(self._tie_order(), key=remainders.__getitem__, reverse=True)
            for index in order[:leftover]:
                parts[index] += 1
        return parts

    def _tie_order(self) -> list[int]:
        """Indices by larger weight, then by the repr of the key (a stable sort by remainder
        keeps this order among equal remainders)."""
        if self._ties is None:
            # Two stable sorts: by repr, then by weight, larger first (equal weights keep the
            # repr order).
            reprs = [repr(key) for key in self.keys]
            ties = sorted(range(len(reprs)), key=reprs.__getitem__)
            ties.sort(key=self.weights.__getitem__, reverse=True)
            self._ties = ties
        return self._ties


def _integer_weights(weights: Mapping[K, Decimal]) -> dict[K, int]:
    """The weights times the smallest power of ten that makes them all integers (the same
    proportions, so the same shares)."""
    out: dict[K, int] = {}
    fractional = False
    for key, weight in weights.items():
        whole = int(weight)
        if whole != weight:
            fractional = True
            break
        out[key] = whole
    if not fractional:
        return out
    shift = 0
    for weight in weights.values():
        exponent = weight.as_tuple().exponent
        assert isinstance(exponent, int)  # finite: checked non-negative above
        shift = max(shift, -exponent)
    return {key: int(weight.scaleb(shift, EXACT_SUM)) for key, weight in weights.items()}


def split_evenly(
    whole: Decimal, keys: Sequence[K], *, places: int | None = None
) -> dict[K, Decimal]:
    """Split `whole` into equal parts (up to one unit of the split precision)."""
    return split_by_weights(whole, {key: Decimal(1) for key in keys}, places=places)


def format_amount(amount: Decimal) -> str:
    """Plain notation, never an exponent: what CSV and JSON exports write."""
    text = format(amount, "f")
    return "0" if text in {"-0", "0E-0"} else text
