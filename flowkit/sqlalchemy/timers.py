"""The SQL of time: waiting runs that are due, and the latest run of a schedule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select, true
from sqlalchemy.sql import ColumnElement

from flowkit.sqlalchemy.ownership import unowned
from flowkit.sqlalchemy.tables import runs
from flowkit.state import TransactionState

__all__ = ["due_runs", "latest_with_prefix", "startable"]


def due_runs(now: float, workflows: Sequence[str], limit: int, db_now: ColumnElement[Any]) -> Any:
    """Waiting runs of `workflows` whose `wake_at` is at or before `now` and that no live
    engine owns, the earliest first (served by the `(status, wake_at)` index)."""
    return (
        select(runs)
        .where(
            runs.c.status == TransactionState.WAITING.value,
            runs.c.wake_at <= now,
            runs.c.workflow.in_(list(workflows)),
            unowned(db_now),
        )
        .order_by(runs.c.wake_at)
        .limit(limit)
    )


def latest_with_prefix(prefix: str) -> Any:
    """The greatest transaction id starting with `prefix` (a range on the primary key: the
    ids that start with `prefix` sort between it and `prefix` with its last character
    incremented)."""
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return (
        select(runs.c.transaction_id)
        .where(runs.c.transaction_id >= prefix, runs.c.transaction_id < upper)
        .order_by(runs.c.transaction_id.desc())
        .limit(1)
    )


def startable(now: float | None) -> ColumnElement[bool]:
    """Queued runs whose `start_at` has come (every one when `now` is None)."""
    if now is None:
        return true()
    return or_(runs.c.start_at.is_(None), runs.c.start_at <= now)
