"""The checkout example (`examples/checkout/`) end to end, on SQLite and on PostgreSQL.

Every checkout goes through the example's composition root (`CheckoutApp`) with the test gateway.
A failure after the authorization must leave the payment canceled (or refunded in full when it
was auto-captured), no order, the cart open, the stock untouched, and no money moved twice.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flowkit import Engine, SimulatedCrash, TransactionState
from flowkit.sqlalchemy import SqlStore
from flowkit.testing.faults import Crash, FailurePlan, PlanFaults
from payment import (
    CartNotEligible,
    InvalidAmount,
    InvalidCurrency,
    NotFound,
    ProviderStatus,
)
from payment.steps import REFUNDED_ON_FAILURE
from payment.testing import get_test_provider

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # examples/ is run from the repository root, not installed
    sys.path.insert(0, str(ROOT))

checkout = importlib.import_module("examples.checkout")
tables = importlib.import_module("examples.checkout.tables")

TEE = checkout.LineItem("tee-black", 2, Decimal("25.00"))
POSTER = checkout.LineItem("poster", 1, Decimal("40.00"))
MONEY_MOVES = frozenset(
    {"authorize_payment", "capture_payment", "refund_payment", "cancel_payment"}
)


@pytest.fixture
def app(database_url: str) -> Iterator[Any]:
    """A `CheckoutApp` on a fresh database: tees in stock, posters sold out."""
    with checkout.CheckoutApp(database_url) as app:
        app.database.set_stock("tee-black", 10)
        app.database.set_stock("poster", 0)
        yield app


def new_cart(app: Any, items: Sequence[Any], scenario: str | None) -> tuple[Any, Any]:
    """A usd cart with these lines and, unless `scenario` is None, a test-gateway session."""
    cart = app.database.create_cart("usd", items)
    session = None if scenario is None else app.start_payment(cart.id, {"scenario": scenario})
    return cart, session


def money_moves(app: Any) -> list[tuple[str, str | None]]:
    """(method, idempotency key) of every call to the gateway that moves or voids money."""
    calls = get_test_provider(app.module).calls
    return [(c.method, c.idempotency_key) for c in calls if c.method in MONEY_MOVES]


def assert_nothing_twice(app: Any) -> Counter[str]:
    """Each money-moving idempotency key reached the gateway once; returns calls per method."""
    moves = money_moves(app)
    assert len(moves) == len(set(moves)), moves
    return Counter(method for method, _ in moves)


def cart_row(app: Any, cart_id: str) -> dict[str, Any]:
    """The cart's row as stored."""
    with app.database.engine.connect() as conn:
        row = conn.execute(sa.select(tables.carts).where(tables.carts.c.id == cart_id)).one()
    return row._asdict()


def snapshot(app: Any, cart_id: str) -> tuple[object, ...]:
    """Everything a checkout of the cart could change: cart, orders, stock, payment, gateway."""
    with app.database.engine.connect() as conn:
        order_rows = conn.execute(sa.select(tables.orders).order_by(tables.orders.c.id)).all()
        stock = conn.execute(sa.select(tables.inventory).order_by(tables.inventory.c.sku)).all()
    try:
        collection = app.module.retrieve_payment_collection_for_cart(cart_id)
    except NotFound:
        collection = None
    calls = len(get_test_provider(app.module).calls)
    return cart_row(app, cart_id), order_rows, stock, collection, calls


def assert_reverted(app: Any, cart_id: str, result: Any) -> None:
    """The run failed at reserve-inventory, and left no order, an open cart, the stock as is."""
    assert result.status is TransactionState.REVERTED
    assert [(e.step, e.action) for e in result.errors] == [("reserve-inventory", "invoke")]
    assert isinstance(result.errors[0].exception, checkout.OutOfStock)
    assert app.database.find_order(cart_id) is None
    assert cart_row(app, cart_id)["completed_at"] is None
    assert cart_row(app, cart_id)["checkout_run"] is None
    assert app.database.stock_level("poster") == 0


# --- the three paths of the example ------------------------------------------------------


def test_success_places_the_order_and_keeps_the_authorization(app: Any) -> None:
    """An approved, in-stock checkout creates the order, completes the cart, takes the stock."""
    cart, session = new_cart(app, [TEE], "approve")
    result = app.complete_cart(cart.id)

    order = result.result
    payment = app.module.retrieve_payment(order.payment_id)
    assert result.status is TransactionState.DONE
    assert app.database.find_order(cart.id) == order
    assert (order.total, order.currency_code) == (Decimal("50.00"), "usd")
    assert payment.payment_session_id == session.id
    assert (payment.amount, payment.captured_amount, payment.canceled_at) == (order.total, 0, None)
    assert cart_row(app, cart.id)["completed_at"] == order.created_at
    assert app.database.stock_level("tee-black") == 8
    assert assert_nothing_twice(app) == {"authorize_payment": 1}


