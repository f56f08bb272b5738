"""The payment schema as SQLAlchemy Core tables (every name prefixed ``payment_``).

Column names are the domain records' attribute names, so rows map to records by name. Amounts
use `Money` (exact), times `UtcDateTime`, provider data and metadata JSON.
"""

from __future__ import annotations

import sqlalchemy as sa

from payment.adapters.types import Money, UtcDateTime

__all__ = [
    "account_holders",
    "captures",
    "collections",
    "metadata",
    "payments",
    "providers",
    "refund_reasons",
    "refunds",
    "sessions",
]

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)
"""Only the payment tables: flowkit's own tables live in another `MetaData`."""


def _id() -> sa.Column[str]:
    return sa.Column("id", sa.String(64), primary_key=True)


def _parent(name: str, target: str, *, nullable: bool = False) -> sa.Column[str]:
    return sa.Column(
        name, sa.String(64), sa.ForeignKey(target, ondelete="CASCADE"), nullable=nullable
    )


collections = sa.Table(
    "payment_collection",
    metadata,
    _id(),
    sa.Column("currency_code", sa.String(3), nullable=False),
    sa.Column("amount", Money(), nullable=False),
    sa.Column("authorized_amount", Money(), nullable=False),
    sa.Column("captured_amount", Money(), nullable=False),
    sa.Column("refunded_amount", Money(), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("completed_at", UtcDateTime(), nullable=True),
    sa.Column("canceled_at", UtcDateTime(), nullable=True),
    sa.Column("metadata", sa.JSON(), nullable=False),
    sa.Column("cart_id", sa.String(255), nullable=True),
    sa.Column("idempotency_key", sa.String(255), nullable=True, unique=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    # A cart has at most one collection that is not canceled, whatever races or crashes.
    sa.Index(
        "uq_payment_collection_live_cart",
        "cart_id",
        unique=True,
        sqlite_where=sa.text("canceled_at IS NULL"),
        postgresql_where=sa.text("canceled_at IS NULL"),
    ),
)

sessions = sa.Table(
    "payment_session",
    metadata,
    _id(),
    _parent("payment_collection_id", "payment_collection.id"),
    sa.Column("provider_id", sa.String(64), nullable=False),
    sa.Column("currency_code", sa.String(3), nullable=False),
    sa.Column("amount", Money(), nullable=False),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.Column("context", sa.JSON(), nullable=False),
    sa.Column("authorized_at", UtcDateTime(), nullable=True),
    sa.Column("authorize_attempts", sa.Integer(), nullable=False),
    sa.Column("initiated_at", UtcDateTime(), nullable=True),
    sa.Column("idempotency_key", sa.String(255), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("payment_collection_id", "idempotency_key"),
)

payments = sa.Table(
    "payment_payment",
    metadata,
    _id(),
    _parent("payment_collection_id", "payment_collection.id"),
    _parent("payment_session_id", "payment_session.id"),
    sa.Column("provider_id", sa.String(64), nullable=False),
    sa.Column("currency_code", sa.String(3), nullable=False),
    sa.Column("amount", Money(), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.Column("captured_at", UtcDateTime(), nullable=True),
    sa.Column("canceled_at", UtcDateTime(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index(None, "payment_collection_id"),
    sa.UniqueConstraint("payment_session_id"),
)

captures = sa.Table(
    "payment_capture",
    metadata,
    _id(),
    _parent("payment_id", "payment_payment.id"),
    sa.Column("amount", Money(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False),
    sa.Column("created_by", sa.String(255), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("payment_id", "idempotency_key"),
)

refund_reasons = sa.Table(
    "payment_refund_reason",
    metadata,
    _id(),
    sa.Column("label", sa.String(255), nullable=False),
    sa.Column("code", sa.String(255), nullable=False, unique=True),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

refunds = sa.Table(
    "payment_refund",
    metadata,
    _id(),
    _parent("payment_id", "payment_payment.id"),
    sa.Column("amount", Money(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("idempotency_key", sa.String(255), nullable=False),
    sa.Column(
        "refund_reason_id",
        sa.String(64),
        sa.ForeignKey("payment_refund_reason.id", ondelete="SET NULL"),
        nullable=True,
    ),
    sa.Column("note", sa.Text(), nullable=True),
    sa.Column("created_by", sa.String(255), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("payment_id", "idempotency_key"),
)

account_holders = sa.Table(
    "payment_account_holder",
    metadata,
    _id(),
    sa.Column("provider_id", sa.String(64), nullable=False),
    sa.Column("customer_id", sa.String(255), nullable=False),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("external_id", sa.String(255), nullable=True),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.UniqueConstraint("provider_id", "customer_id"),
)

providers = sa.Table(
    "payment_provider",
    metadata,
    _id(),
    sa.Column("is_enabled", sa.Boolean(), nullable=False),
)
