"""The Stripe provider's pure parts: amounts, statuses, events, errors, construction."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe
from stripe_support import API_KEY, WEBHOOK_SECRET

from payment import InvalidAmount, InvalidCurrency, ProviderError, ProviderStatus
from payment.providers import PaymentAction
from payment.providers.stripe import (
    MissingWebhookSecret,
    StripeProvider,
    from_stripe_amount,
    stripe_exponent,
    to_stripe_amount,
)
from payment.providers.stripe._amounts import ensure_stripe_currency
from payment.providers.stripe._errors import redact, to_provider_error
from payment.providers.stripe._intents import intent_output, intent_status, webhook_action

# --- amounts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        ("10.50", "usd", 1050),
        ("1000", "jpy", 1000),
        ("5000", "ugx", 5000),
        ("10.010", "kwd", 10010),
        ("500", "isk", 50000),
        ("1000", "huf", 100000),
        ("0.01", "eur", 1),
    ],
)
def test_amounts_go_to_stripe_minor_units_through_stripes_exponent(
    amount: str, currency: str, minor: int
) -> None:
    """Major units become Stripe's integers exactly (usd 10.50 → 1050, jpy 1000 → 1000)."""
    assert to_stripe_amount(Decimal(amount), currency) == minor
    assert from_stripe_amount(minor, currency) == Decimal(amount)


def test_three_decimal_amounts_must_end_in_zero() -> None:
    """Stripe's rule for kwd, bhd, jod, omr, tnd: 10.005 kwd (10005) is refused, typed."""
    with pytest.raises(InvalidAmount, match="multiples of 10") as caught:
        to_stripe_amount(Decimal("10.005"), "kwd")
    assert caught.value.amount == Decimal("10.005")
    assert stripe_exponent("kwd") == 3


def test_more_decimals_than_stripe_takes_are_refused() -> None:
    """A fractional yen cannot be sent: InvalidAmount, never a rounded integer."""
    with pytest.raises(InvalidAmount, match="too many decimals"):
        to_stripe_amount(Decimal("10.5"), "jpy")


@pytest.mark.parametrize("value", [10.5, True, "12a", None])
def test_stripe_amounts_must_be_integers(value: object) -> None:
    """Floats, booleans, non-digit strings and None are not Stripe amounts."""
    with pytest.raises(InvalidAmount):
        from_stripe_amount(value, "usd")


def test_currencies_outside_the_configured_set_are_refused() -> None:
    """A valid ISO code Stripe does not charge in (kpw) is InvalidCurrency; garbage too."""
    supported = frozenset({"usd"})
    assert ensure_stripe_currency("USD", supported) == "usd"
    with pytest.raises(InvalidCurrency, match="does not charge in 'kpw'"):
        ensure_stripe_currency("kpw", supported)
    with pytest.raises(InvalidCurrency):
        ensure_stripe_currency("zzz", supported)


# --- statuses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "status"),
    [
        ({"status": "requires_payment_method"}, ProviderStatus.PENDING),
        (
            {"status": "requires_payment_method", "last_payment_error": {"code": "card_declined"}},
            ProviderStatus.ERROR,
        ),
        ({"status": "requires_confirmation"}, ProviderStatus.PENDING),
        ({"status": "processing"}, ProviderStatus.PENDING_AUTHORIZATION),
        ({"status": "requires_action"}, ProviderStatus.REQUIRES_MORE),
        ({"status": "requires_capture"}, ProviderStatus.AUTHORIZED),
        ({"status": "succeeded"}, ProviderStatus.CAPTURED),
        ({"status": "canceled"}, ProviderStatus.CANCELED),
    ],
)
def test_intent_statuses_map_as_issue_9_says(
    intent: dict[str, Any], status: ProviderStatus
) -> None:
    """Each PaymentIntent status maps to its session status (a failed attempt is an error)."""
    assert intent_status("pp_stripe", intent) is status


