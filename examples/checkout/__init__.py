"""The complete-cart example: a small SQL cart and order module on the payment module.

`complete_cart_workflow` claims a cart, authorizes its payment session, creates the order and
reserves its stock; a failure after the authorization cancels the payment, or refunds it in
full when the gateway captured it at once. `CheckoutApp` is the composition root. Run it with
``python -m examples.checkout`` from the repository root.
"""

from .app import CheckoutApp, CheckoutOutcome
from .carts import (
    CheckoutDatabase,
    LineItem,
    NewOrder,
    Order,
    OutOfStock,
    Reservation,
    SqlCartService,
)
from .workflow import ClaimedCart, CompleteCartInput, complete_cart_workflow

__all__ = [
    "CheckoutApp",
    "CheckoutDatabase",
    "CheckoutOutcome",
    "ClaimedCart",
    "CompleteCartInput",
    "LineItem",
    "NewOrder",
    "Order",
    "OutOfStock",
    "Reservation",
    "SqlCartService",
    "complete_cart_workflow",
]
