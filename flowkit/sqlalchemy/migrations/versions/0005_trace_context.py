"""Trace context: the W3C `traceparent` a run was started under.

Adds `flowkit_runs.trace_context` (NULL for every existing row and for runs started without a
tracer), so a run continued in another process (a signal, a recovery, a worker, a tick) joins
the trace it was started in (see `flowkit.otel`).

Revision ID: 0005_trace_context
Revises: 0004_time
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_trace_context"
down_revision = "0004_time"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flowkit_runs") as batch:
        batch.add_column(sa.Column("trace_context", sa.String(255)))


def downgrade() -> None:
    with op.batch_alter_table("flowkit_runs") as batch:
        batch.drop_column("trace_context")
