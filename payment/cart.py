"""The cart side of checkout, as the payment workflows see it: read-only.

The application owns its carts. It gives the workflows a `CartService` (registered in the
container they run with) that answers `retrieve_cart`; `payment.testing.InMemoryCartService` is
one for tests, the checkout example ships an SQL one.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from attrs import field, frozen

from payment.money import normalize_currency, to_amount

__all__ = ["Cart", "CartService"]


@frozen
class Cart:
    """What payment needs of a cart.

    Attributes:
        id: The cart's id.
        total: What the customer owes, in major units (quantized to the currency).
        currency_code: ISO 4217, lower-case.
        completed_at: When the cart became an order (None while it is open).
    """

    id: str
    total: Decimal
    currency_code: str = field(converter=normalize_currency)
    completed_at: datetime | None = None

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "total", to_amount(self.total, self.currency_code))


@runtime_checkable
class CartService(Protocol):
    """Reads carts for the payment workflows."""

    def retrieve_cart(self, cart_id: str) -> Cart:
        """The cart with this id.

        Raises:
            CartNotEligible: there is no such cart, or it cannot be paid.
        """
        ...
