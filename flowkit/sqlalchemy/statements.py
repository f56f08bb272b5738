"""The hot path's SQL, built with SQLAlchemy Core and compiled once per store.

Executing a compiled string on a DBAPI cursor skips SQLAlchemy's per-call statement handling
(cache-key generation, parameter processing): a step's checkpoint is then a few microseconds of
Python around the database's own work.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import (
    Boolean,
    Double,
    Engine,
    Integer,
    String,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal_column,
    null,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement

from flowkit.sqlalchemy.notify import CHANNEL
from flowkit.sqlalchemy.tables import runs, steps
from flowkit.store import Checkpoint, NewRun, RunUpdate, StoredRun, StoredStep

STEP_COLUMNS = (
    "transaction_id", "step", "action", "status", "attempt", "output", "compensate_input",
    "error", "started_at", "ended_at", "due_at",
)  # fmt: skip
_NO_UPDATE = RunUpdate()


class Sql:
    """One statement compiled for a dialect, with a way to lay out its parameters."""

    __slots__ = ("_layout", "text")

    def __init__(self, statement: Any, engine: Engine) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self.text = str(compiled)
        order = list(compiled.positiontup or []) if engine.dialect.positional else []
        self._layout = _layout(order)

    def params(self, values: dict[str, Any]) -> Any:
        """The parameters in the form the DBAPI expects (a tuple, or the mapping)."""
        return self._layout(values)


def _layout(order: list[str]) -> Callable[[dict[str, Any]], Any]:
    if not order:
        return lambda values: values
    if len(order) == 1:
        name = order[0]
        return lambda values: (values[name],)
    return operator.itemgetter(*order)


class Statements:
    """Every statement the hot path runs, compiled for one store."""

    def __init__(
        self,
        engine: Engine,
        now: ColumnElement[Any],
        *,
        is_sqlite: bool,
        now_value: Callable[[], float] = time.time,
    ) -> None:
        self.is_sqlite = is_sqlite
        self.now_value = now_value
        """The value of the `p_now` parameter (used when `now` is that parameter)."""
        self.update_stmt = fenced_update(now)
        self.update = Sql(self.update_stmt, engine)
        self.insert_step = Sql(
            insert(steps).values({c: bindparam(c) for c in STEP_COLUMNS}), engine
        )
        self.fenced_insert_step = Sql(_fenced_step_insert(), engine) if is_sqlite else None
        self.start = Sql(_start_insert(now, is_sqlite), engine)
        self.notify = (
            None
            if is_sqlite
            else Sql(select(func.pg_notify(literal_column(f"'{CHANNEL}'"), bindparam("q"))), engine)
        )

    def run_update(self, checkpoint: Checkpoint) -> dict[str, Any]:
        """Parameters of the fenced run update for a checkpoint."""
        update = checkpoint.run or _NO_UPDATE
        return {
            "p_tx": checkpoint.transaction_id,
            "p_fence": checkpoint.owner,
            "p_status": update.status and str(update.status),
            "p_output": update.output,
            "p_errors": update.errors,
            "p_recoveries": update.recoveries,
            "p_recovery_step": update.recovery_step,
            "p_release": update.release,
            "p_wake_at": update.wake_at,
            "p_set_wake": update.status is not None,
            "p_now": self.now_value(),
        }


def step_values(checkpoint: Checkpoint, step: StoredStep) -> dict[str, Any]:
    """Column values of a step row (plus the fence, for the fenced insert)."""
    return {
        "transaction_id": checkpoint.transaction_id,
        "step": step.step,
        "action": step.action,
        "status": step.status,
        "attempt": step.attempt,
        "output": step.output,
        "compensate_input": step.compensate_input,
        "error": step.error,
        "started_at": step.started_at,
        "ended_at": step.ended_at,
        "due_at": step.due_at,
        "f_tx": checkpoint.transaction_id,
        "f_owner": checkpoint.owner,
    }


def start_values(new: NewRun) -> dict[str, Any]:
    """Parameters of the insert that starts (or queues) a run."""
    return {
        "transaction_id": new.transaction_id,
        "workflow": new.workflow,
        "status": str(new.status),
        "input": new.input,
        "owner": new.owner,
        "has_owner": new.owner is not None,
        "lease": float(new.lease_seconds),
        "deadline": new.deadline,
        "queue": new.queue,
        "event_group_id": new.event_group_id,
        "version": new.version,
        "fingerprint": new.fingerprint,
        "start_at": new.start_at,
        "trace_context": new.trace_context,
    }


def fenced_update(now: ColumnElement[Any]) -> Any:
    """`UPDATE flowkit_runs ... WHERE transaction_id = ? AND owner = ?`, optional fields kept."""
    release = bindparam("p_release", type_=Boolean)
    status = bindparam("p_status", type_=String)
    return (
        update(runs)
        .where(
            runs.c.transaction_id == bindparam("p_tx", type_=String),
            runs.c.owner == bindparam("p_fence", type_=String),
        )
        .values(
            status=func.coalesce(status, runs.c.status),
            output=func.coalesce(bindparam("p_output", type_=String), runs.c.output),
            errors=func.coalesce(bindparam("p_errors", type_=String), runs.c.errors),
            recoveries=func.coalesce(bindparam("p_recoveries", type_=Integer), runs.c.recoveries),
            recovery_step=func.coalesce(
                bindparam("p_recovery_step", type_=String), runs.c.recovery_step
            ),
            owner=case((release, null()), else_=runs.c.owner),
            lease_expires_at=case((release, null()), else_=runs.c.lease_expires_at),
            wake_at=case(
                (bindparam("p_set_wake", type_=Boolean), bindparam("p_wake_at", type_=Double)),
                else_=runs.c.wake_at,
            ),
            updated_at=now,
        )
    )


def _fenced_step_insert() -> Any:
    """SQLite: append a step row only while the run is still ours (writers are serialized)."""
    owned = exists().where(
        runs.c.transaction_id == bindparam("f_tx"), runs.c.owner == bindparam("f_owner")
    )
    rows: Any = select(*(bindparam(c) for c in STEP_COLUMNS)).where(owned)
    return insert(steps).from_select(list(STEP_COLUMNS), rows)


def _start_insert(now: ColumnElement[Any], is_sqlite: bool) -> Any:
    dialect_insert = sqlite.insert if is_sqlite else postgresql.insert
    lease = now + bindparam("lease", type_=Double)
    return (
        dialect_insert(runs)
        .values(
            transaction_id=bindparam("transaction_id", type_=String),
            workflow=bindparam("workflow", type_=String),
            status=bindparam("status", type_=String),
            input=bindparam("input", type_=String),
            output=null(),
            errors=literal_column("'[]'"),
            owner=bindparam("owner", type_=String),
            lease_expires_at=case((bindparam("has_owner", type_=Boolean), lease), else_=null()),
            created_at=now,
            updated_at=now,
            deadline=bindparam("deadline", type_=Double),
            recoveries=literal_column("0"),
            recovery_step=null(),
            queue=bindparam("queue", type_=String),
            event_group_id=bindparam("event_group_id", type_=String),
            version=bindparam("version", type_=Integer),
            fingerprint=bindparam("fingerprint", type_=String),
            wake_at=null(),
            start_at=bindparam("start_at", type_=Double),
            trace_context=bindparam("trace_context", type_=String),
        )
        .on_conflict_do_nothing(index_elements=["transaction_id"])
    )


def run_from_row(row: Any) -> StoredRun:
    """A `runs` row as a `StoredRun`."""
    return StoredRun(
        transaction_id=row.transaction_id,
        workflow=row.workflow,
        status=row.status,
        input=row.input,
        output=row.output,
        errors=row.errors,
        owner=row.owner,
        lease_expires_at=row.lease_expires_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        deadline=row.deadline,
        recoveries=row.recoveries,
        recovery_step=row.recovery_step,
        queue=row.queue,
        event_group_id=row.event_group_id,
        version=row.version,
        fingerprint=row.fingerprint,
        wake_at=row.wake_at,
        start_at=row.start_at,
        trace_context=row.trace_context,
    )
