"""Exact numbers: how quantities and money are rounded and written."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, localcontext

from app.money import EXACT, format_amount

MICRO = Decimal("0.000001")  # the bill's amounts carry at most six decimal places


def plain(value: Decimal) -> str:
    """Plain notation, no exponent and no trailing zeros: `1800`, `0.5`, `-12.34`."""
    return format_amount(value.normalize())


def from_thousandths(thousandths: int) -> Decimal:
    """Millicores, milli-core-seconds: an integer count of thousandths as an exact Decimal."""
    return Decimal(thousandths).scaleb(-3)


def thousandths_text(thousandths: int) -> str:
    """`1234.567` for 1234567, always three decimals, as the counter samples are written."""
    sign = "-" if thousandths < 0 else ""
    whole, fraction = divmod(abs(thousandths), 1000)
    return f"{sign}{whole}.{fraction:03d}"


def round_half_even_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to an integer, ties to even, without floats."""
    if denominator <= 0:
        raise ValueError("the denominator must be positive")
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2):
        quotient += 1
    return quotient


def priced(amount: Decimal, unit_price: Decimal, units_per_pricing_unit: Decimal) -> Decimal:
    """Cost of `amount` usage units at `unit_price` per pricing unit, rounded to 1e-6."""
    with localcontext(EXACT):
        return (amount * unit_price / units_per_pricing_unit).quantize(MICRO, ROUND_HALF_EVEN)


def in_pricing_units(amount: Decimal, units_per_pricing_unit: Decimal) -> Decimal:
    """Usage in pricing units, rounded to 1e-9 (the export only has a float for it anyway)."""
    with localcontext(EXACT):
        return (amount / units_per_pricing_unit).quantize(Decimal("1e-9"), ROUND_HALF_EVEN)


def percent_of(amount: Decimal, percent: int | Decimal) -> Decimal:
    """`percent` % of an amount, rounded to 1e-6."""
    with localcontext(EXACT):
        return (amount * percent / 100).quantize(MICRO, ROUND_HALF_EVEN)


def json_number(value: Decimal) -> float:
    """A money amount as the JSON number BigQuery writes (a FLOAT64), refusing lossy ones.

    At most six decimals and well under 15 significant digits: the shortest float repr reads
    back as the same Decimal, so a reader using `parse_float=Decimal` sees the exact amount.
    """
    number = float(value)
    if Decimal(repr(number)) != value:
        raise ValueError(f"{value} does not survive a round trip through a JSON number")
    return number