def test_failure_after_authorization_cancels_the_payment(app: Any) -> None:
    """Out of stock after an authorization: the payment is canceled, nothing else remains."""
    cart, session = new_cart(app, [POSTER], "approve")
    result = app.complete_cart(cart.id, throw_on_error=False)

    assert_reverted(app, cart.id, result)
    [payment] = app.module.list_payments(session_id=session.id)
    assert payment.canceled_at is not None
    assert (payment.captured_amount, payment.refunds) == (0, ())
    assert get_test_provider(app.module).ledger(session.id).status is ProviderStatus.CANCELED
    assert assert_nothing_twice(app) == {"authorize_payment": 1, "cancel_payment": 1}


def test_failure_after_auto_capture_refunds_in_full(app: Any) -> None:
    """Out of stock after an auto-capture: everything captured is refunded once, with the note."""
    cart, session = new_cart(app, [POSTER], "auto_capture")
    result = app.complete_cart(cart.id, transaction_id="tx-auto", throw_on_error=False)

    assert_reverted(app, cart.id, result)
    [payment] = app.module.list_payments(session_id=session.id)
    [refund] = payment.refunds
    assert payment.captured_amount == payment.refunded_amount == refund.amount == Decimal("40.00")
    assert payment.canceled_at is None
    assert refund.note == REFUNDED_ON_FAILURE
    assert refund.idempotency_key == "complete-cart:tx-auto:authorize-payment-session:compensate"
    ledger = get_test_provider(app.module).ledger(session.id)
    assert ledger.captured == ledger.refunded == Decimal("40.00")
    assert assert_nothing_twice(app) == {"authorize_payment": 1, "refund_payment": 1}


# --- repeated and interrupted checkouts -----------------------------------------------------


def test_a_new_session_after_a_failed_checkout_places_the_order(app: Any) -> None:
    """After a reverted checkout the customer pays with a new session and the retry succeeds."""
    cart, first = new_cart(app, [POSTER], "approve")
    app.complete_cart(cart.id, throw_on_error=False)
    app.database.set_stock("poster", 1)
    second = app.add_payment_session(first.payment_collection_id, {"scenario": "approve"})
    order = app.complete_cart(cart.id).result

    assert app.module.retrieve_payment(order.payment_id).payment_session_id == second.id
    assert app.database.stock_level("poster") == 0
    assert assert_nothing_twice(app) == {"authorize_payment": 2, "cancel_payment": 1}


def test_a_repeated_transaction_id_places_one_order(app: Any) -> None:
    """A double-submitted checkout (same transaction id) returns the first order, runs nothing."""
    cart, _ = new_cart(app, [TEE], "approve")
    first = app.complete_cart(cart.id, transaction_id="submit-1")
    again = app.complete_cart(cart.id, transaction_id="submit-1")

    assert again.result == first.result
    assert app.database.stock_level("tee-black") == 8
    assert assert_nothing_twice(app) == {"authorize_payment": 1}


def test_a_crash_before_the_order_checkpoint_leaves_nothing_and_recovery_places_one(
    app: Any, database_url: str
) -> None:
    """The order and its checkpoint commit together: a crash loses both; recovery writes once."""
    cart, _ = new_cart(app, [TEE], "approve")
    workflows = [checkout.complete_cart_workflow]
    with Engine(SqlStore(database_url), workflows, container=app.registry) as dying:
        dying.faults["tx-crash"] = PlanFaults(
            FailurePlan(crash=Crash("create-order", "invoke", "before"))
        )
        with pytest.raises(SimulatedCrash):
            dying.run(
                checkout.complete_cart_workflow, {"cart_id": cart.id}, transaction_id="tx-crash"
            )
    assert app.database.find_order(cart.id) is None
    assert cart_row(app, cart.id)["completed_at"] is None

    with Engine(SqlStore(database_url), workflows, container=app.registry) as engine:
        engine.store.expire_lease("tx-crash")  # type: ignore[attr-defined]
        [recovered] = engine.recover()
    assert recovered.status is TransactionState.DONE
    assert app.database.find_order(cart.id) == recovered.result
    assert app.database.stock_level("tee-black") == 8
    assert assert_nothing_twice(app) == {"authorize_payment": 1}


def test_canceling_a_placed_checkout_reverts_every_step(app: Any) -> None:
    """`engine.cancel` of a done checkout puts the stock back, deletes the order, reopens the
    cart and voids the payment."""
    cart, session = new_cart(app, [TEE], "approve")
    app.complete_cart(cart.id, transaction_id="tx-cancel")
    canceled = app.engine.cancel("tx-cancel")

    assert canceled.status is TransactionState.REVERTED
    assert app.database.stock_level("tee-black") == 10
    assert app.database.find_order(cart.id) is None
    row = cart_row(app, cart.id)
    assert (row["completed_at"], row["checkout_run"]) == (None, None)
    [payment] = app.module.list_payments(session_id=session.id)
    assert payment.canceled_at is not None
    assert assert_nothing_twice(app) == {"authorize_payment": 1, "cancel_payment": 1}


# --- bad input: the typed error, and nothing changed ------------------------------------------


