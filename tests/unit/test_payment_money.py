"""Money: parsing, currencies from CLDR, half-even quantizing on entry."""

from __future__ import annotations

from decimal import Decimal

import pytest

from payment import money
from payment.exceptions import InvalidAmount, InvalidCurrency, PaymentError


@pytest.mark.parametrize(
    ("value", "currency", "expected"),
    [
        ("87.957975", "usd", Decimal("87.96")),
        (Decimal("1000.5"), "JPY", Decimal("1000")),
        (Decimal("1001.5"), "jpy", Decimal("1002")),
        ("0.125", "usd", Decimal("0.12")),
        ("0.135", "usd", Decimal("0.14")),
        ("1.2345", "kwd", Decimal("1.234")),
        (10, "eur", Decimal("10.00")),
        ("  12.5 ", "usd", Decimal("12.50")),
        ("1e3", "usd", Decimal("1000.00")),
    ],
)
def test_amounts_are_quantized_half_even_to_the_currency_digits(
    value: object, currency: str, expected: Decimal
) -> None:
    """An amount entering the module is rounded half-even to the currency's CLDR digits."""
    amount = money.to_amount(value, currency)
    assert amount == expected
    assert amount.as_tuple().exponent == expected.as_tuple().exponent


@pytest.mark.parametrize(
    "value",
    [1.5, True, None, [1], "abc", "", "NaN", "sNaN", "Infinity", "-inf", Decimal("NaN"), "1e20"],
)
def test_malformed_amounts_raise_invalid_amount(value: object) -> None:
    """Floats, bools, non-numeric strings, NaN, infinities and huge values are refused."""
    with pytest.raises(InvalidAmount) as caught:
        money.to_amount(value, "usd")
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, PaymentError)


@pytest.mark.parametrize("value", ["0", "-1", "0.004", Decimal("-0.01"), 0])
def test_zero_and_negative_amounts_are_refused_where_positive_is_required(value: object) -> None:
    """Zero, negative, and amounts that round to zero are not positive amounts."""
    with pytest.raises(InvalidAmount, match="positive"):
        money.to_amount(value, "usd")


def test_zero_is_allowed_when_not_required_positive() -> None:
    """`positive=False` accepts zero but still refuses negatives."""
    assert money.to_amount("0", "usd", positive=False) == Decimal("0.00")
    with pytest.raises(InvalidAmount):
        money.to_amount("-1", "usd", positive=False)


@pytest.mark.parametrize("code", ["usd", "USD", "Jpy", "kwd", "xaf", "XOF", "XPF", "XCD"])
def test_known_currencies_are_normalized_to_lower_case(code: str) -> None:
    """Currencies CLDR knows (including the real X-currencies) come back lower-case."""
    assert money.normalize_currency(code) == code.lower()


@pytest.mark.parametrize("code", ["abc", "XXX", "xts", "XAU", "XDR", "us", "usdd", 840, None, ""])
def test_unknown_and_non_money_currencies_raise_invalid_currency(code: object) -> None:
    """Unknown codes, X-codes that are not money, and non-strings are refused."""
    with pytest.raises(InvalidCurrency) as caught:
        money.normalize_currency(code)
    assert isinstance(caught.value, ValueError)


def test_currency_digits_come_from_cldr() -> None:
    """usd has 2 digits, jpy 0, kwd 3."""
    assert [money.currency_digits(c) for c in ("usd", "jpy", "kwd")] == [2, 0, 3]


def test_minor_units_round_trip() -> None:
    """Major units convert to integer minor units and back exactly."""
    assert money.to_minor_units(Decimal("10.50"), "usd") == 1050
    assert money.to_minor_units(Decimal("1000"), "jpy") == 1000
    assert money.from_minor_units(1050, "usd") == Decimal("10.50")
    assert money.from_minor_units(1234, "kwd") == Decimal("1.234")


def test_minor_units_refuse_amounts_with_too_many_digits() -> None:
    """An unquantized amount cannot become minor units silently."""
    with pytest.raises(InvalidAmount):
        money.to_minor_units(Decimal("10.505"), "usd")


def test_errors_do_not_echo_what_was_passed() -> None:
    """A card number passed by mistake as an amount or a currency stays out of the message."""
    card = "4242 4242 4242 4242"
    with pytest.raises(InvalidAmount) as amount_error:
        money.to_amount(card, "usd")
    with pytest.raises(InvalidCurrency) as currency_error:
        money.normalize_currency(card)
    assert "4242" not in str(amount_error.value)
    assert "4242" not in str(currency_error.value) + currency_error.value.currency_code


@pytest.mark.parametrize("text", ["\u0661\u0660", "10\u0660", "\uff11\uff10", "\u0969"])
def test_amounts_in_other_scripts_digits_are_refused(text: str) -> None:
    """Decimal reads Arabic-Indic or full-width digits; an amount accepts ASCII digits only."""
    with pytest.raises(InvalidAmount):
        money.to_amount(text, "usd")
