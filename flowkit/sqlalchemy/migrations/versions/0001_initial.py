"""flowkit's initial schema: runs, the append-only step log, and the signal inbox.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flowkit_runs",
        sa.Column("transaction_id", sa.String(255), primary_key=True),
        sa.Column("workflow", sa.String(255), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("output", sa.Text()),
        sa.Column("errors", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(255)),
        sa.Column("lease_expires_at", sa.Double()),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("deadline", sa.Double()),
        sa.Column("recoveries", sa.Integer(), nullable=False),
        sa.Column("recovery_step", sa.String(1024)),
        sa.Column("queue", sa.String(255)),
        sa.Column("event_group_id", sa.String(255)),
    )
    op.create_index("ix_flowkit_runs_status_lease", "flowkit_runs", ["status", "lease_expires_at"])
    op.create_index("ix_flowkit_runs_workflow_created", "flowkit_runs", ["workflow", "created_at"])
    op.create_index("ix_flowkit_runs_queue", "flowkit_runs", ["queue", "status", "created_at"])
    op.create_table(
        "flowkit_steps",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "transaction_id",
            sa.String(255),
            sa.ForeignKey("flowkit_runs.transaction_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("step", sa.String(1024), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("output", sa.Text()),
        sa.Column("compensate_input", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("started_at", sa.Double()),
        sa.Column("ended_at", sa.Double()),
    )
    op.create_index("ix_flowkit_steps_transaction", "flowkit_steps", ["transaction_id", "id"])
    op.create_table(
        "flowkit_inbox",
        sa.Column(
            "transaction_id",
            sa.String(255),
            sa.ForeignKey("flowkit_runs.transaction_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("step", sa.String(1024), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("flowkit_inbox")
    op.drop_index("ix_flowkit_steps_transaction", "flowkit_steps")
    op.drop_table("flowkit_steps")
    op.drop_index("ix_flowkit_runs_queue", "flowkit_runs")
    op.drop_index("ix_flowkit_runs_workflow_created", "flowkit_runs")
    op.drop_index("ix_flowkit_runs_status_lease", "flowkit_runs")
    op.drop_table("flowkit_runs")
