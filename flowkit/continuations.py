"""Continuing runs after the fact: signals for waiting steps, recovery, cancel.

The `Engine` methods `set_step_success`, `set_step_failure`, `recover` and `cancel` delegate
here (and `starting` resumes known runs, `worker` claimed ones). Each claims the run first
(compare-and-set on its status and lease), rebuilds it from its step log, and drives it on;
none re-raises the run's own failure.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from flowkit import events
from flowkit.exceptions import (
    IncompatibleRun,
    ProcessKilled,
    RunNotFound,
    StepNotWaiting,
    TransactionInProgress,
    UnknownStep,
)
from flowkit.plan import PlanNode
from flowkit.reading import step_records
from flowkit.rebuild import apply_signal, find_node, fire_due, inflight, position, rebuild
from flowkit.run import Run
from flowkit.runtime import UNKNOWN_WORKFLOW, Container, Runtime, journal_of
from flowkit.state import RunResult, StepError, StepState, TransactionState
from flowkit.store import Checkpoint, RunUpdate, Signal, StoredRun

__all__ = [
    "RecoveryReport",
    "SkippedRun",
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
        incompatible: True when this engine holds the workflow but not the definition the
            run started on (its fingerprint), or the run has checkpoints of steps that
            definition lacks; False for a workflow it does not hold at all.
    """

    __slots__ = ("incompatible", "reason", "transaction_id", "workflow")

    def __init__(
        self, transaction_id: str, workflow: str, reason: str, *, incompatible: bool = False
    ) -> None:
        self.transaction_id = transaction_id
        self.workflow = workflow
        self.reason = reason
        self.incompatible = incompatible

    @classmethod
    def of(cls, stored: StoredRun, reason: str) -> SkippedRun:
        """The skip of a stored run for `reason` (`Runtime.incompatibility`'s answer, or an
        `IncompatibleRun` met while rebuilding it)."""
        incompatible = reason != UNKNOWN_WORKFLOW
        return cls(stored.transaction_id, stored.workflow, reason, incompatible=incompatible)

    def __repr__(self) -> str:
        return f"SkippedRun({self.transaction_id!r}, {self.workflow!r}, {self.reason!r})"


