"""The mutable state of one run, and what the runner needs around it.

`Run` holds a run's per-node state in lists indexed by node (no per-step objects); `Journal`
is where a durable run checkpoints (the engine's stores implement it); `Faults` is where
`flowkit.testing` injects failures and crashes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

from flowkit import events
from flowkit.clock import Clock, epoch_of
from flowkit.container import Registry, Scope
from flowkit.events import Emitter
from flowkit.plan import SKIPPED, CompiledCondition, Plan, PlanNode
from flowkit.state import (
    RunResult,
    StepError,
    StepRecord,
    StepState,
    TransactionState,
    datetime_of,
)
from flowkit.step import StepContext

T = TypeVar("T")

_DONE = StepState.DONE
_FAILED = StepState.FAILED
_TIMEOUT = StepState.TIMEOUT
_WAITING = StepState.WAITING
_SKIPPED = StepState.SKIPPED
_INVOKING = StepState.INVOKING
COMPENSABLE = frozenset({_DONE, _TIMEOUT, _WAITING, _FAILED})

# what a stage tells the driver
OK, FAIL, PARK, STOP = 0, 1, 2, 3


class Journal(Protocol):
    """Where a durable run writes its checkpoints (implemented by the engine's stores)."""

    def open_session(self, run: Run, ctx: StepContext) -> Any:
        """A database session for `ctx`'s step, committed with its checkpoint."""

    def invoked(self, run: Run, node: PlanNode, ctx: StepContext | None) -> None:
        """Checkpoint the end of a node's invoke (done, failed, timeout, skipped, waiting)."""

    def compensated(self, run: Run, node: PlanNode, ctx: StepContext | None) -> None:
        """Checkpoint the end of a node's compensation (reverted or compensation_failed)."""

    def accept_result(self, run: Run) -> None:
        """Check the workflow's result can be stored (raises `NotSerializable`)."""

    def failing(self, run: Run) -> None:
        """Record that the run fails outside any step and will compensate."""

    def release(self, run: Run) -> None:
        """Give up ownership of a run stopped between steps (it stays resumable)."""

    def finished(self, run: Run) -> None:
        """Record the run's final (or parked) status."""

    def discard(self, ctx: StepContext) -> None:
        """Roll back the session of a failed attempt."""

    def flush(self, ctx: StepContext) -> None:
        """Send the step's pending writes to the database (their errors are the step's)."""


class Faults(Protocol):
    """Injected failures and crashes (see `flowkit.testing`)."""

    def fail(self, run: Run, node: PlanNode, action: str, attempt: int) -> None:
        """Raise `InjectedFailure` when the plan says this attempt fails."""

    def crash(self, run: Run, node: PlanNode, action: str, point: str) -> None:
        """Raise `SimulatedCrash` when the plan crashes here (`before`/`after` the checkpoint)."""


class Run:
    """The mutable state of one run of a plan (or of a nested workflow inside one)."""

    __slots__ = (
        "_scope",
        "attempts",
        "children",
        "clock",
        "comp_failed",
        "comp_inputs",
        "compensated_at",
        "conds",
        "container",
        "deadline",
        "due",
        "emitter",
        "ended",
        "errors",
        "event_group_id",
        "faults",
        "input",
        "invoked",
        "journal",
        "metadata",
        "next_stage",
        "outputs",
        "parent",
        "partial",
        "plan",
        "prefix",
        "result",
        "skip_rest",
        "started",
        "states",
        "status",
        "stop",
        "transaction_id",
    )

    def __init__(
        self,
        plan: Plan,
        input: Any,
        transaction_id: str,
        container: Registry | Scope | None = None,
        *,
        event_group_id: str | None = None,
        emitter: Emitter | None = None,
        journal: Journal | None = None,
        faults: Faults | None = None,
        parent: Run | None = None,
        prefix: str = "",
        clock: Clock | None = None,
    ) -> None:
        n = len(plan.nodes)
        self.plan = plan
        self.input = input
        self.transaction_id = transaction_id
        self.container = container
        self._scope: Scope | None = None
        self.event_group_id = event_group_id
        self.emitter = emitter
        self.journal = journal
        self.faults = faults
        self.parent = parent
        self.prefix = prefix
        self.stop: Any = parent.stop if parent is not None else None  # a threading.Event
        self.outputs: list[Any] = plan.initial_outputs.copy()
        self.comp_inputs: list[Any] = [None] * n
        self.states: list[StepState | None] = [None] * n
        self.attempts: list[int] = [0] * n
        self.started: list[float | None] = [None] * n
        self.ended: list[float | None] = [None] * n
        self.compensated_at: list[float | None] | None = None
        self.invoked: dict[int, StepState] | None = None  # invoke states that compensation replaced
        self.conds: list[bool | None] | None = (
            [None] * plan.n_conditions if plan.n_conditions else None
        )
        self.errors: list[StepError] = parent.errors if parent is not None else []
        self.metadata: dict[str, Any] = parent.metadata if parent is not None else {}
        self.children: dict[int, Run] | None = None
        self.clock: Clock | None = parent.clock if parent is not None else clock
        self.due: dict[int, float] | None = None  # waits' deadlines by node (epoch seconds)
        self.status = TransactionState.INVOKING
        self.next_stage = 0
        self.partial = False
        self.skip_rest = False
        self.comp_failed = False
        self.result: Any = None
        deadline = None if plan.timeout is None else time.monotonic() + plan.timeout
        self.deadline = deadline

    # --- services ------------------------------------------------------------------------------

    @property
    def scope(self) -> Scope:
        """The run's own scope, opened on first use (nested runs share their parent's)."""
        if self.parent is not None:
            return self.parent.scope
        scope = self._scope
        if scope is None:
            container = self.container if self.container is not None else Registry()
            scope = self._scope = container.scope()
        return scope

    def nested(self, node: PlanNode, input: Any) -> Run:
        """The run of a nested-workflow node (made on first use with `input`, then kept)."""
        if self.children is None:
            self.children = {}
        child = self.children.get(node.index)
        if child is None:
            assert node.child is not None
            child = self.children[node.index] = Run(
                node.child,
                input,
                f"{self.transaction_id}/{node.name}",
                event_group_id=self.event_group_id,
                emitter=self.emitter,
                journal=self.journal,
                faults=self.faults,
                parent=self,
                prefix=f"{self.prefix}{node.name}/",
            )
        return child

    def close_scope(self, exc: BaseException | None) -> None:
        """Clean up the run's scoped services, seeing the run's error."""
        scope, self._scope = self._scope, None
        if scope is not None:
            scope.close(exc)

    def open_session(self, ctx: StepContext) -> Any:
        """The unit-of-work session of `ctx`'s step (see `StepContext.session`)."""
        if self.journal is None:
            raise RuntimeError(
                f"step {ctx.step_name!r} asked for ctx.session, but this run has no database "
                "unit of work: run it through an Engine with a SQL store"
            )
        if self.plan.by_name[ctx.step_name].is_async:
            raise RuntimeError(
                f"step {ctx.step_name!r} is async: ctx.session is only given to sync steps"
            )
        return self.journal.open_session(self, ctx)

    # --- conditions ----------------------------------------------------------------------------

    def condition(self, cond: CompiledCondition) -> bool:
        """Evaluate a `when` condition once per run (its parents first)."""
        conds = self.conds
        assert conds is not None
        value = conds[cond.index]
        if value is None:
            parent = cond.parent
            value = (parent is None or self.condition(parent)) and bool(
                cond.predicate(cond.get(self))
            )
            conds[cond.index] = value
        return value

    # --- outcomes ------------------------------------------------------------------------------

    def full_name(self, node: PlanNode) -> str:
        """The node's name as recorded in the root run (`"child/step"` when nested)."""
        return self.prefix + node.name

    def skip(self, node: PlanNode, state: StepState = _SKIPPED, *, record: bool = True) -> int:
        """Mark a node skipped; downstream refs to it resolve to None.

        `record=False` leaves no checkpoint (a `when` that is false: recovery evaluates it
        again).
        """
        i = node.index
        self.states[i] = state
        self.outputs[i] = SKIPPED
        if record and self.journal is not None:
            self.journal.invoked(self, node, None)
        if self.emitter is not None:
            self.emitter.emit("step_skipped", events.DEBUG, self.full_name(node), state=state)
        return OK

    def fail(
        self,
        node: PlanNode,
        exc: BaseException,
        ctx: StepContext | None = None,
        state: StepState = _FAILED,
        comp_input: Any = None,
    ) -> int:
        """Record a node's final failure; returns FAIL unless the node lets the run go on.

        A failed (or timed-out) step never commits its database writes: its session is
        rolled back before the failure is checkpointed.
        """
        if ctx is not None and ctx._session is not None and self.journal is not None:
            self.journal.discard(ctx)
        i = node.index
        name = self.full_name(node)
        soft = node.fails_softly
        self.errors.append(StepError.from_exception(name, "invoke", exc, fatal=not soft))
        self.states[i] = state
        self.comp_inputs[i] = comp_input
        self.ended[i] = time.time()
        if ctx is not None:
            self.attempts[i] = ctx.attempt
        if soft:
            self.outputs[i] = SKIPPED
            self.partial = True
            self.skip_rest = node.skip_on
        self.checkpoint_invoke(node, ctx)
        if self.emitter is not None:
            level = events.WARNING if soft else events.ERROR
            self.emitter.emit("step_failed", level, name, self.attempts[i], error=repr(exc))
        return OK if soft else FAIL

    def checkpoint_invoke(
        self, node: PlanNode, ctx: StepContext | None, *, record: bool = True
    ) -> None:
        """Write the end of a node's invoke (crash points of `flowkit.testing` around it)."""
        faults = self.faults
        if faults is not None:
            faults.crash(self, node, "invoke", "before")
        if record and self.journal is not None:
            self.journal.invoked(self, node, ctx)
        if faults is not None:
            faults.crash(self, node, "invoke", "after")

    def park_until(self, node: PlanNode, seconds: float) -> None:
        """Give a waiting node its deadline, `seconds` from now on the run's clock (which
        also dates its parking, so the wait's length can be told from its row)."""
        now = epoch_of(self.clock) if self.clock is not None else time.time()
        self.set_due(node.index, now + seconds)
        self.ended[node.index] = now

    def set_due(self, index: int, at: float) -> None:
        """Record the deadline (epoch seconds) of the waiting node `index`."""
        if self.due is None:
            self.due = {}
        self.due[index] = at

    def begin(self, node: PlanNode, attempt: int) -> float:
        """Mark a node invoking; returns the attempt's start time."""
        t0 = time.time()
        i = node.index
        if self.started[i] is None:
            self.started[i] = t0
        self.states[i] = _INVOKING
        emitter = self.emitter
        if emitter is not None and emitter.debug:
            emitter.emit("step_started", events.DEBUG, self.full_name(node), attempt)
        return t0

    # --- results -------------------------------------------------------------------------------

    def step_records(self) -> dict[str, StepRecord]:
        """Per-step records by name, nested runs' steps after their node."""
        records: dict[str, StepRecord] = {}
        for node in self.plan.nodes:
            if node is None:
                continue
            i = node.index
            state = self.states[i] or StepState.NOT_STARTED
            invoked = self.invoked.get(i, state) if self.invoked else state
            records[self.full_name(node)] = StepRecord(
                self.full_name(node),
                state,
                self.attempts[i],
                datetime_of(self.started[i]),
                datetime_of(self.ended[i]),
                datetime_of(self.compensated_at[i]) if self.compensated_at else None,
                None if invoked is StepState.NOT_STARTED else invoked,
            )
            child = self.children.get(i) if self.children else None
            if child is not None:
                records.update(child.step_records())
        return records

    def to_result(self) -> RunResult[Any]:
        """The run's `RunResult` (step records are built only if read)."""
        return RunResult(
            result=self.result,
            status=self.status,
            errors=self.errors,
            transaction_id=self.transaction_id,
            workflow=self.plan.name,
            is_partially_completed=self.partial,
            steps=self.step_records,
            waiting=self.waiting_outputs() if self.status is TransactionState.WAITING else None,
        )

    def waiting_outputs(self) -> dict[str, Any]:
        """What each waiting step's invoke returned, by name (nested runs' steps included)."""
        return {run.full_name(node): run.outputs[node.index] for run, node in self.waiting()}

    def waiting(self) -> Iterator[tuple[Run, PlanNode]]:
        """The steps waiting for a signal, with the (nested) run each belongs to."""
        for node in self.plan.nodes:
            if node is None:
                continue
            if self.states[node.index] is _WAITING and node.child is None:
                yield self, node
            child = self.children.get(node.index) if self.children else None
            if child is not None:
                yield from child.waiting()
