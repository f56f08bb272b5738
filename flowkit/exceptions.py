"""Every exception flowkit raises, in one place.

The tree (each class also subclasses the builtin a caller would naturally catch)::

    FlowkitError (Exception)
    ├── DefinitionError (TypeError)          a workflow or step is defined wrongly
    ├── ServiceNotFound (LookupError)        the container has no such key
    ├── PermanentFailure                     raised by a step: fail now, no retries
    ├── StepTimeout (TimeoutError)           a step ran past its timeout (or its wait's deadline)
    ├── InvalidTime (ValueError)             a bad duration, instant, cron expression or schedule
    ├── WorkflowTimeout (TimeoutError)       a run ran past its workflow timeout
    ├── CompensationFailed (ExceptionGroup)  a run ended `failed`: its errors, grouped
    ├── StoredError                          a finished run's error, read back from a store
    ├── NotSerializable (TypeError)          a value a durable run cannot store
    ├── RunNotFound (LookupError)            no run under that id
    ├── UnknownStep (LookupError)            a signal for a step the run's workflow lacks
    ├── SecretNotProtected (TypeError)       a `Secret` on an engine without encryption
    ├── EncryptionKeyMissing (LookupError)   a stored value's key is not held
    ├── UnknownWorkflow (LookupError)        a stored run of a workflow the engine does not hold
    ├── IncompatibleRun                      a run whose definition the engine does not hold
    ├── SignalledFailure                     the error given to set_step_failure
    ├── ProcessKilled                        a step was in flight in too many dead processes
    ├── TransactionInProgress                another live engine owns that run
    ├── TransactionConflict (ValueError)     same id, another workflow or input
    ├── LeaseLost                            this engine no longer owns the run
    ├── StepNotWaiting (ValueError)          a signal for a step that is not waiting for one
    ├── UnknownQueue (LookupError)           a queue the engine does not serve
    ├── InjectedFailure                      flowkit.testing made a step fail
    └── StoreError                           the store cannot be used
        └── SchemaMismatch                   its schema is missing or of another version

    SimulatedCrash (BaseException)           flowkit.testing abandons a run like a dead process
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "CompensationFailed",
    "DefinitionError",
    "EncryptionKeyMissing",
    "FlowkitError",
    "IncompatibleRun",
    "InjectedFailure",
    "InvalidTime",
    "LeaseLost",
    "NotSerializable",
    "PermanentFailure",
    "ProcessKilled",
    "RunNotFound",
    "SchemaMismatch",
    "SecretNotProtected",
    "ServiceNotFound",
    "SignalledFailure",
    "SimulatedCrash",
    "StepNotWaiting",
    "StepTimeout",
    "StoreError",
    "StoredError",
    "TransactionConflict",
    "TransactionInProgress",
    "UnknownQueue",
    "UnknownStep",
    "UnknownWorkflow",
    "WorkflowTimeout",
]


class FlowkitError(Exception):
    """Root of every error flowkit raises on purpose."""


class DefinitionError(FlowkitError, TypeError):
    """A workflow or step is defined wrongly; raised at definition time, naming both."""


class ServiceNotFound(FlowkitError, LookupError):
    """A container has nothing registered under the requested key.

    Attributes:
        key: The key that was asked for.
        registered: Names of the keys that are registered.
    """

    def __init__(self, key: object, registered: Sequence[str]) -> None:
        self.key = key
        self.registered = tuple(registered)
        known = ", ".join(self.registered) or "nothing"
        super().__init__(f"no service registered for {key_name(key)}; registered: {known}")


class PermanentFailure(FlowkitError):
    """Raised by a step to fail at once, without spending its retries."""


class StepTimeout(FlowkitError, TimeoutError):
    """A step ran longer than its `timeout` (timeouts are never retried).

    Attributes:
        step: The step's name.
        timeout: The limit, in seconds.
    """

    def __init__(self, step: str, timeout: float) -> None:
        self.step = step
        self.timeout = timeout
        super().__init__(f"step {step!r} exceeded its timeout of {timeout:g}s")


class InvalidTime(FlowkitError, ValueError):
    """A duration, instant, cron expression or schedule that is unusable (the message names it)."""


class WorkflowTimeout(FlowkitError, TimeoutError):
    """A run went past its workflow's `timeout`.

    Attributes:
        workflow: The workflow's name.
        timeout: The limit, in seconds.
    """

    def __init__(self, workflow: str, timeout: float) -> None:
        self.workflow = workflow
        self.timeout = timeout
        super().__init__(f"workflow {workflow!r} exceeded its timeout of {timeout:g}s")


class CompensationFailed(FlowkitError, ExceptionGroup):
    """A run ended `failed`: a compensation failed after the original error.

    An `ExceptionGroup` of the original error first, then every compensation error.

    Attributes:
        transaction_id: The run's transaction id.
    """

    transaction_id: str

    def __new__(
        cls, message: str, exceptions: Sequence[Exception], transaction_id: str = ""
    ) -> CompensationFailed:
        self = super().__new__(cls, message, exceptions)
        self.transaction_id = transaction_id
        return self

    def __init__(
        self, message: str, exceptions: Sequence[Exception], transaction_id: str = ""
    ) -> None:
        super().__init__(message, exceptions)

    def derive(self, excs: Sequence[Exception]) -> CompensationFailed:  # type: ignore[override]
        """Return a group of the same kind over `excs` (used by `except*` splitting)."""
        return CompensationFailed(self.message, excs, self.transaction_id)


class StoredError(FlowkitError):
    """The error of a finished run, as read back from a store.

    The original exception lives only in the process that raised it; this carries its type name
    and message.

    Attributes:
        step: The step that failed (None when the run failed outside a step).
        type_name: The original exception's qualified type name.
        message: The original exception's message.
    """

    def __init__(self, step: str | None, type_name: str, message: str) -> None:
        self.step = step
        self.type_name = type_name
        self.message = message
        super().__init__(f"step {step!r} failed with {type_name}: {message}")


class NotSerializable(FlowkitError, TypeError):
    """A value cannot be stored by a durable run (never pickled).

    Attributes:
        value_type: The qualified name of the offending type.
        where: What was being stored (a run input, a step output...).
    """

    def __init__(self, value_type: str, where: str, reason: str = "") -> None:
        self.value_type = value_type
        self.where = where
        detail = f": {reason}" if reason else ""
        super().__init__(f"cannot store {where} of type {value_type}{detail}")


class SecretNotProtected(FlowkitError, TypeError):
    """A `flowkit.Secret` would be stored by an engine that has no `encryption`.

    Attributes:
        where: What was being stored (the run's input, a step's output...).
    """

    def __init__(self, where: str) -> None:
        self.where = where
        hint = "give Engine(..., encryption=flowkit.Encryption(...))"
        super().__init__(f"cannot store {where}: it holds a flowkit.Secret ({hint})")


class EncryptionKeyMissing(FlowkitError, LookupError):
    """A stored value was encrypted under a key this engine does not hold.

    Attributes:
        key_id: The key the value names.
    """

    def __init__(self, key_id: str, detail: str = "") -> None:
        self.key_id = key_id
        more = f" ({detail})" if detail else ""
        super().__init__(f"a stored value is encrypted with key {key_id!r}, not held{more}")


class RunNotFound(FlowkitError, LookupError):
    """No run is stored under that transaction id (a missing step is `UnknownStep`).

    Attributes:
        transaction_id: The id that was asked for.
        step: Kept for compatibility; flowkit itself no longer sets it.
    """

    def __init__(self, transaction_id: str, step: str | None = None) -> None:
        self.transaction_id = transaction_id
        self.step = step
        what = "" if step is None else f" with a step {step!r}"
        super().__init__(f"no run with transaction id {transaction_id!r}{what}")


class UnknownWorkflow(FlowkitError, LookupError):
    """A stored run belongs to a workflow this engine does not hold."""


class IncompatibleRun(FlowkitError):
    """A stored run cannot be continued on any definition this engine holds: its recorded
    fingerprint is not held, or it has checkpoints of steps the workflow no longer has.

    Attributes:
        transaction_id: The run's id (None when not known where raised).
        workflow: Its workflow's name.
        version: The version the run recorded.
        fingerprint: The fingerprint the run recorded.
        held: The `(version, fingerprint)` pairs this engine holds of that workflow.
    """

    def __init__(
        self,
        message: str,
        *,
        transaction_id: str | None = None,
        workflow: str | None = None,
        version: int | None = None,
        fingerprint: str | None = None,
        held: Sequence[tuple[int, str]] = (),
    ) -> None:
        self.transaction_id = transaction_id
        self.workflow = workflow
        self.version = version
        self.fingerprint = fingerprint
        self.held = tuple(held)
        super().__init__(message)


class UnknownStep(FlowkitError, LookupError):
    """A signal names a step the run's workflow (the definition it started on) does not have.

    Attributes:
        transaction_id: The run's id.
        step: The step that was named.
        workflow: The run's workflow.
        version: The version the run is on.
    """

    def __init__(self, transaction_id: str, step: str, workflow: str, version: int) -> None:
        self.transaction_id = transaction_id
        self.step = step
        self.workflow = workflow
        self.version = version
        on = f"version {version} of workflow {workflow!r}"
        super().__init__(f"run {transaction_id!r} is on {on}, which has no step {step!r}")


class SignalledFailure(FlowkitError):
    """The error given to `set_step_failure`, as the waiting step's failure (`type_name`:
    the type name of the error that was signalled)."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        super().__init__(message)


