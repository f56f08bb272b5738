"""The Stripe provider against localstripe, through the payment module: authorize, capture
(whole and partial), refund, cancel, 3-D Secure, declines, updates, deletes, customers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe
from stripe_support import (
    API_KEY,
    CARD_3DS,
    CARD_3DS_DECLINED,
    CARD_DECLINED,
    WEBHOOK_SECRET,
    RecordingClient,
    authenticate,
    card,
)

from payment import (
    CollectionStatus,
    PaymentActionRequired,
    PaymentModule,
    PaymentNotAuthorized,
    PaymentSession,
    ProviderError,
    ProviderStatus,
    SessionStatus,
)
from payment.providers import ProviderContext, ProviderInput
from payment.providers.stripe import StripeProvider
from payment.testing import payment_module


def new_session(
    module: PaymentModule, amount: str, data: dict[str, Any], currency: str = "usd"
) -> PaymentSession:
    """A collection of `amount` and a Stripe session for all of it."""
    collection = module.create_payment_collection(currency, amount)
    return module.create_payment_session(collection.id, "pp_stripe", currency, amount, data=data)


def intent_of(client: stripe.StripeClient, session: PaymentSession) -> dict[str, Any]:
    """The session's PaymentIntent as localstripe has it now."""
    return client.v1.payment_intents.retrieve(str(session.data["id"])).to_dict()


def test_a_session_creates_a_payment_intent_keyed_by_the_session(
    module: PaymentModule, stripe_client: stripe.StripeClient, http: RecordingClient
) -> None:
    """initiate: a manual-capture intent for 10.50 usd (1050), the session id in its metadata
    and as its idempotency key."""
    session = new_session(module, "10.50", {"payment_method": "pm_card_visa"})
    intent = intent_of(stripe_client, session)
    assert (intent["amount"], intent["currency"], intent["capture_method"]) == (
        1050,
        "usd",
        "manual",
    )
    assert intent["metadata"] == {"session_id": session.id}
    assert http.posts()[0].idempotency_key == session.id
    assert session.status is SessionStatus.PENDING
    assert session.data["status"] == "requires_confirmation"
    assert str(session.data["client_secret"]).startswith(f"{session.data['id']}_secret_")


def test_manual_capture_authorizes_then_captures_the_whole_amount(
    module: PaymentModule, stripe_client: stripe.StripeClient
) -> None:
    """authorize confirms the intent (requires_capture → authorized); capture takes it all."""
    session = new_session(module, "10.50", {"payment_method": "pm_card_visa"})
    payment = module.authorize_payment_session(session.id)
    assert payment is not None
    assert payment.amount == Decimal("10.50")
    assert intent_of(stripe_client, session)["status"] == "requires_capture"
    captured = module.capture_payment(payment.id)
    assert captured.captured_amount == Decimal("10.50")
    intent = intent_of(stripe_client, session)
    assert (intent["status"], intent["latest_charge"]["captured"]) == ("succeeded", True)
    collection = module.retrieve_payment_collection(session.payment_collection_id)
    assert collection.status is CollectionStatus.COMPLETED


def test_partial_capture_sends_amount_to_capture_and_a_second_capture_is_refused(
    module: PaymentModule, stripe_client: stripe.StripeClient, http: RecordingClient
) -> None:
    """Capturing 80.00 of 120.00 sends amount_to_capture=8000; Stripe captures an intent once,
    so a later capture of the rest is a non-retryable ProviderError that changes nothing."""
    session = new_session(module, "120.00", {"payment_method": "pm_card_visa"})
    payment = module.authorize_payment_session(session.id)
    assert payment is not None
    partial = module.capture_payment(payment.id, "80.00")
    assert partial.captured_amount == Decimal("80.00")
    capture_post = next(r for r in http.posts() if r.path.endswith("/capture"))
    assert capture_post.body == "amount_to_capture=8000"
    charge = intent_of(stripe_client, session)["latest_charge"]
    assert (charge["captured"], charge["amount_refunded"]) == (True, 4000)  # the rest released
    with pytest.raises(ProviderError) as caught:
        module.capture_payment(payment.id, "40.00")
    assert caught.value.retryable is False
    after = module.retrieve_payment(payment.id)
    assert (after.captured_amount, len(after.captures)) == (Decimal("80.00"), 1)


