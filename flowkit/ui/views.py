"""What the console shows, computed without the web framework: pages of runs, a run's timeline.

Runs are read with the command line's helpers (`list_runs`, `read_run`: `Engine.list` and
`Engine.get`); the timeline's bars come from the run's step log as the store returns it
(`Store.load`), built and scaled by `flowkit.ui.timeline`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from attrs import frozen

from flowkit.cli.reading import RunView, list_runs, parse_duration, read_run
from flowkit.engine import Engine
from flowkit.exceptions import FlowkitError
from flowkit.state import RunRecord, TransactionState
from flowkit.ui.timeline import (
    Bar,
    Marker,
    Scale,
    Span,
    attempt_spans,
    bar_of,
    due_label,
    retry_policies,
    run_moments,
    timeline_spans,
    utc,
)

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
MIN_WIDTH = 0.4  # percent: an instant still shows as a sliver


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
    policies, sleeps = retry_policies(known)
    spans = timeline_spans(rows, clock if still else view.record.updated_at.timestamp(), policies)
    origin = min([view.record.created_at.timestamp(), *(s.start for s in spans)])
    ends = [s.end for s in spans] + [view.record.updated_at.timestamp()]
    scale = Scale(origin, max(max(ends) - origin, 1e-6))
    ordered = sorted(spans, key=lambda s: (s.start, s.attempt))
    bars = tuple(bar_of(s, scale, due_label(known, sleeps, s.step)) for s in ordered)
    markers = tuple(scale.marker(label, at) for label, at in run_moments(view.record, stored))
    mermaid = known.to_mermaid() if known is not None else None
    return RunDetail(
        view, bars, markers, utc(origin), scale.length, version_of(view.record), mermaid
    )
