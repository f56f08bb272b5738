"""Continuing runs after the fact: signals for waiting steps, recovery, cancel.

The `Engine` methods `set_step_success`, `set_step_failure`, `recover` and `cancel` delegate
here. Each claims the run first (compare-and-set on its status and lease), rebuilds it from its
step log, and drives it on; none re-raises the run's own failure.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog

from flowkit import events
from flowkit.durable import (
    StoreJournal,
    find_node,
    inflight,
    locate,
    position,
    rebuild,
)
from flowkit.exceptions import (
    IncompatibleRun,
    ProcessKilled,
    RunNotFound,
    SignalledFailure,
    StepNotWaiting,
    TransactionInProgress,
)
from flowkit.plan import PlanNode
from flowkit.reading import step_records
from flowkit.run import Run
from flowkit.state import RunResult, StepState, TransactionState
from flowkit.store import Checkpoint, RunUpdate, Signal, StoredRun

if TYPE_CHECKING:
    from flowkit.container import Registry, Scope
    from flowkit.engine import Engine

    Container = Registry | Scope

__all__ = [
    "RecoveryReport",
    "SkippedRun",
    "apply_signal",
    "cancel",
    "recover",
    "resume",
    "signal",
    "start_claimed",
]


class SkippedRun:
    """A run `recover()` left alone, and why.

    Attributes:
        transaction_id: The run's id.
        workflow: Its workflow's name.
        reason: Why it was not recovered.
    """

    __slots__ = ("reason", "transaction_id", "workflow")

    def __init__(self, transaction_id: str, workflow: str, reason: str) -> None:
        self.transaction_id = transaction_id
        self.workflow = workflow
        self.reason = reason

    def __repr__(self) -> str:
        return f"SkippedRun({self.transaction_id!r}, {self.workflow!r}, {self.reason!r})"


class RecoveryReport(list[RunResult[Any]]):
    """The results of the runs `recover()` finished; `skipped` lists the ones it left alone."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[SkippedRun] = []


def start_claimed(engine: Engine, stored: StoredRun, container: Container | None) -> Run:
    """A queued run a worker just claimed: nothing to rebuild, nothing to count."""
    run = engine._fresh_run(stored, container)
    if run.deadline is None and run.plan.timeout is not None:
        run.deadline = time.monotonic() + run.plan.timeout
    if run.emitter is not None:
        run.emitter.emit("run_started", events.DEBUG)
    return run


def resume(engine: Engine, stored: StoredRun, container: Container | None) -> Run:
    """Rebuild a claimed run from its log, counting this recovery of its in-flight step."""
    loaded = engine.store.load(stored.transaction_id)
    assert loaded is not None
    stored, steps = loaded
    run = engine._fresh_run(stored, container)
    try:
        compensating = stored.status == TransactionState.COMPENSATING
        rebuild(run, steps, engine.codec, compensating=compensating)
    except IncompatibleRun:
        release = Checkpoint(stored.transaction_id, engine.owner, (), RunUpdate(release=True))
        engine.store.write(release)
        raise
    if stored.status == TransactionState.QUEUED:  # run() of a queued id starts it here
        journal = run.journal
        assert isinstance(journal, StoreJournal)
        journal.note(RunUpdate(status=TransactionState.INVOKING))
    _count_recovery(engine, run, stored)
    return run


def _count_recovery(engine: Engine, run: Run, stored: StoredRun) -> None:
    """Each resume of the same in-flight step counts; past its retries, it fails for good."""
    found = inflight(run)
    if found is None:
        return
    target, node = found
    name = target.full_name(node)
    count = stored.recoveries + 1 if stored.recovery_step == name else 1
    journal = run.journal
    assert isinstance(journal, StoreJournal)
    journal.note(RunUpdate(recoveries=count, recovery_step=name))
    limit = (node.retry.max_retries if node.retry else 0) + 1
    if count > limit:
        _give_up(target, node, count)
        position(run)


def _give_up(run: Run, node: PlanNode, count: int) -> None:
    """Fail (or fail to compensate) a step whose process died `count` times in a row."""
    error = ProcessKilled(
        f"step {run.full_name(node)!r} was in flight when its process died {count - 1} times"
    )
    if run.status is TransactionState.COMPENSATING:
        run.states[node.index] = StepState.COMPENSATION_FAILED
        run.errors.append(_step_error(run.full_name(node), "compensate", error))
        run.comp_failed = True
        assert run.journal is not None
        run.journal.compensated(run, node, None)
        return
    run.begin(node, count)
    run.fail(node, error)


def _step_error(step: str, action: Any, exc: BaseException) -> Any:
    from flowkit.state import StepError

    return StepError.from_exception(step, action, exc)


