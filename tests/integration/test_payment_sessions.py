"""Payment sessions and authorization through PaymentModule, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from payment import (
    CollectionStatus,
    InvalidAmount,
    InvalidCurrency,
    InvalidData,
    NotFound,
    OperationState,
    PaymentActionRequired,
    PaymentAlreadyAuthorized,
    PaymentCanceled,
    PaymentModule,
    PaymentNotAuthorized,
    ProviderDisabled,
    ProviderError,
    ProviderInput,
    ProviderNotFound,
    ProviderOutput,
    SessionStatus,
    TestProvider,
)
from payment.testing import authorized_payment, get_test_provider, payment_module


@pytest.fixture
def module(database_url: str) -> Iterator[PaymentModule]:
    """A payment module on a fresh database."""
    with payment_module(database_url) as built:
        yield built


def _session(module: PaymentModule, amount: str = "100", **data: object) -> str:
    collection = module.create_payment_collection("usd", amount)
    session = module.create_payment_session(collection.id, "pp_test", "usd", amount, data=data)
    return session.id


def test_session_is_initiated_with_its_id_as_key(module: PaymentModule) -> None:
    """A new session is initiated at the provider with the session id as idempotency key."""
    collection = module.create_payment_collection("usd", "100")
    session = module.create_payment_session(
        collection.id, "pp_test", "USD", "100", data={"scenario": "approve"}
    )
    assert session.id.startswith("payses_")
    assert (session.status, session.amount, session.currency_code) == (
        SessionStatus.PENDING,
        Decimal("100.00"),
        "usd",
    )
    assert session.initiated_at is not None
    (call,) = get_test_provider(module).calls_to("initiate_payment")
    assert call.idempotency_key == session.id
    assert module.retrieve_payment_collection(collection.id).status is CollectionStatus.AWAITING


def test_session_idempotency_key_returns_the_first_session(module: PaymentModule) -> None:
    """A repeated create with the same key returns the same session and initiates once."""
    collection = module.create_payment_collection("usd", "100")
    first = module.create_payment_session(
        collection.id, "pp_test", "usd", "100", idempotency_key="step#0"
    )
    again = module.create_payment_session(
        collection.id, "pp_test", "usd", "100", idempotency_key="step#0"
    )
    assert again == first
    assert len(get_test_provider(module).calls_to("initiate_payment")) == 1


def test_session_currency_must_match_the_collection(module: PaymentModule) -> None:
    """A session in another currency raises InvalidCurrency naming the expected one."""
    collection = module.create_payment_collection("usd", "100")
    with pytest.raises(InvalidCurrency) as caught:
        module.create_payment_session(collection.id, "pp_test", "eur", "100")
    assert caught.value.expected == "usd"
    assert module.list_payment_sessions(collection_id=collection.id) == []


def test_session_amount_cannot_exceed_what_is_left(module: PaymentModule) -> None:
    """A session for more than amount - authorized raises InvalidAmount."""
    collection = module.create_payment_collection("usd", "100")
    session = module.create_payment_session(collection.id, "pp_test", "usd", "60")
    module.authorize_payment_session(session.id)
    with pytest.raises(InvalidAmount) as caught:
        module.create_payment_session(collection.id, "pp_test", "usd", "40.01")
    assert caught.value.entity_id == collection.id
    module.create_payment_session(collection.id, "pp_test", "usd", "40")


def test_session_on_unknown_or_disabled_provider_is_refused(module: PaymentModule) -> None:
    """Unknown providers raise ProviderNotFound, disabled ones ProviderDisabled."""
    collection = module.create_payment_collection("usd", "100")
    with pytest.raises(ProviderNotFound) as caught:
        module.create_payment_session(collection.id, "pp_nope", "usd", "100")
    assert caught.value.provider_id == "pp_nope"
    module.disable_provider("pp_test")
    with pytest.raises(ProviderDisabled):
        module.create_payment_session(collection.id, "pp_test", "usd", "100")
    module.enable_provider("pp_test")
    module.create_payment_session(collection.id, "pp_test", "usd", "100")


def test_session_on_unknown_collection_raises_not_found(module: PaymentModule) -> None:
    """An unknown collection id raises NotFound."""
    with pytest.raises(NotFound) as caught:
        module.create_payment_session("pay_col_missing", "pp_test", "usd", "1")
    assert caught.value.entity == "PaymentCollection"


def test_provider_failure_at_initiate_leaves_no_session(module: PaymentModule) -> None:
    """Malformed provider data makes the provider fail, and no session row remains."""
    collection = module.create_payment_collection("usd", "100")
    with pytest.raises(ProviderError) as caught:
        module.create_payment_session(
            collection.id, "pp_test", "usd", "100", data={"scenario": "no-such"}
        )
    assert not caught.value.retryable
    assert module.list_payment_sessions(collection_id=collection.id) == []


def test_malformed_data_is_refused_before_anything_is_written(module: PaymentModule) -> None:
    """Data that JSON cannot hold raises InvalidData and creates nothing."""
    collection = module.create_payment_collection("usd", "100")
    with pytest.raises(InvalidData):
        module.create_payment_session(collection.id, "pp_test", "usd", "1", data={"when": object()})
    with pytest.raises(InvalidData):
        module.create_payment_session(collection.id, "pp_test", "usd", "1", data=[1])  # type: ignore[arg-type]
    assert module.list_payment_sessions() == []
    assert get_test_provider(module).calls == ()


def test_update_session_goes_to_the_provider(module: PaymentModule) -> None:
    """Updating a session's amount calls the provider and stores its data."""
    session_id = _session(module, "100")
    session = module.update_payment_session(session_id, amount="80")
    assert session.amount == Decimal("80.00")
    assert get_test_provider(module).ledger(session_id).amount == Decimal("80.00")
    assert module.retrieve_payment_session(session_id) == session


