"""Executing a compiled plan: forward through the stages, then compensation in reverse.

One driver coroutine serves both `run()` and `run_async()`. When a plan has no async parts the
coroutine never suspends, so `run()` drives it with a single `send(None)`, without an event loop.
The hot path (a plain sync step) is one inline call: no awaits, no per-step objects beyond the
lazy `StepContext`, state kept in per-run lists indexed by node.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from flowkit import events
from flowkit.container import Registry, Scope
from flowkit.events import Emitter
from flowkit.exceptions import (
    CompensationFailed,
    DefinitionError,
    NotSerializable,
    StepTimeout,
    WorkflowTimeout,
)
from flowkit.plan import SKIPPED, CompiledCondition, Plan, PlanNode, Stage
from flowkit.retry import call_with_retries, call_with_retries_async
from flowkit.state import (
    RunResult,
    StepError,
    StepRecord,
    StepState,
    TransactionState,
)
from flowkit.step import StepContext, StepResponse, check_name

T = TypeVar("T")

_DONE = StepState.DONE
_FAILED = StepState.FAILED
_TIMEOUT = StepState.TIMEOUT
_WAITING = StepState.WAITING
_SKIPPED = StepState.SKIPPED
_INVOKING = StepState.INVOKING
_COMPENSABLE = frozenset({_DONE, _TIMEOUT, _WAITING, _FAILED})

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
        "comp_failed",
        "comp_inputs",
        "compensated_at",
        "conds",
        "container",
        "deadline",
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

    def skip(self, node: PlanNode, state: StepState = _SKIPPED) -> int:
        """Mark a node skipped; downstream refs to it resolve to None."""
        i = node.index
        self.states[i] = state
        self.outputs[i] = SKIPPED
        if self.journal is not None:
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

    def succeed(self, node: PlanNode, out: Any, ctx: StepContext, t0: float) -> int:
        """Record what a step returned (done, skipped, timed out or now waiting)."""
        if type(out) is StepResponse or isinstance(out, StepResponse):
            if out.skipped:
                if ctx._session is not None and self.journal is not None:
                    self.journal.discard(ctx)
                self.attempts[node.index] = ctx.attempt
                return self.skip(node)
            comp = out.compensate_input
            out = out.output
        else:
            comp = out
        t1 = time.time()
        timeout = node.timeout
        if timeout is not None and t1 - t0 > timeout:
            return self.fail(node, StepTimeout(node.name, timeout), ctx, _TIMEOUT, comp)
        if ctx._session is not None:
            try:  # the step's own writes fail here, not inside its checkpoint
                self.journal.flush(ctx)  # type: ignore[union-attr]
            except Exception as exc:
                return self.fail(node, exc, ctx)
        i = node.index
        self.outputs[i] = out
        self.comp_inputs[i] = comp
        self.states[i] = _WAITING if node.async_completion else _DONE
        self.ended[i] = t1
        self.attempts[i] = ctx.attempt
        try:
            self.checkpoint_invoke(node, ctx)
        except NotSerializable as exc:
            return self.fail(node, exc, ctx)
        emitter = self.emitter
        if emitter is not None and emitter.debug:
            name = "step_waiting" if node.async_completion else "step_succeeded"
            emitter.emit(name, events.DEBUG, self.full_name(node), ctx.attempt, duration=t1 - t0)
        return PARK if node.async_completion else OK

    def checkpoint_invoke(self, node: PlanNode, ctx: StepContext | None) -> None:
        faults = self.faults
        if faults is not None:
            faults.crash(self, node, "invoke", "before")
        if self.journal is not None:
            self.journal.invoked(self, node, ctx)
        if faults is not None:
            faults.crash(self, node, "invoke", "after")

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

    def retrying(self, node: PlanNode, ctx: StepContext, attempt: int) -> None:
        """Announce another attempt and throw away the failed attempt's session."""
        if ctx._session is not None and self.journal is not None:
            self.journal.discard(ctx)
        if self.emitter is not None:
            self.emitter.emit("step_retrying", events.WARNING, self.full_name(node), attempt)

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
                _datetime(self.started[i]),
                _datetime(self.ended[i]),
                _datetime(self.compensated_at[i]) if self.compensated_at else None,
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
        )


