"""Helpers for testing code that uses the payment module (the module's own tests use them).

`payment_module` builds a module on a database with a fresh `TestProvider` and closes it;
`authorized_payment` walks a new collection to an authorized payment in one call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from attrs import evolve

from payment.bootstrap import make_payment_module
from payment.cart import Cart
from payment.domain import Payment
from payment.exceptions import CartNotEligible
from payment.money import AmountInput, to_amount
from payment.providers import PaymentProvider, TestProvider
from payment.service import PaymentModule

__all__ = ["InMemoryCartService", "authorized_payment", "get_test_provider", "payment_module"]


@contextmanager
def payment_module(
    database_url: str,
    *,
    providers: Iterable[PaymentProvider] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Iterator[PaymentModule]:
    """A module on `database_url` (schema created), closed when the block ends.

    Args:
        database_url: A test database.
        providers: Default: a `SystemProvider` and a fresh `TestProvider`.
        clock: The module's clock (e.g. a `flowkit.testing.ManualClock`'s ``now``).
    """
    module = make_payment_module(database_url, providers=providers, clock=clock)
    try:
        yield module
    finally:
        module.close()


def get_test_provider(module: PaymentModule) -> TestProvider:
    """The module's ``pp_test`` provider.

    Raises:
        TypeError: ``pp_test`` is not a `TestProvider`.
    """
    provider = module.provider("pp_test")
    if not isinstance(provider, TestProvider):
        raise TypeError(f"pp_test is a {type(provider).__name__}")
    return provider


def authorized_payment(
    module: PaymentModule,
    amount: AmountInput = "500",
    currency_code: str = "usd",
    *,
    provider_id: str = "pp_test",
    **data: Any,
) -> Payment:
    """Create a collection and a session for `amount`, authorize it, return the payment.

    Args:
        module: The module.
        amount: The collection's and the session's amount.
        currency_code: Their currency.
        provider_id: The provider of the session.
        **data: The session's provider data (e.g. ``scenario="auto_capture"``).

    Raises:
        PaymentNotAuthorized: the scenario declined or asks for more.
        AssertionError: the provider answered ``pending_authorization``.
    """
    collection = module.create_payment_collection(currency_code, amount)
    session = module.create_payment_session(
        collection.id, provider_id, currency_code, amount, data=data
    )
    payment = module.authorize_payment_session(session.id)
    if payment is None:
        raise AssertionError(f"session {session.id} is pending authorization")
    return payment


class InMemoryCartService:
    """A `CartService` over a dict, for tests: add carts, complete them, nothing else.

    Thread-safe (parallel steps may read it).
    """

    def __init__(self) -> None:
        self._carts: dict[str, Cart] = {}
        self._lock = threading.Lock()

    def add_cart(self, cart_id: str, total: AmountInput, currency_code: str) -> Cart:
        """Add (or replace) an open cart and return it."""
        cart = Cart(cart_id, to_amount(total, currency_code), currency_code)
        with self._lock:
            self._carts[cart_id] = cart
        return cart

    def complete_cart(self, cart_id: str) -> Cart:
        """Mark a cart completed (it can no longer be paid).

        Raises:
            CartNotEligible: unknown cart.
        """
        with self._lock:
            cart = self.retrieve_cart(cart_id)
            done = evolve(cart, completed_at=datetime.now(UTC))
            self._carts[cart_id] = done
            return done

    def retrieve_cart(self, cart_id: str) -> Cart:
        """The cart.

        Raises:
            CartNotEligible: unknown cart.
        """
        found = self._carts.get(cart_id)
        if found is None:
            raise CartNotEligible(cart_id, f"Cart {cart_id} does not exist")
        return found
