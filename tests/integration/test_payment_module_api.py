"""The composition root, provider management, account holders, refund reasons and webhooks."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest

from flowkit import Registry
from payment import (
    InvalidData,
    NotFound,
    PaymentAction,
    PaymentModule,
    PaymentProviderInfo,
    ProviderDisabled,
    ProviderNotFound,
    SystemProvider,
    TestProvider,
    WebhookSignatureError,
    make_payment_module,
    register,
)
from payment.testing import authorized_payment, get_test_provider, payment_module


@pytest.fixture
def module(database_url: str) -> Iterator[PaymentModule]:
    """A payment module on a fresh database."""
    with payment_module(database_url) as built:
        yield built


def test_register_puts_the_module_in_a_flowkit_registry(sqlite_url: str) -> None:
    """`register` makes every scope resolve PaymentModule to the module."""
    registry = Registry()
    with make_payment_module(sqlite_url) as module:
        register(registry, module)
        with registry.scope() as scope:
            assert scope.resolve(PaymentModule) is module


def test_default_providers_are_system_and_test(module: PaymentModule) -> None:
    """Without providers the module has pp_system_default and pp_test, both enabled."""
    assert module.list_payment_providers() == [
        PaymentProviderInfo("pp_system_default", True),
        PaymentProviderInfo("pp_test", True),
    ]
    assert isinstance(module.provider("pp_system_default"), SystemProvider)


def test_providers_come_from_the_composition_root(sqlite_url: str) -> None:
    """Each module gets its own providers; ids must be unique and start with pp_."""
    gateway = TestProvider()
    with make_payment_module(sqlite_url, providers=[gateway]) as module:
        assert module.provider("pp_test") is gateway
        with pytest.raises(ProviderNotFound):
            module.provider("pp_system_default")
    with pytest.raises(ValueError, match="share"):
        make_payment_module(sqlite_url, providers=[TestProvider(), TestProvider()])
    bad = TestProvider()
    bad.id = "stripe"  # type: ignore[misc]
    with pytest.raises(ValueError, match="pp_"):
        make_payment_module(sqlite_url, providers=[bad])


def test_disable_and_enable_are_stored(module: PaymentModule, database_url: str) -> None:
    """A disabled provider raises ProviderDisabled, here and in another module on the same DB."""
    module.disable_provider("pp_test")
    with pytest.raises(ProviderDisabled):
        module.provider("pp_test")
    assert module.list_payment_providers(is_enabled=False) == [
        PaymentProviderInfo("pp_test", False)
    ]
    with payment_module(database_url) as other, pytest.raises(ProviderDisabled):
        other.provider("pp_test")
    module.enable_provider("pp_test")
    assert module.provider("pp_test") is not None
    with pytest.raises(ProviderNotFound):
        module.disable_provider("pp_nope")


def test_disabled_provider_still_captures_what_it_holds(module: PaymentModule) -> None:
    """Disabling a provider stops new payments, not the money it already holds."""
    payment = authorized_payment(module, "10")
    module.disable_provider("pp_test")
    payment = module.capture_payment(payment.id)
    payment = module.refund_payment(payment.id, "1")
    assert payment.refunded_amount == Decimal("1.00")


def test_account_holder_is_created_once_per_provider_and_customer(module: PaymentModule) -> None:
    """The holder is looked up first; the provider is asked once, keyed by the customer id."""
    first = module.create_account_holder("pp_test", "cus_1", "a@example.com", {"tier": "gold"})
    again = module.create_account_holder("pp_test", "cus_1", "other@example.com")
    assert again == first
    assert first.id.startswith("acchld_")
    assert first.external_id is not None
    assert first.external_id.startswith("tcus_")
    (call,) = get_test_provider(module).calls_to("create_account_holder")
    assert call.idempotency_key == "cus_1"
    assert module.retrieve_account_holder("pp_test", "cus_1") == first
    with pytest.raises(NotFound):
        module.retrieve_account_holder("pp_test", "cus_2")


def test_racing_account_holder_creates_make_one_holder(module: PaymentModule) -> None:
    """Concurrent creates for one customer all return the same holder."""
    barrier = threading.Barrier(4)
    holders: list[object] = []

    def create() -> None:
        barrier.wait()
        holders.append(module.create_account_holder("pp_test", "cus_r", None))

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({h.id for h in holders}) == 1  # type: ignore[attr-defined]


def test_account_holder_reaches_the_provider_context(module: PaymentModule) -> None:
    """A session whose context names an account holder sends it to the provider."""
    holder = module.create_account_holder("pp_test", "cus_9", "c@example.com")
    collection = module.create_payment_collection("usd", "5")
    module.create_payment_session(
        collection.id, "pp_test", "usd", "5",
        context={"account_holder_id": holder.id, "customer": {"id": "cus_9"}},
    )  # fmt: skip
    (call,) = get_test_provider(module).calls_to("initiate_payment")
    context = call.input.context  # type: ignore[attr-defined]
    assert (context.account_holder, context.customer.id) == (holder, "cus_9")


def test_system_provider_keeps_holders_locally(module: PaymentModule) -> None:
    """A provider without account-holder support gets a local holder without external id."""
    holder = module.create_account_holder("pp_system_default", "cus_1", None)
    assert holder.external_id is None


def test_refund_reasons_are_idempotent_by_code(module: PaymentModule) -> None:
    """Creating an existing code returns the existing reason; bad items create nothing."""
    first, second = module.create_refund_reasons(
        [{"label": "Return", "code": "return"}, {"label": "Damage", "code": "damage"}]
    )
    (again,) = module.create_refund_reasons([{"label": "Other", "code": "return"}])
    assert again == first
    assert first.id.startswith("refr_")
    with pytest.raises(InvalidData):
        module.create_refund_reasons([{"label": "", "code": "x"}])
    with pytest.raises(InvalidData):
        module.create_refund_reasons([{"name": "x"}])
    assert module.list_refund_reasons() == [first, second]


def test_webhook_is_verified_and_changes_nothing(module: PaymentModule) -> None:
    """A verified webhook maps to an action; a bad one raises and leaves the data as it was."""
    payment = authorized_payment(module, "40")
    before = module.retrieve_payment_collection(payment.payment_collection_id)
    webhook = get_test_provider(module).make_webhook(
        "captured", session_id=payment.payment_session_id, amount=Decimal("40")
    )
    action = module.get_webhook_action_and_data("pp_test", webhook.raw_body, dict(webhook.headers))
    assert (action.action, action.amount, action.currency_code) == (
        PaymentAction.CAPTURED,
        Decimal("40.00"),
        "usd",
    )
    with pytest.raises(WebhookSignatureError) as caught:
        module.get_webhook_action_and_data("pp_test", webhook.raw_body + b"x", webhook.headers)
    assert webhook.raw_body.decode() not in str(caught.value)
    with pytest.raises(ProviderNotFound):
        module.get_webhook_action_and_data("pp_nope", webhook.raw_body, webhook.headers)
    assert module.retrieve_payment_collection(payment.payment_collection_id) == before


def test_captured_webhook_is_recorded_once_by_event_id(module: PaymentModule) -> None:
    """Recording a webhook's capture keyed by its event id twice captures once, with no call."""
    payment = authorized_payment(module, "40")
    webhook = get_test_provider(module).make_webhook(
        "captured", session_id=payment.payment_session_id
    )
    action = module.get_webhook_action_and_data("pp_test", webhook.raw_body, webhook.headers)
    for _ in range(2):
        payment = module.capture_payment(
            payment.id, action.amount, idempotency_key=action.event_id, is_captured=True
        )
    assert payment.captured_amount == Decimal("40.00")
    assert get_test_provider(module).calls_to("capture_payment") == []


def test_pending_authorization_captured_by_webhook(module: PaymentModule) -> None:
    """A pending session captured at the gateway authorizes as captured when asked again."""
    collection = module.create_payment_collection("usd", "25")
    session = module.create_payment_session(
        collection.id, "pp_test", "usd", "25", data={"scenario": "pending_authorization"}
    )
    assert module.authorize_payment_session(session.id) is None
    get_test_provider(module).make_webhook("captured", session_id=session.id)
    payment = module.authorize_payment_session(session.id)
    assert payment is not None
    assert payment.captured_amount == Decimal("25.00")
