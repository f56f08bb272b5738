"""Idempotency keys at the HTTP boundary: every request the SDK sends carries the caller's
stable key, and a retry sends the same key (and body) again.

localstripe does not replay answers for a repeated Idempotency-Key (it would capture twice),
so Stripe's replay itself cannot be shown against it; what these tests pin is our half of the
contract, on the requests as the SDK hands them to its HTTP client.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import stripe
from stripe_support import API_KEY, WEBHOOK_SECRET, CannedClient, RecordingClient

from payment import InvalidData, PaymentModule, PaymentSession, ProviderError
from payment.domain import AccountHolder
from payment.providers import ProviderContext, ProviderInput
from payment.providers.stripe import StripeProvider, stripe_idempotency_key
from payment.testing import payment_module


def new_session(module: PaymentModule, amount: str = "40.00") -> PaymentSession:
    """A Stripe session with the test visa card, for all of a new collection."""
    collection = module.create_payment_collection("usd", amount)
    return module.create_payment_session(
        collection.id, "pp_stripe", "usd", amount, data={"payment_method": "pm_card_visa"}
    )


def test_every_request_of_a_payments_life_carries_the_operations_key(
    module: PaymentModule, http: RecordingClient
) -> None:
    """initiate → the session id; update → the update key; authorize's read and confirm → the
    attempt key; capture and refund → their operation keys: no request without a caller key."""
    session = new_session(module)
    module.update_payment_session(session.id, amount="30.00", data=dict(session.data))
    payment = module.authorize_payment_session(session.id)
    assert payment is not None
    captured = module.capture_payment(payment.id, "30.00", idempotency_key="cap-1")
    refunded = module.refund_payment(payment.id, "10.00", idempotency_key="ref-1")
    keys = [(r.method, r.path.rsplit("/", 1)[-1], r.idempotency_key) for r in http.sent]
    intent = str(session.data["id"])
    attempt = f"{session.id}:authorize:0"
    update_key = keys[1][2]
    assert str(update_key).startswith(f"{session.id}:update:")
    assert keys == [
        ("post", "payment_intents", session.id),
        ("post", intent, update_key),
        ("get", intent, attempt),
        ("post", "confirm", attempt),
        ("post", "capture", captured.captures[0].provider_key),
        ("post", "refunds", refunded.refunds[0].provider_key),
    ]


def test_cancel_and_delete_carry_their_keys(module: PaymentModule, http: RecordingClient) -> None:
    """cancel_payment sends ``{payment}:cancel``; delete_payment_session ``{session}:delete``."""
    authorized = new_session(module)
    payment = module.authorize_payment_session(authorized.id)
    assert payment is not None
    module.cancel_payment(payment.id)
    dropped = new_session(module)
    module.delete_payment_session(dropped.id)
    cancels = [r.idempotency_key for r in http.posts("/cancel")]
    assert cancels == [f"{payment.id}:cancel", f"{dropped.id}:delete"]


def test_a_retried_capture_sends_the_same_key_and_body(
    module: PaymentModule, http: RecordingClient
) -> None:
    """A capture whose request is lost raises a retryable ProviderError and leaves no capture;
    calling again with the same key sends an identical request, which then succeeds."""
    payment = module.authorize_payment_session(new_session(module).id)
    assert payment is not None
    http.fail_next(1, "/capture")
    with pytest.raises(ProviderError) as caught:
        module.capture_payment(payment.id, "25.00", idempotency_key="cap-1")
    assert (caught.value.code, caught.value.retryable) == ("api_connection_error", True)
    assert module.retrieve_payment(payment.id).captures == ()
    done = module.capture_payment(payment.id, "25.00", idempotency_key="cap-1")
    first, second = http.posts("/capture")
    assert (first.idempotency_key, first.body) == (second.idempotency_key, second.body)
    assert first.idempotency_key == done.captures[0].provider_key


def test_a_retried_authorization_reuses_the_attempt_key(
    module: PaymentModule, http: RecordingClient
) -> None:
    """A confirm that got no answer is retried by authorizing again with the same attempt key
    (the module counts only attempts that got an answer)."""
    session = new_session(module)
    http.fail_next(1, "/confirm")
    with pytest.raises(ProviderError):
        module.authorize_payment_session(session.id)
    assert module.authorize_payment_session(session.id) is not None
    keys = [r.idempotency_key for r in http.posts("/confirm")]
    assert keys == [f"{session.id}:authorize:0"] * 2


def test_the_sdks_own_retries_reuse_the_key(sqlite_url: str, localstripe: str) -> None:
    """With max_network_retries=1 the SDK retries a lost request itself, with the same key."""
    http = RecordingClient()
    provider = StripeProvider(
        api_key=API_KEY,
        webhook_secret=WEBHOOK_SECRET,
        api_base=localstripe,
        max_network_retries=1,
        http_client=http,
    )
    with payment_module(sqlite_url, providers=[provider]) as module:
        http.fail_next(1, "/payment_intents")
        session = new_session(module)
    first, second = http.posts("/payment_intents")
    assert first.idempotency_key == second.idempotency_key == session.id
    assert first.body == second.body
    http.close()


def test_keys_longer_than_stripe_takes_are_sent_as_a_stable_digest(
    provider: StripeProvider, http: RecordingClient
) -> None:
    """A 300-character key (deep nested workflows) goes out as its SHA-256, the same on a retry;
    keys up to 255 characters go out unchanged."""
    long_key = "accept-payment:" + "tx/" * 95
    assert len(long_key) > 255
    assert stripe_idempotency_key("k" * 255) == "k" * 255
    unknown = ProviderInput({"id": "pi_missing"}, ProviderContext(long_key))
    for _ in range(2):
        with pytest.raises(ProviderError):
            provider.retrieve_payment(unknown)
    sent = {r.idempotency_key for r in http.sent}
    assert sent == {stripe_idempotency_key(long_key)}
    assert len(sent.pop() or "") == 71


# --- what initiate and authorize send (a canned transport: localstripe refuses these fields)

INTENT = {"object": "payment_intent", "id": "pi_canned", "status": "requires_confirmation"}
HOLDER = AccountHolder("acchld_1", "pp_stripe", "cust_1", "a@b.c", datetime.now(UTC), "cus_canned")


def initiate(provider: StripeProvider, data: dict[str, Any]) -> None:
    """Initiate a 10.00 usd payment for session payses_1 with `data`."""
    context = ProviderContext("payses_1", "payses_1", account_holder=HOLDER)
    provider.initiate_payment(ProviderInput(data, context, Decimal("10.00"), "usd"))


def test_session_data_fields_reach_the_payment_intent() -> None:
    """payment_method, payment_method_types, description, receipt_email, setup_future_usage and
    the account holder's customer are sent; so is automatic_payment_methods when asked for and
    no payment_method_types are named."""
    canned = CannedClient(INTENT)
    provider = StripeProvider(
        api_key=API_KEY,
        webhook_secret=WEBHOOK_SECRET,
        automatic_payment_methods=True,
        http_client=canned,
    )
    data = {
        "payment_method": "pm_1",
        "description": "order 7",
        "receipt_email": "a@b.c",
        "setup_future_usage": "off_session",
    }
    initiate(provider, data)
    initiate(provider, {**data, "payment_method_types": ["card", "link"]})
    with_automatic, with_types = (r.fields for r in canned.sent)
    for fields in (with_automatic, with_types):
        assert fields["customer"] == "cus_canned"
        assert {name: fields[name] for name in data} == data
        assert (fields["amount"], fields["metadata[session_id]"]) == ("1000", "payses_1")
    assert with_automatic["automatic_payment_methods[enabled]"] == "true"
    assert (with_types["payment_method_types[0]"], with_types["payment_method_types[1]"]) == (
        "card",
        "link",
    )
    assert "automatic_payment_methods[enabled]" not in with_types
    assert all(r.url.startswith(stripe.DEFAULT_API_BASE) for r in canned.sent)


def test_authorize_confirms_with_the_return_url_from_the_data() -> None:
    """An intent awaiting confirmation is confirmed with the session data's return_url (what
    redirect-based payment methods need)."""
    canned = CannedClient(INTENT)
    provider = StripeProvider(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, http_client=canned)
    data = {"id": "pi_canned", "return_url": "https://shop.test/back"}
    provider.authorize_payment(ProviderInput(data, ProviderContext("payses_1:authorize:0")))
    read, confirm = canned.sent
    assert (read.method, confirm.path) == ("get", "/v1/payment_intents/pi_canned/confirm")
    assert confirm.fields == {"return_url": "https://shop.test/back"}


@pytest.mark.parametrize(
    "data", [{"description": 7}, {"payment_method_types": "card"}, {"payment_method": ["pm_1"]}]
)
def test_malformed_data_fields_are_refused_before_sending(data: dict[str, Any]) -> None:
    """A non-string field or a payment_method_types that is not a list: InvalidData, no request."""
    canned = CannedClient(INTENT)
    provider = StripeProvider(api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, http_client=canned)
    with pytest.raises(InvalidData):
        initiate(provider, data)
    assert canned.sent == []