def test_an_undocumented_status_is_a_provider_error() -> None:
    """A status Stripe may add later is not guessed at: ProviderError, not retryable."""
    with pytest.raises(ProviderError) as caught:
        intent_status("pp_stripe", {"status": "teleported"})
    assert (caught.value.code, caught.value.retryable) == ("unknown_status", False)


def test_requires_action_carries_the_next_action() -> None:
    """`requires_more` comes with Stripe's next action, in the data and as the action."""
    next_action = {"type": "redirect_to_url", "redirect_to_url": {"url": "https://x.test/3ds"}}
    intent = {"id": "pi_1", "status": "requires_action", "next_action": next_action}
    output = intent_output("pp_stripe", intent)
    assert output.status is ProviderStatus.REQUIRES_MORE
    assert output.data["next_action"] == next_action
    assert output.action == {
        "type": "stripe_next_action",
        "payment_intent": "pi_1",
        "next_action": next_action,
    }


def test_expanded_objects_are_stored_as_ids_and_errors_keep_the_decline_code() -> None:
    """The stored data keeps ids, integer amounts and the decline code, not whole objects."""
    intent = {
        "id": "pi_1",
        "status": "requires_payment_method",
        "amount": "800",
        "latest_charge": {"id": "ch_1", "amount": 800},
        "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds"},
        "charges": {"data": []},
    }
    output = intent_output("pp_stripe", intent)
    assert output.status is ProviderStatus.ERROR
    assert dict(output.data) == {
        "id": "pi_1",
        "status": "requires_payment_method",
        "amount": 800,
        "latest_charge": "ch_1",
        "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds"},
        "decline_code": "insufficient_funds",
    }


# --- webhook events -------------------------------------------------------------------------


def _event(kind: str, **intent: Any) -> dict[str, Any]:
    body = {"object": "payment_intent", "id": "pi_1", "currency": "usd", **intent}
    return {"id": "evt_1", "type": kind, "data": {"object": body}}


@pytest.mark.parametrize(
    ("kind", "action", "amount"),
    [
        ("payment_intent.amount_capturable_updated", PaymentAction.AUTHORIZED, Decimal("12.00")),
        ("payment_intent.succeeded", PaymentAction.CAPTURED, Decimal("8.00")),
        ("payment_intent.payment_failed", PaymentAction.FAILED, None),
        ("payment_intent.requires_action", PaymentAction.REQUIRES_MORE, None),
        ("payment_intent.canceled", PaymentAction.CANCELED, None),
    ],
)
def test_payment_intent_events_map_to_actions(
    kind: str, action: PaymentAction, amount: Decimal | None
) -> None:
    """Each supported event maps to its action, with amount_capturable / amount_received."""
    event = _event(
        kind, metadata={"session_id": "payses_1"}, amount_capturable=1200, amount_received=800
    )
    mapped = webhook_action(event)
    assert (mapped.action, mapped.session_id, mapped.amount) == (action, "payses_1", amount)
    assert (mapped.currency_code, mapped.event_id) == ("usd", "evt_1")