def test_an_already_completed_cart_is_refused(app: Any) -> None:
    """A second checkout of a completed cart raises CartNotEligible and touches nothing."""
    cart, _ = new_cart(app, [TEE], "approve")
    app.complete_cart(cart.id)
    before = snapshot(app, cart.id)

    with pytest.raises(CartNotEligible, match="already completed") as raised:
        app.complete_cart(cart.id)
    assert raised.value.cart_id == cart.id
    assert snapshot(app, cart.id) == before


def test_a_cart_held_by_an_unfinished_checkout_is_refused(app: Any, database_url: str) -> None:
    """While one checkout holds the cart (here: crashed after claiming it), another raises
    CartNotEligible before authorizing, so it can never void the first one's payment."""
    cart, _ = new_cart(app, [TEE], "approve")
    workflows = [checkout.complete_cart_workflow]
    with Engine(SqlStore(database_url), workflows, container=app.registry) as dying:
        dying.faults["tx-held"] = PlanFaults(FailurePlan(crash=Crash("claim-cart")))
        with pytest.raises(SimulatedCrash):
            dying.run(
                checkout.complete_cart_workflow, {"cart_id": cart.id}, transaction_id="tx-held"
            )
    assert cart_row(app, cart.id)["checkout_run"] == "tx-held"
    before = snapshot(app, cart.id)

    with pytest.raises(CartNotEligible, match="being completed"):
        app.complete_cart(cart.id)
    assert snapshot(app, cart.id) == before
    assert money_moves(app) == []


def test_a_cart_without_a_payment_collection_is_refused(app: Any) -> None:
    """A cart nobody started paying raises CartNotEligible and touches nothing."""
    cart, _ = new_cart(app, [TEE], None)
    before = snapshot(app, cart.id)

    with pytest.raises(CartNotEligible, match="has no payment collection"):
        app.complete_cart(cart.id)
    assert snapshot(app, cart.id) == before
    assert get_test_provider(app.module).calls == ()


def test_a_session_in_another_currency_is_refused(app: Any) -> None:
    """A eur session on a usd cart's collection is refused with InvalidCurrency; nothing is made."""
    cart, session = new_cart(app, [TEE], "approve")
    before = snapshot(app, cart.id)

    with pytest.raises(InvalidCurrency) as raised:
        app.add_payment_session(session.payment_collection_id, currency_code="eur")
    assert (raised.value.currency_code, raised.value.expected) == ("eur", "usd")
    assert snapshot(app, cart.id) == before


def test_a_collection_in_another_currency_is_refused(app: Any) -> None:
    """A usd cart paid by a eur collection and session: the checkout raises InvalidCurrency and
    touches nothing (the module itself refuses a usd session on that collection)."""
    cart, _ = new_cart(app, [TEE], None)
    collection = app.module.create_payment_collection("eur", cart.total, cart_id=cart.id)
    with pytest.raises(InvalidCurrency):
        app.module.create_payment_session(collection.id, "pp_test", "usd", cart.total)
    session = app.module.create_payment_session(collection.id, "pp_test", "eur", cart.total)
    before = snapshot(app, cart.id)

    with pytest.raises(InvalidCurrency) as raised:
        app.complete_cart(cart.id)
    assert (raised.value.currency_code, raised.value.expected) == ("eur", "usd")
    assert snapshot(app, cart.id) == before
    assert app.module.retrieve_payment_session(session.id) == session


def test_a_collection_for_another_amount_is_refused(app: Any) -> None:
    """A collection that does not match the cart's total makes the checkout raise InvalidAmount."""
    cart, _ = new_cart(app, [TEE], None)
    collection = app.module.create_payment_collection("usd", "10.00", cart_id=cart.id)
    app.module.create_payment_session(collection.id, "pp_test", "usd", "10.00")
    before = snapshot(app, cart.id)

    with pytest.raises(InvalidAmount, match=r"totals 50\.00") as raised:
        app.complete_cart(cart.id)
    assert raised.value.entity_id == collection.id
    assert snapshot(app, cart.id) == before


def test_a_declined_card_leaves_the_cart_open(app: Any) -> None:
    """A decline fails the authorize step: no payment, no order, the cart open and free again."""
    cart, session = new_cart(app, [TEE], "decline")
    result = app.complete_cart(cart.id, throw_on_error=False)

    assert result.status is TransactionState.REVERTED
    assert [e.type_name.rsplit(".", 1)[-1] for e in result.errors] == ["PaymentNotAuthorized"]
    assert app.module.list_payments(session_id=session.id) == []
    assert app.database.find_order(cart.id) is None
    row = cart_row(app, cart.id)
    assert (row["completed_at"], row["checkout_run"]) == (None, None)


# --- the script ---------------------------------------------------------------------------


def test_the_script_runs_all_three_paths() -> None:
    """`python -m examples.checkout` exits 0 and prints the three outcomes."""
    done = subprocess.run(
        [sys.executable, "-m", "examples.checkout"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all outcomes as expected" in done.stdout
    assert done.stdout.count("run reverted at reserve-inventory: OutOfStock") == 2
    assert f'refund note: "{REFUNDED_ON_FAILURE}"' in done.stdout
