"""A checkout workflow of your own, composed from the public payment steps plus two of yours.

    validate-cart → reserve-stock (yours) → create-payment-collection → create-payment-session
                  → authorize-payment-session → create-order (yours)

The payment steps take plain dicts built in the composition function, their values refs to
earlier steps' outputs (`{"id": session.id, "context": {}}`, as in Medusa's
`authorizePaymentSessionStep({ id, context })`); your own steps use the same conversion through
`payment.inputs.accepts_input`. Every step prints live from the engine's events. With
`--fail-order` the order service is down: the run is reverted, and the example shows what was
compensated, in reverse order (the authorization voided, the session and the collection
deleted, the stock released).

    python examples/custom_checkout.py [--fail-order] [--database sqlite:///flowkit-demo.db]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import threading
from decimal import Decimal
from typing import Any

from attrs import define, field, frozen
from rich.console import Console

import flowkit
from flowkit import Engine, Event, Ref, StepContext, StepResponse, WorkflowResponse, step, workflow
from flowkit.sqlalchemy import SqlStore
from payment import NotFound, PaymentModule, make_payment_module, register
from payment.cart import CartService
from payment.inputs import accepts_input
from payment.steps import (
    authorize_payment_session_step,
    create_payment_collection_step,
    create_payment_session_step,
    validate_cart_step,
)
from payment.testing import InMemoryCartService, get_test_provider

DEFAULT_DATABASE = "sqlite:///flowkit-demo.db"
UNDONE = {
    "authorize-payment-session": "the authorization voided at the gateway",
    "create-payment-session": "the session deleted",
    "create-payment-collection": "the collection and its link to the cart deleted",
    "reserve-stock": "the stock released",
}


# --- your own services and steps -------------------------------------------------------------


class Inventory:
    """Stock on hand by SKU, with reservations (the application's own service)."""

    def __init__(self, stock: dict[str, int]) -> None:
        self.stock = dict(stock)
        self.reservations: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def reserve(self, items: dict[str, int], key: str) -> str:
        """Hold `items`; the same `key` holds them once. Returns the reservation id."""
        with self._lock:
            if key not in self.reservations:
                short = [sku for sku, qty in items.items() if self.stock.get(sku, 0) < qty]
                if short:
                    raise ValueError(f"out of stock: {', '.join(short)}")
                for sku, qty in items.items():
                    self.stock[sku] -= qty
                self.reservations[key] = dict(items)
            return key

    def release(self, reservation_id: str) -> None:
        """Put a reservation's items back (nothing when it is gone already)."""
        with self._lock:
            for sku, qty in self.reservations.pop(reservation_id, {}).items():
                self.stock[sku] += qty


@define
class OrderBook:
    """The application's orders; `down` makes it refuse every new order."""

    down: bool = False
    orders: dict[str, dict[str, str]] = field(factory=dict)

    def create(self, cart_id: str, payment_id: str) -> str:
        """Record an order for a paid cart; returns its id."""
        if self.down:
            raise ConnectionError("the order service is unavailable")
        order_id = f"order_{cart_id}"
        self.orders[order_id] = {"cart_id": cart_id, "payment_id": payment_id}
        return order_id


@frozen
class ReserveStockInput:
    """What to hold for a cart: quantities by SKU."""

    cart_id: str
    items: dict[str, int]


@frozen
class CreateOrderInput:
    """The paid cart and its payment."""

    cart_id: str
    payment_id: str


@step("reserve-stock")
@accepts_input(ReserveStockInput)
def reserve_stock_step(inp: ReserveStockInput, ctx: StepContext) -> StepResponse[str, str]:
    """Hold the cart's items before any money moves; compensation puts them back."""
    reservation = ctx.resolve(Inventory).reserve(inp.items, ctx.idempotency_key)
    return StepResponse(reservation, compensate_input=reservation)


@reserve_stock_step.compensate
def _release_stock(reservation_id: str | None, ctx: StepContext) -> None:
    if reservation_id is not None:
        ctx.resolve(Inventory).release(reservation_id)


@step("create-order")
@accepts_input(CreateOrderInput)
def create_order_step(inp: CreateOrderInput, ctx: StepContext) -> str:
    """Create the order once the payment is authorized (the last step: nothing to undo)."""
    return ctx.resolve(OrderBook).create(inp.cart_id, inp.payment_id)


# --- the workflow ------------------------------------------------------------------------------


@workflow("custom-checkout")
def custom_checkout_workflow(inp: Ref[dict[str, Any]]) -> WorkflowResponse[Any]:
    """Your checkout: validate, hold stock, pay, then create the order.

    Input: `{"cart_id", "items": {sku: qty}, "provider_id", "data"}`. Returns the order id and
    the payment. If a step fails, every earlier one is undone in reverse order: the authorize
    step's compensation voids the authorization (or refunds it, had it been captured).
    """
    cart = validate_cart_step({"cart_id": inp["cart_id"]})
    reserve_stock_step({"cart_id": inp["cart_id"], "items": inp["items"]})
    collection = create_payment_collection_step(cart)
    session = create_payment_session_step(
        {
            "payment_collection_id": collection.id,
            "provider_id": inp["provider_id"],
            "data": inp["data"],
            "context": {},
        }
    )
    payment = authorize_payment_session_step({"id": session.id, "context": {}})
    order = create_order_step({"cart_id": cart.id, "payment_id": payment.id})
    return WorkflowResponse({"order_id": order, "payment": payment})


# --- running it --------------------------------------------------------------------------------


class LivePrinter:
    """Prints each step as the engine reports it, and remembers what was compensated."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.compensated: list[str] = []

    def __call__(self, event: Event) -> None:
        """Print one step event."""
        label = {
            "step_succeeded": "[green]done[/]",
            "step_failed": f"[red]failed[/] ({event.data.get('error', '')})",
            "step_compensated": "[magenta]compensated[/]",
        }.get(event.name)
        if label is None or event.step is None:
            return
        if event.name == "step_compensated":
            self.compensated.append(event.step)
        duration = event.data.get("duration")
        took = "" if duration is None else f"{duration * 1000:6.1f} ms"
        self.console.print(f"  {event.step:<30} {took:>9}  {label}")


@frozen
class Outcome:
    """What a checkout ended with.

    Attributes:
        status: The run's final state (`done` or `reverted`).
        order_id: The order, when the run is done.
        compensated: The steps undone, in the order they were undone.
        stock: Stock on hand afterwards.
        has_collection: Whether the cart still has a payment collection.
        held: What the gateway holds for the cart (authorized, not captured).
        charged: What the gateway took from the customer (captured, not refunded).
    """

    status: str
    order_id: str | None
    compensated: tuple[str, ...]
    stock: dict[str, int]
    has_collection: bool
    held: Decimal
    charged: Decimal


def checkout(database_url: str, console: Console, *, fail_order: bool = False) -> Outcome:
    """Run one checkout of a fresh cart and report how it ended."""
    module = make_payment_module(database_url)
    store = SqlStore(database_url)
    store.create_all()
    inventory = Inventory({"tee-black-m": 5})
    carts = InMemoryCartService()
    registry = _registry(module, carts, inventory, OrderBook(down=fail_order))
    cart_id = f"cart_{secrets.token_hex(4)}"
    carts.add_cart(cart_id, "58.00", "usd")
    printer = LivePrinter(console)
    engine = Engine(store, [custom_checkout_workflow], container=registry)
    engine.subscribe(printer)
    request = {
        "cart_id": cart_id,
        "items": {"tee-black-m": 2},
        "provider_id": "pp_test",
        "data": {"scenario": "approve"},
    }
    try:
        console.print(f"[bold]custom-checkout[/] of {cart_id} (58.00 USD, 2 x tee-black-m)")
        result = engine.run(custom_checkout_workflow, request, throw_on_error=False)
        order = result.result["order_id"] if result.result else None
        held, charged = get_test_provider(module).money()
        return Outcome(
            result.status.value,
            order,
            tuple(printer.compensated),
            dict(inventory.stock),
            _has_collection(module, cart_id),
            held,
            charged,
        )
    finally:
        engine.close()
        registry.close()
        module.close()


def _registry(
    module: PaymentModule, carts: CartService, inventory: Inventory, orders: OrderBook
) -> flowkit.Registry:
    registry = flowkit.Registry()
    register(registry, module)
    registry.register_value(CartService, carts)
    registry.register_value(Inventory, inventory)
    registry.register_value(OrderBook, orders)
    return registry


def _has_collection(module: PaymentModule, cart_id: str) -> bool:
    try:
        module.retrieve_payment_collection_for_cart(cart_id)
    except NotFound:
        return False
    return True


def report(outcome: Outcome, console: Console) -> None:
    """Print how the checkout ended and what was undone."""
    console.print(f"\nrun [bold]{outcome.status}[/]")
    if outcome.order_id is not None:
        console.print(f"order {outcome.order_id} created")
    if outcome.compensated:
        console.print("compensated, in this order:")
        for name in outcome.compensated:
            console.print(f"  {name:<30} {UNDONE.get(name, '')}")
    collection = "yes" if outcome.has_collection else "no (deleted)"
    console.print(f"cart has a payment collection: {collection}")
    console.print(f"gateway: held {outcome.held}, charged {outcome.charged}")
    console.print(f"stock on hand: {outcome.stock}")


def main(argv: list[str] | None = None) -> int:
    """Run the checkout (`--fail-order`: the order service is down) and print the outcome."""
    parser = argparse.ArgumentParser(description="A custom checkout from the payment steps.")
    parser.add_argument("--fail-order", action="store_true", help="the order service fails")
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="a SQLAlchemy URL")
    args = parser.parse_args(argv)
    console = Console(highlight=False, width=120)
    report(checkout(args.database, console, fail_order=args.fail_order), console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
