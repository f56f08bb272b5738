"""flowkit's tables, in SQLAlchemy Core (the same schema the Alembic migrations build)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["SCHEMA_REVISION", "VERSION_TABLE", "inbox", "metadata", "runs", "steps"]

SCHEMA_REVISION = "0005_trace_context"
VERSION_TABLE = "flowkit_alembic_version"

metadata = MetaData()

runs = Table(
    "flowkit_runs",
    metadata,
    Column("transaction_id", String(255), primary_key=True),
    Column("workflow", String(255), nullable=False),
    Column("status", String(32), nullable=False),
    Column("input", Text, nullable=False),
    Column("output", Text),
    Column("errors", Text, nullable=False),
    Column("owner", String(255)),
    Column("lease_expires_at", Double),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("deadline", Double),
    Column("recoveries", Integer, nullable=False),
    Column("recovery_step", String(1024)),
    Column("queue", String(255)),
    Column("event_group_id", String(255)),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("fingerprint", String(64)),
    Column("wake_at", Double),
    Column("start_at", Double),
    Column("trace_context", String(255)),
    Index("ix_flowkit_runs_status_lease", "status", "lease_expires_at"),
    Index("ix_flowkit_runs_status_wake", "status", "wake_at"),
    Index("ix_flowkit_runs_workflow_created", "workflow", "created_at"),
    Index("ix_flowkit_runs_queue", "queue", "status", "created_at"),
)

steps = Table(
    "flowkit_steps",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column(
        "transaction_id",
        String(255),
        ForeignKey("flowkit_runs.transaction_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("step", String(1024), nullable=False),
    Column("action", String(16), nullable=False),
    Column("status", String(32), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("output", Text),
    Column("compensate_input", Text),
    Column("error", Text),
    Column("started_at", Double),
    Column("ended_at", Double),
    Column("due_at", Double),
    Index("ix_flowkit_steps_transaction", "transaction_id", "id"),
)

inbox = Table(
    "flowkit_inbox",
    metadata,
    Column(
        "transaction_id",
        String(255),
        ForeignKey("flowkit_runs.transaction_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("step", String(1024), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", Double, nullable=False),
)
