"""Amounts in Stripe's minor units, and the currencies Stripe charges in.

Stripe's exponent is not always the currency's ISO/CLDR one: zero-decimal currencies are sent
as whole units (jpy 1000 → 1000), three-decimal ones in thousandths whose last digit must be 0
(kwd 10.010 → 10010), ISK in hundredths of whole krónur (isk 500 → 50000), and every other
currency in hundredths (usd 10.50 → 1050). https://docs.stripe.com/currencies
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Context, Decimal

from payment.exceptions import InvalidAmount, InvalidCurrency
from payment.money import normalize_currency, to_amount

__all__ = [
    "STRIPE_CURRENCIES",
    "ensure_stripe_currency",
    "from_stripe_amount",
    "stripe_currencies",
    "stripe_exponent",
    "to_stripe_amount",
]


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


STRIPE_CURRENCIES = _codes(
    """
    usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp
    byn bzd cad cdf chf clp cny cop crc cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip
    gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs khr kmf krw kwd kyd kzt
    lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr
    nzd omr pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd
    std szl thb tjs tnd top try ttd twd tzs uah ugx uyu uzs vnd vuv wst xaf xcd xcg xof xpf yer
    zar zmw
    """
)
"""Stripe's presentment currencies (docs.stripe.com/currencies); override per provider with
``StripeProvider(currencies=...)`` when Stripe adds one or your account allows fewer."""

_ZERO_DECIMAL = _codes("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf")
_THREE_DECIMAL = _codes("bhd jod kwd omr tnd")
# Two-decimal in the API for backwards compatibility, but only whole units may be charged.
_WHOLE_UNITS_IN_HUNDREDTHS = frozenset({"isk"})
_CONTEXT = Context(prec=34)


def stripe_currencies(currencies: Iterable[str] | None) -> frozenset[str]:
    """The lower-case codes a provider accepts: `currencies`, or `STRIPE_CURRENCIES` if None.

    Raises:
        InvalidCurrency: one of `currencies` is not a valid ISO 4217 code.
    """
    if currencies is None:
        return STRIPE_CURRENCIES
    return frozenset(normalize_currency(code) for code in currencies)


def stripe_exponent(currency_code: str) -> int:
    """How many decimals Stripe's integer amounts hold for a currency (2 for usd, 0 for jpy)."""
    if currency_code in _ZERO_DECIMAL:
        return 0
    return 3 if currency_code in _THREE_DECIMAL else 2


def _step(currency_code: str) -> int:
    """The multiple every Stripe amount in this currency must be (10 for kwd, 100 for isk)."""
    if currency_code in _THREE_DECIMAL:
        return 10
    return 100 if currency_code in _WHOLE_UNITS_IN_HUNDREDTHS else 1


def to_stripe_amount(amount: Decimal, currency_code: str) -> int:
    """Convert a major-unit amount to Stripe's integer amount (usd 10.50 → 1050), exactly.

    Args:
        amount: A `Decimal` in major units (the module quantizes it to the currency).
        currency_code: A lower-case code Stripe knows.

    Returns:
        The integer Stripe expects in ``amount`` fields.

    Raises:
        InvalidAmount: the amount has more decimals than Stripe takes for the currency, or
            breaks Stripe's rule for it (three-decimal amounts must end in 0; ISK is charged
            in whole krónur).
    """
    minor = amount.scaleb(stripe_exponent(currency_code), context=_CONTEXT)
    if minor != minor.to_integral_value():
        raise InvalidAmount(
            f"Stripe cannot charge {amount} {currency_code}: too many decimals", amount=amount
        )
    step = _step(currency_code)
    if int(minor) % step:
        raise InvalidAmount(
            f"Stripe charges {currency_code} only in multiples of {step} minor units, not {amount}",
            amount=amount,
        )
    return int(minor)


def from_stripe_amount(value: object, currency_code: str) -> Decimal:
    """Convert a Stripe integer amount (an int, or a digit string) to major units.

    Raises:
        InvalidAmount: `value` is not an integer amount.
        InvalidCurrency: the currency is not valid.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidAmount(f"Stripe amount is not an integer ({type(value).__name__})")
    if isinstance(value, str) and not value.isdigit():
        raise InvalidAmount("Stripe amount is not an integer")
    major = Decimal(int(value)).scaleb(-stripe_exponent(currency_code), context=_CONTEXT)
    return to_amount(major, currency_code, positive=False)


def ensure_stripe_currency(currency_code: object, supported: frozenset[str]) -> str:
    """Return the lower-case code if Stripe (as configured) charges in it.

    Raises:
        InvalidCurrency: not an ISO 4217 code, or not one of `supported`.
    """
    code = normalize_currency(currency_code)
    if code not in supported:
        raise InvalidCurrency(code, f"The Stripe provider does not charge in {code!r}")
    return code
