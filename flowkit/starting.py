"""Starting runs through an engine: new ones, known transaction ids, and queued ones.

A transaction id is idempotent: a known id invokes nothing (a finished or waiting run returns
its stored result, a run whose owner's lease expired is taken over), and an id taken by another
workflow or input is refused.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from flowkit import continuations, events
from flowkit.clock import as_seconds, as_utc
from flowkit.exceptions import (
    DefinitionError,
    InvalidTime,
    TransactionConflict,
    TransactionInProgress,
)
from flowkit.run import Run
from flowkit.runner import new_transaction_id
from flowkit.runtime import Container, Runtime
from flowkit.state import RunResult, TransactionState
from flowkit.store import NewRun, StoredRun
from flowkit.workflow import Workflow

__all__ = ["enqueue", "same_run", "start", "start_time"]


def start(
    rt: Runtime,
    workflow: Workflow[Any, Any],
    input: Any,
    container: Container | None,
    transaction_id: str | None,
    event_group_id: str | None,
) -> Run | RunResult[Any]:
    """Store a new run of `workflow` (the definition `Runtime.pick` chose) and return it to
    drive, or what a known transaction id stands for. The run records the definition's
    version and fingerprint.

    Raises:
        DefinitionError: an `async_completion` step without a durable store.
        TransactionInProgress: a live engine owns the run.
        TransactionConflict: the id belongs to another workflow or input.
        NotSerializable: the input cannot be stored.
    """
    rt.register(workflow)
    plan = workflow.plan
    if plan.has_async_completion and not rt.store.durable:
        raise DefinitionError(
            f"workflow {workflow.name!r} has an async_completion step: it needs an Engine "
            "with a durable store (the process may exit while the step waits)"
        )
    tx = new_transaction_id(transaction_id)
    encoded = rt.codec.dumps(input, "the run's input")
    deadline = time.time() + plan.timeout if plan.timeout is not None else None
    new = NewRun(
        tx, workflow.name, encoded, rt.owner, rt.lease_seconds, deadline,
        event_group_id=event_group_id, version=workflow.version, fingerprint=workflow.fingerprint,
        trace_context=_trace_context(rt),
    )  # fmt: skip
    existing = rt.store.start_run(new)
    if existing is None:
        run = rt.make_run(workflow, input, tx, container, event_group_id)
        if run.emitter is not None:
            run.emitter.emit("run_started", events.DEBUG)
        return run
    return _existing(rt, existing, workflow, encoded, container)


def _existing(
    rt: Runtime,
    stored: StoredRun,
    workflow: Workflow[Any, Any],
    encoded: str,
    container: Container | None,
) -> Run | RunResult[Any]:
    tx = stored.transaction_id
    same_run(stored, workflow, encoded)
    status = TransactionState(stored.status)
    if status.is_finished or status is TransactionState.WAITING:
        return rt.stored_result(tx)
    rt.held(stored)
    claimed = rt.store.claim(tx, rt.owner, rt.lease_seconds, (status,))
    if claimed is None:
        raise TransactionInProgress(tx, stored.owner)
    return continuations.resume(rt, claimed, container)


def enqueue(
    rt: Runtime,
    workflow: Workflow[Any, Any],
    input: Any,
    transaction_id: str | None,
    queue: str,
    event_group_id: str | None,
    start_at: float | None = None,
) -> tuple[str, bool]:
    """Store a run as `queued` (idempotent by transaction id), not to be claimed before
    `start_at` (epoch seconds on the engine's clock) when given.

    Like `start`, it records the definition's version and fingerprint.

    Returns:
        The run's transaction id, and True when this call stored it (False: it was known).
    """
    rt.register(workflow)
    tx = new_transaction_id(transaction_id)
    encoded = rt.codec.dumps(input, "the run's input")
    new = NewRun(
        tx, workflow.name, encoded, None, rt.lease_seconds,
        status=TransactionState.QUEUED, queue=queue, event_group_id=event_group_id,
        version=workflow.version, fingerprint=workflow.fingerprint, start_at=start_at,
        trace_context=_trace_context(rt),
    )  # fmt: skip
    existing = rt.store.start_run(new)
    if existing is not None:
        same_run(existing, workflow, encoded)
    return tx, existing is None


def _trace_context(rt: Runtime) -> str | None:
    provider = rt.trace_context
    return provider() if provider is not None else None


def start_time(
    rt: Runtime, start_at: datetime | None, delay: float | timedelta | None
) -> float | None:
    """When a queued run may start, in epoch seconds (None: at once).

    Raises:
        InvalidTime: both given, a `start_at` without a time zone, a bad `delay`.
    """
    if start_at is not None and delay is not None:
        raise InvalidTime("give start_at or delay, not both")
    if start_at is not None:
        return as_utc(start_at, "start_at").timestamp()
    if delay is not None:
        return rt.now() + as_seconds(delay, "delay")
    return None


def same_run(stored: StoredRun, workflow: Workflow[Any, Any], encoded: str) -> None:
    """Raise `TransactionConflict` unless a stored run has this workflow and input."""
    tx = stored.transaction_id
    if stored.workflow != workflow.name:
        raise TransactionConflict(tx, f"it belongs to workflow {stored.workflow!r}")
    if stored.input != encoded:
        raise TransactionConflict(tx, "it was started with another input")
