"""The checkout app's composition root: one database, one engine, one registry.

`CheckoutApp` wires flowkit's `SqlStore`, the payment module and the checkout tables on the same
database, registers `PaymentModule` and `CartService` in a `flowkit.Registry`, and runs the
workflows durably. `outcome` reads back what a checkout left behind.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, TypeVar

from attrs import frozen

import flowkit
from flowkit import Engine, RunResult
from flowkit.sqlalchemy import SqlStore
from payment import (
    CartService,
    NotFound,
    Payment,
    PaymentCollection,
    PaymentSession,
    make_payment_module,
    register,
)
from payment.inputs import CreatePaymentSessionsInput
from payment.workflows import (
    create_payment_collection_for_cart_workflow,
    create_payment_sessions_workflow,
)

from .carts import CheckoutDatabase, Order, SqlCartService
from .workflow import CompleteCartInput, complete_cart_workflow

__all__ = ["CheckoutApp", "CheckoutOutcome"]

T = TypeVar("T")

WORKFLOWS = (
    complete_cart_workflow,
    create_payment_collection_for_cart_workflow,
    create_payment_sessions_workflow,
)


class CheckoutApp:
    """Everything the checkout needs, on one database; close it (or use `with`) when done.

    Args:
        database_url: ``sqlite:///shop.db`` or ``postgresql+psycopg://user@host/db``; flowkit's,
            the payment module's and the checkout's tables are created there when missing.

    Attributes:
        database: The carts, orders and stock.
        module: The payment module (its ``pp_test`` provider is the scriptable gateway).
        registry: Where steps resolve `PaymentModule` and `CartService` (engines that recover
            or signal runs need it too).
        engine: The durable flowkit engine that runs the checkout workflows.
    """

    def __init__(self, database_url: str) -> None:
        with ExitStack() as stack:
            store = SqlStore(database_url)
            stack.callback(store.close)
            store.create_all()
            self.module = stack.enter_context(make_payment_module(database_url))
            self.database = CheckoutDatabase(database_url)
            stack.callback(self.database.close)
            self.database.create_schema()
            self.registry = self._registry()
            self.engine = Engine(store, WORKFLOWS, container=self.registry)
            self._resources = stack.pop_all()

    def _registry(self) -> flowkit.Registry:
        registry = flowkit.Registry()
        register(registry, self.module)
        registry.register_value(CartService, SqlCartService(self.database))
        return registry

    def start_payment(self, cart_id: str, data: dict[str, Any] | None = None) -> PaymentSession:
        """Give the cart a payment collection and a test-gateway session (what a storefront does
        before checkout). `data` picks the gateway's scenario, e.g. ``{"scenario": "decline"}``.

        Raises:
            CartNotEligible: the cart is unknown, completed, or already has a collection.
        """
        made = self.engine.run(create_payment_collection_for_cart_workflow, {"cart_id": cart_id})
        return self.add_payment_session(_value(made, PaymentCollection).id, data)

    def add_payment_session(
        self,
        collection_id: str,
        data: dict[str, Any] | None = None,
        *,
        currency_code: str | None = None,
    ) -> PaymentSession:
        """A new test-gateway session for what the collection still needs (the way a customer
        tries again after a failed checkout); older unauthorized sessions are deleted.

        Raises:
            InvalidCurrency: `currency_code` is not the collection's (nothing is created).
        """
        request = CreatePaymentSessionsInput(
            collection_id, "pp_test", data or {}, currency_code=currency_code
        )
        started = self.engine.run(create_payment_sessions_workflow, request)
        return _value(started, PaymentSession)

    def complete_cart(
        self, cart_id: str, *, transaction_id: str | None = None, throw_on_error: bool = True
    ) -> RunResult[Order]:
        """Run `complete_cart_workflow` for the cart.

        Args:
            cart_id: The cart.
            transaction_id: The run's id; a repeated id returns the first run's result (a
                double-submitted checkout places one order). Default: a fresh one.
            throw_on_error: Raise the failing step's error once the run is reverted.

        Raises:
            Exception: with `throw_on_error`, the error of the step that failed.
        """
        result: RunResult[Order] = self.engine.run(
            complete_cart_workflow,
            CompleteCartInput(cart_id),
            transaction_id=transaction_id,
            throw_on_error=throw_on_error,
        )
        return result

    def outcome(self, cart_id: str) -> CheckoutOutcome:
        """What the cart, its order and its payment look like now."""
        cart = SqlCartService(self.database).retrieve_cart(cart_id)
        return CheckoutOutcome(
            cart.completed_at, self.database.find_order(cart_id), self._payment(cart_id)
        )

    def _payment(self, cart_id: str) -> Payment | None:
        try:
            collection = self.module.retrieve_payment_collection_for_cart(cart_id)
        except NotFound:
            return None
        return collection.payments[-1] if collection.payments else None

    def close(self) -> None:
        """Stop the engine and release every database connection."""
        self.engine.close()
        self._resources.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _value(result: RunResult[Any], kind: type[T]) -> T:
    if not isinstance(result.result, kind):
        raise TypeError(f"{result.transaction_id} returned {type(result.result).__name__}")
    return result.result


@frozen
class CheckoutOutcome:
    """A cart after a checkout: whether it is completed, its order, its latest payment."""

    cart_completed_at: datetime | None
    order: Order | None
    payment: Payment | None

    @property
    def payment_state(self) -> str:
        """``none``, ``canceled``, ``refunded``, ``captured`` or ``authorized``."""
        payment = self.payment
        if payment is None:
            return "none"
        if payment.canceled_at is not None:
            return "canceled"
        if payment.refunded_amount > 0:
            return "refunded" if payment.refunded_amount == payment.captured_amount else "captured"
        return "captured" if payment.captured_amount > 0 else "authorized"

    @property
    def refund_note(self) -> str | None:
        """The note of the payment's last refund, if any."""
        refunds = self.payment.refunds if self.payment is not None else ()
        return refunds[-1].note if refunds else None

    @property
    def refunded(self) -> Decimal:
        """What was refunded of the payment."""
        return self.payment.refunded_amount if self.payment is not None else Decimal(0)
