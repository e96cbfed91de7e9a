"""The money helpers: exact parsing, one rounding rule, exact sums, and splits whose parts add
up, including for amounts shaped like GCP's (15 significant digits, exponents down to 1e-38)."""

from __future__ import annotations

import decimal
import threading
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.money import (
    DEFAULT_PRECISION,
    MoneyError,
    exact_difference,
    exact_sum,
    format_amount,
    parse_decimal,
    round_to_currency,
    split_by_weights,
    split_evenly,
    split_places,
    use_exact_decimal_defaults,
)

amounts = st.decimals(
    min_value=Decimal("-1e9"),
    max_value=Decimal("1e9"),
    places=11,
    allow_nan=False,
    allow_infinity=False,
)
# As GCP's FLOAT64 costs are stored (app.costs.values.float64_decimal): 15 significant digits,
# the last of them at 1e-38 (about 1e-24 in all) up to 1e-8 (about a million).
gcp_amounts = st.builds(
    lambda sign, first, rest, exponent: Decimal((sign, (first, *rest), exponent)),
    st.sampled_from([0, 1]),
    st.integers(1, 9),
    st.lists(st.integers(0, 9), min_size=14, max_size=14),
    st.integers(-38, -8),
)
# Bills mix those with ordinary amounts in the thousands.
thousands = st.decimals(
    min_value=Decimal("-9999.99"),
    max_value=Decimal("9999.99"),
    places=2,
    allow_nan=False,
    allow_infinity=False,
)
bill_amounts = st.lists(st.one_of(gcp_amounts, thousands, amounts), min_size=1, max_size=40)
weights = st.dictionaries(
    st.text(min_size=1, max_size=6),
    st.decimals(
        min_value=0, max_value=Decimal("1e12"), places=6, allow_nan=False, allow_infinity=False
    ),
    min_size=1,
    max_size=30,
).filter(lambda w: sum(w.values()) > 0)


@given(amounts, weights)
def test_parts_add_up_to_the_whole(whole: Decimal, w: dict[str, Decimal]) -> None:
    parts = split_by_weights(whole, w)
    assert sum(parts.values(), Decimal(0)) == whole
    assert parts.keys() == w.keys()


@given(amounts.map(abs), weights)
def test_parts_of_a_non_negative_whole_are_non_negative(
    whole: Decimal, w: dict[str, Decimal]
) -> None:
    assert all(part >= 0 for part in split_by_weights(whole, w).values())


@given(amounts, weights)
def test_each_part_is_within_one_unit_of_its_exact_share(
    whole: Decimal, w: dict[str, Decimal]
) -> None:
    unit = Decimal(1).scaleb(-split_places(whole))
    total = sum(w.values())
    for key, part in split_by_weights(whole, w).items():
        assert abs(part - whole * w[key] / total) < unit


