"""What the read-only commands show: runs, and a run's step timeline.

Runs are read through `Engine.get` and `Engine.list`, which rebuild stored values (inputs,
outputs) by importing their classes. When this process cannot (the CLI runs outside the
project, a class was renamed), the values are shown as stored, in tagged JSON, with a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from attrs import frozen

from flowkit.engine import Engine
from flowkit.exceptions import EncryptionKeyMissing, FlowkitError, RunNotFound
from flowkit.state import RunRecord, StepError, StepRecord, StepState
from flowkit.timers import schedule_state

__all__ = [
    "RunView",
    "ScheduleLine",
    "StepLine",
    "list_incompatible",
    "list_runs",
    "read_run",
    "schedule_lines",
]

COMPENSATION_STATES = frozenset(
    {StepState.COMPENSATING, StepState.REVERTED, StepState.COMPENSATION_FAILED}
)


@frozen
class StepLine:
    """One step of a run's timeline.

    Attributes:
        name: The step's name (`"child/step"` inside a nested workflow).
        state: What its invoke came to (`done`, `failed`, `waiting`...), None if unknown.
        attempts: How many times its invoke function was called.
        started_at: When its first attempt started.
        ended_at: When its invoke finished.
        error: The invoke's error, if any.
        compensation: The compensation's state (`reverted`, `compensation_failed`...), or None.
        compensated_at: When the compensation finished.
        compensation_error: The compensation's error, if any.
        due_at: For a waiting step: its deadline (a `flowkit.sleep`: when it wakes).
    """

    name: str
    state: StepState | None
    attempts: int
    started_at: datetime | None
    ended_at: datetime | None
    error: StepError | None = None
    compensation: StepState | None = None
    compensated_at: datetime | None = None
    compensation_error: StepError | None = None
    due_at: datetime | None = None

    @property
    def duration(self) -> float | None:
        """Seconds the invoke took, when both ends are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@frozen
class RunView:
    """A run as `runs show` prints it.

    Attributes:
        record: The run, as the engine reads it.
        steps: Its timeline, in start order.
        note: Why its values are shown as stored JSON, or None.
    """

    record: RunRecord
    steps: tuple[StepLine, ...]
    note: str | None = None


def read_run(engine: Engine, transaction_id: str) -> RunView:
    """The run `transaction_id` with its timeline.

    Raises:
        RunNotFound: no run has that id.
    """
    note = None
    try:
        record = engine.get(transaction_id)
    except EncryptionKeyMissing as exc:  # no key file: ids, statuses, times, <encrypted>
        record, note = engine.get(transaction_id, decode=False), _key_note(exc)
    except FlowkitError:
        raise
    except Exception as exc:  # a stored value this process cannot rebuild: show its JSON
        record, note = engine.get(transaction_id, decode=False), _note(exc)
    if record is None:
        raise RunNotFound(transaction_id)
    return RunView(record, timeline(record), note)


@frozen
class ScheduleLine:
    """One schedule as `schedules list` prints it.

    Attributes:
        name: The schedule's name.
        workflow: The workflow it starts.
        when: Its cron expression, or `every <interval>`.
        next_tick: Its first tick after now (the engine's clock).
        last_run: The transaction id of its latest run still stored, or None.
        last_status: That run's status.
    """

    name: str
    workflow: str
    when: str
    next_tick: datetime
    last_run: str | None
    last_status: str | None


def schedule_lines(engine: Engine) -> list[ScheduleLine]:
    """The engine's schedules, by name, with their next tick and latest run."""
    lines = []
    for name, schedule in sorted(engine.schedules.items()):
        next_tick, last = schedule_state(engine.runtime, schedule)
        record = engine.get(last, decode=False) if last is not None else None
        when = schedule.cron if schedule.cron is not None else f"every {schedule.every}"
        status = record.status.value if record is not None else None
        lines.append(ScheduleLine(name, schedule.workflow_name, when, next_tick, last, status))
    return lines


def list_runs(
    engine: Engine,
    status: str | None,
    workflow: str | None,
    since: datetime | None,
    limit: int,
    version: int | None = None,
) -> tuple[list[RunRecord], str | None]:
    """Runs newest first, and a note when their values are shown as stored JSON."""
    try:
        return engine.list(status, workflow, since=since, limit=limit, version=version), None
    except EncryptionKeyMissing as exc:  # no key file: ids, statuses, times, <encrypted>
        found = engine.list(
            status, workflow, since=since, limit=limit, decode=False, version=version
        )
        return found, _key_note(exc)
    except FlowkitError:
        raise
    except Exception as exc:  # a stored value this process cannot rebuild: show its JSON
        found = engine.list(
            status, workflow, since=since, limit=limit, decode=False, version=version
        )
        return found, _note(exc)


def list_incompatible(
    engine: Engine, workflow: str | None, limit: int
) -> tuple[list[RunRecord], str | None]:
    """Unfinished runs no definition `engine` holds can continue (`Engine.incompatible`),
    newest first, and a note when their values are shown as stored JSON."""
    try:
        return engine.incompatible(workflow, limit=limit), None
    except FlowkitError:
        raise
    except Exception as exc:  # a stored value this process cannot rebuild: show its JSON
        return engine.runtime.incompatible(workflow, limit, decode=False), _note(exc)


def timeline(record: RunRecord) -> tuple[StepLine, ...]:
    """The steps of `record` in start order (steps that never started last)."""
    lines = [_line(step, record.errors) for step in record.steps.values()]
    never = datetime.max.replace(tzinfo=UTC)
    return tuple(sorted(lines, key=lambda line: line.started_at or never))


def _line(step: StepRecord, errors: Sequence[StepError]) -> StepLine:
    compensated = step.state in COMPENSATION_STATES
    state = step.invoke_state or (None if compensated else step.state)
    return StepLine(
        name=step.name,
        state=state,
        attempts=step.attempts,
        started_at=step.started_at,
        ended_at=step.ended_at,
        error=_last_error(errors, step.name, "invoke"),
        compensation=step.state if compensated else None,
        compensated_at=step.compensated_at,
        compensation_error=_last_error(errors, step.name, "compensate"),
        due_at=step.due_at,
    )


def _last_error(errors: Sequence[StepError], step: str, action: str) -> StepError | None:
    found = [e for e in errors if e.step == step and e.action == action]
    return found[-1] if found else None


def _key_note(exc: EncryptionKeyMissing) -> str:
    return f"encrypted values are shown as <encrypted> ({exc}); pass --key-file to read them"


def _note(exc: Exception) -> str:
    return (
        "inputs and outputs are shown as stored (tagged JSON): this process cannot rebuild "
        f"them ({type(exc).__name__}: {exc}); run from your project's directory or pass "
        "--app-dir"
    )
