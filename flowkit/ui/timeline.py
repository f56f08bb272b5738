"""The run page's timeline: bars from a run's step log, scaled to the run's span.

A bar per attempt and per compensation, a wait drawn apart from the attempt that parked, with
its deadline (or a sleep's wake-up) in its lane, and the run's own deadline, wake-up and
delayed start across the timeline. The store keeps one row per invoke (the first attempt's
start, the last one's end, the count), so the attempts of a retried step are estimated from it
and the step's retry policy (see `attempt_spans`) and are marked as such.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from flowkit.rebuild import find_node
from flowkit.retry import RetryPolicy
from flowkit.state import RunRecord
from flowkit.store import StoredRun, StoredStep

__all__ = [
    "MIN_WIDTH",
    "ActiveAttempts",
    "Bar",
    "Marker",
    "Scale",
    "Span",
    "attempt_spans",
    "bar_of",
    "due_label",
    "retry_policies",
    "retry_wait",
    "run_moments",
    "timeline_spans",
    "utc",
]

MIN_WIDTH = 0.4  # percent: an instant still shows as a sliver


@frozen
class Bar:
    """One drawn bar of the timeline.

    Attributes:
        step: The step's name.
        kind: `invoke`, `waiting` or `compensate`.
        state: The row's state (`done`, `failed`, `waiting`, `reverted`...); a retried attempt
            is `failed`.
        attempt: The attempt number (invoke bars).
        start: When it began.
        end: When it ended (for a step still waiting: now).
        left: Its offset from the run's start, in percent of the run's span.
        width: Its length, in percent of the run's span (never under a sliver).
        error: The error of a failed attempt or compensation, as stored.
        approximate: True when its start and end are estimated (see `attempt_spans`).
        due: For a wait: its deadline (a `flowkit.sleep`: its wake-up), drawn in its lane.
    """

    step: str
    kind: str
    state: str
    attempt: int
    start: datetime
    end: datetime
    left: float
    width: float
    error: str | None = None
    approximate: bool = False
    due: Marker | None = None

    @property
    def seconds(self) -> float:
        """How long it lasted."""
        return (self.end - self.start).total_seconds()


@frozen
class Marker:
    """A moment drawn across the timeline (a deadline, a wake-up time, a delayed start).

    Attributes:
        label: What it is.
        at: When.
        left: Its offset in percent of the run's span (clipped to 0..100).
        clipped: True when `at` lies outside the drawn span (it is drawn at the edge).
    """

    label: str
    at: datetime
    left: float
    clipped: bool = False


@frozen
class Span:
    """A bar before it is scaled: seconds since the epoch.

    Attributes:
        step: The step's name.
        kind: `invoke`, `waiting` or `compensate`.
        state: What the bar ended in.
        attempt: The attempt number.
        start: When it began.
        end: When it ended.
        error: The stored error, when the row has one.
        approximate: True when `start` and `end` are estimated.
        due: A wait's deadline.
    """

    step: str
    kind: str
    state: str
    attempt: int
    start: float
    end: float
    error: str | None = None
    approximate: bool = False
    due: float | None = None


def timeline_spans(
    rows: Sequence[StoredStep],
    open_end: float,
    policies: Mapping[str, RetryPolicy] | None = None,
) -> list[Span]:
    """The bars of a step log: the latest row of each (step, action, attempt) wins; a `waiting`
    row splits its attempt into the active part and the wait; a row standing for several
    attempts is split into one bar per attempt (`attempt_spans`).

    Args:
        rows: The run's step log, in the order the store returns it.
        open_end: Where a bar that has not ended stops (now, for a run still going).
        policies: The retry policy of each step, by name, when the workflow is known.
    """
    latest: dict[tuple[str, str, int], StoredStep] = {}
    waited: dict[tuple[str, str, int], StoredStep] = {}
    for row in rows:
        key = (row.step, row.action, row.attempt)
        latest[key] = row
        if row.status == "waiting":
            waited[key] = row
    spans: list[Span] = []
    known: dict[tuple[str, str], tuple[int, float]] = {}  # the last attempt drawn, its end
    for key, row in sorted(latest.items(), key=lambda item: item[0][2]):
        start = row.started_at if row.started_at is not None else row.ended_at
        if start is None:
            continue
        end = row.ended_at if row.ended_at is not None else open_end
        wait = waited.get(key)
        parked = wait.ended_at if wait is not None else None
        prior, prior_end = known.get((row.step, row.action), (0, start))
        if parked is None:
            active = ActiveAttempts(row, max(start, prior_end), end, row.status, row.error)
        else:  # the invoke returned at `parked`, then the step waited
            active = ActiveAttempts(row, max(start, prior_end), parked, "done", None)
        policy = (policies or {}).get(row.step)
        spans.extend(attempt_spans(active, prior, policy))
        if parked is not None:
            finish = open_end if row.status == "waiting" else end
            error = row.error if row.status != "waiting" else None
            due = wait.due_at if wait is not None else None
            spans.append(
                Span(row.step, "waiting", row.status, row.attempt, parked, finish, error, due=due)
            )
        known[(row.step, row.action)] = (row.attempt, end)
    return spans


@frozen
class ActiveAttempts:
    """The part of a row its attempts ran in (a wait that followed is drawn apart), and how
    its last attempt ended."""

    row: StoredStep
    start: float
    end: float
    state: str
    error: str | None


def attempt_spans(active: ActiveAttempts, prior: int, policy: RetryPolicy | None) -> list[Span]:
    """The bars of the attempts one stored row stands for.

    The store keeps one row per invoke: its first attempt's start, its last attempt's end and
    the number of attempts; the attempts in between leave no row. The attempts after `prior`
    (the last attempt another row already drew) are therefore approximated: the row's span
    less the waits the step's retry policy puts between attempts (`interval`, times `backoff`
    per retry, capped at `max_interval`, plus half the `jitter`; no waits when the workflow is
    not known here) is shared equally among them. Each such bar is `approximate`; all but the
    last are `failed` (they were retried) without an error (only the last one's is stored).
    """
    row, state, error = active.row, active.state, active.error
    count = row.attempt - prior if row.action == "invoke" else 1
    if count <= 1:
        return [Span(row.step, row.action, state, row.attempt, active.start, active.end, error)]
    waits = [retry_wait(policy, attempt) for attempt in range(prior + 1, row.attempt)]
    total = active.end - active.start
    if sum(waits) >= total:
        waits = [0.0] * len(waits)
    each = (total - sum(waits)) / count
    spans, at = [], active.start
    for offset in range(count):
        attempt = prior + 1 + offset
        last = attempt == row.attempt
        spans.append(
            Span(
                row.step,
                row.action,
                state if last else "failed",
                attempt,
                at,
                at + each,
                error if last else None,
                approximate=True,
            )
        )
        at += each + (waits[offset] if not last else 0.0)
    return spans


def retry_wait(policy: RetryPolicy | None, attempt: int) -> float:
    """What the policy waits after attempt `attempt` fails (tenacity's exponential wait)."""
    if policy is None:
        return 0.0
    wait = policy.interval * policy.backoff ** (attempt - 1)
    if policy.max_interval is not None:
        wait = min(wait, policy.max_interval)
    return wait + policy.jitter / 2


def retry_policies(workflow: Any) -> tuple[dict[str, RetryPolicy], set[str]]:
    """A known workflow's retry policies by recorded step name (nested: `a/b`), and the
    names of its sleeps."""
    policies: dict[str, RetryPolicy] = {}
    sleeps: set[str] = set()
    for name in workflow.step_names() if workflow is not None else ():
        node = find_node(workflow.plan, name)
        if node is not None and node.retry is not None:
            policies[name] = node.retry
        if node is not None and node.sleep:
            sleeps.add(name)
    return policies, sleeps


def due_label(workflow: Any, sleeps: set[str], step: str) -> str:
    """What a wait's due time is: a sleep's wake-up or a deadline (`due` when the workflow,
    and so which steps sleep, is not known here)."""
    if workflow is None:
        return "due"
    return "wakes" if step in sleeps else "deadline"


@frozen
class Scale:
    """Seconds since the epoch to percent of the drawn span."""

    origin: float
    length: float

    def percent(self, at: float) -> float:
        return (at - self.origin) / self.length * 100

    def marker(self, label: str, at: float) -> Marker:
        left = self.percent(at)
        return Marker(label, utc(at), min(max(left, 0.0), 100.0), not 0.0 <= left <= 100.0)


def bar_of(span: Span, scale: Scale, label: str) -> Bar:
    """`span` scaled; `label` names its deadline (`wakes` for a sleep's)."""
    left = scale.percent(span.start)
    width = max((span.end - span.start) / scale.length * 100, MIN_WIDTH)
    return Bar(
        span.step,
        span.kind,
        span.state,
        span.attempt,
        utc(span.start),
        utc(span.end),
        round(left, 3),
        round(min(width, 100.0 - min(left, 100.0 - MIN_WIDTH)), 3),
        span.error,
        span.approximate,
        scale.marker(label, span.due) if span.due is not None else None,
    )


def run_moments(record: RunRecord, stored: StoredRun | None) -> list[tuple[str, float]]:
    """The run's own moments: its workflow deadline, its next wake-up, its delayed start."""
    found: list[tuple[str, float]] = []
    if stored is not None and stored.deadline is not None:
        found.append(("deadline", stored.deadline))
    if record.wake_at is not None:
        found.append(("wakes", record.wake_at.timestamp()))
    if record.start_at is not None:
        found.append(("starts", record.start_at.timestamp()))
    return found


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
