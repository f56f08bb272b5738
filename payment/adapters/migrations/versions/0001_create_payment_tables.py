"""Create the payment tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from payment.adapters.types import Money, UtcDateTime

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_account_holder",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_account_holder")),
        sa.UniqueConstraint(
            "provider_id",
            "customer_id",
            name=op.f("uq_payment_account_holder_provider_id_customer_id"),
        ),
    )
    op.create_table(
        "payment_collection",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("currency_code", sa.String(length=3), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("authorized_amount", Money(), nullable=False),
        sa.Column("captured_amount", Money(), nullable=False),
        sa.Column("refunded_amount", Money(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("completed_at", UtcDateTime(), nullable=True),
        sa.Column("canceled_at", UtcDateTime(), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("cart_id", sa.String(length=255), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_collection")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_payment_collection_idempotency_key")),
    )
    op.create_index(
        "uq_payment_collection_live_cart",
        "payment_collection",
        ["cart_id"],
        unique=True,
        sqlite_where=sa.text("canceled_at IS NULL"),
        postgresql_where=sa.text("canceled_at IS NULL"),
    )
    op.create_table(
        "payment_provider",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_provider")),
    )
    op.create_table(
        "payment_refund_reason",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=False),
        sa.Column("code", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_refund_reason")),
        sa.UniqueConstraint("code", name=op.f("uq_payment_refund_reason_code")),
    )
    op.create_table(
        "payment_session",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("payment_collection_id", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("currency_code", sa.String(length=3), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("authorized_at", UtcDateTime(), nullable=True),
        sa.Column("authorize_attempts", sa.Integer(), nullable=False),
        sa.Column("initiated_at", UtcDateTime(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_collection_id"],
            ["payment_collection.id"],
            name=op.f("fk_payment_session_payment_collection_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_session")),
        sa.UniqueConstraint(
            "payment_collection_id",
            "idempotency_key",
            name=op.f("uq_payment_session_payment_collection_id_idempotency_key"),
        ),
    )
    op.create_table(
        "payment_payment",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("payment_collection_id", sa.String(length=64), nullable=False),
        sa.Column("payment_session_id", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("currency_code", sa.String(length=3), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("captured_at", UtcDateTime(), nullable=True),
        sa.Column("canceled_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_collection_id"],
            ["payment_collection.id"],
            name=op.f("fk_payment_payment_payment_collection_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["payment_session_id"],
            ["payment_session.id"],
            name=op.f("fk_payment_payment_payment_session_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_payment")),
        sa.UniqueConstraint(
            "payment_session_id", name=op.f("uq_payment_payment_payment_session_id")
        ),
    )
    op.create_index(
        op.f("ix_payment_payment_payment_collection_id"),
        "payment_payment",
        ["payment_collection_id"],
        unique=False,
    )
    op.create_table(
        "payment_capture",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payment_payment.id"],
            name=op.f("fk_payment_capture_payment_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_capture")),
        sa.UniqueConstraint(
            "payment_id",
            "idempotency_key",
            name=op.f("uq_payment_capture_payment_id_idempotency_key"),
        ),
    )
    op.create_table(
        "payment_refund",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("amount", Money(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("refund_reason_id", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payment_payment.id"],
            name=op.f("fk_payment_refund_payment_id"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["refund_reason_id"],
            ["payment_refund_reason.id"],
            name=op.f("fk_payment_refund_refund_reason_id"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_refund")),
        sa.UniqueConstraint(
            "payment_id",
            "idempotency_key",
            name=op.f("uq_payment_refund_payment_id_idempotency_key"),
        ),
    )


def downgrade() -> None:
    op.drop_table("payment_refund")
    op.drop_table("payment_capture")
    op.drop_index(op.f("ix_payment_payment_payment_collection_id"), table_name="payment_payment")
    op.drop_table("payment_payment")
    op.drop_table("payment_session")
    op.drop_table("payment_refund_reason")
    op.drop_table("payment_provider")
    op.drop_index(
        "uq_payment_collection_live_cart",
        table_name="payment_collection",
        sqlite_where=sa.text("canceled_at IS NULL"),
        postgresql_where=sa.text("canceled_at IS NULL"),
    )
    op.drop_table("payment_collection")
    op.drop_table("payment_account_holder")