def test_authorized_session_cannot_be_updated_or_deleted(module: PaymentModule) -> None:
    """A session with a live payment raises PaymentAlreadyAuthorized on update and delete."""
    payment = authorized_payment(module, "10")
    with pytest.raises(PaymentAlreadyAuthorized):
        module.update_payment_session(payment.payment_session_id, amount="5")
    with pytest.raises(PaymentAlreadyAuthorized):
        module.delete_payment_session(payment.payment_session_id)


def test_delete_session_discards_it_at_the_provider(module: PaymentModule) -> None:
    """Deleting a session calls the provider; deleting it again does nothing."""
    session_id = _session(module)
    module.delete_payment_session(session_id)
    module.delete_payment_session(session_id)
    assert len(get_test_provider(module).calls_to("delete_payment")) == 1
    with pytest.raises(NotFound):
        module.retrieve_payment_session(session_id)


def test_authorize_creates_a_payment_and_is_idempotent(module: PaymentModule) -> None:
    """Authorizing makes a Payment; authorizing again returns it without a provider call."""
    session_id = _session(module, "100")
    payment = module.authorize_payment_session(session_id)
    assert payment is not None
    assert (payment.amount, payment.payment_session_id) == (Decimal("100.00"), session_id)
    assert module.authorize_payment_session(session_id) == payment
    (call,) = get_test_provider(module).calls_to("authorize_payment")
    assert call.idempotency_key == f"{session_id}:authorize:0"
    session = module.retrieve_payment_session(session_id)
    assert (session.status, session.payment_id, session.authorize_attempts) == (
        SessionStatus.AUTHORIZED,
        payment.id,
        1,
    )
    collection = module.retrieve_payment_collection(payment.payment_collection_id)
    assert (collection.status, collection.authorized_amount) == (
        CollectionStatus.AUTHORIZED,
        Decimal("100.00"),
    )


def test_partial_authorization_sets_partially_authorized(module: PaymentModule) -> None:
    """A session for part of the amount leaves the collection partially authorized."""
    collection = module.create_payment_collection("usd", "100")
    session = module.create_payment_session(collection.id, "pp_test", "usd", "30")
    module.authorize_payment_session(session.id)
    status = module.retrieve_payment_collection(collection.id).status
    assert status is CollectionStatus.PARTIALLY_AUTHORIZED


def test_decline_is_saved_and_raises_not_authorized(module: PaymentModule) -> None:
    """A decline saves status error, raises PaymentNotAuthorized, and fails the collection."""
    session_id = _session(module, scenario="decline")
    with pytest.raises(PaymentNotAuthorized) as caught:
        module.authorize_payment_session(session_id)
    assert (caught.value.session_id, caught.value.status) == (session_id, "error")
    session = module.retrieve_payment_session(session_id)
    assert session.status is SessionStatus.ERROR
    assert session.data["decline_code"] == "card_declined"
    status = module.retrieve_payment_collection(session.payment_collection_id).status
    assert status is CollectionStatus.FAILED


def test_requires_more_then_action_then_new_key_authorizes(module: PaymentModule) -> None:
    """requires_more raises PaymentActionRequired; after the action a new key authorizes."""
    session_id = _session(module, scenario="requires_more")
    with pytest.raises(PaymentActionRequired) as caught:
        module.authorize_payment_session(session_id)
    assert caught.value.action["type"] == "three_d_secure"
    assert module.retrieve_payment_session(session_id).status is SessionStatus.REQUIRES_MORE
    get_test_provider(module).complete_action(session_id)
    payment = module.authorize_payment_session(session_id)
    assert payment is not None
    keys = [c.idempotency_key for c in get_test_provider(module).calls_to("authorize_payment")]
    assert keys == [f"{session_id}:authorize:0", f"{session_id}:authorize:1"]


def test_pending_authorization_returns_none_until_the_webhook(module: PaymentModule) -> None:
    """pending_authorization returns None; after the gateway's webhook it authorizes."""
    session_id = _session(module, "100", scenario="pending_authorization")
    assert module.authorize_payment_session(session_id) is None
    session = module.retrieve_payment_session(session_id)
    assert session.status is SessionStatus.PENDING_AUTHORIZATION
    webhook = get_test_provider(module).make_webhook("authorized", session_id=session_id)
    action = module.get_webhook_action_and_data("pp_test", webhook.raw_body, webhook.headers)
    assert (action.action, action.session_id) == ("authorized", session_id)
    payment = module.authorize_payment_session(session_id)
    assert payment is not None
    assert payment.amount == Decimal("100.00")


