"""Executing a compiled plan: forward through the stages, then compensation in reverse.

One driver coroutine serves both `run()` and `run_async()`. When a plan has no async parts the
coroutine never suspends, so `run()` drives it with a single `send(None)`, without an event loop.
The hot path (a plain sync step) is one inline call: no awaits, no per-step objects beyond the
lazy `StepContext`, state kept in per-run lists indexed by node.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from flowkit import events
from flowkit.compensation import compensate
from flowkit.container import Registry, Scope
from flowkit.exceptions import (
    CompensationFailed,
    DefinitionError,
    StepTimeout,
    WorkflowTimeout,
)
from flowkit.plan import Plan, PlanNode, Stage
from flowkit.retry import call_with_retries, call_with_retries_async
from flowkit.run import (
    _DONE,
    _FAILED,
    _ON_LOOP,
    _WAITING,
    FAIL,
    OK,
    PARK,
    STOP,
    Run,
    _drive_sync,
    _in_loop,
)
from flowkit.state import (
    RunResult,
    StepError,
    StepState,
    TransactionState,
)
from flowkit.step import StepContext, check_name

T = TypeVar("T")


# --- invoking ---------------------------------------------------------------------------------


def _prepare(run: Run, node: PlanNode) -> tuple[bool, Any]:
    """Check the node's `when` and build its input; (False, code) when it cannot run."""
    cond = node.cond
    try:
        if cond is not None and not run.condition(cond):
            return False, run.skip(node, record=False)  # recovery evaluates the when again
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
    run.begin(node, 1)
    child = run.nested(node, inp)  # a recovered run may already be inside it
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
    # a finished nested run needs no checkpoint of its own: its steps' rows say it all
    run.checkpoint_invoke(node, None, record=code != OK)
    return code


# --- stages -----------------------------------------------------------------------------------


async def _stage_group(run: Run, nodes: tuple[PlanNode, ...]) -> int:
    """Run parallel siblings: threads for sync ones, tasks for async ones; wait for all.

    Siblings a recovered run had already finished are not run again.
    """
    nodes = tuple(n for n in nodes if run.states[n.index] is None)
    if len(nodes) == 1:
        node = nodes[0]
        return invoke_sync(run, node) if node.fast else await invoke_async(run, node)
    if not nodes:
        return OK
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


__all__ = ["drive", "drive_to_end", "raise_for"]
