"""Stripe webhooks: events localstripe signs and delivers to a local endpoint are verified and
mapped; wrong, stale, missing or unverifiable signatures are refused and change nothing."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest
import stripe
from stripe_support import (
    API_KEY,
    CARD_DECLINED,
    SECRETS,
    WEBHOOK_SECRET,
    WebhookInbox,
    card,
    event_about,
)

from payment import PaymentModule, PaymentNotAuthorized, WebhookSignatureError
from payment.providers import PaymentAction, Webhook
from payment.providers.stripe import MissingWebhookSecret, StripeProvider


def signed(body: bytes, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> dict[str, str]:
    """Headers with a Stripe-Signature over `body`, as Stripe computes it."""
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, at)
    return {"Stripe-Signature": header, "Content-Type": "application/json"}


def intent_event(session_id: str | None, kind: str = "payment_intent.succeeded") -> bytes:
    """A Stripe event body about an intent (with `session_id` in its metadata, if any)."""
    metadata = {} if session_id is None else {"session_id": session_id}
    intent = {
        "object": "payment_intent",
        "id": "pi_synthetic",
        "currency": "usd",
        "amount_received": 1200,
        "metadata": metadata,
    }
    return json.dumps({"id": "evt_synthetic", "type": kind, "data": {"object": intent}}).encode()


def snapshot(module: PaymentModule) -> list[Any]:
    """Every collection as it is now (to show nothing changed)."""
    return module.list_payment_collections()


def test_a_capture_webhook_from_localstripe_is_verified_and_mapped(
    module: PaymentModule, inbox: WebhookInbox
) -> None:
    """localstripe signs payment_intent.succeeded after a capture and POSTs it to our endpoint;
    the raw body and Stripe-Signature header verify and map to captured for the session."""
    collection = module.create_payment_collection("usd", "12.00")
    session = module.create_payment_session(
        collection.id, "pp_stripe", "usd", "12.00", data={"payment_method": "pm_card_visa"}
    )
    payment = module.authorize_payment_session(session.id)
    assert payment is not None
    module.capture_payment(payment.id)
    delivery = inbox.wait_for(event_about("payment_intent.succeeded", str(session.data["id"])))
    assert delivery.headers["Stripe-Signature"].startswith("t=")
    action = module.get_webhook_action_and_data("pp_stripe", delivery.body, delivery.headers)
    assert (action.action, action.session_id, action.currency_code) == (
        PaymentAction.CAPTURED,
        session.id,
        "usd",
    )
    assert action.event_id == delivery.event["id"]
    assert action.amount is None  # localstripe's intents carry no amount_received


def test_a_decline_webhook_from_localstripe_maps_to_failed(
    module: PaymentModule, inbox: WebhookInbox, stripe_client: stripe.StripeClient
) -> None:
    """The payment_failed event localstripe sends for a declined card maps to failed."""
    collection = module.create_payment_collection("usd", "9.00")
    data = {"payment_method": card(stripe_client, CARD_DECLINED)}
    session = module.create_payment_session(collection.id, "pp_stripe", "usd", "9.00", data=data)
    with pytest.raises(PaymentNotAuthorized):
        module.authorize_payment_session(session.id)
    delivery = inbox.wait_for(event_about("payment_intent.payment_failed", str(session.data["id"])))
    action = module.get_webhook_action_and_data("pp_stripe", delivery.body, delivery.headers)
    assert (action.action, action.session_id) == (PaymentAction.FAILED, session.id)


def test_a_tampered_delivery_is_refused(module: PaymentModule, inbox: WebhookInbox) -> None:
    """A delivered body changed by one field no longer matches its signature: refused."""
    collection = module.create_payment_collection("usd", "5.00")
    session = module.create_payment_session(
        collection.id, "pp_stripe", "usd", "5.00", data={"payment_method": "pm_card_visa"}
    )
    payment = module.authorize_payment_session(session.id)
    assert payment is not None
    module.capture_payment(payment.id)
    delivery = inbox.wait_for(event_about("payment_intent.succeeded", str(session.data["id"])))
    forged = delivery.body.replace(b'"usd"', b'"eur"')
    assert forged != delivery.body
    before = snapshot(module)
    with pytest.raises(WebhookSignatureError, match="signature does not match"):
        module.get_webhook_action_and_data("pp_stripe", forged, delivery.headers)
    assert snapshot(module) == before


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (signed(intent_event("payses_1"), secret="whsec_someone_else"), "signature does not match"),
        (signed(intent_event("payses_1"), at=int(time.time()) - 3600), "outside the tolerance"),
        ({"Content-Type": "application/json"}, "missing stripe-signature header"),
        ({"Stripe-Signature": "v1=abc"}, "malformed signature header"),
        ({"Stripe-Signature": "t=1700000000"}, "malformed signature header"),
    ],
    ids=["wrong-secret", "replayed-timestamp", "no-header", "no-timestamp", "no-signature"],
)
def test_bad_signatures_are_refused_and_change_nothing(
    module: PaymentModule, headers: dict[str, str], reason: str
) -> None:
    """A wrong secret, a replayed (hour-old) timestamp, a missing or malformed header:
    WebhookSignatureError, nothing parsed or changed, no secret in the message."""
    before = snapshot(module)
    with pytest.raises(WebhookSignatureError, match=reason) as caught:
        module.get_webhook_action_and_data("pp_stripe", intent_event("payses_1"), headers)
    assert caught.value.provider_id == "pp_stripe"
    assert not any(secret in str(caught.value) for secret in SECRETS)
    assert snapshot(module) == before


def test_a_body_that_is_not_utf8_is_refused(provider: StripeProvider) -> None:
    """Stripe signs UTF-8 JSON: other bytes cannot carry a valid signature."""
    body = b"\xff\xfe{}"
    webhook = Webhook(body, {"Stripe-Signature": "t=1,v1=00"})
    with pytest.raises(WebhookSignatureError, match="not UTF-8"):
        provider.get_webhook_action_and_data(webhook)


def test_an_intent_this_module_did_not_create_is_not_supported(module: PaymentModule) -> None:
    """A correctly signed event about an intent without a session id: not_supported."""
    body = intent_event(None)
    action = module.get_webhook_action_and_data("pp_stripe", body, signed(body))
    assert (action.action, action.session_id, action.event_id) == (
        PaymentAction.NOT_SUPPORTED,
        None,
        "evt_synthetic",
    )


def test_a_signed_synthetic_capture_maps_with_its_amount(module: PaymentModule) -> None:
    """A signed payment_intent.succeeded carrying amount_received reports that amount."""
    body = intent_event("payses_1")
    action = module.get_webhook_action_and_data("pp_stripe", body, signed(body))
    assert (action.action, action.amount) == (PaymentAction.CAPTURED, Decimal("12.00"))


def test_without_a_webhook_secret_every_webhook_is_refused(localstripe: str) -> None:
    """A provider built without a secret warned at construction and refuses even a webhook
    that a configured provider would accept."""
    with pytest.warns(MissingWebhookSecret):
        provider = StripeProvider(api_key=API_KEY, api_base=localstripe)
    body = intent_event("payses_1")
    with pytest.raises(WebhookSignatureError, match="no webhook secret is configured"):
        provider.get_webhook_action_and_data(Webhook(body, signed(body)))
