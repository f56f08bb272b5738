"""Time: deadlines of waits, sleeping runs and delayed starts.

Adds `flowkit_runs.wake_at` (when a waiting run needs a tick: its earliest deadline or
wake-up, seconds since the epoch on the engine's clock), `flowkit_runs.start_at` (a queued run
is not claimed before it) with an index on `(status, wake_at)` for `tick()`, and
`flowkit_steps.due_at` (the deadline or wake-up of the waiting step that row parked).

Every existing row gets NULLs: waits parked before this revision have no deadline (as before
it), queued runs start at once.

Revision ID: 0004_time
Revises: 0003_versions
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_time"
down_revision = "0003_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flowkit_runs") as batch:
        batch.add_column(sa.Column("wake_at", sa.Double()))
        batch.add_column(sa.Column("start_at", sa.Double()))
        batch.create_index("ix_flowkit_runs_status_wake", ["status", "wake_at"])
    with op.batch_alter_table("flowkit_steps") as batch:
        batch.add_column(sa.Column("due_at", sa.Double()))


def downgrade() -> None:
    with op.batch_alter_table("flowkit_steps") as batch:
        batch.drop_column("due_at")
    with op.batch_alter_table("flowkit_runs") as batch:
        batch.drop_index("ix_flowkit_runs_status_wake")
        batch.drop_column("start_at")
        batch.drop_column("wake_at")
