"""The whole accept-payment flow on Stripe (localstripe), through durable engines on SQLite."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import stripe
from stripe_support import (
    API_KEY,
    CARD_3DS,
    SECRETS,
    WEBHOOK_SECRET,
    RecordingClient,
    authenticate,
    card,
)

from flowkit import Engine, Event, Registry, TransactionState
from flowkit.sqlalchemy import SqlStore
from payment import CollectionStatus, SessionStatus, register
from payment.cart import CartService
from payment.providers.stripe import StripeProvider
from payment.testing import InMemoryCartService, payment_module
from payment.workflows import capture_payment_workflow, refund_payment_workflow

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # the examples live beside the packages, not inside one
    sys.path.insert(0, ROOT)

from examples.accept_payment import accept_payment_workflow  # noqa: E402

WORKFLOWS: list[Any] = [accept_payment_workflow, capture_payment_workflow, refund_payment_workflow]
TX = "accept-cart_stripe"


def test_accept_payment_end_to_end_against_localstripe(
    sqlite_url: str, localstripe: str, stripe_client: stripe.StripeClient, http: RecordingClient
) -> None:
    """A cart's collection and Stripe session; 3-D Secure parks the durable run; the customer
    passes the challenge and a second engine resumes it to a payment; a capture whose first
    request is lost is retried by its step with the same key; a refund follows. localstripe
    and the module agree on every amount, and no engine event carries a secret."""
    store = SqlStore(sqlite_url)
    store.create_all()
    store.close()
    provider = StripeProvider(
        api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, api_base=localstripe, http_client=http
    )
    events: list[Event] = []
    with payment_module(sqlite_url, providers=[provider]) as module:
        carts = InMemoryCartService()
        carts.add_cart("cart_stripe", Decimal("120.00"), "usd")
        registry = Registry()
        register(registry, module)
        registry.register_value(CartService, carts)

        def engine() -> Engine:
            built = Engine(SqlStore(sqlite_url), WORKFLOWS, container=registry)
            built.subscribe(events.append)
            return built

        first = engine()
        data = {"payment_method": card(stripe_client, CARD_3DS)}
        request = {"cart_id": "cart_stripe", "provider_id": "pp_stripe", "data": data}
        waiting = first.run(accept_payment_workflow, request, transaction_id=TX)
        first.close()
        assert waiting.status is TransactionState.WAITING
        session = module.retrieve_payment_collection_for_cart("cart_stripe").sessions[-1]
        assert session.status is SessionStatus.REQUIRES_MORE
        intent_id = str(session.data["id"])
        secret = str(session.data["client_secret"])
        assert authenticate(localstripe, intent_id, secret, success=True) == 200

        second = engine()
        done = second.set_step_success(TX, "await-payment-action", {"completed": "3ds"})
        assert done.status is TransactionState.DONE
        payment = done.result
        assert (payment.amount, payment.payment_session_id) == (Decimal("120.00"), session.id)

        http.fail_next(1, "/capture")  # the first capture request is lost on the way
        capture = {"payment_id": payment.id, "amount": "80.00"}
        assert second.run(capture_payment_workflow, capture).status is TransactionState.DONE
        refund = {"payment_id": payment.id, "amount": "30.00", "note": "returned an item"}
        assert second.run(refund_payment_workflow, refund).status is TransactionState.DONE
        second.close()
        collection = module.retrieve_payment_collection(session.payment_collection_id)

    assert collection.status is CollectionStatus.PARTIALLY_CAPTURED
    amounts = (collection.authorized_amount, collection.captured_amount, collection.refunded_amount)
    assert amounts == (Decimal("120.00"), Decimal("80.00"), Decimal("30.00"))
    intent = stripe_client.v1.payment_intents.retrieve(intent_id).to_dict()
    assert (intent["status"], intent["amount"], intent["metadata"]) == (
        "succeeded",
        12000,
        {"session_id": session.id},
    )
    refunds = stripe_client.v1.refunds.list({"payment_intent": intent_id}).data
    assert sorted(r.amount for r in refunds) == [3000, 4000]  # ours, and the uncaptured rest
    lost, retried = http.posts("/capture")
    assert lost.idempotency_key == retried.idempotency_key
    assert retried.fields == {"amount_to_capture": "8000"}
    assert not [e for e in events for s in SECRETS if s in repr(e)]
