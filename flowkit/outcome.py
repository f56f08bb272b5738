"""Raising for a run's outcome: a reverted run re-raises its first error, a failed one
`CompensationFailed`."""

from __future__ import annotations

from typing import Any

from flowkit.exceptions import CompensationFailed
from flowkit.state import RunResult, StepError, TransactionState

__all__ = ["first_fatal_error", "raise_for"]


def first_fatal_error(result: RunResult[Any]) -> StepError:
    """The invoke error that made a run revert (see `_first_invoke_error`)."""
    return _first_invoke_error(result)


def raise_for(result: RunResult[Any]) -> None:
    """Re-raise a reverted run's first error (with a note), or `CompensationFailed`."""
    if result.status is TransactionState.REVERTED:
        error = _first_invoke_error(result)
        exc = error.exception
        if isinstance(exc, Exception):
            exc.add_note(
                f"raised by step {error.step!r} of workflow {result.workflow!r} "
                f"(transaction {result.transaction_id!r}); the run was reverted"
            )
            raise exc
    if result.status is TransactionState.FAILED:
        errors = [e.exception for e in result.errors if isinstance(e.exception, Exception)]
        raise CompensationFailed(
            f"workflow {result.workflow!r} (transaction {result.transaction_id!r}) failed and "
            f"{sum(e.action == 'compensate' for e in result.errors)} compensation(s) failed too",
            errors,
            result.transaction_id,
        )


def _first_invoke_error(result: RunResult[Any]) -> StepError:
    """The error that made the run revert (errors the run tolerated are skipped)."""
    for error in result.errors:
        if error.action == "invoke" and error.fatal:
            return error
    return result.errors[0]