class ProcessKilled(FlowkitError):
    """A step was in flight in more dead processes than its retries allow."""


class TransactionInProgress(FlowkitError):
    """The run is owned by another live engine; try again later.

    Attributes:
        transaction_id: The run's transaction id.
        owner: The engine that owns it.
    """

    def __init__(self, transaction_id: str, owner: str | None) -> None:
        self.transaction_id = transaction_id
        self.owner = owner
        super().__init__(f"run {transaction_id!r} is in progress on {owner or 'another engine'}")


class TransactionConflict(FlowkitError, ValueError):
    """The transaction id is taken by a run of another workflow or with another input.

    Attributes:
        transaction_id: The contested id.
        reason: What differs.
    """

    def __init__(self, transaction_id: str, reason: str) -> None:
        self.transaction_id = transaction_id
        self.reason = reason
        super().__init__(f"transaction id {transaction_id!r} is taken: {reason}")


class LeaseLost(FlowkitError):
    """This engine lost ownership of a run (another engine took it over); it stops writing.

    Attributes:
        transaction_id: The run's transaction id.
    """

    def __init__(self, transaction_id: str) -> None:
        self.transaction_id = transaction_id
        super().__init__(f"lost the lease on run {transaction_id!r}; another engine owns it")


class StepNotWaiting(FlowkitError, ValueError):
    """A signal names a step that is not waiting for one, or was already signalled.

    Attributes:
        transaction_id: The run's transaction id.
        step: The step named by the signal.
        state: What the step is doing instead.
    """

    def __init__(self, transaction_id: str, step: str, state: str) -> None:
        self.transaction_id = transaction_id
        self.step = step
        self.state = state
        super().__init__(f"step {step!r} of run {transaction_id!r} is not waiting ({state})")