def _datetime(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


# --- invoking ---------------------------------------------------------------------------------


def _prepare(run: Run, node: PlanNode) -> tuple[bool, Any]:
    """Check the node's `when` and build its input; (False, code) when it cannot run."""
    cond = node.cond
    try:
        if cond is not None and not run.condition(cond):
            return False, run.skip(node)
        return True, node.get(run)
    except Exception as exc:
        return False, run.fail(node, exc)


def _attempt_sync(run: Run, node: PlanNode, inp: Any, ctx: StepContext) -> tuple[Any, float]:
    t0 = run.begin(node, ctx.attempt)
    try:
        if run.faults is not None:
            run.faults.fail(run, node, "invoke", ctx.attempt)
        assert node.step is not None
        return node.step.fn(inp, ctx), t0
    except BaseException:
        if ctx._session is not None and run.journal is not None:
            run.journal.discard(ctx)
        raise


def invoke_sync(run: Run, node: PlanNode) -> int:
    """Run a plain sync step, with retries, and record its outcome."""
    ready, inp = _prepare(run, node)
    if not ready:
        return int(inp)
    ctx = StepContext(run, node, 1)
    t0 = run.begin(node, 1)
    try:
        if run.faults is not None:
            run.faults.fail(run, node, "invoke", 1)
        out = node.step.fn(inp, ctx)  # type: ignore[union-attr]
    except Exception as exc:
        if ctx._session is not None and run.journal is not None:
            run.journal.discard(ctx)
        if node.retry is None:
            return run.fail(node, exc, ctx)
        return _retry_sync(run, node, inp, exc, ctx)
    return run.succeed(node, out, ctx, t0)


def _retry_sync(run: Run, node: PlanNode, inp: Any, exc: Exception, ctx: StepContext) -> int:
    last = [ctx]

    def attempt(n: int) -> tuple[Any, StepContext, float]:
        run.retrying(node, last[0], n)
        ctx = last[0] = StepContext(run, node, n)
        out, t0 = _attempt_sync(run, node, inp, ctx)
        return out, ctx, t0

    try:
        assert node.retry is not None
        out, ctx, t0 = call_with_retries(node.retry, exc, attempt)
    except Exception as final:
        return run.fail(node, final, last[0])
    return run.succeed(node, out, ctx, t0)


async def _attempt_async(
    run: Run, node: PlanNode, inp: Any, attempt: int
) -> tuple[Any, StepContext, float]:
    ctx = StepContext(run, node, attempt)
    t0 = run.begin(node, attempt)
    if run.faults is not None:
        run.faults.fail(run, node, "invoke", attempt)
    assert node.step is not None
    call = node.step.fn(inp, ctx)
    if not node.step.is_async:
        return call, ctx, t0
    return await _with_deadline(run, node, call), ctx, t0


async def _with_deadline(run: Run, node: PlanNode, call: Coroutine[Any, Any, T]) -> T:
    """Await an async step under its own timeout and what is left of the workflow's."""
    limit = node.timeout
    workflow_left = None if run.deadline is None else max(run.deadline - time.monotonic(), 0.0)
    if workflow_left is not None and (limit is None or workflow_left < limit):
        limit, cause = workflow_left, "workflow"
    else:
        cause = "step"
    if limit is None:
        return await call
    try:
        async with asyncio.timeout(limit) as cm:
            return await call
    except TimeoutError:
        if not cm.expired():
            raise
        if cause == "workflow":
            raise WorkflowTimeout(run.plan.name, run.plan.timeout or 0.0) from None
        raise StepTimeout(node.name, limit) from None


async def invoke_async(run: Run, node: PlanNode) -> int:
    """Run any step node from the driver coroutine (async steps, waits, nested workflows)."""
    if node.child is not None:
        return await _invoke_child(run, node)
    ready, inp = _prepare(run, node)
    if not ready:
        return int(inp)
    last: list[StepContext] = []

    async def attempt(n: int) -> tuple[Any, StepContext, float]:
        if last:
            run.retrying(node, last[-1], n)
        last.append(StepContext(run, node, n))
        return await _attempt_async(run, node, inp, n)

    try:
        try:
            out, ctx, t0 = await attempt(1)
        except Exception as exc:
            if node.retry is None or isinstance(exc, StepTimeout):
                raise
            if _ON_LOOP.get():
                out, ctx, t0 = await call_with_retries_async(node.retry, exc, attempt)
            else:  # a sync step driven without a loop: wait by sleeping
                out, ctx, t0 = call_with_retries(node.retry, exc, lambda n: _drive_sync(attempt(n)))
    except Exception as final:
        return run.fail(node, final, last[-1] if last else None)
    return run.succeed(node, out, ctx, t0)


async def _invoke_child(run: Run, node: PlanNode) -> int:
    ready, inp = _prepare(run, node)
    if not ready:
        return int(inp)
    assert node.child is not None
    run.begin(node, 1)
    if run.children is None:
        run.children = {}
    child = run.children.get(node.index)  # present when a recovered run resumes inside it
    if child is None:
        child = run.children[node.index] = Run(
            node.child,
            inp,
            f"{run.transaction_id}/{node.name}",
            event_group_id=run.event_group_id,
            emitter=run.emitter,
            journal=run.journal,
            faults=run.faults,
            parent=run,
            prefix=f"{run.prefix}{node.name}/",
        )
    return await _finish_child(run, node, child)


async def _finish_child(run: Run, node: PlanNode, child: Run) -> int:
    """Drive a nested run; its failure (already compensated inside) fails the node."""
    i = node.index
    code = FAIL if child.status is TransactionState.COMPENSATING else await forward(child)
    if code == STOP:
        return STOP
    if code == PARK:
        run.states[i] = _WAITING
        return PARK
    if code == FAIL:
        await compensate(child)
        run.states[i] = _FAILED
    else:
        run.outputs[i] = child.result
        run.states[i] = _DONE
    run.ended[i] = time.time()
    run.attempts[i] = 1
    run.checkpoint_invoke(node, None)
    return code


# --- stages -----------------------------------------------------------------------------------


def _drive_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a plan without async parts) to its end."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("flowkit: a workflow without async steps tried to suspend")


