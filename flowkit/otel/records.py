"""What an instrumentation keeps per run, and reads back from the store: open spans, waits,
signals."""

from __future__ import annotations

from collections.abc import Sequence

from attrs import define, field
from opentelemetry.trace import Span, Status, StatusCode

from flowkit.events import Event
from flowkit.store import StoredStep

__all__ = [
    "FailedWait",
    "Parked",
    "RunSpans",
    "SignalInFlight",
    "may_end_wait",
    "record_error",
    "signalled_end",
    "start_of",
    "stored_wait",
]


@define
class FailedWait:
    """A wait that ended in a failure: a signal's, or its deadline's (told by the next event)."""

    span: Span
    step: str
    error: str
    end: float


@define
class RunSpans:
    """The open spans of one run in this process: its segment, its steps, a failed wait."""

    span: Span
    steps: dict[tuple[str, str], Span] = field(factory=dict)
    failed_wait: FailedWait | None = None


@define
class SignalInFlight:
    """A `set_step_success` in progress on the instrumented engine."""

    step: str
    at: float
    segment: Span | None = None


@define
class Parked:
    """A step's stored wait: when it parked (engine clock) and its deadline, if any."""

    at: float | None
    due: float | None


def may_end_wait(event: Event, run: RunSpans | None) -> bool:
    """True for an event that may end a stored wait: a sleep's wake-up, or a step failing
    without an attempt in flight here (a failure signal, an expired deadline)."""
    if event.step is None:
        return False
    if event.name == "run_woken":
        return True
    return event.name == "step_failed" and (run is None or ("invoke", event.step) not in run.steps)


def stored_wait(rows: Sequence[StoredStep], step: str) -> Parked | None:
    """The latest `waiting` row of `step`: when it parked and its deadline."""
    for row in reversed(rows):
        if row.step == step and row.action == "invoke" and row.status == "waiting":
            return Parked(row.ended_at, row.due_at)
    return None


def signalled_end(rows: Sequence[StoredStep], signal: SignalInFlight) -> float | None:
    """When the signalled step was finished by this signal (its `done` row, written after
    the signal began and after the step's wait), or None."""
    waited = False
    for row in rows:
        if row.step != signal.step or row.action != "invoke":
            continue
        if row.status == "waiting":
            waited = True
        elif waited and row.status == "done" and (row.ended_at or 0.0) >= signal.at:
            return row.ended_at
    return None


def record_error(span: Span, error: str) -> None:
    """Record `error` on `span` and mark it ERROR."""
    span.add_event("exception", {"exception.message": error})
    span.set_status(Status(StatusCode.ERROR, error[:200]))


def start_of(span: Span, default: float) -> float:
    """A span's start in epoch seconds (`default` when the API span does not say)."""
    start = getattr(span, "start_time", None)  # the SDK's spans know it, the API's do not
    return start / 1e9 if isinstance(start, int) else default
