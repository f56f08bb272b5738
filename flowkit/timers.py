"""Time's room of the engine: `tick()` does what is due at `engine.clock.now()`.

It expires waits past their deadline, wakes sleeping runs (both continue in the call, as a
signal would) and enqueues the due ticks of the engine's schedules. Any process may tick, and
several at once: a run is claimed by compare-and-set before it is changed (the loser skips
it), and a schedule tick's run has the transaction id `name@<tick>`, stored once.
"""

from __future__ import annotations

from datetime import datetime

from attrs import Factory, define

from flowkit import events, starting
from flowkit.continuations import SkippedRun, resume
from flowkit.exceptions import IncompatibleRun, TransactionConflict
from flowkit.rebuild import Fired, fire_due, position
from flowkit.runtime import Container, Runtime
from flowkit.schedule import Schedule
from flowkit.state import TransactionState
from flowkit.store import StoredRun

__all__ = ["TickReport", "schedule_state", "tick"]

_WAITING = (TransactionState.WAITING,)


@define
class TickReport:
    """What one `engine.tick()` did (transaction ids).

    Attributes:
        expired: Runs with a wait past its deadline: the step timed out and the run
            compensated.
        woken: Runs whose sleep ended: they went on.
        scheduled: Runs this call enqueued for due schedule ticks.
        skipped: Due runs left alone: their workflow or definition is not held here (see
            `RecoveryReport.skipped`).
    """

    expired: list[str] = Factory(list)
    woken: list[str] = Factory(list)
    scheduled: list[str] = Factory(list)
    skipped: list[SkippedRun] = Factory(list)


def tick(rt: Runtime, container: Container | None, limit: int) -> TickReport:
    """See `Engine.tick`: due waits and sleeps (at most `limit` runs), then schedules."""
    report = TickReport()
    instant = rt.clock.now()  # one reading: the waits and the schedules see the same now
    now = instant.timestamp()
    for stored in rt.store.due(now, sorted(rt.workflows), limit):
        _continue_due(rt, stored, now, container, report)
    for schedule in rt.schedules.values():
        _fire(rt, schedule, instant, report)
    return report


def _continue_due(
    rt: Runtime, stored: StoredRun, now: float, container: Container | None, report: TickReport
) -> None:
    tx = stored.transaction_id
    reason = rt.incompatibility(stored)
    if reason is not None:
        report.skipped.append(SkippedRun.of(stored, reason))
        return
    claimed = rt.store.claim(tx, rt.owner, rt.lease_seconds, _WAITING)
    if claimed is None:  # another engine took it (a tick or a signal): it is theirs now
        return
    try:
        run = resume(rt, claimed, container)
    except IncompatibleRun as exc:
        report.skipped.append(SkippedRun.of(stored, str(exc)))
        return
    fired = fire_due(run, now)
    position(run)
    rt.drive(run)  # nothing fired (no waiting step was due after all): it parks again
    _record(fired, tx, report)


def _record(fired: Fired, tx: str, report: TickReport) -> None:
    if fired.expired:
        report.expired.append(tx)
    elif fired.woken:
        report.woken.append(tx)


def _fire(rt: Runtime, schedule: Schedule, now: datetime, report: TickReport) -> None:
    last_tx = rt.store.latest_scheduled(f"{schedule.name}@")
    last = None if last_tx is None else schedule.tick_of(last_tx)
    workflow = rt.workflows[schedule.workflow_name]
    for due in schedule.due(last, now):
        tx = schedule.transaction_id(due)
        try:
            _, created = starting.enqueue(
                rt, workflow, schedule.input_for(due), tx, schedule.queue, None
            )
        except TransactionConflict:
            continue  # another engine enqueued this tick with an input of its own
        if created:
            report.scheduled.append(tx)
            emitter = events.emitter_for(workflow.name, tx, rt.subscriptions)
            if emitter is not None:
                emitter.emit("schedule_fired", events.INFO, schedule=schedule.name, tick=due)


def schedule_state(rt: Runtime, schedule: Schedule) -> tuple[datetime, str | None]:
    """A schedule's next tick after now, and the transaction id of its latest run."""
    return schedule.next_tick(rt.clock.now()), rt.store.latest_scheduled(f"{schedule.name}@")
