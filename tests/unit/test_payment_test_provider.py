"""The TestProvider gateway and webhook signatures, without a database."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest

from payment import (
    InvalidData,
    PaymentAction,
    ProviderContext,
    ProviderError,
    ProviderInput,
    ProviderStatus,
    SystemProvider,
    TestProvider,
    Webhook,
    WebhookSignatureError,
)
from payment.providers import signing


def _input(session_id: str, key: str | None, amount: str = "100", **data: object) -> ProviderInput:
    context = ProviderContext(key or f"{session_id}:x", session_id)
    return ProviderInput(data, context, Decimal(amount), "usd")


def _authorized(gateway: TestProvider, session_id: str = "s1", **data: object) -> None:
    gateway.initiate_payment(_input(session_id, session_id, **data))
    gateway.authorize_payment(_input(session_id, f"{session_id}:authorize:0", **data))


def test_approve_is_the_default_scenario() -> None:
    """Without a scenario the gateway authorizes and books the amount in its ledger."""
    gateway = TestProvider()
    _authorized(gateway)
    entry = gateway.ledger("s1")
    assert (entry.status, entry.authorized) == (ProviderStatus.AUTHORIZED, Decimal("100"))


def test_repeated_key_replays_the_answer_and_moves_no_money() -> None:
    """The same capture key twice answers twice but captures once."""
    gateway = TestProvider()
    _authorized(gateway)
    first = gateway.capture_payment(_input("s1", "cap-1", "40"))
    again = gateway.capture_payment(_input("s1", "cap-1", "40"))
    assert again == first
    assert gateway.ledger("s1").captured == Decimal("40")
    assert [c.idempotency_key for c in gateway.calls_to("capture_payment")] == ["cap-1"] * 2


def test_gateway_refuses_what_a_real_gateway_would() -> None:
    """Over-capture, over-refund and voiding a capture raise non-retryable ProviderErrors."""
    gateway = TestProvider()
    _authorized(gateway)
    with pytest.raises(ProviderError) as caught:
        gateway.capture_payment(_input("s1", "c1", "100.01"))
    assert (caught.value.code, caught.value.retryable) == ("amount_too_large", False)
    gateway.capture_payment(_input("s1", "c2", "10"))
    with pytest.raises(ProviderError):
        gateway.refund_payment(_input("s1", "r1", "10.01"))
    with pytest.raises(ProviderError, match="already_captured"):
        gateway.cancel_payment(_input("s1", "v1"))


@pytest.mark.parametrize(
    ("scenario", "status"),
    [
        ("decline", ProviderStatus.ERROR),
        ("requires_more", ProviderStatus.REQUIRES_MORE),
        ("pending_authorization", ProviderStatus.PENDING_AUTHORIZATION),
        ("auto_capture", ProviderStatus.CAPTURED),
    ],
)
def test_scenarios_script_the_authorization(scenario: str, status: ProviderStatus) -> None:
    """Each scenario makes authorize answer its status."""
    gateway = TestProvider()
    gateway.initiate_payment(_input("s1", "s1", scenario=scenario))
    assert gateway.authorize_payment(_input("s1", "a0")).status is status


def test_requires_more_authorizes_after_the_action_with_a_new_key() -> None:
    """complete_action lets a new authorize key succeed; the old key still replays."""
    gateway = TestProvider()
    gateway.initiate_payment(_input("s1", "s1", scenario="requires_more"))
    first = gateway.authorize_payment(_input("s1", "a0"))
    assert first.action is not None
    gateway.complete_action("s1")
    assert gateway.authorize_payment(_input("s1", "a0")) == first
    assert gateway.authorize_payment(_input("s1", "a1")).status is ProviderStatus.AUTHORIZED


def test_transient_errors_fail_the_first_n_calls_only() -> None:
    """capture_transient_error with times=2 fails two captures, then captures."""
    gateway = TestProvider()
    _authorized(gateway, scenario="capture_transient_error", times=2)
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            gateway.capture_payment(_input("s1", "c1", "5"))
        assert caught.value.retryable
    assert gateway.capture_payment(_input("s1", "c1", "5")).status is ProviderStatus.CAPTURED


def test_timeout_raises_until_told_otherwise() -> None:
    """The timeout scenario raises a retryable timeout on every authorize."""
    gateway = TestProvider()
    gateway.initiate_payment(_input("s1", "s1", scenario="timeout"))
    for key in ("a0", "a0", "a1"):
        with pytest.raises(ProviderError) as caught:
            gateway.authorize_payment(_input("s1", key))
        assert (caught.value.code, caught.value.retryable) == ("timeout", True)


def test_unknown_scenario_is_a_bad_request() -> None:
    """An unknown scenario is refused at initiate, not retryable."""
    with pytest.raises(ProviderError) as caught:
        TestProvider().initiate_payment(_input("s1", "s1", scenario="nope"))
    assert (caught.value.code, caught.value.retryable) == ("invalid_request", False)


def test_ledger_is_consistent_under_threads() -> None:
    """Many threads capturing 1 against 100 never capture more than 100."""
    gateway = TestProvider()
    _authorized(gateway)
    refused: list[ProviderError] = []

    def capture(index: int) -> None:
        try:
            gateway.capture_payment(_input("s1", f"c{index}", "1"))
        except ProviderError as error:
            refused.append(error)

    threads = [threading.Thread(target=capture, args=(i,)) for i in range(150)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gateway.ledger("s1").captured == Decimal("100")
    assert len(refused) == 50


def test_signed_webhook_is_verified_and_parsed() -> None:
    """make_webhook moves the ledger and its signed body parses to a WebhookAction."""
    gateway = TestProvider()
    _authorized(gateway)
    webhook = gateway.make_webhook("captured", session_id="s1", amount=Decimal("30"))
    assert gateway.ledger("s1").captured == Decimal("30")
    action = gateway.get_webhook_action_and_data(webhook)
    assert (action.action, action.session_id, action.amount, action.currency_code) == (
        PaymentAction.CAPTURED,
        "s1",
        Decimal("30.00"),
        "usd",
    )
    assert action.event_id is not None
    assert action.event_id.startswith("evt_test_")


def test_webhook_headers_are_case_insensitive() -> None:
    """A header name in another case is still found."""
    gateway = TestProvider()
    _authorized(gateway)
    webhook = gateway.make_webhook("authorized", session_id="s1")
    shouted = Webhook(webhook.raw_body, {k.upper(): v for k, v in webhook.headers.items()})
    assert gateway.get_webhook_action_and_data(shouted).action is PaymentAction.AUTHORIZED


@pytest.mark.parametrize(
    "tamper",
    [
        lambda w: Webhook(w.raw_body + b" ", w.headers),
        lambda w: Webhook(w.raw_body, {}),
        lambda w: Webhook(w.raw_body, {TestProvider.signature_header: "garbage"}),
        lambda w: Webhook(w.raw_body, {TestProvider.signature_header: "t=1,v1=00"}),
        lambda w: Webhook(
            w.raw_body,
            {
                TestProvider.signature_header: signing.signature_header(
                    "x", int(time.time()), w.raw_body
                )
            },
        ),
    ],
    ids=["body", "missing", "malformed", "wrong", "other-secret"],
)
def test_bad_signatures_are_rejected(tamper: object) -> None:
    """Tampered bodies, missing, malformed or wrong signatures raise WebhookSignatureError."""
    gateway = TestProvider()
    _authorized(gateway)
    webhook = gateway.make_webhook("captured", session_id="s1")
    with pytest.raises(WebhookSignatureError) as caught:
        gateway.get_webhook_action_and_data(tamper(webhook))  # type: ignore[operator]
    assert webhook.raw_body.decode() not in str(caught.value)


def test_stale_and_future_webhooks_are_rejected() -> None:
    """A signed timestamp outside the tolerance is refused, even with a good signature."""
    now = 1_800_000_000.0
    gateway = TestProvider(secret="s3cret", tolerance_seconds=300, clock=lambda: now)
    _authorized(gateway)
    for offset in (-301, 301):
        webhook = gateway.make_webhook("failed", session_id="s1", timestamp=int(now) + offset)
        with pytest.raises(WebhookSignatureError, match="tolerance"):
            gateway.get_webhook_action_and_data(webhook)
    ok = gateway.make_webhook("failed", session_id="s1", timestamp=int(now) - 299)
    assert gateway.get_webhook_action_and_data(ok).action is PaymentAction.FAILED
    assert "s3cret" not in repr(gateway.calls)


def test_signed_but_malformed_body_is_invalid_data() -> None:
    """A correctly signed body that is not an event raises InvalidData."""
    gateway = TestProvider(secret="k")
    body = b"[1, 2]"
    header = signing.signature_header("k", int(time.time()), body)
    with pytest.raises(InvalidData):
        gateway.get_webhook_action_and_data(Webhook(body, {gateway.signature_header: header}))


def test_unknown_event_types_are_not_supported() -> None:
    """An event type the module does not know maps to not_supported."""
    gateway = TestProvider(secret="k")
    body = b'{"type": "charge.dispute.created", "id": "evt_1"}'
    header = signing.signature_header("k", int(time.time()), body)
    action = gateway.get_webhook_action_and_data(Webhook(body, {gateway.signature_header: header}))
    assert (action.action, action.event_id) == (PaymentAction.NOT_SUPPORTED, "evt_1")


def test_system_provider_authorizes_and_ignores_webhooks() -> None:
    """SystemProvider authorizes everything and answers webhooks not_supported."""
    provider = SystemProvider()
    assert provider.authorize_payment(_input("s1", "a")).status is ProviderStatus.AUTHORIZED
    assert provider.get_webhook_action_and_data(Webhook(b"{}", {})).action == "not_supported"


def test_money_totals_what_is_held_and_charged_over_every_session() -> None:
    """`money()` totals what is held and charged; `session_ids()` lists every session seen."""
    gateway = TestProvider()
    assert (gateway.session_ids(), gateway.money()) == ([], (0, 0))
    _authorized(gateway, "s1")
    _authorized(gateway, "s2")
    gateway.capture_payment(_input("s1", "cap-1", "30"))
    gateway.refund_payment(_input("s1", "ref-1", "10"))
    assert gateway.session_ids() == ["s1", "s2"]
    assert gateway.money() == (Decimal("170"), Decimal("20"))
