"""Payment collections through PaymentModule, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest

from payment import (
    CartNotEligible,
    CollectionStatus,
    InvalidAmount,
    InvalidCurrency,
    InvalidData,
    NewPaymentCollection,
    NotFound,
    PaymentAlreadyAuthorized,
    PaymentAlreadyCaptured,
    PaymentCanceled,
    PaymentModule,
    SessionStatus,
)
from payment.testing import authorized_payment, get_test_provider, payment_module


@pytest.fixture
def module(database_url: str) -> Iterator[PaymentModule]:
    """A payment module on a fresh database."""
    with payment_module(database_url) as built:
        yield built


def test_create_quantizes_and_starts_not_paid(module: PaymentModule) -> None:
    """A new collection has a prefixed id, a quantized amount and status not_paid."""
    collection = module.create_payment_collection("USD", "87.957975", metadata={"a": [1]})
    assert collection.id.startswith("pay_col_")
    assert (collection.currency_code, collection.amount) == ("usd", Decimal("87.96"))
    assert collection.status is CollectionStatus.NOT_PAID
    assert collection.metadata == {"a": (1,)}
    assert module.retrieve_payment_collection(collection.id) == collection


@pytest.mark.parametrize(
    ("currency", "amount", "error"),
    [
        ("usd", 10.5, InvalidAmount),
        ("usd", "0", InvalidAmount),
        ("usd", "-3", InvalidAmount),
        ("xxx", "10", InvalidCurrency),
        ("zzz", "10", InvalidCurrency),
    ],
)
def test_create_refuses_bad_money(
    module: PaymentModule, currency: str, amount: object, error: type[Exception]
) -> None:
    """Bad amounts and currencies raise their typed errors and create nothing."""
    with pytest.raises(error):
        module.create_payment_collection(currency, amount)  # type: ignore[arg-type]
    assert module.list_payment_collections() == []


def test_same_idempotency_key_returns_the_first_collection(module: PaymentModule) -> None:
    """A repeated create with the same key returns the first collection, not a second one."""
    first = module.create_payment_collection("usd", "10", idempotency_key="wf:tx:create")
    again = module.create_payment_collection("usd", "10", idempotency_key="wf:tx:create")
    assert again == first
    assert len(module.list_payment_collections()) == 1


def test_a_cart_gets_one_live_collection(module: PaymentModule) -> None:
    """A second collection for a cart is refused until the first is canceled."""
    first = module.create_payment_collection("usd", "10", cart_id="cart_1")
    with pytest.raises(CartNotEligible, match="Cart cart_1 already has a payment collection"):
        module.create_payment_collection("usd", "10", cart_id="cart_1")
    assert module.retrieve_payment_collection_for_cart("cart_1") == first
    module.cancel_payment_collection(first.id)
    with pytest.raises(NotFound):
        module.retrieve_payment_collection_for_cart("cart_1")
    second = module.create_payment_collection("usd", "10", cart_id="cart_1")
    assert module.retrieve_payment_collection_for_cart("cart_1") == second


def test_racing_creates_for_one_cart_make_one_collection(module: PaymentModule) -> None:
    """Threads racing to create a cart's collection end with exactly one."""
    barrier = threading.Barrier(4)
    outcomes: list[object] = []

    def create(key: str) -> None:
        barrier.wait()
        try:
            outcomes.append(
                module.create_payment_collection("usd", "5", cart_id="c", idempotency_key=key)
            )
        except CartNotEligible as error:
            outcomes.append(error)

    threads = [threading.Thread(target=create, args=(f"k{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(isinstance(o, CartNotEligible) for o in outcomes) == 3
    assert len(module.list_payment_collections(cart_id="c")) == 1


def test_create_many_is_all_or_nothing(module: PaymentModule) -> None:
    """One bad item in a batch creates nothing; a good batch keeps its order."""
    with pytest.raises(InvalidAmount):
        module.create_payment_collections(
            [NewPaymentCollection("usd", "1"), {"currency_code": "usd", "amount": "-1"}]
        )
    assert module.list_payment_collections() == []
    with pytest.raises(InvalidData):
        module.create_payment_collections([{"currency": "usd"}])
    made = module.create_payment_collections(
        [{"currency_code": "usd", "amount": "1"}, NewPaymentCollection("jpy", "1000.5")]
    )
    assert [c.amount for c in made] == [Decimal("1.00"), Decimal("1000")]


def test_a_batch_with_a_repeated_key_returns_it_and_creates_the_rest(
    module: PaymentModule,
) -> None:
    """A batch mixing a key seen before, a new key, and twice the same new key returns the
    first collection for the old key and creates each new key once, in the order given."""
    first = module.create_payment_collection("usd", "10", idempotency_key="old")
    made = module.create_payment_collections(
        [
            NewPaymentCollection("usd", "10", idempotency_key="old"),
            NewPaymentCollection("usd", "20", idempotency_key="new"),
            NewPaymentCollection("usd", "20", idempotency_key="new"),
        ]
    )
    assert made[0] == first
    assert made[1] == made[2]
    assert made[1].amount == Decimal("20.00")
    assert len(module.list_payment_collections()) == 2


def test_a_batch_with_a_taken_cart_creates_nothing(module: PaymentModule) -> None:
    """A batch whose second item names a cart with a live collection fails as a whole."""
    module.create_payment_collection("usd", "10", cart_id="cart_1")
    with pytest.raises(CartNotEligible):
        module.create_payment_collections(
            [NewPaymentCollection("usd", "5"), NewPaymentCollection("usd", "5", cart_id="cart_1")]
        )
    assert len(module.list_payment_collections()) == 1


def test_update_changes_amount_currency_and_metadata(module: PaymentModule) -> None:
    """Amount, currency and metadata change; the status follows the new amount."""
    collection = module.create_payment_collection("usd", "10")
    (updated,) = module.update_payment_collections(
        collection.id, amount="20", currency_code="EUR", metadata={"k": "v"}
    )
    assert (updated.amount, updated.currency_code, updated.metadata) == (
        Decimal("20.00"),
        "eur",
        {"k": "v"},
    )
    with pytest.raises(NotFound):
        module.update_payment_collections(["pay_col_missing"], amount="1")


def test_update_cannot_go_below_authorized_or_switch_currency_with_sessions(
    module: PaymentModule,
) -> None:
    """An amount below what is authorized, or a new currency once sessions exist, is refused."""
    payment = authorized_payment(module, "50")
    collection_id = payment.payment_collection_id
    with pytest.raises(InvalidAmount):
        module.update_payment_collections(collection_id, amount="49.99")
    with pytest.raises(InvalidCurrency):
        module.update_payment_collections(collection_id, currency_code="eur")
    (updated,) = module.update_payment_collections(collection_id, amount="80")
    assert updated.status is CollectionStatus.PARTIALLY_AUTHORIZED


def test_list_filters_and_pages(module: PaymentModule) -> None:
    """Collections list oldest first, by id, status and cart, with limit and offset."""
    made = [module.create_payment_collection("usd", str(i + 1)) for i in range(3)]
    carted = module.create_payment_collection("usd", "9", cart_id="cart_9")
    assert module.list_payment_collections(limit=2, offset=1) == made[1:3]
    assert module.list_payment_collections(ids=[made[2].id, made[0].id]) == [made[0], made[2]]
    assert module.list_payment_collections(cart_id="cart_9") == [carted]
    assert len(module.list_payment_collections(status="not_paid")) == 4
    assert module.list_payment_collections(status=CollectionStatus.COMPLETED) == []


def test_complete_sets_completed_at_once(module: PaymentModule) -> None:
    """Completing sets completed_at and keeps the first time; canceled ones are refused."""
    collection = module.create_payment_collection("usd", "10")
    (done,) = module.complete_payment_collections([collection.id])
    assert done.completed_at is not None
    (again,) = module.complete_payment_collections(collection.id)
    assert again.completed_at == done.completed_at
    other = module.create_payment_collection("usd", "10")
    module.cancel_payment_collection(other.id)
    with pytest.raises(PaymentCanceled):
        module.complete_payment_collections(other.id)


def test_cancel_voids_payments_and_open_sessions(module: PaymentModule) -> None:
    """Canceling voids authorizations and open sessions at the provider; twice is the same."""
    collection_id = module.create_payment_collection("usd", "100").id
    paid = module.create_payment_session(collection_id, "pp_test", "usd", "60")
    payment = module.authorize_payment_session(paid.id)
    assert payment is not None
    open_session = module.create_payment_session(collection_id, "pp_test", "usd", "40")
    canceled = module.cancel_payment_collection(collection_id)
    assert canceled.status is CollectionStatus.CANCELED
    assert all(p.canceled_at is not None for p in canceled.payments)
    assert {s.status for s in canceled.sessions} == {SessionStatus.CANCELED}
    keys = {c.idempotency_key for c in get_test_provider(module).calls_to("cancel_payment")}
    assert keys == {f"{payment.id}:cancel", f"{open_session.id}:cancel"}
    assert module.cancel_payment_collection(collection_id) == canceled
    with pytest.raises(PaymentCanceled):
        module.create_payment_session(collection_id, "pp_test", "usd", "1")


def test_cancel_with_a_capture_is_refused(module: PaymentModule) -> None:
    """A collection with captured money cannot be canceled."""
    payment = module.capture_payment(authorized_payment(module, "10").id, "1")
    with pytest.raises(PaymentAlreadyCaptured):
        module.cancel_payment_collection(payment.payment_collection_id)


def test_delete_removes_everything_and_skips_unknown_ids(module: PaymentModule) -> None:
    """Deleting removes the collection and its sessions (discarded at the provider)."""
    collection = module.create_payment_collection("usd", "10", cart_id="cart_d")
    session = module.create_payment_session(collection.id, "pp_test", "usd", "10")
    module.delete_payment_collections([collection.id, "pay_col_missing"])
    module.delete_payment_collections(collection.id)
    with pytest.raises(NotFound):
        module.retrieve_payment_collection(collection.id)
    assert module.list_payment_sessions() == []
    (call,) = get_test_provider(module).calls_to("delete_payment")
    assert call.idempotency_key == f"{session.id}:delete"
    module.create_payment_collection("usd", "10", cart_id="cart_d")  # the cart is free again


def test_delete_refuses_live_money(module: PaymentModule) -> None:
    """Deleting a collection that holds an authorization or a capture is refused."""
    payment = authorized_payment(module, "10")
    with pytest.raises(PaymentAlreadyAuthorized):
        module.delete_payment_collections(payment.payment_collection_id)
    module.capture_payment(payment.id, "1")
    with pytest.raises(PaymentAlreadyCaptured):
        module.delete_payment_collections(payment.payment_collection_id)
    assert module.retrieve_payment_collection(payment.payment_collection_id).payments


def test_concurrent_authorizations_of_one_session_call_the_provider_once(
    module: PaymentModule,
) -> None:
    """Four callers authorizing one session at once: one provider call, one payment for all."""
    collection = module.create_payment_collection("usd", "40")
    session = module.create_payment_session(collection.id, "pp_test", "usd", "40")
    barrier = threading.Barrier(4)
    results: list[object] = []

    def authorize() -> None:
        barrier.wait()
        results.append(module.authorize_payment_session(session.id))

    threads = [threading.Thread(target=authorize) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(get_test_provider(module).calls_to("authorize_payment")) == 1
    ids = {getattr(payment, "id", None) for payment in results}
    assert len(results) == 4
    assert len(ids) == 1
    assert None not in ids
    assert len(module.list_payments(session_id=session.id)) == 1


def test_authorize_with_a_session_id_that_is_not_a_string_is_invalid_data(
    module: PaymentModule,
) -> None:
    """authorize_payment_session(['x']) is InvalidData, not a TypeError from hashing."""
    with pytest.raises(InvalidData):
        module.authorize_payment_session(["x"])  # type: ignore[arg-type]
