"""Exact money: parsing, rounding to a currency's minor unit, and splitting a whole into parts.

Pure functions on `Decimal`. Every split in hubmeter goes through `split_by_weights`, so the parts
always add up to the whole, exactly.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext
from typing import TypeVar

K = TypeVar("K", bound=Hashable)

# Enough digits for any amount a cloud bill or a year of usage can produce, so that no
# intermediate product or quotient is ever rounded by the context itself.
EXACT = Context(prec=60, rounding=ROUND_HALF_EVEN)

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
    """
    if not weights:
        raise ValueError("cannot split an amount over no parts")
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must be non-negative")
    total_weight = sum(weights.values(), ZERO)
    if total_weight == 0:
        raise ValueError("cannot split an amount by weights that are all zero")
    if places is None:
        places = split_places(whole)
    quantum = Decimal(1).scaleb(-places)
    with localcontext(EXACT):
        whole_units = (whole / quantum).to_integral_value()
        if whole_units * quantum != whole:
            raise ValueError(f"{whole} has more than {places} decimal places")
        sign = -1 if whole_units < 0 else 1
        units = abs(int(whole_units))
        floors: dict[K, int] = {}
        remainders: list[tuple[Decimal, Decimal, str, K]] = []
        for key, weight in weights.items():
            exact = units * weight / total_weight
            floor = int(exact)  # exact >= 0, so int() floors
            floors[key] = floor
            remainders.append((exact - floor, weight, repr(key), key))
        leftover = units - sum(floors.values())
        remainders.sort(key=lambda r: (-r[0], -r[1], r[2]))
        for _, _, _, key in remainders[:leftover]:
            floors[key] += 1
        return {key: (sign * floors[key]) * quantum for key in weights}


def split_evenly(
    whole: Decimal, keys: Sequence[K], *, places: int | None = None
) -> dict[K, Decimal]:
    """Split `whole` into equal parts (up to one unit of the split precision)."""
    return split_by_weights(whole, {key: Decimal(1) for key in keys}, places=places)


def format_amount(amount: Decimal) -> str:
    """Plain notation, never an exponent: what CSV and JSON exports write."""
    text = format(amount, "f")
    return "0" if text in {"-0", "0E-0"} else text
