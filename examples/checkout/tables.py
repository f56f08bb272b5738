"""The checkout app's tables: carts, their line items, orders and stock levels.

They live in the same database as flowkit's runs and the payment module's records, so a step's
writes through `ctx.session` commit in the transaction that checkpoints the step. Amounts are
exact (NUMERIC on PostgreSQL, the decimal's text on SQLite, whose NUMERIC is a binary float);
times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["Money", "UtcDateTime", "carts", "inventory", "line_items", "metadata", "orders"]


class Money(TypeDecorator[Decimal]):
    """An exact decimal amount: NUMERIC on PostgreSQL, text on SQLite."""

    impl = sa.Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """Text on SQLite, unconstrained NUMERIC elsewhere."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(40))
        return dialect.type_descriptor(sa.Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        """The decimal, as text on SQLite."""
        return str(value) if value is not None and dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        """Always a `Decimal`."""
        return None if value is None else Decimal(value)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC time (SQLite stores it naive; it comes back aware)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        """The time in UTC (naive on SQLite)."""
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """An aware time in UTC."""
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


metadata = sa.MetaData()

carts = sa.Table(
    "checkout_carts",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("currency_code", sa.String(3), nullable=False),
    sa.Column("email", sa.String(254)),
    sa.Column("created_at", UtcDateTime, nullable=False),
    sa.Column("completed_at", UtcDateTime),
    # The transaction id of the checkout run that holds the cart (a durable lock: it commits
    # with that run's checkpoint, and the run's compensation releases it).
    sa.Column("checkout_run", sa.String(200)),
)

line_items = sa.Table(
    "checkout_line_items",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("cart_id", sa.ForeignKey("checkout_carts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("sku", sa.String(64), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("unit_price", Money, nullable=False),
    sa.CheckConstraint("quantity > 0", name="ck_checkout_line_items_quantity"),
)

orders = sa.Table(
    "checkout_orders",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("cart_id", sa.ForeignKey("checkout_carts.id"), nullable=False, unique=True),
    sa.Column("payment_id", sa.String(64), nullable=False),
    sa.Column("total", Money, nullable=False),
    sa.Column("currency_code", sa.String(3), nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False),
)

inventory = sa.Table(
    "checkout_inventory",
    metadata,
    sa.Column("sku", sa.String(64), primary_key=True),
    sa.Column("stocked_quantity", sa.Integer, nullable=False),
    sa.CheckConstraint("stocked_quantity >= 0", name="ck_checkout_inventory_stock"),
)
