"""The pure domain: money rules and status recomputation, without storage or providers."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from payment import (
    CaptureExceedsAuthorized,
    CollectionStatus,
    InvalidAmount,
    InvalidCurrency,
    InvalidData,
    OperationState,
    Payment,
    PaymentAlreadyAuthorized,
    PaymentAlreadyCaptured,
    PaymentCanceled,
    PaymentCollection,
    ProviderStatus,
    RefundExceedsCaptured,
    SessionStatus,
)
from payment.domain import freeze_json, thaw_json

NOW = datetime(2025, 1, 1, tzinfo=UTC)
_counter = itertools.count()


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_counter)}"


def _collection(amount: str = "100") -> PaymentCollection:
    return PaymentCollection.create(
        collection_id=_id("pay_col"), currency_code="usd", amount=amount, now=NOW
    )


def _with_session(collection: PaymentCollection, amount: str) -> tuple[PaymentCollection, str]:
    after, session = collection.add_session(
        session_id=_id("payses"), provider_id="pp_test", currency_code="usd",
        amount=amount, now=NOW,
    )  # fmt: skip
    return after, session.id


def _answer(
    collection: PaymentCollection, session_id: str, status: ProviderStatus
) -> PaymentCollection:
    after, _ = collection.record_authorization(
        session_id, status, {}, attempt_key=f"{session_id}:authorize:0",
        payment_id=_id("pay"), capture_id=_id("capt"), now=NOW,
    )  # fmt: skip
    return after


def _authorized(amount: str = "100", session: str | None = None) -> PaymentCollection:
    collection, session_id = _with_session(_collection(amount), session or amount)
    return _answer(collection, session_id, ProviderStatus.AUTHORIZED)


def _capture(payment: Payment, amount: object, key: str | None = None) -> Payment:
    payment, capture = payment.begin_capture(
        amount, idempotency_key=key, created_by=None, capture_id=_id("capt"), now=NOW
    )
    assert capture is not None
    return payment.finish_capture(capture.id, None, NOW)


def _refund(payment: Payment, amount: object) -> Payment:
    payment, refund = payment.begin_refund(
        amount, idempotency_key=None, reason_id=None, note=None, created_by=None,
        refund_id=_id("ref"), now=NOW,
    )  # fmt: skip
    assert refund is not None
    return payment.finish_refund(refund.id, None)


def test_status_is_not_paid_then_awaiting_then_failed() -> None:
    """No session: not_paid; a session: awaiting; every session declined: failed."""
    collection = _collection()
    assert collection.status is CollectionStatus.NOT_PAID
    collection, first = _with_session(collection, "50")
    assert collection.status is CollectionStatus.AWAITING
    collection = _answer(collection, first, ProviderStatus.ERROR)
    assert collection.status is CollectionStatus.FAILED
    collection, second = _with_session(collection, "50")
    assert collection.status is CollectionStatus.AWAITING
    collection = _answer(collection, second, ProviderStatus.REQUIRES_MORE)
    assert collection.sessions[1].status is SessionStatus.REQUIRES_MORE
    assert collection.status is CollectionStatus.AWAITING


def test_status_follows_authorized_and_captured_amounts() -> None:
    """Authorized and captured amounts against the collection amount decide the status."""
    collection = _authorized("100", "40")
    assert (collection.status, collection.authorized_amount) == (
        CollectionStatus.PARTIALLY_AUTHORIZED,
        Decimal("40.00"),
    )
    payment = _capture(collection.payments[0], "40")
    collection = collection.with_payment(payment)
    assert collection.status is CollectionStatus.PARTIALLY_CAPTURED
    full = _authorized("100")
    full = full.with_payment(_capture(full.payments[0], None))
    assert full.status is CollectionStatus.COMPLETED
    refunded = full.with_payment(_refund(full.payments[0], "100"))
    assert (refunded.status, refunded.refunded_amount) == (
        CollectionStatus.COMPLETED,
        Decimal("100.00"),
    )


def test_canceled_collection_cancels_its_payments_and_sessions() -> None:
    """Canceling marks the collection, its payments and sessions canceled."""
    collection = _authorized().canceled(NOW)
    assert collection.status is CollectionStatus.CANCELED
    assert collection.authorized_amount == Decimal("0.00")
    assert collection.payments[0].canceled_at == NOW
    assert collection.sessions[0].status is SessionStatus.CANCELED
    with pytest.raises(PaymentCanceled):
        collection.add_session(
            session_id="x", provider_id="pp_test", currency_code="usd", amount="1", now=NOW
        )


def test_auto_capture_answer_makes_a_succeeded_capture() -> None:
    """A `captured` answer gives a payment fully captured under the authorize key."""
    collection, session_id = _with_session(_collection("10"), "10")
    collection = _answer(collection, session_id, ProviderStatus.CAPTURED)
    (capture,) = collection.payments[0].captures
    assert (capture.state, capture.idempotency_key) == (
        OperationState.SUCCEEDED,
        f"{session_id}:authorize:0",
    )
    assert collection.status is CollectionStatus.COMPLETED
    assert collection.sessions[0].status is SessionStatus.AUTHORIZED


def test_second_authorization_answer_keeps_the_first_payment() -> None:
    """Recording an answer for a session that has a payment changes nothing."""
    collection = _authorized()
    session_id = collection.sessions[0].id
    again, payment = collection.record_authorization(
        session_id, ProviderStatus.ERROR, {}, attempt_key="k", payment_id="p2",
        capture_id="c2", now=NOW,
    )  # fmt: skip
    assert again == collection
    assert payment == collection.payments[0]


def test_pending_captures_count_against_what_is_left() -> None:
    """A pending capture reserves its amount until it is finished or dropped."""
    payment = _authorized().payments[0]
    payment, pending = payment.begin_capture(
        "60", idempotency_key="a", created_by=None, capture_id="c1", now=NOW
    )
    assert pending is not None
    assert payment.capturable_amount == Decimal("40.00")
    with pytest.raises(CaptureExceedsAuthorized) as caught:
        payment.begin_capture("41", idempotency_key="b", created_by=None, capture_id="c2", now=NOW)
    assert caught.value.available == Decimal("40.00")
    assert payment.drop_capture("c1").capturable_amount == Decimal("100.00")
    finished = payment.finish_capture("c1", None, NOW)
    assert finished.finish_capture("c1", None, NOW) == finished
    assert finished.drop_capture("c1") == finished  # a succeeded capture is never dropped


def test_a_repeated_key_returns_the_pending_capture_to_finish() -> None:
    """The same key finds the pending capture again, so a crash can be finished."""
    payment, first = (
        _authorized()
        .payments[0]
        .begin_capture("10", idempotency_key="k", created_by=None, capture_id="c1", now=NOW)
    )
    again, second = payment.begin_capture(
        "10", idempotency_key="k", created_by=None, capture_id="c2", now=NOW
    )
    assert (again, second) == (payment, first)
    done = payment.finish_capture("c1", None, NOW)
    assert done.begin_capture(
        "10", idempotency_key="k", created_by=None, capture_id="c3", now=NOW
    ) == (done, None)


def test_capture_check_order_follows_the_spec() -> None:
    """Canceled before amount, amount before key replay, full capture before the limit."""
    payment = _authorized().payments[0]
    with pytest.raises(PaymentCanceled):
        payment.canceled(NOW).begin_capture(
            "-1", idempotency_key=None, created_by=None, capture_id="c", now=NOW
        )
    captured = _capture(payment, "10", key="k")
    with pytest.raises(InvalidAmount):
        captured.begin_capture("0", idempotency_key="k", created_by=None, capture_id="c", now=NOW)
    full = _capture(captured, None)
    assert full.begin_capture(
        "1000", idempotency_key=None, created_by=None, capture_id="c", now=NOW
    ) == (full, None)


def test_derived_keys_skip_keys_in_use() -> None:
    """A derived key never collides with an existing capture's key."""
    payment = _authorized().payments[0]
    payment = _capture(payment, "10", key="10.00:1")
    payment = _capture(payment, "10")
    assert payment.captures[-1].idempotency_key == "10.00:2"
    assert payment.captures[-1].provider_key == f"{payment.id}:capture:10.00:2"


