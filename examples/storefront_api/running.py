"""How a route runs a workflow: on the app's engine, with the request's scope as container.

`Engine.run` is synchronous. The routes are plain ``def`` functions, so FastAPI calls them in
its thread pool, where no event loop runs: ``engine.run`` drives the run there (every step
here is synchronous SQLAlchemy and provider I/O) without blocking the server's event loop.
``engine.run`` refuses to run async steps from a thread that already has a running loop, and
an ``async def`` route would block the loop for the whole run.
"""

from __future__ import annotations

import secrets
from typing import Any, TypeVar

import structlog

from flowkit import Engine, RunResult, Scope, StoredError, TransactionState, Workflow

from .context import RequestLog

__all__ = ["new_transaction_id", "raise_failure", "result_of", "run_workflow"]

T = TypeVar("T")
_ENDED_BADLY = (TransactionState.REVERTED, TransactionState.FAILED)


def new_transaction_id(prefix: str) -> str:
    """A fresh transaction id that says what the run is for, e.g. ``capture-pay_01...-9f2c``."""
    return f"{prefix}-{secrets.token_hex(6)}"


def run_workflow(
    scope: Scope, workflow: Workflow[Any, T], input: Any, transaction_id: str
) -> RunResult[T]:
    """Run `workflow` durably with the request's scope; raise its error if it was reverted.

    A known `transaction_id` runs nothing again: its stored result comes back (a run that
    failed before raises `StoredError`).

    Raises:
        Exception: the error of the step that failed (the original exception in this
            process, `StoredError` for a run read back from the database).
        TransactionInProgress, TransactionConflict: the transaction id is busy or taken.
    """
    engine = scope.resolve(Engine)
    result = engine.run(
        workflow, input, container=scope, transaction_id=transaction_id, throw_on_error=False
    )
    scope.resolve(RequestLog).ran(result)
    raise_failure(result)
    return result


def raise_failure(result: RunResult[Any]) -> None:
    """Raise the error that reverted (or failed) a run; do nothing for any other run.

    Raises:
        Exception: the first invoke error (the original exception when this process ran the
            step, else a `StoredError`).
    """
    if result.status not in _ENDED_BADLY:
        return
    if result.status is TransactionState.FAILED:  # a compensation failed too: for operators
        structlog.get_logger("storefront").error(
            "run_failed", transaction_id=result.transaction_id, errors=repr(result.errors)
        )
    invoked = [e for e in result.errors if e.action == "invoke" and e.fatal]
    first = (invoked or result.errors)[0] if result.errors else None
    if first is None:
        raise StoredError(None, "unknown", f"run {result.transaction_id} was {result.status}")
    if isinstance(first.exception, Exception):
        raise first.exception
    raise StoredError(first.step, first.type_name, first.message)


def result_of(result: RunResult[Any], kind: type[T]) -> T:
    """The run's result, checked to be a `kind`.

    Raises:
        TypeError: the run returned something else (a bug in the workflow).
    """
    value = result.result
    if not isinstance(value, kind):
        raise TypeError(f"run {result.transaction_id} returned {type(value).__name__}")
    return value
