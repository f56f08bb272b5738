"""What the storefront reads of the checkout example's carts: existence, holder and order."""

from __future__ import annotations

import sqlalchemy as sa
from attrs import frozen

from examples.checkout import CheckoutDatabase, Order
from examples.checkout.tables import carts
from payment import NotFound

__all__ = ["CartState", "CheckoutCarts"]


@frozen
class CartState:
    """A cart as checkout sees it.

    Attributes:
        cart_id: The cart.
        checkout_run: The transaction id of the checkout run holding the cart (None when no
            run does): that is the run a customer's action or a webhook continues.
        order: The cart's order once it is completed.
    """

    cart_id: str
    checkout_run: str | None
    order: Order | None


class CheckoutCarts:
    """Reads the checkout tables for the routes and the webhook steps (never writes).

    Args:
        database: The checkout example's database.
    """

    def __init__(self, database: CheckoutDatabase) -> None:
        self._database = database

    def state(self, cart_id: str) -> CartState:
        """The cart's checkout state.

        Raises:
            NotFound: there is no such cart.
        """
        query = sa.select(carts.c.checkout_run).where(carts.c.id == cart_id)
        with self._database.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            raise NotFound("Cart", cart_id)
        return CartState(cart_id, row.checkout_run, self._database.find_order(cart_id))

    def require(self, cart_id: str) -> None:
        """Check that the cart exists.

        Raises:
            NotFound: there is no such cart.
        """
        self.state(cart_id)