class RecoveryReport(list[RunResult[Any]]):
    """The results of the runs `recover()` finished; `skipped` lists the ones it left alone."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[SkippedRun] = []


def start_claimed(rt: Runtime, stored: StoredRun, container: Container | None) -> Run:
    """A queued run a worker just claimed: nothing to rebuild, nothing to count."""
    run = rt.fresh_run(stored, container)
    if run.deadline is None and run.plan.timeout is not None:
        run.deadline = time.monotonic() + run.plan.timeout
    if run.emitter is not None:
        run.emitter.emit("run_started", events.DEBUG)
    return run


def resume(rt: Runtime, stored: StoredRun, container: Container | None) -> Run:
    """Rebuild a claimed run from its log, counting this recovery of its in-flight step."""
    loaded = rt.store.load(stored.transaction_id)
    assert loaded is not None
    stored, steps = loaded
    run = rt.fresh_run(stored, container)
    try:
        compensating = stored.status == TransactionState.COMPENSATING
        rebuild(run, steps, rt.codec, compensating=compensating)
    except IncompatibleRun:
        release = Checkpoint(stored.transaction_id, rt.owner, (), RunUpdate(release=True))
        rt.store.write(release)
        raise
    if stored.status in _RESTING:
        # a queued run started by run(), a waiting one continued by a signal or a tick: it is
        # active from here on, so a crash on the way leaves it to recover(), not parked
        journal_of(run).note(RunUpdate(status=TransactionState.INVOKING))
    else:  # a dead owner's run: each resume of the same in-flight step counts
        _count_recovery(rt, run, stored)
    return run


_RESTING = (TransactionState.QUEUED, TransactionState.WAITING)


def _count_recovery(rt: Runtime, run: Run, stored: StoredRun) -> None:
    """Each resume of the same in-flight step counts; past its retries, it fails for good."""
    found = inflight(run)
    if found is None:
        return
    target, node = found
    name = target.full_name(node)
    count = stored.recoveries + 1 if stored.recovery_step == name else 1
    journal_of(run).note(RunUpdate(recoveries=count, recovery_step=name))
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
        run.errors.append(StepError.from_exception(run.full_name(node), "compensate", error))
        run.comp_failed = True
        assert run.journal is not None
        run.journal.compensated(run, node, None)
        return
    run.begin(node, count)
    run.fail(node, error)


def signal(rt: Runtime, tx: str, signal: Signal, container: Container | None) -> RunResult[Any]:
    """Deliver a signal: continue a waiting run, or keep it until the step waits."""
    for _ in range(20):  # a lost race re-reads the run; it settles in a step or two
        stored = rt.store.get_run(tx)
        if stored is None:
            raise RunNotFound(tx)
        state = _target_state(rt, stored, signal.step)
        status = TransactionState(stored.status)
        if state is StepState.WAITING and status is TransactionState.WAITING:
            claimed = rt.store.claim(tx, rt.owner, rt.lease_seconds, (status,))
            if claimed is not None:
                return _continue(rt, claimed, signal, container)
            continue
        if state is not None and state is not StepState.WAITING:
            raise StepNotWaiting(tx, signal.step, f"it is {state.value}")
        if status.is_finished:
            raise StepNotWaiting(tx, signal.step, f"the run is {status.value}")
        outcome = rt.store.put_signal(tx, signal)
        if outcome == "duplicate":
            raise StepNotWaiting(tx, signal.step, "it was already signalled")
        if outcome == "stored":
            return rt.stored_result(tx)
    raise TransactionInProgress(tx, None)


def _target_state(rt: Runtime, stored: StoredRun, step: str) -> StepState | None:
    workflow = rt.held(stored)
    node = find_node(workflow.plan, step)
    if node is None:
        raise UnknownStep(stored.transaction_id, step, workflow.name, workflow.version)
    if not node.async_completion:
        raise StepNotWaiting(stored.transaction_id, step, "it is not an async_completion step")
    if node.sleep:
        raise StepNotWaiting(stored.transaction_id, step, "it is a flowkit.sleep (tick() ends it)")
    loaded = rt.store.load(stored.transaction_id)
    assert loaded is not None
    states = step_records(loaded[1])
    record = states.get(step)
    return record.state if record is not None else None


def _continue(
    rt: Runtime, stored: StoredRun, signal: Signal, container: Container | None
) -> RunResult[Any]:
    run = resume(rt, stored, container)
    if not fire_due(run, rt.now(), only=signal.step).expired:  # too late: it timed out instead
        apply_signal(run, signal, rt.codec)
    position(run)
    return rt.drive(run)


def recover(rt: Runtime, container: Container | None, limit: int) -> RecoveryReport:
    """See `Engine.recover`."""
    report = RecoveryReport()
    for stored in rt.store.expired(limit):
        reason = rt.incompatibility(stored)
        if reason is not None:  # left alone: not even claimed
            report.skipped.append(SkippedRun.of(stored, reason))
            continue
        claimed = rt.store.claim(
            stored.transaction_id, rt.owner, rt.lease_seconds, (stored.status,)
        )
        if claimed is None:
            continue
        try:
            run = resume(rt, claimed, container)
        except IncompatibleRun as exc:
            report.skipped.append(SkippedRun.of(stored, str(exc)))
            continue
        report.append(rt.drive(run))
    _log_skipped(report.skipped)
    return report


def cancel(rt: Runtime, transaction_id: str, container: Container | None) -> RunResult[Any]:
    """See `Engine.cancel`."""
    stored = rt.store.get_run(transaction_id)
    if stored is None:
        raise RunNotFound(transaction_id)
    status = TransactionState(stored.status)
    if status in (TransactionState.REVERTED, TransactionState.FAILED):
        return rt.stored_result(transaction_id)
    rt.held(stored)
    claimed = rt.store.claim(transaction_id, rt.owner, rt.lease_seconds, (status,))
    if claimed is None:
        raise TransactionInProgress(transaction_id, stored.owner)
    run = resume(rt, claimed, container)
    run.status = TransactionState.COMPENSATING
    run.next_stage = len(run.plan.stages)
    journal_of(run).note(RunUpdate(status=TransactionState.COMPENSATING))
    return rt.drive(run)


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