async def _stage_group(run: Run, nodes: tuple[PlanNode, ...]) -> int:
    """Run parallel siblings: threads for sync ones, tasks for async ones; wait for all."""
    if _ON_LOOP.get():
        codes = await _group_on_loop(run, nodes)
    else:
        codes = _group_in_threads(run, nodes)
    if FAIL in codes:
        return FAIL
    if STOP in codes:
        return STOP
    return PARK if PARK in codes else OK


def _group_in_threads(run: Run, nodes: tuple[PlanNode, ...]) -> list[int]:
    def invoke(node: PlanNode) -> int:
        return invoke_sync(run, node) if node.fast else _drive_sync(invoke_async(run, node))

    with ThreadPoolExecutor(max_workers=len(nodes) - 1, thread_name_prefix="flowkit") as pool:
        futures = [pool.submit(invoke, node) for node in nodes[1:]]
        first: list[int] = []
        crash: BaseException | None = None
        try:
            first.append(invoke(nodes[0]))
        except BaseException as exc:
            crash = exc
        codes = [*first, *(_result_or_crash(f) for f in futures)]
    if crash is not None:
        raise crash
    return codes


def _result_or_crash(future: Any) -> int:
    return int(future.result())


async def _group_on_loop(run: Run, nodes: tuple[PlanNode, ...]) -> list[int]:
    loop = asyncio.get_running_loop()
    jobs = [
        loop.run_in_executor(None, invoke_sync, run, node) if node.fast else invoke_async(run, node)
        for node in nodes
    ]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [int(r) for r in results]  # type: ignore[arg-type]