def test_auto_capture_records_a_succeeded_capture_without_capturing(
    module: PaymentModule,
) -> None:
    """An answer of `captured` makes a payment with a succeeded capture; capture is not called."""
    payment = authorized_payment(module, "75", scenario="auto_capture")
    (capture,) = payment.captures
    assert (capture.amount, capture.state) == (Decimal("75.00"), OperationState.SUCCEEDED)
    assert payment.captured_at is not None
    assert get_test_provider(module).calls_to("capture_payment") == []
    collection = module.retrieve_payment_collection(payment.payment_collection_id)
    assert collection.status is CollectionStatus.COMPLETED


def test_transient_authorize_errors_keep_the_key_until_an_answer(module: PaymentModule) -> None:
    """Retryable failures record nothing; every retry sends the same key until one answers."""
    session_id = _session(module, scenario="authorize_transient_error", times=2)
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            module.authorize_payment_session(session_id)
        assert caught.value.retryable
        assert module.retrieve_payment_session(session_id).authorize_attempts == 0
    assert module.authorize_payment_session(session_id) is not None
    keys = {c.idempotency_key for c in get_test_provider(module).calls_to("authorize_payment")}
    assert keys == {f"{session_id}:authorize:0"}


def test_timeout_raises_a_retryable_timeout(module: PaymentModule) -> None:
    """The timeout scenario raises ProviderError(code="timeout", retryable=True)."""
    session_id = _session(module, scenario="timeout")
    with pytest.raises(ProviderError) as caught:
        module.authorize_payment_session(session_id)
    assert (caught.value.code, caught.value.retryable) == ("timeout", True)
    assert module.list_payments() == []


def test_authorize_on_disabled_provider_or_canceled_payment_is_refused(
    module: PaymentModule,
) -> None:
    """Disabled providers authorize nothing; a canceled payment's session raises PaymentCanceled."""
    session_id = _session(module)
    module.disable_provider("pp_test")
    with pytest.raises(ProviderDisabled):
        module.authorize_payment_session(session_id)
    module.enable_provider("pp_test")
    payment = module.authorize_payment_session(session_id)
    assert payment is not None
    module.cancel_payment(payment.id)
    with pytest.raises(PaymentCanceled):
        module.authorize_payment_session(session_id)


def test_authorize_unknown_session_raises_not_found(module: PaymentModule) -> None:
    """An unknown session id raises NotFound naming it."""
    with pytest.raises(NotFound) as caught:
        module.authorize_payment_session("payses_missing")
    assert caught.value.entity_id == "payses_missing"


def test_sessions_can_be_listed_by_filter(module: PaymentModule) -> None:
    """list_payment_sessions filters by collection, provider and status."""
    first = _session(module)
    second = _session(module, scenario="decline")
    with pytest.raises(PaymentNotAuthorized):
        module.authorize_payment_session(second)
    assert [s.id for s in module.list_payment_sessions()] == [first, second]
    assert [s.id for s in module.list_payment_sessions(status="error")] == [second]
    assert module.list_payment_sessions(provider_id="pp_system_default") == []


def test_system_provider_authorizes_everything(module: PaymentModule) -> None:
    """pp_system_default authorizes and captures without a gateway."""
    payment = authorized_payment(module, "12", provider_id="pp_system_default")
    payment = module.capture_payment(payment.id)
    assert payment.captured_amount == Decimal("12.00")


class Crash(BaseException):
    """Stands for the process dying between the gateway's answer and the commit."""


class CrashAfterInitiate:
    """Delegates to a TestProvider but 'dies' once right after initiating a payment."""

    def __init__(self, inner: TestProvider) -> None:
        self.inner = inner
        self.id = inner.id
        self.crashes_left = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def initiate_payment(self, payment: ProviderInput) -> ProviderOutput:
        output = self.inner.initiate_payment(payment)
        if self.crashes_left:
            self.crashes_left -= 1
            raise Crash
        return output


def test_retried_create_after_a_crash_reuses_the_session_and_its_key(database_url: str) -> None:
    """A crash after the gateway initiated leaves the session; the retry with the same
    idempotency key finishes that session, and the gateway sees one key."""
    gateway = TestProvider()
    with payment_module(database_url, providers=[CrashAfterInitiate(gateway)]) as module:
        collection = module.create_payment_collection("usd", "10")
        with pytest.raises(Crash):
            module.create_payment_session(
                collection.id, "pp_test", "usd", "10", idempotency_key="s#0"
            )
        (left,) = module.list_payment_sessions()
        assert left.initiated_at is None
        session = module.create_payment_session(
            collection.id, "pp_test", "usd", "10", idempotency_key="s#0"
        )
        assert session.id == left.id
        assert session.initiated_at is not None
        keys = [c.idempotency_key for c in gateway.calls_to("initiate_payment")]
        assert keys == [session.id, session.id]
