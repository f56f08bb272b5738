"""The checkout app's own module: carts, orders and stock on SQLAlchemy 2.

`CheckoutDatabase` creates carts and stock levels and reads orders; `SqlCartService` is the
read-only `payment.cart.CartService` the payment workflows see. The functions that take a
`Session` are what the checkout steps write through `ctx.session`: their writes commit with the
step's checkpoint, or not at all.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import attrs
import sqlalchemy as sa
from attrs import frozen
from sqlalchemy import CursorResult, Engine
from sqlalchemy.orm import Session

from payment import Cart, CartNotEligible, to_amount

from .tables import carts, inventory, line_items, metadata, orders

__all__ = [
    "CheckoutDatabase",
    "LineItem",
    "NewOrder",
    "Order",
    "OutOfStock",
    "Reservation",
    "SqlCartService",
    "claim_cart",
    "place_order",
    "release_cart",
    "remove_order",
    "reserve_stock",
    "restock",
]


@frozen
class LineItem:
    """One line of a cart: `quantity` units of `sku` at `unit_price` (major units)."""

    sku: str
    quantity: int
    unit_price: Decimal


@frozen
class NewOrder:
    """What `place_order` needs: the cart, its authorized payment and what was charged."""

    cart_id: str
    payment_id: str
    total: Decimal
    currency_code: str


@frozen
class Order:
    """An order: a completed cart and the payment that pays it."""

    id: str
    cart_id: str
    payment_id: str
    total: Decimal
    currency_code: str
    created_at: datetime


@frozen
class Reservation:
    """Stock taken for an order: `quantity` units of `sku`."""

    sku: str
    quantity: int


class OutOfStock(Exception):
    """There are fewer units of a SKU in stock than the cart asks for.

    Args:
        sku: The SKU.
        requested: Units the cart asks for.
        available: Units in stock.
    """

    def __init__(self, sku: str, requested: int, available: int) -> None:
        super().__init__(f"{sku} is out of stock: {requested} requested, {available} available")
        self.sku = sku
        self.requested = requested
        self.available = available


def _now() -> datetime:
    return datetime.now(UTC)


def _make_engine(database_url: str) -> Engine:
    if sa.make_url(database_url).get_backend_name() == "sqlite":
        return sa.create_engine(database_url, connect_args={"timeout": 30})
    return sa.create_engine(database_url, pool_pre_ping=True)


class CheckoutDatabase:
    """Carts, orders and stock on one database (the one flowkit and payment use).

    Args:
        database_url: A SQLAlchemy URL, e.g. ``sqlite:///shop.db`` or
            ``postgresql+psycopg://user@host/db``.
    """

    def __init__(self, database_url: str) -> None:
        self.engine = _make_engine(database_url)

    def create_schema(self) -> None:
        """Create the checkout tables that are missing."""
        metadata.create_all(self.engine)

    def create_cart(
        self, currency_code: str, items: Sequence[LineItem], *, email: str | None = None
    ) -> Cart:
        """Create an open cart with these lines and return it.

        Raises:
            ValueError: no lines, or a quantity below 1.
            InvalidAmount, InvalidCurrency: a malformed price or currency.
        """
        if not items or any(item.quantity < 1 for item in items):
            raise ValueError("a cart needs lines with a quantity of at least 1")
        prices = [to_amount(item.unit_price, currency_code) for item in items]
        cart_id = f"cart_{uuid.uuid4().hex}"
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(carts).values(
                    id=cart_id, currency_code=currency_code.lower(), email=email, created_at=_now()
                )
            )
            rows = [
                {"cart_id": cart_id, "sku": i.sku, "quantity": i.quantity, "unit_price": price}
                for i, price in zip(items, prices, strict=True)
            ]
            conn.execute(sa.insert(line_items), rows)
        return SqlCartService(self).retrieve_cart(cart_id)

    def set_stock(self, sku: str, quantity: int) -> None:
        """Set how many units of `sku` are in stock."""
        with self.engine.begin() as conn:
            found = conn.execute(
                sa.update(inventory).where(inventory.c.sku == sku).values(stocked_quantity=quantity)
            )
            if found.rowcount == 0:
                conn.execute(sa.insert(inventory).values(sku=sku, stocked_quantity=quantity))

    def stock_level(self, sku: str) -> int:
        """Units of `sku` in stock (0 for an unknown SKU)."""
        with self.engine.connect() as conn:
            query = sa.select(inventory.c.stocked_quantity).where(inventory.c.sku == sku)
            return conn.execute(query).scalar_one_or_none() or 0

    def find_order(self, cart_id: str) -> Order | None:
        """The cart's order, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(orders).where(orders.c.cart_id == cart_id)).one_or_none()
        return None if row is None else Order(**row._asdict())

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()