# True while the driver runs as a coroutine on an event loop (run_async, or run() of a plan with
# async parts). Threads started for parallel sync steps see the default, False: they block.
_ON_LOOP: ContextVar[bool] = ContextVar("flowkit_on_loop", default=False)


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def forward(run: Run) -> int:
    """Run stages from `run.next_stage` until one fails or parks, or all are done."""
    stages = run.plan.stages
    count = len(stages)
    deadline = run.deadline
    k = run.next_stage
    stop = run.stop
    while k < count:
        stage = stages[k]
        if stop is not None and stop.is_set():  # a graceful shutdown: between steps only
            run.next_stage = k
            return STOP
        if deadline is not None and time.monotonic() > deadline:
            run.next_stage = k + 1
            return _workflow_timeout(run, stage)
        if type(stage) is PlanNode:
            code = invoke_sync(run, stage) if stage.fast else await invoke_async(run, stage)
        else:
            code = await _stage_group(run, stage)  # type: ignore[arg-type]
        k += 1
        if code != OK:
            run.next_stage = k
            return code
        if run.skip_rest:
            _skip_rest(run, k)
            k = count
    run.next_stage = k
    return _resolve_result(run)


def _workflow_timeout(run: Run, stage: Stage) -> int:
    """The deadline passed between steps: the run fails before `stage`, which never starts."""
    node = stage if isinstance(stage, PlanNode) else stage[0]
    return fail_run(
        run, run.full_name(node), WorkflowTimeout(run.plan.name, run.plan.timeout or 0.0)
    )


def fail_run(run: Run, name: str, exc: BaseException) -> int:
    """Fail the run outside any step (a deadline, a response that cannot be built)."""
    run.errors.append(StepError.from_exception(name, "invoke", exc))
    if run.journal is not None and run.parent is None:
        run.journal.failing(run)
    return FAIL


def _skip_rest(run: Run, k: int) -> None:
    for stage in run.plan.stages[k:]:
        for node in (stage,) if isinstance(stage, PlanNode) else stage:
            run.skip(node, StepState.SKIPPED_FAILURE)


def _resolve_result(run: Run) -> int:
    try:
        run.result = run.plan.result(run)
        if run.journal is not None and run.parent is None:
            run.journal.accept_result(run)
    except Exception as exc:
        return fail_run(run, f"{run.prefix}<response>", exc)
    return OK


# --- compensating -----------------------------------------------------------------------------


def _needs_compensation(run: Run, node: PlanNode) -> bool:
    state = run.states[node.index]
    if state not in _COMPENSABLE:
        return False
    if state is _FAILED and node.fails_softly:
        return False
    if node.child is not None:
        return run.children is not None and node.index in run.children
    return node.compensate_fn is not None


def _compensate_attempt(run: Run, node: PlanNode, attempt: int) -> Any:
    ctx = StepContext(run, node, attempt, "compensate")
    if run.faults is not None:
        run.faults.fail(run, node, "compensate", attempt)
    fn = node.compensate_fn
    assert fn is not None
    try:
        return fn(run.comp_inputs[node.index], ctx), ctx
    except BaseException:
        if ctx._session is not None and run.journal is not None:
            run.journal.discard(ctx)
        raise


