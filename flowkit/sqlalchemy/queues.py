"""The SQL of queued runs: claiming them (once each, across workers), and counting them.

PostgreSQL claims with `FOR UPDATE SKIP LOCKED`, so concurrent workers never wait on each
other's rows; SQLite serializes writers. A queue's concurrency limit is counted under a
per-queue advisory lock on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, not_, or_, select, true, update
from sqlalchemy.sql import ColumnElement

from flowkit.sqlalchemy.tables import runs
from flowkit.sqlalchemy.timers import startable
from flowkit.state import TransactionState
from flowkit.store import ACTIVE

__all__ = ["claim_queued", "held_fingerprint", "queued_elsewhere", "running"]


def claim_queued(
    queue: str,
    owner: str,
    lease_seconds: float,
    workflows: Sequence[str],
    limit: int,
    now: ColumnElement[Any],
    is_sqlite: bool,
    fingerprints: Sequence[str] | None = None,
    not_before: float | None = None,
) -> Any:
    """The statement claiming up to `limit` queued runs of `workflows` (and of `fingerprints`,
    or recorded before fingerprints, when given), oldest first; with `not_before` (the
    engine's clock), only runs whose `start_at` has come."""
    pick = (
        select(runs.c.transaction_id)
        .where(
            runs.c.queue == queue,
            runs.c.status == TransactionState.QUEUED.value,
            runs.c.owner.is_(None),
            runs.c.workflow.in_(list(workflows)),
            held_fingerprint(fingerprints),
            startable(not_before),
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


def held_fingerprint(fingerprints: Sequence[str] | None) -> ColumnElement[bool]:
    """True for runs of one of `fingerprints` or without one (any run when None)."""
    if fingerprints is None:
        return true()
    return or_(runs.c.fingerprint.is_(None), runs.c.fingerprint.in_(list(fingerprints)))


def queued_elsewhere(
    queue: str, workflows: Sequence[str], fingerprints: Sequence[str] | None = None
) -> Any:
    """The query counting queued runs of workflows not in `workflows` (or of fingerprints not
    in `fingerprints`), by workflow."""
    return (
        select(runs.c.workflow, func.count())
        .where(
            runs.c.queue == queue,
            runs.c.status == TransactionState.QUEUED.value,
            or_(runs.c.workflow.not_in(list(workflows)), not_(held_fingerprint(fingerprints))),
        )
        .group_by(runs.c.workflow)
    )