def test_retrieve_and_status_read_the_intent_as_it_is(
    module: PaymentModule, provider: StripeProvider
) -> None:
    """retrieve_payment and get_payment_status report the intent's status now: authorized, then
    captured after a capture."""
    session = new_session(module, "12.00", {"payment_method": "pm_card_visa"})
    payment = module.authorize_payment_session(session.id)
    assert payment is not None
    read = ProviderInput(payment.data, ProviderContext("read-1", session.id))
    assert provider.retrieve_payment(read).status is ProviderStatus.AUTHORIZED
    captured = module.capture_payment(payment.id)
    after = ProviderInput(captured.data, ProviderContext("read-2", session.id))
    status = provider.get_payment_status(after)
    assert (status.status, status.data["id"]) == (ProviderStatus.CAPTURED, session.data["id"])


def test_refund_returns_part_of_a_capture(
    module: PaymentModule, stripe_client: stripe.StripeClient
) -> None:
    """A refund of 20.00 creates a 2000 refund on the intent; its id joins the payment data."""
    session = new_session(module, "50.00", {"payment_method": "pm_card_visa"})
    payment = module.authorize_payment_session(session.id)
    assert payment is not None
    module.capture_payment(payment.id)
    refunded = module.refund_payment(payment.id, "20.00", note="returned an item")
    assert refunded.refunded_amount == Decimal("20.00")
    refunds = stripe_client.v1.refunds.list({"payment_intent": str(session.data["id"])}).data
    assert [(r.amount, r.id) for r in refunds] == [(2000, refunded.data["refunds"][0])]


def test_cancel_voids_the_authorization_and_twice_is_canceled(
    module: PaymentModule, provider: StripeProvider, stripe_client: stripe.StripeClient
) -> None:
    """cancel_payment cancels the intent; canceling an already canceled intent at the provider
    reports it canceled instead of failing."""
    session = new_session(module, "30.00", {"payment_method": "pm_card_visa"})
    payment = module.authorize_payment_session(session.id)
    assert payment is not None
    canceled = module.cancel_payment(payment.id)
    assert canceled.canceled_at is not None
    assert intent_of(stripe_client, session)["status"] == "canceled"
    again = provider.cancel_payment(ProviderInput(payment.data, ProviderContext("again")))
    assert again.status.value == "canceled"


def test_3ds_requires_action_then_authorizes_after_the_challenge(
    module: PaymentModule,
    stripe_client: stripe.StripeClient,
    localstripe: str,
    http: RecordingClient,
) -> None:
    """A 3-D Secure card answers requires_more with Stripe's next action; after the customer
    passes localstripe's challenge, authorizing again (a new key) gives the payment."""
    session = new_session(module, "75.00", {"payment_method": card(stripe_client, CARD_3DS)})
    with pytest.raises(PaymentActionRequired) as caught:
        module.authorize_payment_session(session.id)
    assert caught.value.action["type"] == "stripe_next_action"
    assert caught.value.action["next_action"]["type"] == "use_stripe_sdk"
    waiting = module.retrieve_payment_session(session.id)
    assert waiting.status is SessionStatus.REQUIRES_MORE
    assert waiting.data["next_action"] == caught.value.action["next_action"]
    intent_id, client_secret = str(waiting.data["id"]), str(waiting.data["client_secret"])
    assert authenticate(localstripe, intent_id, client_secret, success=True) == 200
    payment = module.authorize_payment_session(session.id)
    assert payment is not None
    assert payment.amount == Decimal("75.00")
    confirms = [r.idempotency_key for r in http.posts() if r.path.endswith("/confirm")]
    assert confirms == [f"{session.id}:authorize:0"]  # the second attempt only read the intent
    assert intent_of(stripe_client, session)["status"] == "requires_capture"


def test_a_failed_3ds_challenge_is_an_error_answer(
    module: PaymentModule, stripe_client: stripe.StripeClient, localstripe: str
) -> None:
    """The customer fails the challenge: authorizing again answers error (not an exception
    from the provider), with Stripe's authentication failure code in the data."""
    session = new_session(module, "75.00", {"payment_method": card(stripe_client, CARD_3DS)})
    with pytest.raises(PaymentActionRequired):
        module.authorize_payment_session(session.id)
    data = module.retrieve_payment_session(session.id).data
    assert (
        authenticate(localstripe, str(data["id"]), str(data["client_secret"]), success=False) == 200
    )
    with pytest.raises(PaymentNotAuthorized) as caught:
        module.authorize_payment_session(session.id)
    assert caught.value.status == "error"
    failed = module.retrieve_payment_session(session.id)
    assert failed.data["decline_code"] == "payment_intent_authentication_failure"


