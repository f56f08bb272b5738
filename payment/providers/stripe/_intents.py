"""PaymentIntents and webhook events as the payment module sees them.

An intent's status maps to a `ProviderStatus` (issue 9's table); the data kept for the module is
a small, JSON-safe subset of the intent: ids, amounts in Stripe's minor units, status, the
client secret the storefront needs for Stripe.js, and the next action or the last error.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from payment.domain import ProviderStatus
from payment.exceptions import ProviderError
from payment.money import normalize_currency
from payment.providers.base import PaymentAction, ProviderOutput, WebhookAction
from payment.providers.stripe._amounts import from_stripe_amount

__all__ = ["intent_data", "intent_output", "intent_status", "webhook_action"]

_STATUSES = {
    "requires_confirmation": ProviderStatus.PENDING,
    "processing": ProviderStatus.PENDING_AUTHORIZATION,
    "requires_action": ProviderStatus.REQUIRES_MORE,
    "requires_capture": ProviderStatus.AUTHORIZED,
    "succeeded": ProviderStatus.CAPTURED,
    "canceled": ProviderStatus.CANCELED,
}
_KEPT = (
    "id",
    "status",
    "amount",
    "amount_capturable",
    "amount_received",
    "currency",
    "capture_method",
    "client_secret",
    "customer",
    "payment_method",
    "latest_charge",
)
_ERROR_FIELDS = ("type", "code", "decline_code", "message")
_EVENT_ACTIONS = {
    "payment_intent.amount_capturable_updated": PaymentAction.AUTHORIZED,
    "payment_intent.succeeded": PaymentAction.CAPTURED,
    "payment_intent.payment_failed": PaymentAction.FAILED,
    "payment_intent.requires_action": PaymentAction.REQUIRES_MORE,
    "payment_intent.canceled": PaymentAction.CANCELED,
}
_EVENT_AMOUNTS = {
    PaymentAction.AUTHORIZED: "amount_capturable",
    PaymentAction.CAPTURED: "amount_received",
}


def intent_status(provider_id: str, intent: Mapping[str, Any]) -> ProviderStatus:
    """The module's status for a PaymentIntent.

    ``requires_payment_method`` is ``error`` after a failed attempt (a decline, a failed
    3-D Secure) and ``pending`` before the first one.

    Raises:
        ProviderError: a status Stripe did not document when this was written.
    """
    status = intent.get("status")
    if status == "requires_payment_method":
        failed = bool(intent.get("last_payment_error"))
        return ProviderStatus.ERROR if failed else ProviderStatus.PENDING
    if not isinstance(status, str) or status not in _STATUSES:
        raise ProviderError(
            provider_id, "unknown_status", retryable=False, message="unexpected intent status"
        )
    return _STATUSES[status]


_AMOUNTS = frozenset({"amount", "amount_capturable", "amount_received"})


def _stored(name: str, value: object) -> object:
    """An expanded object as its id, a digit-string amount as an int; the rest as it is."""
    if isinstance(value, Mapping):
        return value.get("id")
    if name in _AMOUNTS and isinstance(value, str) and value.isdigit():
        return int(value)  # some fakes echo updated amounts back as form strings
    return value


def _error_data(error: Mapping[str, Any]) -> dict[str, Any]:
    return {name: error[name] for name in _ERROR_FIELDS if error.get(name)}


def intent_data(intent: Mapping[str, Any]) -> dict[str, Any]:
    """The part of an intent the module stores as the payment's data."""
    data = {name: _stored(name, intent[name]) for name in _KEPT if intent.get(name) is not None}
    if intent.get("next_action"):
        data["next_action"] = intent["next_action"]
    error = intent.get("last_payment_error")
    if isinstance(error, Mapping) and error:
        data["last_payment_error"] = _error_data(error)
        data["decline_code"] = error.get("decline_code") or error.get("code")
    return data


def intent_output(
    provider_id: str, intent: Mapping[str, Any], *, decline_code: str | None = None
) -> ProviderOutput:
    """The answer to give the module for an intent.

    Args:
        provider_id: Named in errors.
        intent: The intent as a plain dict.
        decline_code: Set when the last call was declined: the answer is then ``error``
            whatever the intent says, with this code in the data.
    """
    data = intent_data(intent)
    if decline_code is not None:
        data["decline_code"] = data.get("decline_code") or decline_code
        return ProviderOutput(ProviderStatus.ERROR, data)
    status = intent_status(provider_id, intent)
    if status is ProviderStatus.CAPTURED:
        return ProviderOutput(status, data, captured_amount=_amount_received(intent))
    if status is not ProviderStatus.REQUIRES_MORE:
        return ProviderOutput(status, data)
    action = {
        "type": "stripe_next_action",
        "payment_intent": intent.get("id"),
        "next_action": intent.get("next_action") or {},
    }
    return ProviderOutput(status, data, action=action)


def _amount_received(intent: Mapping[str, Any]) -> Decimal | None:
    """What a succeeded intent captured, in major units (None when Stripe does not say)."""
    received, currency = intent.get("amount_received"), intent.get("currency")
    if received is None or not isinstance(currency, str):
        return None
    return from_stripe_amount(received, currency)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def webhook_action(event: Mapping[str, Any]) -> WebhookAction:
    """What a verified Stripe event means for the module.

    Only PaymentIntent events carrying a session id in their metadata are supported; anything
    else is ``not_supported`` (with the event id).

    Raises:
        InvalidCurrency, InvalidAmount: a PaymentIntent with a malformed currency or amount.
    """
    event_id = _text(event.get("id"))
    action = _EVENT_ACTIONS.get(str(event.get("type")))
    body = event.get("data")
    intent = body.get("object") if isinstance(body, Mapping) else None
    if (
        action is None
        or not isinstance(intent, Mapping)
        or intent.get("object") != "payment_intent"
    ):
        return WebhookAction(PaymentAction.NOT_SUPPORTED, event_id=event_id)
    metadata = intent.get("metadata")
    session_id = _text(metadata.get("session_id")) if isinstance(metadata, Mapping) else None
    if session_id is None:  # not an intent this module created
        return WebhookAction(PaymentAction.NOT_SUPPORTED, event_id=event_id)
    currency = normalize_currency(intent.get("currency"))
    field = _EVENT_AMOUNTS.get(action)
    raw = intent.get(field) if field else None
    amount = None if raw is None else from_stripe_amount(raw, currency)
    return WebhookAction(action, session_id, amount, currency, event_id)
