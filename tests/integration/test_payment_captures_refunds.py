"""Captures, refunds and cancels through PaymentModule, on SQLite and PostgreSQL (spec §3)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from payment import (
    CaptureExceedsAuthorized,
    CollectionStatus,
    InvalidAmount,
    NotFound,
    OperationState,
    PaymentAlreadyCaptured,
    PaymentCanceled,
    PaymentModule,
    ProviderError,
    ProviderInput,
    ProviderOutput,
    RefundExceedsCaptured,
    TestProvider,
)
from payment.testing import authorized_payment, get_test_provider, payment_module


@pytest.fixture
def module(database_url: str) -> Iterator[PaymentModule]:
    """A payment module on a fresh database."""
    with payment_module(database_url) as built:
        yield built


def _status(module: PaymentModule, collection_id: str) -> CollectionStatus:
    return module.retrieve_payment_collection(collection_id).status


def test_partial_and_multiple_captures_add_up(module: PaymentModule) -> None:
    """Two partial captures make the payment fully captured and the collection completed."""
    payment = authorized_payment(module, "100")
    payment = module.capture_payment(payment.id, "40")
    assert payment.captured_amount == Decimal("40.00")
    assert payment.captured_at is None
    assert _status(module, payment.payment_collection_id) is CollectionStatus.PARTIALLY_CAPTURED
    payment = module.capture_payment(payment.id, "60")
    assert payment.captured_amount == Decimal("100.00")
    assert payment.captured_at is not None
    assert [c.amount for c in payment.captures] == [Decimal("40.00"), Decimal("60.00")]
    assert all(c.state is OperationState.SUCCEEDED for c in payment.captures)
    collection = module.retrieve_payment_collection(payment.payment_collection_id)
    assert (collection.status, collection.captured_amount) == (
        CollectionStatus.COMPLETED,
        Decimal("100.00"),
    )
    assert get_test_provider(module).ledger(payment.payment_session_id).captured == Decimal(
        "100.00"
    )


def test_capture_sends_the_amount_and_the_key_to_the_provider(module: PaymentModule) -> None:
    """A partial capture reaches the provider with its amount and idempotency key."""
    payment = authorized_payment(module, "100")
    module.capture_payment(payment.id, "25", idempotency_key="step-1")
    (call,) = get_test_provider(module).calls_to("capture_payment")
    assert call.idempotency_key == f"{payment.id}:capture:step-1"
    assert call.input.amount == Decimal("25.00")  # type: ignore[attr-defined]


def test_capture_without_amount_takes_the_rest(module: PaymentModule) -> None:
    """`amount=None` captures authorized - captured."""
    payment = authorized_payment(module, "100")
    module.capture_payment(payment.id, "30")
    payment = module.capture_payment(payment.id)
    assert payment.captures[-1].amount == Decimal("70.00")


def test_fully_captured_payment_is_returned_unchanged(module: PaymentModule) -> None:
    """Capturing a fully captured payment returns it and calls nobody."""
    payment = module.capture_payment(authorized_payment(module, "10").id)
    again = module.capture_payment(payment.id, "5")
    assert again == payment
    assert len(get_test_provider(module).calls_to("capture_payment")) == 1


def test_capture_more_than_left_raises_with_amounts(module: PaymentModule) -> None:
    """More than authorized - captured raises CaptureExceedsAuthorized and records nothing."""
    payment = authorized_payment(module, "100")
    module.capture_payment(payment.id, "80")
    with pytest.raises(CaptureExceedsAuthorized) as caught:
        module.capture_payment(payment.id, "20.01")
    assert (caught.value.requested, caught.value.available) == (
        Decimal("20.01"),
        Decimal("20.00"),
    )
    assert len(module.retrieve_payment(payment.id).captures) == 1


@pytest.mark.parametrize("amount", ["0", "-5", 1.5, "ten", "NaN", "Infinity"])
def test_capture_with_a_bad_amount_raises_invalid_amount(
    module: PaymentModule, amount: object
) -> None:
    """Zero, negative, float and non-numeric capture amounts raise InvalidAmount."""
    payment = authorized_payment(module, "10")
    with pytest.raises(InvalidAmount) as caught:
        module.capture_payment(payment.id, amount)  # type: ignore[arg-type]
    assert caught.value.entity_id == payment.id
    assert module.retrieve_payment(payment.id).captures == ()


def test_capture_of_unknown_payment_raises_not_found(module: PaymentModule) -> None:
    """An unknown payment id raises NotFound (a LookupError) naming it."""
    with pytest.raises(NotFound) as caught:
        module.capture_payment("pay_missing", "1")
    assert isinstance(caught.value, LookupError)
    assert (caught.value.entity, caught.value.entity_id) == ("Payment", "pay_missing")


def test_canceled_is_checked_before_the_amount(module: PaymentModule) -> None:
    """A canceled payment raises PaymentCanceled even for a bad amount (spec check order)."""
    payment = module.cancel_payment(authorized_payment(module, "10").id)
    with pytest.raises(PaymentCanceled):
        module.capture_payment(payment.id, "-1")


def test_repeated_capture_key_returns_the_payment_without_provider_call(
    module: PaymentModule,
) -> None:
    """A capture key seen before returns the payment unchanged and moves no money."""
    payment = authorized_payment(module, "100")
    first = module.capture_payment(payment.id, "10", idempotency_key="cap-1")
    again = module.capture_payment(payment.id, "10", idempotency_key="cap-1")
    assert again == first
    assert len(get_test_provider(module).calls_to("capture_payment")) == 1


def test_derived_capture_keys_differ_per_capture(module: PaymentModule) -> None:
    """Without a key, each capture reaches the provider as `{payment_id}:capture:{amount}:{n}`."""
    payment = authorized_payment(module, "100")
    module.capture_payment(payment.id, "10")
    module.capture_payment(payment.id, "10")
    keys = [c.idempotency_key for c in get_test_provider(module).calls_to("capture_payment")]
    assert keys == [f"{payment.id}:capture:10.00:0", f"{payment.id}:capture:10.00:1"]


def test_one_key_on_two_payments_reaches_the_provider_as_two_keys(module: PaymentModule) -> None:
    """Keys are unique per payment; the provider's account-wide keys add the payment id, so
    reusing a key on another payment still captures there (found by the state machine)."""
    first, second = authorized_payment(module, "10"), authorized_payment(module, "10")
    module.capture_payment(first.id, "10", idempotency_key="k1")
    second = module.capture_payment(second.id, "10", idempotency_key="k1")
    assert get_test_provider(module).ledger(second.payment_session_id).captured == Decimal("10.00")
    module.refund_payment(second.id, "1", idempotency_key="k1")
    assert get_test_provider(module).ledger(second.payment_session_id).refunded == Decimal("1.00")


def test_provider_failure_leaves_no_capture_and_a_retry_reuses_the_key(
    module: PaymentModule,
) -> None:
    """A transient provider error removes the pending capture; the retry sends the same key."""
    payment = authorized_payment(module, "100", scenario="capture_transient_error", times=1)
    with pytest.raises(ProviderError) as caught:
        module.capture_payment(payment.id, "40")
    assert caught.value.retryable
    assert module.retrieve_payment(payment.id).captures == ()
    payment = module.capture_payment(payment.id, "40")
    keys = [c.idempotency_key for c in get_test_provider(module).calls_to("capture_payment")]
    assert keys == [f"{payment.id}:capture:40.00:0"] * 2
    assert payment.captured_amount == Decimal("40.00")


def test_is_captured_records_without_calling_the_provider(module: PaymentModule) -> None:
    """`is_captured=True` records money the provider already moved."""
    payment = authorized_payment(module, "100")
    payment = module.capture_payment(payment.id, "100", idempotency_key="evt_1", is_captured=True)
    assert payment.captured_amount == Decimal("100.00")
    assert get_test_provider(module).calls_to("capture_payment") == []


def test_refund_within_currency_rounding(module: PaymentModule) -> None:
    """87.957975 captured is 87.96: refunding 87.96 works, 87.98 is refused (Medusa case)."""
    payment = authorized_payment(module, "87.957975")
    payment = module.capture_payment(payment.id)
    assert payment.captured_amount == Decimal("87.96")
    with pytest.raises(RefundExceedsCaptured) as caught:
        module.refund_payment(payment.id, "87.98")
    assert caught.value.available == Decimal("87.96")
    payment = module.refund_payment(payment.id, "87.957975")
    assert payment.refunded_amount == Decimal("87.96")
    collection = module.retrieve_payment_collection(payment.payment_collection_id)
    assert collection.refunded_amount == Decimal("87.96")
    assert collection.status is CollectionStatus.COMPLETED  # refunds do not change the status


def test_refund_without_amount_refunds_the_rest_then_refuses(module: PaymentModule) -> None:
    """`amount=None` refunds captured - refunded; with nothing left it raises."""
    payment = module.capture_payment(authorized_payment(module, "50").id)
    module.refund_payment(payment.id, "20")
    payment = module.refund_payment(payment.id)
    assert payment.refunds[-1].amount == Decimal("30.00")
    with pytest.raises(RefundExceedsCaptured):
        module.refund_payment(payment.id)


def test_refund_before_capture_is_refused(module: PaymentModule) -> None:
    """Nothing captured means nothing to refund."""
    payment = authorized_payment(module, "50")
    with pytest.raises(RefundExceedsCaptured):
        module.refund_payment(payment.id, "1")


def test_refund_records_reason_note_and_creator(module: PaymentModule) -> None:
    """A refund keeps its reason, note and creator; an unknown reason is NotFound."""
    (reason,) = module.create_refund_reasons([{"label": "Return", "code": "return"}])
    payment = module.capture_payment(authorized_payment(module, "50").id)
    with pytest.raises(NotFound) as caught:
        module.refund_payment(payment.id, "5", reason_id="refr_missing")
    assert caught.value.entity == "RefundReason"
    payment = module.refund_payment(
        payment.id, "5", reason_id=reason.id, note="damaged", created_by="user_1"
    )
    (refund,) = payment.refunds
    assert (refund.refund_reason_id, refund.note, refund.created_by) == (
        reason.id,
        "damaged",
        "user_1",
    )


def test_repeated_refund_key_moves_no_money(module: PaymentModule) -> None:
    """A refund key seen before returns the payment and calls the provider once."""
    payment = module.capture_payment(authorized_payment(module, "50").id)
    module.refund_payment(payment.id, "5", idempotency_key="r-1")
    module.refund_payment(payment.id, "5", idempotency_key="r-1")
    assert len(get_test_provider(module).calls_to("refund_payment")) == 1
    assert get_test_provider(module).ledger(payment.payment_session_id).refunded == Decimal("5.00")


def test_is_refunded_records_without_calling_the_provider(module: PaymentModule) -> None:
    """`is_refunded=True` records a refund the provider already made."""
    payment = module.capture_payment(authorized_payment(module, "50").id)
    payment = module.refund_payment(payment.id, "50", is_refunded=True)
    assert payment.refunded_amount == Decimal("50.00")
    assert get_test_provider(module).calls_to("refund_payment") == []


def test_cancel_voids_at_the_provider_and_blocks_captures(module: PaymentModule) -> None:
    """A canceled payment is voided at the provider, no longer counts, and cannot be captured."""
    payment = authorized_payment(module, "50")
    canceled = module.cancel_payment(payment.id)
    assert canceled.canceled_at is not None
    assert get_test_provider(module).ledger(payment.payment_session_id).status == "canceled"
    collection = module.retrieve_payment_collection(payment.payment_collection_id)
    assert (collection.authorized_amount, collection.status) == (
        Decimal("0.00"),
        CollectionStatus.AWAITING,
    )
    with pytest.raises(PaymentCanceled):
        module.capture_payment(payment.id)
    assert module.cancel_payment(payment.id) == canceled  # twice: same result, no call
    assert len(get_test_provider(module).calls_to("cancel_payment")) == 1


def test_cancel_after_capture_is_refused(module: PaymentModule) -> None:
    """A payment with a capture cannot be canceled: refund it instead."""
    payment = module.capture_payment(authorized_payment(module, "50").id, "10")
    with pytest.raises(PaymentAlreadyCaptured) as caught:
        module.cancel_payment(payment.id)
    assert caught.value.captured_amount == Decimal("10.00")
    assert module.retrieve_payment(payment.id).canceled_at is None


def test_payments_can_be_listed_and_retrieved(module: PaymentModule) -> None:
    """list_payments filters by collection and session; retrieve raises NotFound."""
    first = authorized_payment(module, "10")
    second = authorized_payment(module, "20")
    assert module.list_payments() == [first, second]
    assert module.list_payments(collection_id=second.payment_collection_id) == [second]
    assert module.list_payments(session_id=first.payment_session_id) == [first]
    with pytest.raises(NotFound):
        module.retrieve_payment("pay_missing")


class Crash(BaseException):
    """Stands for the process dying: no `except Exception` can swallow it."""


class CrashAfterCapture:
    """Delegates to a TestProvider, but 'dies' once right after the gateway captured."""

    def __init__(self, inner: TestProvider) -> None:
        self.inner = inner
        self.id = inner.id
        self.crashes_left = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def capture_payment(self, payment: ProviderInput) -> ProviderOutput:
        output = self.inner.capture_payment(payment)
        if self.crashes_left:
            self.crashes_left -= 1
            raise Crash
        return output


def test_pending_capture_left_by_a_crash_is_finished_by_the_same_key(database_url: str) -> None:
    """A crash after the gateway captured leaves a pending capture that blocks what it holds;
    calling again with the same key finishes it, and the gateway moved the money once."""
    gateway = TestProvider()
    with payment_module(database_url, providers=[CrashAfterCapture(gateway)]) as module:
        payment = authorized_payment(module, "100")
        with pytest.raises(Crash):
            module.capture_payment(payment.id, "40", idempotency_key="step-7")
        (pending,) = module.retrieve_payment(payment.id).captures
        assert (pending.state, pending.amount) == (OperationState.PENDING, Decimal("40.00"))
        with pytest.raises(CaptureExceedsAuthorized) as caught:
            module.capture_payment(payment.id, "70")
        assert caught.value.available == Decimal("60.00")
        payment = module.capture_payment(payment.id, "40", idempotency_key="step-7")
        assert [c.state for c in payment.captures] == [OperationState.SUCCEEDED]
        assert gateway.ledger(payment.payment_session_id).captured == Decimal("40.00")
        keys = [c.idempotency_key for c in gateway.calls_to("capture_payment")]
        assert keys == [f"{payment.id}:capture:step-7"] * 2


def test_refused_refund_leaves_no_refund_row(module: PaymentModule) -> None:
    """A refund the gateway refuses raises ProviderError and leaves no refund behind."""
    payment = authorized_payment(module, "30")
    # Recorded locally only: the gateway captured nothing, so it refuses the refund.
    payment = module.capture_payment(payment.id, is_captured=True)
    with pytest.raises(ProviderError) as caught:
        module.refund_payment(payment.id, "10")
    assert (caught.value.code, caught.value.retryable) == ("amount_too_large", False)
    assert module.retrieve_payment(payment.id).refunds == ()


def test_refused_cancel_leaves_the_payment_live(module: PaymentModule) -> None:
    """A void the gateway refuses (it captured already) does not mark the payment canceled."""
    payment = authorized_payment(module, "30")
    get_test_provider(module).make_webhook("captured", session_id=payment.payment_session_id)
    with pytest.raises(ProviderError):
        module.cancel_payment(payment.id)
    assert module.retrieve_payment(payment.id).canceled_at is None
    with pytest.raises(ProviderError):
        module.cancel_payment_collection(payment.payment_collection_id)
    assert module.retrieve_payment_collection(payment.payment_collection_id).canceled_at is None


@pytest.mark.parametrize(
    ("call", "entity"),
    [
        (lambda m: m.retrieve_payment("pay_x"), "Payment"),
        (lambda m: m.capture_payment("pay_x"), "Payment"),
        (lambda m: m.refund_payment("pay_x"), "Payment"),
        (lambda m: m.cancel_payment("pay_x"), "Payment"),
        (lambda m: m.retrieve_payment_session("payses_x"), "PaymentSession"),
        (lambda m: m.authorize_payment_session("payses_x"), "PaymentSession"),
        (lambda m: m.update_payment_session("payses_x", amount="1"), "PaymentSession"),
        (lambda m: m.retrieve_payment_collection("pay_col_x"), "PaymentCollection"),
        (lambda m: m.cancel_payment_collection("pay_col_x"), "PaymentCollection"),
        (lambda m: m.complete_payment_collections("pay_col_x"), "PaymentCollection"),
        (
            lambda m: m.create_payment_session("pay_col_x", "pp_test", "usd", "1"),
            "PaymentCollection",
        ),
        (lambda m: m.provider("pp_x"), "PaymentProvider"),
    ],
)
def test_unknown_ids_raise_not_found_with_the_id(
    module: PaymentModule, call: Callable[[PaymentModule], object], entity: str
) -> None:
    """Every method given an unknown id raises NotFound (a LookupError) naming entity and id."""
    with pytest.raises(NotFound) as caught:
        call(module)
    assert isinstance(caught.value, LookupError)
    assert caught.value.entity == entity
    assert caught.value.entity_id.endswith("_x")
