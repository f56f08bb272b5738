"""Workflow versions: every run records the version and fingerprint it started on.

Adds `flowkit_runs.version` (an integer, 1 for every existing row: before this revision a
workflow had no version, which is version 1) and `flowkit_runs.fingerprint` (the digest of the
definition the run started on, see `flowkit.Workflow.fingerprint`).

Rows written before this revision have no fingerprint (NULL). They are continued as they
were before it: on the highest version of their workflow the engine holds, with checkpoints
matched to steps by name (a run with a checkpoint of a step that definition lacks is reported
incompatible and left alone). Every run started after it records its fingerprint and is only
ever continued on a definition that has it.

Self-contained: it only adds two columns to `flowkit_runs`, so it can follow any revision
that leaves that table in place (re-chaining it is a change of `down_revision` alone).

Revision ID: 0003_versions
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_versions"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flowkit_runs") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("fingerprint", sa.String(64)))


def downgrade() -> None:
    with op.batch_alter_table("flowkit_runs") as batch:
        batch.drop_column("fingerprint")
        batch.drop_column("version")
