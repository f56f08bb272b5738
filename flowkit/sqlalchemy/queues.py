"""The SQL of queued runs: claiming them (once each, across workers), and counting them.

PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on each
other's rows; SQLite serializes writers. A queue's concurrency limit is counted under a
per-queue advisory lock on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.sql import ColumnElement

from flowkit.sqlalchemy.tables import runs
from flowkit.state import TransactionState
from flowkit.store import ACTIVE

__all__ = ["claim_queued", "queued_elsewhere", "running"]


def claim_queued(
    queue: str,
    owner: str,
    lease_seconds: float,
    workflows: Sequence[str],
    limit: int,
    now: ColumnElement[Any],
    is_sqlite: bool,
) -> Any:
    """The statement claiming up to `limit` queued runs of `workflows`, oldest first."""
    pick = (
        select(runs.c.transaction_id)
        .where(
            runs.c.queue == queue,
            runs.c.status == TransactionState.QUEUED.value,
            runs.c.owner.is_(None),
            runs.c.workflow.in_(list(workflows)),
        )
        .order_by(runs.c.created_at)
        .limit(limit)
    )
    if not is_sqlite:  # SQLite serializes writers; PostgreSQL skips taken rows
        pick = pick.with_for_update(skip_locked=True)
    return (
        update(runs)
        .where(runs.c.transaction_id.in_(pick.scalar_subquery()))
        .values(
            status=TransactionState.INVOKING.value,
            owner=owner,
            lease_expires_at=now + lease_seconds,
            updated_at=now,
        )
        .returning(*runs.c)
    )


def running(conn: Any, queue: str, now: ColumnElement[Any], is_sqlite: bool) -> int:
    """Runs of `queue` executing now, counted under a per-queue lock (PostgreSQL)."""
    if not is_sqlite:
        conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"flowkit:{queue}"))))
    live = conn.execute(
        select(func.count())
        .select_from(runs)
        .where(
            runs.c.queue == queue,
            runs.c.status.in_([s.value for s in ACTIVE]),
            runs.c.owner.is_not(None),
            runs.c.lease_expires_at > now,
        )
    )
    return int(live.scalar_one())


def queued_elsewhere(queue: str, workflows: Sequence[str]) -> Any:
    """The query counting queued runs of workflows not in `workflows`, by workflow."""
    return (
        select(runs.c.workflow, func.count())
        .where(
            runs.c.queue == queue,
            runs.c.status == TransactionState.QUEUED.value,
            runs.c.workflow.not_in(list(workflows)),
        )
        .group_by(runs.c.workflow)
    )