class UnknownQueue(FlowkitError, LookupError):
    """A queue name the engine was not given.

    Attributes:
        queue: The name asked for.
        known: The queues the engine serves.
    """

    def __init__(self, queue: str, known: list[str]) -> None:
        self.queue = queue
        self.known = known
        super().__init__(f"unknown queue {queue!r}; this engine serves {known}")


class InjectedFailure(FlowkitError):
    """Raised by the engine in place of a step or compensation under a `flowkit.testing` plan."""


class StoreError(FlowkitError):
    """The store cannot be opened or used (bad URL, unreachable database)."""


class SchemaMismatch(StoreError):
    """The database has no flowkit schema, or one of another version.

    Attributes:
        found: The schema revision found (None when there is none).
        expected: The revision this version of flowkit needs.
    """

    def __init__(self, found: str | None, expected: str) -> None:
        self.found = found
        self.expected = expected
        what = f"revision {found!r}" if found else "no flowkit schema"
        fix = "run `store.create_all()` or the Alembic migrations"
        super().__init__(f"database has {what}, flowkit needs {expected!r}: {fix}")


class SimulatedCrash(BaseException):
    """Abandons a run as a dead process would (only under a `flowkit.testing` plan); a
    `BaseException`, so step code and retries cannot catch it by accident."""


def key_name(key: Any) -> str:
    """How a service key is named in messages (a class by its qualified name)."""
    return getattr(key, "__qualname__", None) or repr(key)