async def _compensate_node(run: Run, node: PlanNode) -> None:
    """Undo one node: its compensation with retries, or its nested run in reverse."""
    i = node.index
    if run.invoked is None:
        run.invoked = {}
    state = run.states[i]
    if state is not None:
        run.invoked[i] = state
    run.states[i] = StepState.COMPENSATING
    if node.child is not None:
        child = run.children[i]  # type: ignore[index]
        await compensate(child)
        ok, ctx = child.status is TransactionState.REVERTED, None
    else:
        ok, ctx = await _compensate_step(run, node)
    run.states[i] = StepState.REVERTED if ok else StepState.COMPENSATION_FAILED
    if run.compensated_at is None:
        run.compensated_at = [None] * len(run.plan.nodes)
    run.compensated_at[i] = time.time()
    if not ok:
        run.comp_failed = True
    _checkpoint_compensation(run, node, ctx)
    if run.emitter is not None:
        name = "step_compensated" if ok else "compensation_failed"
        run.emitter.emit(name, events.DEBUG if ok else events.ERROR, run.full_name(node))


async def _compensate_step(run: Run, node: PlanNode) -> tuple[bool, StepContext | None]:
    last: list[Any] = [None]

    async def attempt(n: int) -> Any:
        out, ctx = _compensate_attempt(run, node, n)
        last[0] = ctx
        if asyncio.iscoroutine(out):
            await out
        return ctx

    try:
        try:
            return True, await attempt(1)
        except Exception as exc:
            if node.retry is None:
                raise
            if _ON_LOOP.get():
                return True, await call_with_retries_async(node.retry, exc, attempt)
            return True, call_with_retries(node.retry, exc, lambda n: _drive_sync(attempt(n)))
    except Exception as final:
        run.errors.append(StepError.from_exception(run.full_name(node), "compensate", final))
        return False, last[0]


def _checkpoint_compensation(run: Run, node: PlanNode, ctx: StepContext | None) -> None:
    faults = run.faults
    if faults is not None:
        faults.crash(run, node, "compensate", "before")
    if run.journal is not None:
        run.journal.compensated(run, node, ctx)
    if faults is not None:
        faults.crash(run, node, "compensate", "after")


async def compensate(run: Run) -> None:
    """Compensate every started stage in reverse; parallel siblings together."""
    run.status = TransactionState.COMPENSATING
    if run.emitter is not None and run.parent is None:
        run.emitter.emit("compensation_started", events.INFO)
    stages = run.plan.stages
    for k in range(min(run.next_stage, len(stages)) - 1, -1, -1):
        stage = stages[k]
        nodes = [
            n
            for n in ((stage,) if isinstance(stage, PlanNode) else stage)
            if _needs_compensation(run, n)
        ]
        if len(nodes) == 1:
            await _compensate_node(run, nodes[0])
        elif nodes:
            await _compensate_together(run, nodes)
    run.status = TransactionState.FAILED if run.comp_failed else TransactionState.REVERTED


async def _compensate_together(run: Run, nodes: list[PlanNode]) -> None:
    if _ON_LOOP.get():
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(
                loop.run_in_executor(None, _drive_sync, _compensate_node(run, n))
                if _sync_compensation(n)
                else _compensate_node(run, n)
                for n in nodes
            )
        )
        return
    with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="flowkit") as pool:
        futures = [pool.submit(_drive_sync, _compensate_node(run, n)) for n in nodes]
        for future in futures:
            future.result()


# --- whole runs -------------------------------------------------------------------------------


def _sync_compensation(node: PlanNode) -> bool:
    fn = node.compensate_fn
    return node.child is None and fn is not None and not inspect.iscoroutinefunction(fn)


async def drive(run: Run, *, on_loop: bool = False) -> RunResult[Any]:
    """Take a run from where it stands to its end (or to a wait) and record the outcome.

    `on_loop` says the coroutine is awaited on an event loop (else it is driven by `send`).
    """
    token = _ON_LOOP.set(on_loop)
    try:
        return await _drive(run)
    finally:
        _ON_LOOP.reset(token)


async def _drive(run: Run) -> RunResult[Any]:
    if run.status is not TransactionState.COMPENSATING:
        code = await forward(run)
        if code == PARK:
            return _park(run)
        if code == STOP:
            return _release(run)
        if code == OK:
            run.status = TransactionState.DONE
            return _finish(run)
    await compensate(run)
    return _finish(run)


