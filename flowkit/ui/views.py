"""What the console shows, computed without the web framework: pages of runs, a run's timeline.

Runs are read with the command line's helpers (`list_runs`, `read_run`: `Engine.list` and
`Engine.get`); the timeline's bars come from the run's step log as the store returns it
(`Store.load`), scaled to the run's span: a bar per attempt and per compensation, a wait drawn
apart from the attempt that parked, with its deadline (or a sleep's wake-up) in its lane, and
the run's own deadline, wake-up and delayed start across the timeline. The store keeps one row
per invoke (the first attempt's start, the last one's end, the count), so the attempts of a
retried step are estimated from it and the step's retry policy (see `attempt_spans`) and are
marked as such.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from flowkit.cli.reading import RunView, list_runs, parse_duration, read_run
from flowkit.engine import Engine
from flowkit.exceptions import FlowkitError
from flowkit.rebuild import find_node
from flowkit.retry import RetryPolicy
from flowkit.state import RunRecord, TransactionState
from flowkit.store import StoredRun, StoredStep

__all__ = [
    "BadFilter",
    "Bar",
    "Marker",
    "RunDetail",
    "RunFilter",
    "RunsPage",
    "Span",
    "attempt_spans",
    "run_detail",
    "runs_page",
    "timeline_spans",
]

PAGE_SIZE = 25
MAX_PAGE_SIZE = 200
SCAN_LIMIT = 5_000  # runs read to filter by version or end time, which the store cannot do
_MIN_WIDTH = 0.4  # percent: an instant still shows as a sliver


class BadFilter(FlowkitError):
    """A filter of the runs page cannot be used (an unknown status, a malformed time...)."""


@frozen
class RunFilter:
    """The filters and the page of the runs list.

    Attributes:
        status: Only runs in this state.
        workflow: Only runs of this workflow.
        version: Only runs of this workflow version (when the records carry one).
        since: Only runs created at or after this moment.
        until: Only runs created before this moment.
        page: The page, from 1.
        size: Runs per page.
    """

    status: str | None = None
    workflow: str | None = None
    version: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    page: int = 1
    size: int = PAGE_SIZE

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> RunFilter:
        """The filter of a query string (empty values mean no filter).

        Raises:
            BadFilter: an unknown status, a time that is neither ISO 8601 nor a duration
                ago, a page or size that is not a positive number.
        """
        get = {k: v.strip() for k, v in params.items() if v and v.strip()}
        status = get.get("status")
        if status is not None and status not in {s.value for s in TransactionState}:
            raise BadFilter(f"unknown status {status!r}")
        return cls(
            status=status,
            workflow=get.get("workflow"),
            version=get.get("version"),
            since=_moment(get.get("since"), "since"),
            until=_moment(get.get("until"), "until"),
            page=_positive(get.get("page"), "page", 1, 1_000_000),
            size=_positive(get.get("size"), "size", PAGE_SIZE, MAX_PAGE_SIZE),
        )

    def query(self, **changes: Any) -> dict[str, str]:
        """The query-string values of this filter, with `changes` (for page links)."""
        values: dict[str, Any] = {
            "status": self.status,
            "workflow": self.workflow,
            "version": self.version,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "size": self.size if self.size != PAGE_SIZE else None,
            "page": self.page,
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v is not None}


def _moment(text: str | None, name: str) -> datetime | None:
    if text is None:
        return None
    ago = parse_duration(text)
    if ago is not None:
        return datetime.now(UTC) - ago
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadFilter(f"{name}: {text!r} is neither an ISO 8601 time nor a duration") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _positive(text: str | None, name: str, default: int, most: int) -> int:
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise BadFilter(f"{name}: {text!r} is not a positive whole number")
    return min(int(text), most)


def version_of(record: Any) -> str | None:
    """The workflow version a run was started with, when the record carries one."""
    version = getattr(record, "version", None)
    return None if version is None else str(version)


@frozen
class RunsPage:
    """One page of runs, newest first.

    Attributes:
        records: The page's runs.
        filter: The filter that chose them.
        has_next: True when an older page exists.
        note: Why values are shown as stored JSON, or None.
    """

    records: tuple[RunRecord, ...]
    filter: RunFilter
    has_next: bool
    note: str | None = None


def runs_page(engine: Engine, wanted: RunFilter) -> RunsPage:
    """The page of runs `wanted` asks for.

    The store filters by status, workflow and creation time and returns the newest first; the
    page is cut from the first `page * size + 1` runs (`Engine.list` has no offset). A version
    or an end time is filtered here, over at most `SCAN_LIMIT` runs.
    """
    first = (wanted.page - 1) * wanted.size
    local = wanted.version is not None or wanted.until is not None
    limit = SCAN_LIMIT if local else first + wanted.size + 1
    records, note = list_runs(engine, wanted.status, wanted.workflow, wanted.since, limit)
    if local:
        records = [r for r in records if _matches(r, wanted)]
    chosen = records[first : first + wanted.size]
    return RunsPage(tuple(chosen), wanted, len(records) > first + wanted.size, note)


def _matches(record: RunRecord, wanted: RunFilter) -> bool:
    if wanted.version is not None and version_of(record) != wanted.version:
        return False
    return wanted.until is None or record.created_at < wanted.until


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
class RunDetail:
    """A run page's content.

    Attributes:
        view: The run as `runs show` reads it.
        bars: The timeline, in start order.
        markers: The run's deadline, wake-up and delayed start, when it has them.
        started: The timeline's origin.
        span: The timeline's length in seconds.
        version: The workflow version, when the record carries one.
        mermaid: The workflow's graph as Mermaid text, when this process knows the workflow.
    """

    view: RunView
    bars: tuple[Bar, ...]
    markers: tuple[Marker, ...]
    started: datetime
    span: float
    version: str | None
    mermaid: str | None


def run_detail(engine: Engine, transaction_id: str, now: float | None = None) -> RunDetail:
    """The page of one run.

    Raises:
        RunNotFound: no run has that id.
    """
    view = read_run(engine, transaction_id)
    loaded = engine.store.load(transaction_id)
    rows = loaded[1] if loaded is not None else []
    stored = loaded[0] if loaded is not None else None
    clock = time.time() if now is None else now
    still = view.record.status in (TransactionState.WAITING, TransactionState.INVOKING)
    known = engine.workflows.get(view.record.workflow)
    policies, sleeps = _policies(known)
    spans = timeline_spans(rows, clock if still else view.record.updated_at.timestamp(), policies)
    origin = min([view.record.created_at.timestamp(), *(s.start for s in spans)])
    ends = [s.end for s in spans] + [view.record.updated_at.timestamp()]
    scale = _Scale(origin, max(max(ends) - origin, 1e-6))
    ordered = sorted(spans, key=lambda s: (s.start, s.attempt))
    bars = tuple(_bar(s, scale, _due_label(known, sleeps, s.step)) for s in ordered)
    markers = tuple(scale.marker(label, at) for label, at in _moments(view.record, stored))
    mermaid = known.to_mermaid() if known is not None else None
    return RunDetail(
        view, bars, markers, _utc(origin), scale.length, version_of(view.record), mermaid
    )


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
            active = _Active(row, max(start, prior_end), end, row.status, row.error)
        else:  # the invoke returned at `parked`, then the step waited
            active = _Active(row, max(start, prior_end), parked, "done", None)
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
class _Active:
    """The part of a row its attempts ran in (a wait that followed is drawn apart), and how
    its last attempt ended."""

    row: StoredStep
    start: float
    end: float
    state: str
    error: str | None


def attempt_spans(active: _Active, prior: int, policy: RetryPolicy | None) -> list[Span]:
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
    waits = [_retry_wait(policy, attempt) for attempt in range(prior + 1, row.attempt)]
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


def _retry_wait(policy: RetryPolicy | None, attempt: int) -> float:
    """What the policy waits after attempt `attempt` fails (tenacity's exponential wait)."""
    if policy is None:
        return 0.0
    wait = policy.interval * policy.backoff ** (attempt - 1)
    if policy.max_interval is not None:
        wait = min(wait, policy.max_interval)
    return wait + policy.jitter / 2


def _policies(workflow: Any) -> tuple[dict[str, RetryPolicy], set[str]]:
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


def _due_label(workflow: Any, sleeps: set[str], step: str) -> str:
    """What a wait's due time is: a sleep's wake-up or a deadline (`due` when the workflow,
    and so which steps sleep, is not known here)."""
    if workflow is None:
        return "due"
    return "wakes" if step in sleeps else "deadline"


@frozen
class _Scale:
    """Seconds since the epoch to percent of the drawn span."""

    origin: float
    length: float

    def percent(self, at: float) -> float:
        return (at - self.origin) / self.length * 100

    def marker(self, label: str, at: float) -> Marker:
        left = self.percent(at)
        return Marker(label, _utc(at), min(max(left, 0.0), 100.0), not 0.0 <= left <= 100.0)


def _bar(span: Span, scale: _Scale, label: str) -> Bar:
    """`span` scaled; `label` names its deadline (`wakes` for a sleep's)."""
    left = scale.percent(span.start)
    width = max((span.end - span.start) / scale.length * 100, _MIN_WIDTH)
    return Bar(
        span.step,
        span.kind,
        span.state,
        span.attempt,
        _utc(span.start),
        _utc(span.end),
        round(left, 3),
        round(min(width, 100.0 - min(left, 100.0 - _MIN_WIDTH)), 3),
        span.error,
        span.approximate,
        scale.marker(label, span.due) if span.due is not None else None,
    )


def _moments(record: RunRecord, stored: StoredRun | None) -> list[tuple[str, float]]:
    """The run's own moments: its workflow deadline, its next wake-up, its delayed start."""
    found: list[tuple[str, float]] = []
    if stored is not None and stored.deadline is not None:
        found.append(("deadline", stored.deadline))
    if record.wake_at is not None:
        found.append(("wakes", record.wake_at.timestamp()))
    if record.start_at is not None:
        found.append(("starts", record.start_at.timestamp()))
    return found


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
