"""The money helpers: exact parsing, one rounding rule, and splits whose parts add up."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.money import (
    MoneyError,
    format_amount,
    parse_decimal,
    round_to_currency,
    split_by_weights,
    split_evenly,
    split_places,
)

amounts = st.decimals(
    min_value=Decimal("-1e9"),
    max_value=Decimal("1e9"),
    places=11,
    allow_nan=False,
    allow_infinity=False,
)
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