def _release(run: Run) -> RunResult[Any]:
    """Stopped between steps: give the run up (another engine resumes it)."""
    if run.journal is not None:
        run.journal.release(run)
    run.close_scope(None)
    return run.to_result()


def _park(run: Run) -> RunResult[Any]:
    run.status = TransactionState.WAITING
    if run.journal is not None:
        run.journal.finished(run)
    run.close_scope(None)
    return run.to_result()


def _finish(run: Run) -> RunResult[Any]:
    if run.status is not TransactionState.DONE:
        run.result = None
    if run.journal is not None:
        run.journal.finished(run)
    first = (
        run.errors[0].exception if run.errors and run.status is not TransactionState.DONE else None
    )
    run.close_scope(first)
    if run.emitter is not None:
        level = {TransactionState.DONE: events.INFO, TransactionState.REVERTED: events.WARNING}
        run.emitter.emit(
            "run_finished", level.get(run.status, events.ERROR), status=run.status.value
        )
    return run.to_result()


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


def _uuid4_hex() -> str:
    """`uuid.uuid4().hex`, without building a UUID object (a third of the cost)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


def new_transaction_id(transaction_id: str | None) -> str:
    """The given transaction id (checked) or a fresh uuid4 hex."""
    if transaction_id is None:
        return _uuid4_hex()
    check_name(transaction_id, "transaction id")
    return transaction_id


def _prepare_run(
    workflow: Any,
    input: Any,
    container: Registry | Scope | None,
    transaction_id: str | None,
    event_group_id: str | None,
) -> Run:
    plan: Plan = workflow.plan
    if plan.has_async_completion:
        raise DefinitionError(
            f"workflow {plan.name!r} has an async_completion step: it needs an Engine with a store"
        )
    tx = new_transaction_id(transaction_id)
    return Run(
        plan,
        input,
        tx,
        container,
        event_group_id=event_group_id,
        emitter=events.emitter_for(plan.name, tx),
    )


def run_in_memory(
    workflow: Any,
    input: Any,
    container: Registry | Scope | None,
    transaction_id: str | None,
    throw_on_error: bool,
    event_group_id: str | None,
) -> RunResult[Any]:
    """`Workflow.run` without an engine."""
    run = _prepare_run(workflow, input, container, transaction_id, event_group_id)
    result = drive_to_end(run)
    if throw_on_error:
        raise_for(result)
    return result


async def run_in_memory_async(
    workflow: Any,
    input: Any,
    container: Registry | Scope | None,
    transaction_id: str | None,
    throw_on_error: bool,
    event_group_id: str | None,
) -> RunResult[Any]:
    """`Workflow.run_async` without an engine."""
    run = _prepare_run(workflow, input, container, transaction_id, event_group_id)
    result = await drive_started(run, on_loop=True)
    if throw_on_error:
        raise_for(result)
    return result


def drive_to_end(run: Run) -> RunResult[Any]:
    """Drive a run from sync code: inline when it has no async parts, else on a private loop.

    Raises:
        RuntimeError: the plan has async parts and an event loop is already running here.
    """
    if not run.plan.needs_loop:
        return _drive_sync(drive_started(run, on_loop=False))
    if _in_loop():
        raise RuntimeError(
            f"workflow {run.plan.name!r} has async steps and an event loop is running in this "
            "thread: use `await workflow.run_async(...)` instead of `run()`"
        )
    return asyncio.run(drive_started(run, on_loop=True))


async def drive_started(run: Run, *, on_loop: bool) -> RunResult[Any]:
    """`drive`, with the run-started event."""
    if run.emitter is not None:
        run.emitter.emit("run_started", events.DEBUG)
    return await drive(run, on_loop=on_loop)


def stage_nodes(stage: Stage) -> Sequence[PlanNode]:
    """The nodes of a stage (one, or the parallel siblings)."""
    return (stage,) if isinstance(stage, PlanNode) else stage


__all__ = ["Journal", "Run", "drive", "drive_to_end", "raise_for"]
