"""Amounts as `Decimal` in major units, with ISO 4217 currencies and their CLDR minor units.

Amounts are quantized to the currency's digits, half-even, when they enter the module:
87.957975 usd becomes 87.96, 1000.5 jpy becomes 1000. Floats are refused: a binary float cannot
hold 0.1 exactly, and a payment module must not guess what the caller meant.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from functools import lru_cache

import babel.numbers

from payment.exceptions import InvalidAmount, InvalidCurrency

__all__ = [
    "MAX_AMOUNT",
    "AmountInput",
    "currency_digits",
    "from_minor_units",
    "normalize_currency",
    "quantized",
    "to_amount",
    "to_minor_units",
]

AmountInput = Decimal | int | str
"""What the module's methods accept as an amount (never `float`)."""

MAX_AMOUNT = Decimal(10) ** 15
"""Amounts at or above this (in major units) are refused as out of range."""

# ISO 4217 X-codes are money only for these; the rest are metals, fund units and test codes.
_REAL_X_CURRENCIES = frozenset({"XAF", "XCD", "XCG", "XOF", "XPF"})
# Enough digits for MAX_AMOUNT with four decimals, independent of the thread's decimal context.
_CONTEXT = Context(prec=34, rounding=ROUND_HALF_EVEN)


@lru_cache(maxsize=512)
def _digits_of(upper_code: str) -> int | None:
    """CLDR digits of a currency, or None when it is not money (cached: CLDR data is fixed)."""
    if upper_code.startswith("X") and upper_code not in _REAL_X_CURRENCIES:
        return None
    if not babel.numbers.is_currency(upper_code):
        return None
    return int(babel.numbers.get_currency_precision(upper_code))


def normalize_currency(currency_code: object) -> str:
    """Validate a currency code and return it in lower case.

    Args:
        currency_code: An ISO 4217 code in any case, e.g. ``"USD"``.

    Returns:
        The code in lower case, e.g. ``"usd"``.

    Raises:
        InvalidCurrency: not a string, unknown to CLDR, or an X-code that is not money.
    """
    if not isinstance(currency_code, str) or len(currency_code) != 3:
        # Not echoed: whatever was passed by mistake (a card number?) stays out of logs.
        raise InvalidCurrency("", "Currency code must be a 3-letter ISO 4217 code")
    if _digits_of(currency_code.upper()) is None:
        raise InvalidCurrency(currency_code, f"Unknown currency {currency_code!r}")
    return currency_code.lower()


def currency_digits(currency_code: str) -> int:
    """Return how many decimals the currency has (2 for usd, 0 for jpy, 3 for kwd).

    Raises:
        InvalidCurrency: the code is not a valid currency.
    """
    digits = _digits_of(normalize_currency(currency_code).upper())
    assert digits is not None  # normalize_currency checked it
    return digits


@lru_cache(maxsize=512)
def _cached_quantum(currency_code: str) -> Decimal:
    return Decimal(1).scaleb(-currency_digits(currency_code))


def _quantum(currency_code: object) -> Decimal:
    """The currency's smallest unit, e.g. ``Decimal("0.01")`` for usd (cached per code).

    Raises:
        InvalidCurrency: the code is not valid (never cached: it is raised every time).
    """
    if isinstance(currency_code, str):
        return _cached_quantum(currency_code)
    return _cached_quantum(normalize_currency(currency_code))


def quantized(amount: Decimal, currency_code: str) -> Decimal:
    """Quantize a `Decimal` the module computed from checked amounts (a sum, a difference).

    No parsing and no sign or range check: that is `to_amount`'s job at the boundary.

    Raises:
        InvalidCurrency: the currency is not valid.
    """
    return amount.quantize(_quantum(currency_code), context=_CONTEXT)


def _parse(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise InvalidAmount(
            f"Amount must be a Decimal, an int or a numeric string, not {type(value).__name__}"
        )
    if isinstance(value, str) and not value.isascii():
        # Decimal() reads any script's digits (Arabic-Indic ten is 10): amounts are ASCII
        raise InvalidAmount(f"Amount must be written in ASCII digits ({len(value)} characters)")
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError):
        # Not echoed: a string that is not a number could be anything (a card number?).
        raise InvalidAmount(
            f"Amount is not a number (a string of {len(str(value))} characters)"
        ) from None
    if not amount.is_finite():
        raise InvalidAmount(f"Amount {amount} is not finite")
    if abs(amount) >= MAX_AMOUNT:
        raise InvalidAmount("Amount is out of range", amount=None)
    return amount


def to_amount(value: object, currency_code: str, *, positive: bool = True) -> Decimal:
    """Parse an amount and quantize it, half-even, to the currency's digits.

    Args:
        value: A `Decimal`, an `int` or a numeric `str` in major units.
        currency_code: The currency that decides the digits.
        positive: Refuse zero and negative amounts (after quantizing); when False only
            negative amounts are refused.

    Returns:
        The quantized amount, e.g. ``Decimal("87.96")`` for 87.957975 usd.

    Raises:
        InvalidAmount: a float, bool, NaN, infinity, non-numeric string, out of range, or not
            positive where it must be.
        InvalidCurrency: the currency is not valid.
    """
    quantum = _quantum(currency_code)
    amount = _parse(value).quantize(quantum, context=_CONTEXT)
    if amount < 0 or (positive and amount == 0):
        raise InvalidAmount(f"Amount must be positive, got {amount}", amount=amount)
    return amount


def to_minor_units(amount: Decimal, currency_code: str) -> int:
    """Convert a quantized amount to integer minor units (10.50 usd → 1050), as gateways want.

    Raises:
        InvalidAmount: the amount has more digits than the currency allows.
    """
    digits = currency_digits(currency_code)
    minor = amount.scaleb(digits, context=_CONTEXT)
    if minor != minor.to_integral_value():
        raise InvalidAmount(f"Amount {amount} has more than {digits} decimals", amount=amount)
    return int(minor)


def from_minor_units(minor: int, currency_code: str) -> Decimal:
    """Convert integer minor units to a quantized major-unit amount (1050 usd → 10.50)."""
    digits = currency_digits(currency_code)
    return (
        Decimal(minor)
        .scaleb(-digits, context=_CONTEXT)
        .quantize(Decimal(1).scaleb(-digits), context=_CONTEXT)
    )