class SqlCartService:
    """`payment.cart.CartService` over the checkout tables (reads only).

    Args:
        database: Where the carts are.
    """

    def __init__(self, database: CheckoutDatabase) -> None:
        self._engine = database.engine

    def retrieve_cart(self, cart_id: str) -> Cart:
        """The cart, its total summed from its lines.

        Raises:
            CartNotEligible: there is no such cart.
        """
        query = (
            sa.select(carts, line_items.c.quantity, line_items.c.unit_price)
            .join(line_items, line_items.c.cart_id == carts.c.id)
            .where(carts.c.id == cart_id)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        if not rows:
            raise CartNotEligible(cart_id, f"Cart {cart_id} does not exist")
        total = sum((row.quantity * row.unit_price for row in rows), Decimal(0))
        first = rows[0]
        return Cart(first.id, total, first.currency_code, first.completed_at)


# --- writes of the checkout steps (through the step's unit of work) ----------------------


def _changed(session: Session, statement: Any) -> int:
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def claim_cart(session: Session, cart_id: str, run: str) -> None:
    """Hold an open cart for the checkout run `run`: no other checkout may complete it.

    Raises:
        CartNotEligible: the cart is completed, or held by another run.
    """
    claim = (
        sa.update(carts)
        .where(
            carts.c.id == cart_id, carts.c.completed_at.is_(None), carts.c.checkout_run.is_(None)
        )
        .values(checkout_run=run)
    )
    if _changed(session, claim) != 1:
        raise CartNotEligible(cart_id, f"Cart {cart_id} is completed or being completed")


def release_cart(session: Session, cart_id: str, run: str) -> None:
    """Let other checkouts have the cart again (what `claim_cart` took; safe to repeat)."""
    session.execute(
        sa.update(carts)
        .where(carts.c.id == cart_id, carts.c.checkout_run == run)
        .values(checkout_run=None)
    )


def place_order(session: Session, new: NewOrder, run: str) -> Order:
    """Create the order and mark the cart completed.

    Raises:
        CartNotEligible: `run` does not hold the cart, or it is completed already.
    """
    order = Order(
        f"order_{uuid.uuid4().hex}", new.cart_id, new.payment_id, new.total, new.currency_code,
        _now(),
    )  # fmt: skip
    complete = (
        sa.update(carts)
        .where(carts.c.id == new.cart_id, carts.c.checkout_run == run)
        .where(carts.c.completed_at.is_(None))
        .values(completed_at=order.created_at)
    )
    if _changed(session, complete) != 1:
        raise CartNotEligible(new.cart_id, f"Cart {new.cart_id} is completed or being completed")
    session.execute(sa.insert(orders).values(**attrs.asdict(order, recurse=False)))
    return order


def remove_order(session: Session, order: Order, run: str) -> None:
    """Delete the order and reopen its cart (what `place_order` did; safe to repeat)."""
    session.execute(sa.delete(orders).where(orders.c.id == order.id))
    session.execute(
        sa.update(carts)
        .where(carts.c.id == order.cart_id, carts.c.checkout_run == run)
        .values(completed_at=None)
    )


def reserve_stock(session: Session, cart_id: str) -> list[Reservation]:
    """Take the cart's units out of stock, SKU by SKU, in SKU order.

    Raises:
        OutOfStock: a SKU has fewer units than the cart asks for (the caller rolls back).
    """
    wanted: Counter[str] = Counter()
    query = sa.select(line_items.c.sku, line_items.c.quantity).where(
        line_items.c.cart_id == cart_id
    )
    for sku, quantity in session.execute(query):
        wanted[sku] += quantity
    for sku in sorted(wanted):
        _take(session, sku, wanted[sku])
    return [Reservation(sku, wanted[sku]) for sku in sorted(wanted)]


def _take(session: Session, sku: str, quantity: int) -> None:
    level = inventory.c.stocked_quantity
    take = (
        sa.update(inventory)
        .where(inventory.c.sku == sku, level >= quantity)
        .values(stocked_quantity=level - quantity)
    )
    if _changed(session, take) != 1:
        found = session.execute(sa.select(level).where(inventory.c.sku == sku)).scalar()
        raise OutOfStock(sku, quantity, found or 0)


def restock(session: Session, reservations: Sequence[Reservation]) -> None:
    """Put reserved units back in stock (what `reserve_stock` took)."""
    level = inventory.c.stocked_quantity
    for item in reservations:
        session.execute(
            sa.update(inventory)
            .where(inventory.c.sku == item.sku)
            .values(stocked_quantity=level + item.quantity)
        )