def signal(engine: Engine, tx: str, signal: Signal, container: Container | None) -> RunResult[Any]:
    """Deliver a signal: continue a waiting run, or keep it until the step waits."""
    for _ in range(20):  # a lost race re-reads the run; it settles in a step or two
        stored = engine.store.get_run(tx)
        if stored is None:
            raise RunNotFound(tx)
        state = _target_state(engine, stored, signal.step)
        status = TransactionState(stored.status)
        if state is StepState.WAITING and status is TransactionState.WAITING:
            claimed = engine.store.claim(tx, engine.owner, engine.lease_seconds, (status,))
            if claimed is not None:
                return _continue(engine, claimed, signal, container)
            continue
        if state is not None and state is not StepState.WAITING:
            raise StepNotWaiting(tx, signal.step, f"it is {state.value}")
        if status.is_finished:
            raise StepNotWaiting(tx, signal.step, f"the run is {status.value}")
        outcome = engine.store.put_signal(tx, signal)
        if outcome == "duplicate":
            raise StepNotWaiting(tx, signal.step, "it was already signalled")
        if outcome == "stored":
            return engine._stored_result(tx)
    raise TransactionInProgress(tx, None)


def _target_state(engine: Engine, stored: StoredRun, step: str) -> StepState | None:
    workflow = engine._held(stored)
    node = find_node(workflow.plan, step)
    if node is None:
        raise RunNotFound(stored.transaction_id, step)
    if not node.async_completion:
        raise StepNotWaiting(stored.transaction_id, step, "it is not an async_completion step")
    loaded = engine.store.load(stored.transaction_id)
    assert loaded is not None
    states = step_records(loaded[1])
    record = states.get(step)
    return record.state if record is not None else None


def _continue(
    engine: Engine, stored: StoredRun, signal: Signal, container: Container | None
) -> RunResult[Any]:
    run = resume(engine, stored, container)
    apply_signal(engine, run, signal)
    position(run)
    return engine._drive(run)


def apply_signal(engine: Engine, run: Run, signal: Signal) -> None:
    """Finish (or fail) the signalled step of a run this engine owns."""
    target, node = locate(run, signal.step)
    i = node.index
    if signal.kind == "success":
        output = engine.codec.loads(signal.payload)
        target.outputs[i] = output
        if target.comp_inputs[i] is None:
            target.comp_inputs[i] = output
        target.states[i] = StepState.DONE
        target.ended[i] = time.time()
        assert run.journal is not None
        run.journal.invoked(target, node, None)
        return
    type_name, message = engine.codec.loads(signal.payload)
    target.fail(node, SignalledFailure(type_name, message), comp_input=target.comp_inputs[i])


def recover(engine: Engine, container: Container | None, limit: int) -> RecoveryReport:
    """See `Engine.recover`."""
    report = RecoveryReport()
    for stored in engine.store.expired(limit):
        if stored.workflow not in engine._workflows:
            report.skipped.append(
                SkippedRun(stored.transaction_id, stored.workflow, "unknown workflow")
            )
            continue
        claimed = engine.store.claim(
            stored.transaction_id, engine.owner, engine.lease_seconds, (stored.status,)
        )
        if claimed is None:
            continue
        try:
            run = resume(engine, claimed, container)
        except IncompatibleRun as exc:
            report.skipped.append(SkippedRun(stored.transaction_id, stored.workflow, str(exc)))
            continue
        report.append(engine._drive(run))
    _log_skipped(report.skipped)
    return report


def cancel(engine: Engine, transaction_id: str, container: Container | None) -> RunResult[Any]:
    """See `Engine.cancel`."""
    stored = engine.store.get_run(transaction_id)
    if stored is None:
        raise RunNotFound(transaction_id)
    status = TransactionState(stored.status)
    if status in (TransactionState.REVERTED, TransactionState.FAILED):
        return engine._stored_result(transaction_id)
    engine._held(stored)
    claimed = engine.store.claim(transaction_id, engine.owner, engine.lease_seconds, (status,))
    if claimed is None:
        raise TransactionInProgress(transaction_id, stored.owner)
    run = resume(engine, claimed, container)
    run.status = TransactionState.COMPENSATING
    run.next_stage = len(run.plan.stages)
    journal = run.journal
    assert isinstance(journal, StoreJournal)
    journal.note(RunUpdate(status=TransactionState.COMPENSATING))
    return engine._drive(run)


def _log_skipped(skipped: list[SkippedRun]) -> None:
    if skipped and structlog.is_configured():
        logger = structlog.get_logger("flowkit")
        for run in skipped:
            logger.warning(
                "run_not_recovered",
                transaction_id=run.transaction_id,
                workflow=run.workflow,
                reason=run.reason,
            )