def test_refund_limits_count_pending_refunds() -> None:
    """Refunds never exceed captured - refunded - pending; None refunds the rest."""
    payment = _capture(_authorized().payments[0], "50")
    payment, pending = payment.begin_refund(
        "30", idempotency_key=None, reason_id=None, note=None, created_by=None,
        refund_id="r1", now=NOW,
    )  # fmt: skip
    assert pending is not None
    with pytest.raises(RefundExceedsCaptured) as caught:
        _refund(payment, "20.01")
    assert caught.value.available == Decimal("20.00")
    payment = _refund(payment, None)
    assert payment.refunds[-1].amount == Decimal("20.00")
    with pytest.raises(RefundExceedsCaptured):
        _refund(payment.finish_refund("r1", None), None)


def test_cancel_is_refused_once_any_capture_exists() -> None:
    """A pending capture already blocks a cancel."""
    payment, _ = (
        _authorized()
        .payments[0]
        .begin_capture("1", idempotency_key=None, created_by=None, capture_id="c", now=NOW)
    )
    with pytest.raises(PaymentAlreadyCaptured):
        payment.ensure_cancelable()


def test_sessions_check_currency_amount_and_live_payments() -> None:
    """Sessions must match the currency, fit what is left, and cannot go while authorized."""
    collection = _authorized("100", "60")
    with pytest.raises(InvalidCurrency):
        collection.add_session(
            session_id="s", provider_id="p", currency_code="eur", amount="1", now=NOW
        )
    with pytest.raises(InvalidAmount):
        collection.add_session(
            session_id="s", provider_id="p", currency_code="usd", amount="40.01", now=NOW
        )
    with pytest.raises(PaymentAlreadyAuthorized):
        collection.without_session(collection.sessions[0].id)
    with pytest.raises(PaymentAlreadyAuthorized):
        collection.ensure_deletable()


def test_json_fields_are_deeply_immutable_and_compare_to_dicts() -> None:
    """Data is frozen on entry: nested values cannot change, and it equals the plain dict."""
    source = {"a": {"b": [1, 2]}, "c": None}
    frozen = freeze_json(source)
    source["a"]["b"].append(3)  # type: ignore[index]
    assert frozen == {"a": {"b": (1, 2)}, "c": None}
    with pytest.raises(TypeError):
        frozen["x"] = 1  # type: ignore[index]
    assert thaw_json(frozen) == {"a": {"b": [1, 2]}, "c": None}
    assert hash(frozen) == hash(freeze_json(thaw_json(frozen)))


@pytest.mark.parametrize(
    "bad", [{"s": {1, 2}}, {1: "x"}, {"n": math.nan}, {"d": Decimal("1")}, "text", [1]]
)
def test_json_fields_refuse_what_json_cannot_hold(bad: object) -> None:
    """Sets, non-string keys, NaN, Decimals and non-objects raise InvalidData."""
    with pytest.raises(InvalidData):
        freeze_json(bad)
