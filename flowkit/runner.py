"""Executing a compiled plan: forward through the stages, then compensation in reverse.

One driver coroutine serves both `run()` and `run_async()`. When a plan has no async parts the
coroutine never suspends, so `run()` drives it with a single `send(None)`, without an event loop.
Steps are invoked by `flowkit.invoke`; state is kept in per-run lists indexed by node.
"""

from __future__ import annotations

import asyncio
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flowkit import events
from flowkit.compensation import compensate
from flowkit.container import Registry, Scope
from flowkit.exceptions import DefinitionError, WorkflowTimeout
from flowkit.invoke import invoke_async, invoke_sync, prepare
from flowkit.loop import ON_LOOP, drive_sync, in_loop
from flowkit.outcome import raise_for
from flowkit.plan import Plan, PlanNode, Stage
from flowkit.run import FAIL, OK, PARK, STOP, Run
from flowkit.state import RunResult, StepError, StepState, TransactionState
from flowkit.step import check_name

_DONE = StepState.DONE
_FAILED = StepState.FAILED
_WAITING = StepState.WAITING


async def invoke_node(run: Run, node: PlanNode) -> int:
    """Run any node from the driver coroutine: a nested workflow here, a step in `invoke`."""
    if node.child is not None:
        return await _invoke_child(run, node)
    return await invoke_async(run, node)


async def _invoke_child(run: Run, node: PlanNode) -> int:
    ready, inp = prepare(run, node)
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

    Siblings a recovered run had already finished are not run again; a sibling step still
    waiting for its signal keeps the stage parked (a nested workflow waiting inside is
    driven on, as it may have been signalled).
    """
    states = run.states
    waiting = any(states[n.index] is _WAITING and n.child is None for n in nodes)
    nodes = tuple(n for n in nodes if _to_run(states[n.index], n))
    if len(nodes) == 1:
        node = nodes[0]
        code = invoke_sync(run, node) if node.fast else await invoke_node(run, node)
        return PARK if code == OK and waiting else code
    if not nodes:
        return PARK if waiting else OK
    if ON_LOOP.get():
        codes = await _group_on_loop(run, nodes)
    else:
        codes = _group_in_threads(run, nodes)
    if FAIL in codes:
        return FAIL
    if STOP in codes:
        return STOP
    return PARK if PARK in codes or waiting else OK


def _to_run(state: StepState | None, node: PlanNode) -> bool:
    """A sibling the stage runs: not started yet, or a nested workflow that was waiting."""
    return state is None or (state is _WAITING and node.child is not None)


def _group_in_threads(run: Run, nodes: tuple[PlanNode, ...]) -> list[int]:
    def invoke(node: PlanNode) -> int:
        return invoke_sync(run, node) if node.fast else drive_sync(invoke_node(run, node))

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
        loop.run_in_executor(None, invoke_sync, run, node) if node.fast else invoke_node(run, node)
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
            code = invoke_sync(run, stage) if stage.fast else await invoke_node(run, stage)
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
    token = ON_LOOP.set(on_loop)
    try:
        return await _drive(run)
    finally:
        ON_LOOP.reset(token)


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
    if run.emitter is not None and run.parent is None:
        run.emitter.emit("run_parked", events.DEBUG, status=run.status.value)
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
    plan: Plan,
    input: Any,
    container: Registry | Scope | None,
    transaction_id: str | None,
    event_group_id: str | None,
) -> Run:
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


def run_plan(
    plan: Plan,
    input: Any,
    container: Registry | Scope | None,
    transaction_id: str | None,
    throw_on_error: bool,
    event_group_id: str | None,
) -> RunResult[Any]:
    """`Workflow.run` without an engine: one run of `plan` in memory."""
    run = _prepare_run(plan, input, container, transaction_id, event_group_id)
    result = drive_to_end(run)
    if throw_on_error:
        raise_for(result)
    return result


async def run_plan_async(
    plan: Plan,
    input: Any,
    container: Registry | Scope | None,
    transaction_id: str | None,
    throw_on_error: bool,
    event_group_id: str | None,
) -> RunResult[Any]:
    """`Workflow.run_async` without an engine."""
    run = _prepare_run(plan, input, container, transaction_id, event_group_id)
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
        return drive_sync(drive_started(run, on_loop=False))
    if in_loop():
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


__all__ = [
    "drive",
    "drive_started",
    "drive_to_end",
    "fail_run",
    "forward",
    "invoke_node",
    "new_transaction_id",
    "run_plan",
    "run_plan_async",
]
