"""`complete_cart_workflow`: turn a paid-for cart into an order, or leave everything as it was.

    claim-cart                  validate the cart and hold it for this run        (ctx.session)
    authorize-payment-session   payment.steps: authorize the cart's session
    create-order                insert the order, mark the cart completed         (ctx.session)
    reserve-inventory           take the cart's units out of stock                (ctx.session)

A step that fails reverts the run in reverse order: stock put back, the order deleted and the
cart reopened (those writes commit with the compensations' checkpoints), the payment canceled,
or refunded in full with the note "Refunded due to cart completion failure" when the provider
captured it at authorization, and the cart released. Every step has an explicit name, so the
workflow runs durably on a `flowkit.Engine` with a `SqlStore`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from attrs import frozen
from sqlalchemy.orm import Session

from flowkit import Ref, StepContext, WorkflowResponse, step, transform, workflow
from payment import (
    Cart,
    CartNotEligible,
    CartService,
    InvalidAmount,
    InvalidCurrency,
    NotFound,
    Payment,
    PaymentCollection,
    PaymentModule,
    PaymentNotAuthorized,
    PaymentSession,
    SessionStatus,
)
from payment.inputs import AuthorizePaymentSessionInput, as_input
from payment.steps import authorize_payment_session_step

from .carts import (
    NewOrder,
    Order,
    Reservation,
    claim_cart,
    place_order,
    release_cart,
    remove_order,
    reserve_stock,
    restock,
)

__all__ = [
    "ClaimedCart",
    "CompleteCartInput",
    "claim_cart_step",
    "complete_cart_workflow",
    "create_order_step",
    "reserve_inventory_step",
]


@frozen
class CompleteCartInput:
    """Input of `complete_cart_workflow` (a mapping ``{"cart_id": ...}`` works too)."""

    cart_id: str


@frozen
class ClaimedCart:
    """A cart that passed validation, held by the run, and the session that pays for it."""

    cart_id: str
    total: Decimal
    currency_code: str
    payment_collection_id: str
    payment_session_id: str


_AWAITING_AUTHORIZATION = frozenset(
    {SessionStatus.PENDING, SessionStatus.REQUIRES_MORE, SessionStatus.PENDING_AUTHORIZATION}
)


def _session(ctx: StepContext) -> Session:
    session: Session = ctx.session
    return session


# --- claim-cart -------------------------------------------------------------------------


@step("claim-cart")
def claim_cart_step(inp: CompleteCartInput, ctx: StepContext) -> ClaimedCart:
    """Validate the cart and hold it for this run (no other checkout may complete it).

    Raises:
        CartNotEligible: unknown, completed or held cart; no collection; no session to
            authorize for the cart's total.
        InvalidCurrency: the collection is in another currency than the cart.
        InvalidAmount: the collection is for another amount than the cart's total.
    """
    cart = ctx.resolve(CartService).retrieve_cart(inp.cart_id)  # type: ignore[type-abstract]
    claimed = payable(cart, ctx.resolve(PaymentModule))
    claim_cart(_session(ctx), cart.id, ctx.transaction_id)
    return claimed


@claim_cart_step.compensate
def _release_cart(claimed: ClaimedCart | None, ctx: StepContext) -> None:
    if claimed is not None:  # a failed claim rolled back with its step
        release_cart(_session(ctx), claimed.cart_id, ctx.transaction_id)


def payable(cart: Cart, module: PaymentModule) -> ClaimedCart:
    """What pays for `cart`: its collection and the session to authorize (reads only).

    Raises:
        CartNotEligible, InvalidCurrency, InvalidAmount: as `claim_cart_step`.
    """
    if cart.completed_at is not None:
        raise CartNotEligible(cart.id, f"Cart {cart.id} is already completed")
    try:
        collection = module.retrieve_payment_collection_for_cart(cart.id)
    except NotFound:
        raise CartNotEligible(cart.id, f"Cart {cart.id} has no payment collection") from None
    _check_matches(cart, collection)
    session = _session_to_authorize(cart, collection)
    return ClaimedCart(cart.id, cart.total, cart.currency_code, collection.id, session.id)


def _check_matches(cart: Cart, collection: PaymentCollection) -> None:
    if collection.currency_code != cart.currency_code:
        raise InvalidCurrency(
            collection.currency_code,
            f"Cart {cart.id} is in {cart.currency_code.upper()} but its payment collection "
            f"{collection.id} is in {collection.currency_code.upper()}",
            expected=cart.currency_code,
        )
    if collection.amount != cart.total:
        raise InvalidAmount(
            f"Cart {cart.id} totals {cart.total} but its payment collection is for "
            f"{collection.amount}",
            amount=collection.amount,
            entity_id=collection.id,
        )


def _session_to_authorize(cart: Cart, collection: PaymentCollection) -> PaymentSession:
    """The newest session for the cart's total that is awaiting authorization, or authorized
    with a payment that is neither canceled nor refunded."""
    usable = [s for s in collection.sessions if s.amount == cart.total and _usable(s, collection)]
    if not usable:
        raise CartNotEligible(cart.id, f"Cart {cart.id} has no payment session to authorize")
    return usable[-1]


def _usable(session: PaymentSession, collection: PaymentCollection) -> bool:
    if session.status in _AWAITING_AUTHORIZATION:
        return True
    paid = [p for p in collection.payments if p.payment_session_id == session.id]
    return session.status is SessionStatus.AUTHORIZED and any(
        p.canceled_at is None and p.refunded_amount == 0 for p in paid
    )


# --- create-order -----------------------------------------------------------------------


@step("create-order")
def create_order_step(new: NewOrder, ctx: StepContext) -> Order:
    """Create the order and mark the cart completed, in the step's checkpoint transaction.

    Raises:
        CartNotEligible: the run no longer holds the cart.
    """
    return place_order(_session(ctx), new, ctx.transaction_id)


@create_order_step.compensate
def _delete_order(order: Order | None, ctx: StepContext) -> None:
    if order is not None:  # a failed create rolled back with its step
        remove_order(_session(ctx), order, ctx.transaction_id)


def _new_order(value: tuple[ClaimedCart, Payment | None]) -> NewOrder:
    claimed, payment = value
    if payment is None:  # pending_authorization: the payment arrives later, by webhook
        raise PaymentNotAuthorized(
            claimed.payment_session_id,
            SessionStatus.PENDING_AUTHORIZATION.value,
            f"Payment session {claimed.payment_session_id} awaits the provider's webhook; "
            "complete the cart once the payment is authorized",
        )
    return NewOrder(claimed.cart_id, payment.id, claimed.total, claimed.currency_code)


# --- reserve-inventory ------------------------------------------------------------------


@step("reserve-inventory")
def reserve_inventory_step(order: Order, ctx: StepContext) -> list[Reservation]:
    """Take the order's units out of stock.

    Raises:
        OutOfStock: a SKU has too few units (none of this step's writes remain).
    """
    return reserve_stock(_session(ctx), order.cart_id)


@reserve_inventory_step.compensate
def _restock(reserved: list[Reservation] | None, ctx: StepContext) -> None:
    if reserved:  # None: the failed reservation rolled back with its step
        restock(_session(ctx), reserved)


# --- the workflow -----------------------------------------------------------------------


def _authorize_input(claimed: ClaimedCart) -> AuthorizePaymentSessionInput:
    return AuthorizePaymentSessionInput(claimed.payment_session_id)


@workflow("complete-cart")
def complete_cart_workflow(inp: Ref[CompleteCartInput]) -> WorkflowResponse[Any]:
    """Claim the cart, authorize its payment session, create the order, reserve its stock.

    Input: `CompleteCartInput` (or ``{"cart_id": ...}``). Returns the `Order`. On a failure
    everything is reverted (see the module doc) and the step's error is raised.
    """
    claimed = claim_cart_step(transform(inp, lambda v: as_input(v, CompleteCartInput)))
    payment = authorize_payment_session_step(transform(claimed, _authorize_input))
    order = create_order_step(transform((claimed, payment), _new_order))
    reserve_inventory_step(order)
    return WorkflowResponse(order)
