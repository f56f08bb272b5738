"""Prefixed sortable ids and the error tree."""

from __future__ import annotations

import pickle
import threading
from decimal import Decimal

import pytest

import payment.exceptions as errors
from payment.ids import PREFIXES, IdFactory


def test_ids_carry_their_prefix_and_a_26_character_ulid() -> None:
    """Every record kind gets `{prefix}_{ULID}`."""
    ids = IdFactory()
    for kind, prefix in PREFIXES.items():
        new = ids.new(kind)
        assert new.startswith(f"{prefix}_")
        assert len(new) == len(prefix) + 1 + 26


def test_ids_sort_in_creation_order_within_one_millisecond() -> None:
    """Ids made in the same millisecond still sort in creation order."""
    ids = IdFactory(clock_ms=lambda: 1_700_000_000_000)
    made = [ids.new("Payment") for _ in range(1000)]
    assert made == sorted(made)
    assert len(set(made)) == 1000


def test_ids_sort_by_time_even_when_the_clock_goes_back() -> None:
    """A clock that steps backwards cannot make an id smaller than the previous one."""
    times = iter([2000, 1000, 3000])
    ids = IdFactory(clock_ms=lambda: next(times))
    made = [ids.new("Capture") for _ in range(3)]
    assert made == sorted(made)


def test_ids_are_unique_across_threads() -> None:
    """One factory used by several threads never repeats an id."""
    ids = IdFactory()
    made: list[str] = []

    def work() -> None:
        made.extend(ids.new("Refund") for _ in range(500))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 2000


def test_error_tree_matches_the_spec() -> None:
    """Each error subclasses what the spec says a caller catches."""
    assert issubclass(errors.NotFound, LookupError)
    assert issubclass(errors.ProviderNotFound, errors.NotFound)
    for cls in (errors.InvalidAmount, errors.InvalidCurrency, errors.CartNotEligible):
        assert issubclass(cls, ValueError)
    assert issubclass(errors.PaymentActionRequired, errors.PaymentNotAuthorized)
    public = [getattr(errors, name) for name in errors.__all__]
    assert all(issubclass(cls, errors.PaymentError) for cls in public)
    assert errors.__all__ == sorted(errors.__all__)


@pytest.mark.parametrize(
    "error",
    [
        errors.NotFound("Payment", "pay_1"),
        errors.ProviderNotFound("pp_x"),
        errors.InvalidAmount("bad", amount=Decimal("1.00"), entity_id="pay_1"),
        errors.InvalidCurrency("abc", "unknown", expected="usd"),
        errors.InvalidData("data", "not a mapping"),
        errors.CartNotEligible("cart_1", "Cart cart_1 already has a payment collection"),
        errors.PaymentNotAuthorized("payses_1", "error"),
        errors.PaymentActionRequired("payses_1", {"type": "three_d_secure"}),
        errors.PaymentCanceled(payment_id="pay_1"),
        errors.PaymentAlreadyAuthorized("payses_1", "pay_1"),
        errors.PaymentAlreadyCaptured("pay_1", Decimal("5.00")),
        errors.CaptureExceedsAuthorized("pay_1", Decimal("300"), Decimal("200")),
        errors.RefundExceedsCaptured("pay_1", Decimal("87.98"), Decimal("87.96")),
        errors.ProviderDisabled("pp_test"),
        errors.ProviderError("pp_test", "timeout", retryable=True),
        errors.WebhookSignatureError("pp_test", "stale"),
    ],
)
def test_errors_survive_pickling_with_their_attributes(error: errors.PaymentError) -> None:
    """A stored error comes back with the same type, message and attributes."""
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.__dict__ == error.__dict__


def test_errors_carry_ids_and_amounts() -> None:
    """Structured attributes say which records and amounts were involved."""
    error = errors.CaptureExceedsAuthorized("pay_1", Decimal("300.00"), Decimal("200.00"))
    assert (error.payment_id, error.requested, error.available) == (
        "pay_1",
        Decimal("300.00"),
        Decimal("200.00"),
    )
    assert "pay_1" in str(error)
    assert "300.00" in str(error)
    not_found = errors.NotFound("PaymentSession", "payses_9")
    assert (not_found.entity, not_found.entity_id) == ("PaymentSession", "payses_9")
    action = errors.PaymentActionRequired("payses_1", {"type": "three_d_secure"})
    assert str(action) == "More information is required for payment"
    assert action.status == "requires_more"
    assert action.action == {"type": "three_d_secure"}