@pytest.mark.parametrize(
    "event",
    [
        _event("payment_intent.succeeded", metadata={}),
        _event("payment_intent.succeeded"),
        _event("payment_intent.processing", metadata={"session_id": "payses_1"}),
        {"id": "evt_1", "type": "charge.refunded", "data": {"object": {"object": "charge"}}},
        {"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"object": "x"}}},
    ],
)
def test_other_events_and_foreign_intents_are_not_supported(event: dict[str, Any]) -> None:
    """Intents without a session id, other event types and other objects: not_supported."""
    mapped = webhook_action(event)
    assert (mapped.action, mapped.session_id, mapped.event_id) == (
        PaymentAction.NOT_SUPPORTED,
        None,
        "evt_1",
    )


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code", "retryable"),
    [
        (stripe.APIConnectionError("reset", should_retry=True), "api_connection_error", True),
        (stripe.RateLimitError("slow down", http_status=429), "rate_limit", True),
        (stripe.APIError("boom", http_status=500), "api_error", True),
        (
            stripe.InvalidRequestError("busy", None, "lock_timeout", http_status=400),
            "lock_timeout",
            True,
        ),
        (
            stripe.CardError("declined", None, "card_declined", http_status=402),
            "card_declined",
            False,
        ),
        (
            stripe.InvalidRequestError("gone", None, None, http_status=404),
            "resource_missing",
            False,
        ),
        (
            stripe.InvalidRequestError("bad", "amount", "amount_too_large", http_status=400),
            "amount_too_large",
            False,
        ),
        (stripe.AuthenticationError("bad key", http_status=401), "authentication_error", False),
        (stripe.IdempotencyError("other params", http_status=400), "idempotency_error", False),
    ],
)
def test_stripe_errors_become_provider_errors_with_stripes_code(
    error: stripe.StripeError, code: str, retryable: bool
) -> None:
    """Stripe's code is kept; connection, rate-limit, lock and 5xx errors are retryable."""
    mapped = to_provider_error("pp_stripe", error, ())
    assert (mapped.provider_id, mapped.code, mapped.retryable) == ("pp_stripe", code, retryable)


def test_secrets_are_redacted_from_stripe_messages() -> None:
    """The configured key and secret, and anything shaped like a Stripe key, never pass on."""
    message = f"Invalid API Key provided: {API_KEY}; also rk_live_abc123 and {WEBHOOK_SECRET}"
    error = stripe.AuthenticationError(message, http_status=401)
    mapped = to_provider_error("pp_stripe", error, (API_KEY, WEBHOOK_SECRET))
    assert API_KEY not in str(mapped)
    assert WEBHOOK_SECRET not in str(mapped)
    assert "rk_live_abc123" not in str(mapped)
    assert redact("sk_test_xyz and pk_live_q", ()) == "[redacted] and [redacted]"


# --- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize("api_key", [None, ""])
def test_a_missing_api_key_is_a_clear_error_at_construction(api_key: str | None) -> None:
    """No key → ValueError naming the option, before anything else."""
    with pytest.raises(ValueError, match="needs api_key"):
        StripeProvider(api_key=api_key, webhook_secret=WEBHOOK_SECRET)


@pytest.mark.parametrize("api_key", ["pk_test_publishable123", "sk_test_x ", "whatever123"])
def test_a_malformed_api_key_is_refused_without_being_echoed(api_key: str) -> None:
    """A publishable key, a key with spaces, a random string: ValueError that never repeats it."""
    with pytest.raises(ValueError, match="is not a secret") as caught:
        StripeProvider(api_key=api_key, webhook_secret=WEBHOOK_SECRET)
    assert api_key.strip() not in str(caught.value)


def test_a_missing_webhook_secret_warns_at_construction() -> None:
    """No webhook secret is allowed but loud: a MissingWebhookSecret warning."""
    with pytest.warns(MissingWebhookSecret, match="every webhook will be refused"):
        StripeProvider(api_key=API_KEY)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"capture_method": "later"}, "capture_method"),
        ({"api_base": "localhost:8420"}, "api_base"),
        ({"webhook_tolerance_seconds": 0}, "tolerance"),
    ],
)
def test_malformed_options_are_refused(options: dict[str, Any], match: str) -> None:
    """A capture method Stripe lacks, an api base that is no URL, a tolerance of 0: ValueError."""
    with pytest.raises(ValueError, match=match):
        StripeProvider(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, **options)


def test_the_repr_shows_no_secret() -> None:
    """Printing a provider (logs, debuggers) shows where it points, not its key or secret."""
    provider = StripeProvider(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET)
    assert repr(provider) == "StripeProvider(api_base='https://api.stripe.com', capture='manual')"
    assert provider.id == "pp_stripe"
