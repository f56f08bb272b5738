"""Invoking one step node: its `when`, its input, the call, retries and timeouts.

The hot path (`invoke_sync`, a plain sync step) is one inline call: no awaits, no per-step
objects beyond the lazy `StepContext`. Everything else goes through `invoke_async`, awaited by
the driver coroutine in `flowkit.runner` (which also handles nested workflows).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from flowkit import events
from flowkit.exceptions import NotSerializable, StepTimeout, WorkflowTimeout
from flowkit.loop import ON_LOOP, drive_sync
from flowkit.plan import PlanNode
from flowkit.retry import call_with_retries, call_with_retries_async
from flowkit.run import OK, PARK, Run
from flowkit.state import StepState
from flowkit.step import StepContext, StepResponse

__all__ = ["invoke_async", "invoke_sync", "prepare", "retrying", "succeed"]

T = TypeVar("T")
_DONE = StepState.DONE
_TIMEOUT = StepState.TIMEOUT
_WAITING = StepState.WAITING


def prepare(run: Run, node: PlanNode) -> tuple[bool, Any]:
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
    ready, inp = prepare(run, node)
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
    return succeed(run, node, out, ctx, t0)


def _retry_sync(run: Run, node: PlanNode, inp: Any, exc: Exception, ctx: StepContext) -> int:
    last = [ctx]

    def attempt(n: int) -> tuple[Any, StepContext, float]:
        retrying(run, node, last[0], n)
        ctx = last[0] = StepContext(run, node, n)
        out, t0 = _attempt_sync(run, node, inp, ctx)
        return out, ctx, t0

    try:
        assert node.retry is not None
        out, ctx, t0 = call_with_retries(node.retry, exc, attempt)
    except Exception as final:
        return run.fail(node, final, last[0])
    return succeed(run, node, out, ctx, t0)


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
    """Run a step node from the driver coroutine (async steps, waits, retries that sleep)."""
    ready, inp = prepare(run, node)
    if not ready:
        return int(inp)
    last: list[StepContext] = []

    async def attempt(n: int) -> tuple[Any, StepContext, float]:
        if last:
            retrying(run, node, last[-1], n)
        last.append(StepContext(run, node, n))
        return await _attempt_async(run, node, inp, n)

    try:
        try:
            out, ctx, t0 = await attempt(1)
        except Exception as exc:
            if node.retry is None or isinstance(exc, StepTimeout):
                raise
            if ON_LOOP.get():
                out, ctx, t0 = await call_with_retries_async(node.retry, exc, attempt)
            else:  # a sync step driven without a loop: wait by sleeping
                out, ctx, t0 = call_with_retries(node.retry, exc, lambda n: drive_sync(attempt(n)))
    except Exception as final:
        return run.fail(node, final, last[-1] if last else None)
    return succeed(run, node, out, ctx, t0)


def succeed(run: Run, node: PlanNode, out: Any, ctx: StepContext, t0: float) -> int:
    """Record what a step returned (done, skipped, timed out or now waiting)."""
    wait = None
    if type(out) is StepResponse or isinstance(out, StepResponse):
        if out.skipped:
            if ctx._session is not None and run.journal is not None:
                run.journal.discard(ctx)
            run.attempts[node.index] = ctx.attempt
            return run.skip(node)
        comp = out.compensate_input
        wait = out.timeout
        out = out.output
    else:
        comp = out
    t1 = time.time()
    timeout = node.timeout
    if timeout is not None and t1 - t0 > timeout:
        return run.fail(node, StepTimeout(node.name, timeout), ctx, _TIMEOUT, comp)
    if ctx._session is not None:
        try:  # the step's own writes fail here, not inside its checkpoint
            run.journal.flush(ctx)  # type: ignore[union-attr]
        except Exception as exc:
            return run.fail(node, exc, ctx)
    i = node.index
    run.outputs[i] = out
    run.comp_inputs[i] = comp
    run.states[i] = _WAITING if node.async_completion else _DONE
    run.ended[i] = t1
    run.attempts[i] = ctx.attempt
    if node.async_completion:
        wait = wait if wait is not None else node.timeout
        if wait is not None:
            run.park_until(node, wait)
    try:
        run.checkpoint_invoke(node, ctx)
    except NotSerializable as exc:
        return run.fail(node, exc, ctx)
    emitter = run.emitter
    if emitter is not None and emitter.debug:
        name = "step_waiting" if node.async_completion else "step_succeeded"
        emitter.emit(name, events.DEBUG, run.full_name(node), ctx.attempt, duration=t1 - t0)
    return PARK if node.async_completion else OK


def retrying(run: Run, node: PlanNode, ctx: StepContext, attempt: int) -> None:
    """Announce another attempt and throw away the failed attempt's session."""
    if ctx._session is not None and run.journal is not None:
        run.journal.discard(ctx)
    if run.emitter is not None:
        run.emitter.emit("step_retrying", events.WARNING, run.full_name(node), attempt)