@given(amounts, weights, st.randoms())
def test_the_order_of_the_weights_does_not_matter(
    whole: Decimal, w: dict[str, Decimal], rnd: object
) -> None:
    items = list(w.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    assert split_by_weights(whole, dict(items)) == split_by_weights(whole, w)


@given(amounts, weights)
def test_zero_weights_get_nothing(whole: Decimal, w: dict[str, Decimal]) -> None:
    w = {**w, "\x00zero": Decimal(0)}
    assert split_by_weights(whole, w)["\x00zero"] == 0


def test_a_split_keeps_the_precision_of_the_bill() -> None:
    parts = split_evenly(Decimal("0.00000080000"), ["a", "b", "c"])
    assert sorted(parts.values()) == [
        Decimal("0.00000026666"),
        Decimal("0.00000026667"),
        Decimal("0.00000026667"),
    ]
    fine = Decimal("1.2345678901234E-7")  # a GCP float written in full
    assert sum(split_evenly(fine, ["a", "b", "c"]).values()) == fine


def test_ties_are_broken_the_same_way_every_time() -> None:
    first = split_evenly(Decimal("0.00000000001"), ["b", "a"])
    assert first == {"a": Decimal("0.00000000001"), "b": Decimal(0)}


def test_splitting_needs_weights() -> None:
    with pytest.raises(ValueError, match="all zero"):
        split_by_weights(Decimal(1), {"a": Decimal(0)})
    with pytest.raises(ValueError, match="non-negative"):
        split_by_weights(Decimal(1), {"a": Decimal(-1), "b": Decimal(2)})
    with pytest.raises(ValueError, match="no parts"):
        split_by_weights(Decimal(1), {})


@pytest.mark.parametrize(
    ("amount", "currency", "rounded"),
    [
        ("10.005", "USD", "10.00"),  # half-even: to the even cent
        ("10.015", "USD", "10.02"),
        ("-0.125", "EUR", "-0.12"),
        ("1234.5", "JPY", "1234"),
        ("1.2345", "KWD", "1.234"),
    ],
)
def test_invoice_rounding_is_half_even_to_the_minor_unit(
    amount: str, currency: str, rounded: str
) -> None:
    assert round_to_currency(Decimal(amount), currency) == Decimal(rounded)
    assert str(round_to_currency(Decimal(amount), currency)) == rounded


def test_parse_refuses_what_is_not_a_finite_number() -> None:
    assert parse_decimal(" 0.00000080000 ") == Decimal("8.0000E-7")
    for bad in ["", "abc", "NaN", "Infinity", "1,5"]:
        with pytest.raises(MoneyError, match="expected"):
            parse_decimal(bad)


def test_amounts_are_written_without_exponents() -> None:
    assert format_amount(Decimal("8.0000E-7")) == "0.00000080000"
    assert format_amount(Decimal("1E+3")) == "1000"


# --- exact sums -------------------------------------------------------------------------------


def exactly(values: list[Decimal]) -> Fraction:
    return sum((Fraction(v) for v in values), Fraction(0))


def test_the_sum_that_rounded_at_28_digits_is_exact() -> None:
    values = [Decimal("1234.56"), Decimal("1.23456789012345E-12")]
    with localcontext() as context:
        context.prec = 28  # Python's default: 1234.560000000001234567890123
        assert exact_sum(values) == Decimal("1234.56000000000123456789012345")
        assert exact_difference(exact_sum(values), values[1]) == Decimal("1234.56")


@given(bill_amounts)
def test_sums_of_gcp_shaped_amounts_are_exact_whatever_the_context(values: list[Decimal]) -> None:
    with localcontext() as context:
        context.prec = 28
        total = exact_sum(values)
    assert Fraction(total) == exactly(values)
    assert Fraction(exact_sum(values[1:], values[0])) == exactly(values)


def test_an_addition_that_would_round_raises_instead() -> None:
    with pytest.raises(decimal.Inexact):
        exact_sum([Decimal("1E+1000"), Decimal("1E-10")])


def test_the_process_default_context_does_not_round_at_28_digits() -> None:
    # Importing the `app` package (as everything does) raised the defaults.
    assert decimal.DefaultContext.prec >= DEFAULT_PRECISION
    assert decimal.getcontext().prec >= DEFAULT_PRECISION
    results: list[Decimal] = []

    def in_a_new_thread() -> None:  # threads start from decimal.DefaultContext
        results.append(Decimal("1234.56") + Decimal("1.23456789012345E-12"))

    thread = threading.Thread(target=in_a_new_thread)
    thread.start()
    thread.join()
    assert results == [Decimal("1234.56000000000123456789012345")]


def test_the_defaults_are_raised_for_the_calling_thread_and_never_lowered() -> None:
    with localcontext() as context:
        context.prec = 28
        use_exact_decimal_defaults()
        assert decimal.getcontext().prec == DEFAULT_PRECISION
        context.prec = 500
        use_exact_decimal_defaults()
        assert decimal.getcontext().prec == 500


# --- splits of exact sums ---------------------------------------------------------------------

wide_weights = st.dictionaries(
    st.text(min_size=1, max_size=6),
    st.one_of(
        st.decimals(
            min_value=0, max_value=Decimal("1e21"), places=6, allow_nan=False, allow_infinity=False
        ),
        gcp_amounts.map(abs),
    ),
    min_size=1,
    max_size=30,
).filter(lambda w: sum(w.values()) > 0)


def largest_remainder(whole: Decimal, w: dict[str, Decimal]) -> dict[str, Decimal]:
    """The largest-remainder split as documented, in fractions: obviously exact, and slow."""
    places = split_places(whole)
    units = Fraction(whole) * 10**places
    assert units.denominator == 1
    total = exactly(list(w.values()))
    shares = {key: abs(units) * Fraction(weight) / total for key, weight in w.items()}
    floors = {key: share.numerator // share.denominator for key, share in shares.items()}
    leftover = int(abs(units)) - sum(floors.values())
    order = sorted(w, key=lambda key: (-(shares[key] - floors[key]), -w[key], repr(key)))
    for key in order[:leftover]:
        floors[key] += 1
    sign = -1 if units < 0 else 1
    return {key: Decimal(sign * floors[key]).scaleb(-places) for key in w}


@given(bill_amounts, wide_weights)
def test_an_exact_sum_of_gcp_amounts_splits_exactly_and_proportionally(
    values: list[Decimal], w: dict[str, Decimal]
) -> None:
    whole = exact_sum(values)  # up to some fifty significant digits
    parts = split_by_weights(whole, w)
    assert parts == largest_remainder(whole, w)
    assert Fraction(exact_sum(parts.values())) == Fraction(whole)
    unit = Fraction(1, 10 ** split_places(whole))
    total = exactly(list(w.values()))
    for key, part in parts.items():
        assert abs(Fraction(part) - Fraction(whole) * Fraction(w[key]) / total) < unit
        assert part.as_tuple().exponent == -split_places(whole)


def test_remainders_that_differ_beyond_sixty_digits_are_still_told_apart() -> None:
    # y's exact remainder is x's plus one part in about 1e20 of a unit: a quotient rounded to 60
    # significant digits (45 of them before the point) cannot see it, and gave the leftover
    # unit to x instead.
    whole = Decimal("37244059.85099529122408817958524650799284737217")
    w = {
        "x": Decimal("712201882495232678.340574"),
        "y": Decimal("46685854423980239898.632167"),
        "z": Decimal("84102379048812332278.003479"),
    }
    parts = split_by_weights(whole, w)
    assert parts == largest_remainder(whole, w)
    assert parts["y"] == Decimal("13222547.52741892804835205123076373141567574926")
    assert exact_sum(parts.values()) == whole


def test_a_split_does_not_depend_on_the_context() -> None:
    whole = Decimal("1234.56000000000123456789012345")
    w = {"a": Decimal("1e21"), "b": Decimal("3.3"), "c": Decimal(7)}
    expected = split_by_weights(whole, w)
    with localcontext() as context:
        context.prec = 28
        assert split_by_weights(whole, w) == expected
    assert exact_sum(expected.values()) == whole
