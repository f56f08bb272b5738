"""The records a run produces: states, step errors, per-step records, results and stored runs."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar

from attrs import field, frozen

__all__ = [
    "RunRecord",
    "RunResult",
    "StepError",
    "StepRecord",
    "StepState",
    "TransactionState",
]

T = TypeVar("T")
Action = Literal["invoke", "compensate"]


class TransactionState(enum.StrEnum):
    """The state of a whole run."""

    NOT_STARTED = "not_started"
    QUEUED = "queued"
    INVOKING = "invoking"
    WAITING = "waiting"
    COMPENSATING = "compensating"
    DONE = "done"
    REVERTED = "reverted"
    FAILED = "failed"

    @property
    def is_finished(self) -> bool:
        """True for `done`, `reverted` and `failed`: nothing will change the run any more."""
        return self in _FINISHED


_FINISHED = frozenset({TransactionState.DONE, TransactionState.REVERTED, TransactionState.FAILED})


class StepState(enum.StrEnum):
    """The state of one step within a run."""

    NOT_STARTED = "not_started"
    INVOKING = "invoking"
    WAITING = "waiting"
    DONE = "done"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"
    SKIPPED_FAILURE = "skipped_failure"
    COMPENSATING = "compensating"
    REVERTED = "reverted"
    COMPENSATION_FAILED = "compensation_failed"


@frozen
class StepError:
    """One error a run met.

    Attributes:
        step: The step's name (`"child/step"` inside a nested workflow).
        action: `"invoke"` or `"compensate"`.
        type_name: The exception's qualified type name (`module.Class`).
        message: `str(exception)`.
        exception: The exception itself, in the process that raised it; None when read back
            from a store.
        fatal: False for a failure the run tolerated (`continue_on_permanent_failure`,
            `skip_on_permanent_failure`).
    """

    step: str
    action: Action
    type_name: str
    message: str
    exception: BaseException | None = field(default=None, eq=False, repr=False)
    fatal: bool = True

    @classmethod
    def from_exception(
        cls, step: str, action: Action, exc: BaseException, *, fatal: bool = True
    ) -> StepError:
        """Build the record of `exc`, raised by `step` while doing `action`."""
        return cls(step, action, type_name_of(exc), str(exc), exc, fatal)


@frozen
class StepRecord:
    """What happened to one step of a run.

    Attributes:
        name: The step's name.
        state: Its final (or current) state.
        attempts: How many times its invoke function was called.
        started_at: When its first attempt started (None if it never started).
        ended_at: When its invoke finished (None if it has not).
        compensated_at: When its compensation finished (None if it was not compensated).
        invoke_state: How its invoke ended (done, failed, timeout, waiting, skipped...), kept
            when a compensation has since changed `state`.
        due_at: For a waiting step: its deadline (or, for a `flowkit.sleep`, its end).
    """

    name: str
    state: StepState
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    compensated_at: datetime | None = None
    invoke_state: StepState | None = None
    due_at: datetime | None = None

    @property
    def duration(self) -> float | None:
        """Seconds between start and end of the invoke, when both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


class RunResult(Generic[T]):
    """The outcome of a run.

    Attributes:
        result: The workflow's response value (None unless the run is `done`).
        status: The run's `TransactionState`.
        errors: Every `StepError`, invoke errors first in the order they happened.
        transaction_id: The run's transaction id.
        workflow: The workflow's name.
        is_partially_completed: True when a step failed but the run went on
            (`continue_on_permanent_failure` / `skip_on_permanent_failure`).
        waiting: For a `waiting` run, what each waiting step's invoke returned, by step name
            (what the run waits on: a 3-D Secure URL, a provider reference...); else empty.
    """

    __slots__ = (
        "_steps",
        "errors",
        "is_partially_completed",
        "result",
        "status",
        "transaction_id",
        "waiting",
        "workflow",
    )

    def __init__(
        self,
        *,
        result: T | None,
        status: TransactionState,
        errors: list[StepError],
        transaction_id: str,
        workflow: str,
        is_partially_completed: bool = False,
        steps: Mapping[str, StepRecord] | Callable[[], Mapping[str, StepRecord]] = (dict),
        waiting: Mapping[str, Any] | None = None,
    ) -> None:
        self.result = result
        self.waiting: Mapping[str, Any] = waiting or {}
        self.status = status
        self.errors = errors
        self.transaction_id = transaction_id
        self.workflow = workflow
        self.is_partially_completed = is_partially_completed
        self._steps = steps

    @property
    def steps(self) -> Mapping[str, StepRecord]:
        """Per-step records by step name, in the workflow's order (built on first access)."""
        steps = self._steps
        if callable(steps):
            steps = self._steps = steps()
        return steps

    @property
    def succeeded(self) -> bool:
        """True when the run ended `done`."""
        return self.status is TransactionState.DONE

    def __repr__(self) -> str:
        return (
            f"RunResult(workflow={self.workflow!r}, transaction_id={self.transaction_id!r}, "
            f"status={self.status.value!r}, result={self.result!r}, errors={self.errors!r})"
        )


@frozen
class RunRecord:
    """A run as a store keeps it (see `Engine.get` and `Engine.list`).

    Attributes:
        transaction_id: The run's id.
        workflow: The workflow's name.
        status: Its `TransactionState`.
        input: The run's input, decoded.
        output: The workflow's result when done, decoded.
        errors: Every error recorded, as `StepError`s without exception objects.
        steps: Per-step records by name.
        owner: The engine owning the run (None when nobody does).
        lease_expires_at: When the owner's lease runs out.
        created_at: When the run was first stored.
        updated_at: When it last changed.
        queue: The queue of a queued run (None for runs started directly).
        version: The version of the workflow the run started on.
        fingerprint: That definition's fingerprint (None for a run recorded before
            fingerprints were: it is continued on the highest version, by step names).
        wake_at: For a `waiting` run: its earliest deadline or sleep's end (None: it waits
            for signals only).
        start_at: For a delayed queued run: when workers may start it.
        trace_context: The W3C `traceparent` the run was started under, when a tracer gave
            one (see `flowkit.otel`).
    """

    transaction_id: str
    workflow: str
    status: TransactionState
    input: Any
    output: Any
    errors: tuple[StepError, ...]
    steps: Mapping[str, StepRecord]
    owner: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    queue: str | None = None
    version: int = 1
    fingerprint: str | None = None
    wake_at: datetime | None = None
    start_at: datetime | None = None
    trace_context: str | None = None


def datetime_of(timestamp: float | None) -> datetime | None:
    """A UTC `datetime` from seconds since the epoch (None stays None)."""
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def type_name_of(exc: BaseException) -> str:
    """The qualified name of an exception's type (`builtins` left out)."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"