def test_3ds_passed_then_declined_is_an_error_answer(
    module: PaymentModule, stripe_client: stripe.StripeClient, localstripe: str
) -> None:
    """A card that passes 3-D Secure and is then declined: the next authorize answers error
    with the decline code."""
    card_id = card(stripe_client, CARD_3DS_DECLINED)
    session = new_session(module, "75.00", {"payment_method": card_id})
    with pytest.raises(PaymentActionRequired):
        module.authorize_payment_session(session.id)
    data = module.retrieve_payment_session(session.id).data
    assert (
        authenticate(localstripe, str(data["id"]), str(data["client_secret"]), success=True) == 402
    )
    with pytest.raises(PaymentNotAuthorized):
        module.authorize_payment_session(session.id)
    assert module.retrieve_payment_session(session.id).data["decline_code"] == "card_declined"


def test_a_declined_card_is_an_answer_not_an_exception(
    module: PaymentModule, provider: StripeProvider, stripe_client: stripe.StripeClient
) -> None:
    """The provider answers a decline on confirm with status error and the decline code in the
    data (no ProviderError); the module records it and the collection is failed."""
    session = new_session(module, "20.00", {"payment_method": card(stripe_client, CARD_DECLINED)})
    answer = provider.authorize_payment(
        ProviderInput(session.data, ProviderContext("direct-1", session.id))
    )
    assert (answer.status.value, answer.data["decline_code"]) == ("error", "card_declined")
    with pytest.raises(PaymentNotAuthorized) as caught:
        module.authorize_payment_session(session.id)
    assert caught.value.status == "error"
    declined = module.retrieve_payment_session(session.id)
    assert (declined.status, declined.data["decline_code"]) == (
        SessionStatus.ERROR,
        "card_declined",
    )
    collection = module.retrieve_payment_collection(session.payment_collection_id)
    assert collection.status is CollectionStatus.FAILED


def test_update_changes_the_amount_and_sets_the_payment_method(
    module: PaymentModule, stripe_client: stripe.StripeClient
) -> None:
    """A session created without a card is pending; updating it with the session's data plus a
    payment method and a lower amount changes the intent, which then authorizes."""
    session = new_session(module, "10.00", {})
    assert (session.status, session.data["status"]) == (
        SessionStatus.PENDING,
        "requires_payment_method",
    )
    changed = module.update_payment_session(
        session.id, amount="8.00", data={**session.data, "payment_method": "pm_card_visa"}
    )
    assert (changed.amount, changed.data["amount"]) == (Decimal("8.00"), 800)
    payment = module.authorize_payment_session(session.id)
    assert payment is not None
    assert payment.amount == Decimal("8.00")
    assert intent_of(stripe_client, session)["status"] == "requires_capture"


def test_deleting_a_session_cancels_its_intent(
    module: PaymentModule, stripe_client: stripe.StripeClient
) -> None:
    """delete_payment_session cancels the PaymentIntent at Stripe, then forgets the session."""
    session = new_session(module, "10.00", {"payment_method": "pm_card_visa"})
    module.delete_payment_session(session.id)
    assert intent_of(stripe_client, session)["status"] == "canceled"
    assert module.list_payment_sessions(ids=[session.id]) == []


def test_automatic_capture_answers_captured_at_authorization(
    sqlite_url: str, localstripe: str, stripe_client: stripe.StripeClient
) -> None:
    """capture_method="automatic": authorizing captures at once; the module records the
    capture without calling capture."""
    http = RecordingClient()
    automatic = StripeProvider(
        api_key=API_KEY,
        webhook_secret=WEBHOOK_SECRET,
        api_base=localstripe,
        capture_method="automatic",
        http_client=http,
    )
    with payment_module(sqlite_url, providers=[automatic]) as module:
        session = new_session(module, "15.00", {"payment_method": "pm_card_visa"})
        payment = module.authorize_payment_session(session.id)
        assert payment is not None
        assert payment.captured_amount == Decimal("15.00")
    assert intent_of(stripe_client, session)["status"] == "succeeded"
    assert not [r for r in http.posts() if r.path.endswith("/capture")]
    http.close()


def test_an_account_holder_is_a_stripe_customer_and_pays_the_intent(
    module: PaymentModule, stripe_client: stripe.StripeClient
) -> None:
    """create_account_holder makes a Customer (key: the customer id); a session naming the
    holder creates its intent for that customer."""
    holder = module.create_account_holder("pp_stripe", "cust_42", "ada@example.com")
    assert holder.external_id is not None
    assert holder.external_id.startswith("cus_")
    customer = stripe_client.v1.customers.retrieve(holder.external_id).to_dict()
    assert (customer["email"], customer["metadata"]) == (
        "ada@example.com",
        {"customer_id": "cust_42"},
    )
    collection = module.create_payment_collection("usd", "12.00")
    session = module.create_payment_session(
        collection.id, "pp_stripe", "usd", "12.00",
        data={"payment_method": "pm_card_visa"}, context={"account_holder_id": holder.id},
    )  # fmt: skip
    assert intent_of(stripe_client, session)["customer"] == holder.external_id
