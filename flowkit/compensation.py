"""Compensation: undo every started step in exact reverse, parallel siblings together."""

from __future__ import annotations

import asyncio
import inspect
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flowkit import events
from flowkit.loop import ON_LOOP, drive_sync
from flowkit.plan import PlanNode
from flowkit.retry import call_with_retries, call_with_retries_async
from flowkit.run import COMPENSABLE, Run
from flowkit.state import (
    StepError,
    StepState,
    TransactionState,
)
from flowkit.step import StepContext


def _needs_compensation(run: Run, node: PlanNode) -> bool:
    state = run.states[node.index]
    if state not in COMPENSABLE:
        return False
    if state is StepState.FAILED and node.fails_softly:
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
            if ON_LOOP.get():
                return True, await call_with_retries_async(node.retry, exc, attempt)
            return True, call_with_retries(node.retry, exc, lambda n: drive_sync(attempt(n)))
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
    if ON_LOOP.get():
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(
                loop.run_in_executor(None, drive_sync, _compensate_node(run, n))
                if _sync_compensation(n)
                else _compensate_node(run, n)
                for n in nodes
            )
        )
        return
    with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="flowkit") as pool:
        futures = [pool.submit(drive_sync, _compensate_node(run, n)) for n in nodes]
        for future in futures:
            future.result()


# --- whole runs -------------------------------------------------------------------------------


def _sync_compensation(node: PlanNode) -> bool:
    fn = node.compensate_fn
    return node.child is None and fn is not None and not inspect.iscoroutinefunction(fn)
