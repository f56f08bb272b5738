"""Issue 9's bad input against localstripe: invalid keys, unknown intents, amounts above what
was authorized, unsupported currencies. Typed errors, nothing changed locally, and no secret
in any message or log line."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest
import stripe
from stripe_support import (
    CARD_DECLINED,
    SECRETS,
    WEBHOOK_SECRET,
    RecordingClient,
    card,
)

from payment import (
    CaptureExceedsAuthorized,
    InvalidAmount,
    InvalidCurrency,
    PaymentError,
    PaymentModule,
    PaymentNotAuthorized,
    ProviderError,
    RefundExceedsCaptured,
    WebhookSignatureError,
)
from payment.domain import Payment
from payment.providers import ProviderContext, ProviderInput
from payment.providers.stripe import StripeProvider
from payment.testing import payment_module


def authorized(module: PaymentModule, amount: str = "120.00") -> Payment:
    """A payment authorized at localstripe for all of a new usd collection."""
    collection = module.create_payment_collection("usd", amount)
    session = module.create_payment_session(
        collection.id, "pp_stripe", "usd", amount, data={"payment_method": "pm_card_visa"}
    )
    payment = module.authorize_payment_session(session.id)
    assert payment is not None
    return payment


def test_a_key_the_server_rejects_is_a_non_retryable_error_and_leaves_no_session(
    sqlite_url: str, localstripe: str
) -> None:
    """A well-formed key Stripe (here localstripe) does not know: ProviderError
    authentication_error, not retryable, and the session is not kept."""
    http = RecordingClient()
    rejected = StripeProvider(
        api_key="sk_xy", webhook_secret=WEBHOOK_SECRET, api_base=localstripe, http_client=http
    )
    with payment_module(sqlite_url, providers=[rejected]) as module:
        collection = module.create_payment_collection("usd", "10.00")
        with pytest.raises(ProviderError) as caught:
            module.create_payment_session(collection.id, "pp_stripe", "usd", "10.00")
        assert (caught.value.code, caught.value.retryable) == ("authentication_error", False)
        assert module.list_payment_sessions(collection_id=collection.id) == []
    assert [r.path for r in http.sent] == ["/v1/payment_intents"]
    http.close()


def test_an_unknown_intent_is_resource_missing(provider: StripeProvider) -> None:
    """Reading, capturing or canceling an intent Stripe never made: ProviderError
    resource_missing, not retryable."""
    unknown = ProviderInput({"id": "pi_doesnotexist"}, ProviderContext("k1"), Decimal(5), "usd")
    for call in (provider.retrieve_payment, provider.capture_payment, provider.cancel_payment):
        with pytest.raises(ProviderError) as caught:
            call(unknown)
        assert (caught.value.code, caught.value.retryable) == ("resource_missing", False)


def test_data_without_an_intent_id_is_refused_before_any_request(
    provider: StripeProvider, http: RecordingClient
) -> None:
    """A payment whose data lost the intent id (e.g. an update that replaced the data): a clear
    ProviderError and no request."""
    lost = ProviderInput({"payment_method": "pm_card_visa"}, ProviderContext("k1", "payses_1"))
    with pytest.raises(ProviderError, match="no PaymentIntent id"):
        provider.authorize_payment(lost)
    assert http.sent == []


def test_capturing_more_than_authorized_is_refused_locally_before_stripe(
    module: PaymentModule, http: RecordingClient
) -> None:
    """The module refuses 200.00 on a 120.00 authorization (CaptureExceedsAuthorized) without
    calling Stripe; the payment is unchanged."""
    payment = authorized(module)
    sent = len(http.sent)
    with pytest.raises(CaptureExceedsAuthorized) as caught:
        module.capture_payment(payment.id, "200.00")
    assert (caught.value.requested, caught.value.available) == (
        Decimal("200.00"),
        Decimal("120.00"),
    )
    assert len(http.sent) == sent
    assert module.retrieve_payment(payment.id) == payment


def test_stripe_refuses_a_capture_above_the_intent_too(
    module: PaymentModule, provider: StripeProvider, stripe_client: stripe.StripeClient
) -> None:
    """Asked directly for more than the intent holds, Stripe refuses: a non-retryable
    ProviderError, the intent still uncaptured."""
    payment = authorized(module)
    too_much = ProviderInput(payment.data, ProviderContext("k-over"), Decimal("500.00"), "usd")
    with pytest.raises(ProviderError) as caught:
        provider.capture_payment(too_much)
    assert caught.value.retryable is False
    intent = stripe_client.v1.payment_intents.retrieve(str(payment.data["id"]))
    assert intent.status == "requires_capture"


def test_refunding_more_than_captured_is_refused_locally(
    module: PaymentModule, http: RecordingClient
) -> None:
    """RefundExceedsCaptured before any refund request; nothing recorded."""
    payment = authorized(module)
    captured = module.capture_payment(payment.id, "50.00")
    with pytest.raises(RefundExceedsCaptured):
        module.refund_payment(payment.id, "60.00")
    assert http.posts("/refunds") == []
    assert module.retrieve_payment(payment.id) == captured


@pytest.mark.parametrize(
    ("currency", "amount", "error"),
    [
        ("kpw", "1000", InvalidCurrency),  # a real currency Stripe does not charge in
        ("kwd", "10.005", InvalidAmount),  # Stripe's three-decimal rule: must end in 0
    ],
)
def test_unsupported_currencies_and_amounts_leave_no_session_and_send_nothing(
    module: PaymentModule, http: RecordingClient, currency: str, amount: str, error: type
) -> None:
    """A currency outside Stripe's list, or a 3-decimal amount Stripe refuses: typed error,
    no request, and the session is gone again."""
    collection = module.create_payment_collection(currency, amount)
    with pytest.raises(error):
        module.create_payment_session(collection.id, "pp_stripe", currency, amount)
    assert module.list_payment_sessions(collection_id=collection.id) == []
    assert http.sent == []


def test_a_three_decimal_amount_ending_in_zero_is_sent_in_thousandths(
    module: PaymentModule, stripe_client: stripe.StripeClient
) -> None:
    """10.010 kwd reaches Stripe as 10010."""
    collection = module.create_payment_collection("kwd", "10.010")
    session = module.create_payment_session(collection.id, "pp_stripe", "kwd", "10.010")
    intent = stripe_client.v1.payment_intents.retrieve(str(session.data["id"]))
    assert (intent.amount, intent.currency) == (10010, "kwd")


def test_no_secret_in_any_message_or_log_line(
    module: PaymentModule,
    provider: StripeProvider,
    stripe_client: stripe.StripeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Across a payment's life and its failures (a decline, an unknown intent, a capture Stripe
    refuses, a refund the module refuses, a forged webhook), with every logger at DEBUG,
    neither the api key nor the webhook secret appears in a log line, an error message or the
    provider's repr."""
    caplog.set_level(logging.DEBUG)
    errors: list[PaymentError] = []
    payment = authorized(module, "30.00")
    module.capture_payment(payment.id, "30.00")
    module.refund_payment(payment.id, "5.00")
    collection = module.create_payment_collection("usd", "9.00")
    declined = {"payment_method": card(stripe_client, CARD_DECLINED)}
    session = module.create_payment_session(collection.id, "pp_stripe", "usd", "9.00", declined)
    failures = [
        lambda: module.authorize_payment_session(session.id),
        lambda: provider.retrieve_payment(ProviderInput({"id": "pi_nope"}, ProviderContext("k"))),
        lambda: provider.capture_payment(
            ProviderInput(payment.data, ProviderContext("again"), Decimal("1.00"), "usd")
        ),
        lambda: module.refund_payment(payment.id, "100.00"),
        lambda: module.get_webhook_action_and_data("pp_stripe", b"{}", {"Stripe-Signature": "t=1"}),
    ]
    for failure in failures:
        with pytest.raises(PaymentError) as caught:
            failure()
        errors.append(caught.value)
    kinds = {PaymentNotAuthorized, ProviderError, RefundExceedsCaptured, WebhookSignatureError}
    assert {type(e) for e in errors} == kinds
    assert any(r.name.startswith("stripe") for r in caplog.records)  # the SDK did log
    texts = [r.getMessage() for r in caplog.records] + [str(e) for e in errors] + [repr(provider)]
    leaks = [text for text in texts for secret in SECRETS if secret in text]
    assert leaks == []
