"""The SQL of reading runs and owning them: lists, claims (compare-and-set) and expired leases."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.sql import ColumnElement

from flowkit.sqlalchemy.tables import runs
from flowkit.store import ACTIVE

__all__ = ["claim_statement", "expired_query", "runs_query", "unowned"]


def unowned(now: ColumnElement[Any]) -> ColumnElement[bool]:
    """Runs no live engine owns: no owner, or an owner whose lease ran out before `now`."""
    return or_(runs.c.owner.is_(None), runs.c.lease_expires_at < now)


def runs_query(
    status: str | None, workflow: str | None, since: float | None, limit: int, version: int | None
) -> Any:
    """Runs newest first, filtered on the values given."""
    query = select(runs).order_by(runs.c.created_at.desc()).limit(limit)
    for column, value in (("status", status), ("workflow", workflow), ("version", version)):
        if value is not None:
            query = query.where(runs.c[column] == value)
    if since is not None:
        query = query.where(runs.c.created_at >= since)
    return query


def claim_statement(
    transaction_id: str,
    owner: str,
    lease_seconds: float,
    statuses: Iterable[str],
    now: ColumnElement[Any],
) -> Any:
    """Take a run with one of `statuses` and no live owner (the row comes back, or none)."""
    return (
        update(runs)
        .where(
            runs.c.transaction_id == transaction_id,
            runs.c.status.in_([str(s) for s in statuses]),
            unowned(now),
        )
        .values(owner=owner, lease_expires_at=now + lease_seconds, updated_at=now)
        .returning(*runs.c)
    )


def expired_query(limit: int, now: ColumnElement[Any]) -> Any:
    """Active runs whose owner's lease ran out (or that have none), oldest first."""
    return (
        select(runs)
        .where(
            runs.c.status.in_([s.value for s in ACTIVE]),
            unowned(now),
        )
        .order_by(runs.c.created_at)
        .limit(limit)
    )
