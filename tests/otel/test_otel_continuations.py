"""flowkit.otel across continuations: waits ended by signals, deadlines and wake-ups; tick,
cancel, recover and a worker joining the stored trace; the stored context read once per run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import flowkit
from flowkit import (
    Engine,
    Schedule,
    SimulatedCrash,
    StepContext,
    StepResponse,
    WorkflowResponse,
    step,
    workflow,
)
from flowkit.otel import instrument
from flowkit.sqlalchemy import SqlStore
from flowkit.testing import ManualClock
from flowkit.testing.faults import Crash, FailurePlan, PlanFaults

DEADLINE = 60.0


@step("book")
def book(order: str, ctx: StepContext) -> StepResponse[str, str]:
    """Book; undone by `unbook`."""
    return StepResponse(f"booked-{order}", compensate_input=order)


@book.compensate
def unbook(order: str | None, ctx: StepContext) -> None:
    """Nothing to release in these tests."""


@step("confirm", async_completion=True, timeout=DEADLINE)
def confirm(booking: str, ctx: StepContext) -> str:
    """Wait for a confirmation, at most `DEADLINE` seconds."""
    return f"asked-{booking}"


@workflow("otel-confirm")
def confirm_flow(order: flowkit.Ref[str]) -> WorkflowResponse[str]:
    """Book, then wait for a confirmation under a deadline."""
    return WorkflowResponse(confirm(book(order)))


@workflow("otel-nap")
def nap_flow(order: flowkit.Ref[str]) -> WorkflowResponse[str]:
    """Book, sleep a minute, book again."""
    flowkit.sleep(DEADLINE, name="nap")
    return WorkflowResponse(book(order))


@step("left", async_completion=True)
def left(order: str, ctx: StepContext) -> str:
    """One of two parallel waits."""
    return "left?"


@step("right", async_completion=True)
def right(order: str, ctx: StepContext) -> str:
    """The other parallel wait."""
    return "right?"


@workflow("otel-both")
def both_flow(order: flowkit.Ref[str]) -> WorkflowResponse[tuple[str, str]]:
    """Wait for two signals at once."""
    return WorkflowResponse(flowkit.parallelize(left(order), right(order)))


ALL = [confirm_flow, nap_flow, both_flow]


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider exporting into memory."""
    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    yield provider, found
    provider.shutdown()


def _engines(
    tmp_path: Path, provider: TracerProvider, later: timedelta = timedelta(0), **options: Any
) -> tuple[Engine, Engine]:
    """Two instrumented engines on one SQLite file; the second one's clock `later` ahead."""
    url = f"sqlite:///{tmp_path}/otel.db"
    store = SqlStore(url)
    store.create_all()
    now = datetime.now(UTC)
    first = Engine(store, ALL, clock=ManualClock(now), **options)
    second = Engine(SqlStore(url), ALL, clock=ManualClock(now + later), **options)
    instrument(first, tracer_provider=provider)
    instrument(second, tracer_provider=provider)
    return first, second


def _parent_of(span: ReadableSpan) -> int | None:
    """The span id of a span's parent (None for a root)."""
    return span.parent.span_id if span.parent is not None else None


def _named(found: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


def _one_trace_under(found: tuple[ReadableSpan, ...], request: ReadableSpan | Any) -> None:
    """Every span is in the request's trace and every run segment is its child."""
    context = request.get_span_context()
    assert {s.context.trace_id for s in found} == {context.trace_id}
    segments = [s for s in found if s.name.startswith("flowkit.run ")]
    assert segments
    assert all(_parent_of(s) == context.span_id for s in segments)


def test_failure_signal_ends_the_wait_with_an_error(
    tmp_path: Path, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """`set_step_failure` on another engine gives a failed `flowkit.wait` span (ERROR, ended by
    the signal) in that engine's segment, then the compensations, all in the request's trace."""
    provider, spans = exporter
    first, second = _engines(tmp_path, provider)
    with first, second:
        with provider.get_tracer("web").start_as_current_span("POST /confirm") as request:
            first.run(confirm_flow, "c1", transaction_id="tx-refused")
        result = second.set_step_failure("tx-refused", "confirm", "the customer said no")
    assert result.status.value == "reverted"
    found = spans.get_finished_spans()
    _one_trace_under(found, request)
    (wait,) = _named(found, "flowkit.wait confirm")
    assert wait.attributes["flowkit.wait.ended_by"] == "signal"
    assert wait.attributes["flowkit.state"] == "failed"
    assert "flowkit.due_at" in wait.attributes  # the wait had a deadline
    assert wait.status.status_code is StatusCode.ERROR
    assert "the customer said no" in str(wait.events[0].attributes["exception.message"])
    segments = _named(found, "flowkit.run otel-confirm")
    assert [s.attributes["flowkit.state"] for s in segments] == ["waiting", "reverted"]
    assert _parent_of(wait) == segments[1].context.span_id
    (undo,) = _named(found, "flowkit.compensate book")
    assert _parent_of(undo) == segments[1].context.span_id


def test_tick_expiry_ends_the_wait_at_its_deadline(
    tmp_path: Path, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A wait expired by another engine's `tick()` is a `flowkit.wait` span ended by its
    deadline (state timeout, ERROR, `flowkit.due_at` the stored deadline), in the same trace."""
    provider, spans = exporter
    first, second = _engines(tmp_path, provider, later=timedelta(seconds=DEADLINE * 2))
    with first, second:
        with provider.get_tracer("web").start_as_current_span("POST /confirm") as request:
            first.run(confirm_flow, "c2", transaction_id="tx-late")
        due = first.get("tx-late").steps["confirm"].due_at  # type: ignore[union-attr]
        report = second.tick()
    assert report.expired == ["tx-late"]
    found = spans.get_finished_spans()
    _one_trace_under(found, request)
    (wait,) = _named(found, "flowkit.wait confirm")
    assert wait.attributes["flowkit.wait.ended_by"] == "deadline"
    assert wait.attributes["flowkit.state"] == "timeout"
    assert wait.status.status_code is StatusCode.ERROR
    assert due is not None
    assert wait.attributes["flowkit.due_at"] == due.astimezone(UTC).isoformat()
    states = [s.attributes["flowkit.state"] for s in _named(found, "flowkit.run otel-confirm")]
    assert states == ["waiting", "reverted"]


def test_tick_wake_up_ends_a_sleep(
    tmp_path: Path, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A `flowkit.sleep` woken by another engine's tick is a `flowkit.wait` span ended by the
    wake-up (state done, no error), followed by the next step, in the run's trace."""
    provider, spans = exporter
    first, second = _engines(tmp_path, provider, later=timedelta(seconds=DEADLINE * 2))
    with first, second:
        with provider.get_tracer("web").start_as_current_span("POST /nap") as request:
            assert first.run(nap_flow, "n1", transaction_id="tx-nap").status.value == "waiting"
        assert second.tick().woken == ["tx-nap"]
        assert second.get("tx-nap").status.value == "done"  # type: ignore[union-attr]
    found = spans.get_finished_spans()
    _one_trace_under(found, request)
    (wait,) = _named(found, "flowkit.wait nap")
    assert wait.attributes["flowkit.wait.ended_by"] == "wake"
    assert wait.attributes["flowkit.state"] == "done"
    assert wait.status.status_code is StatusCode.UNSET
    woke = _named(found, "flowkit.run otel-nap")[1]
    assert _parent_of(wait) == woke.context.span_id
    (booked,) = _named(found, "flowkit.step book")
    assert _parent_of(booked) == woke.context.span_id


def test_a_signal_that_parks_the_run_again_still_gets_its_segment(
    tmp_path: Path, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """Signalling one of two parallel waits emits no engine event (the run parks again at
    once); the signalling engine still gives a `waiting` run segment holding the wait's span."""
    provider, spans = exporter
    first, second = _engines(tmp_path, provider)
    with first, second:
        with provider.get_tracer("web").start_as_current_span("POST /both") as request:
            first.run(both_flow, "b1", transaction_id="tx-both")
        assert second.set_step_success("tx-both", "left", "L").status.value == "waiting"
        assert first.set_step_success("tx-both", "right", "R").status.value == "done"
    found = spans.get_finished_spans()
    _one_trace_under(found, request)
    segments = _named(found, "flowkit.run otel-both")
    assert [s.attributes["flowkit.state"] for s in segments] == ["waiting", "waiting", "done"]
    by_step = {s.attributes["flowkit.step"]: s for s in found if s.name.startswith("flowkit.wait")}
    assert set(by_step) == {"left", "right"}
    quiet = next(s for s in segments if s.context.span_id == _parent_of(by_step["left"]))
    assert quiet.attributes["flowkit.state"] == "waiting"
    assert all(s.attributes["flowkit.wait.ended_by"] == "signal" for s in by_step.values())


def test_cancel_and_a_worker_continue_the_stored_trace(
    tmp_path: Path, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A run enqueued in a request's span and executed by another engine's worker, then
    cancelled there, has every segment (worker, cancel) under the request's span."""
    provider, spans = exporter
    first, second = _engines(tmp_path, provider)
    with first, second:
        with provider.get_tracer("web").start_as_current_span("POST /queue") as request:
            first.enqueue(confirm_flow, "q1", transaction_id="tx-queued")
        assert second.work(idle_timeout=0, poll=(0.001, 0.001)).claimed == 1
        assert second.get("tx-queued").status.value == "waiting"  # type: ignore[union-attr]
        assert second.cancel("tx-queued").status.value == "reverted"
    found = spans.get_finished_spans()
    _one_trace_under(found, request)
    segments = _named(found, "flowkit.run otel-confirm")
    assert [s.attributes["flowkit.state"] for s in segments] == ["waiting", "reverted"]
    assert _named(found, "flowkit.compensate book")


def test_a_fired_schedule_starts_its_run_trace(
    tmp_path: Path, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A tick that enqueues a scheduled run gives a `flowkit.schedule` span in the trace the
    run is stored with; the worker's segment of the run joins it."""
    provider, spans = exporter
    hourly = Schedule("hourly-confirm", confirm_flow, every=timedelta(hours=1), input="s1")
    first, second = _engines(tmp_path, provider, schedules=[hourly])
    with first, second:
        report = first.tick()
        (scheduled,) = report.scheduled
        second.work(idle_timeout=0, poll=(0.001, 0.001))
        stored = second.get(scheduled).trace_context  # type: ignore[union-attr]
    assert stored is not None
    trace_id = int(stored.split("-")[1], 16)
    found = spans.get_finished_spans()
    (fired,) = _named(found, "flowkit.schedule hourly-confirm")
    assert fired.attributes["flowkit.transaction_id"] == scheduled
    (segment,) = _named(found, "flowkit.run otel-confirm")
    assert fired.context.trace_id == segment.context.trace_id == trace_id


class CountingStore:
    """The engine's store, counting `get_run` calls (everything else passes through)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.get_runs = 0

    def get_run(self, transaction_id: str) -> Any:
        """Count, then read."""
        self.get_runs += 1
        return self.inner.get_run(transaction_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _reads(tmp_path: Path, provider: TracerProvider | None) -> int:
    """`get_run` calls of one engine that runs a run, then signals it (two segments)."""
    store = SqlStore(f"sqlite:///{tmp_path}/reads-{provider is not None}.db")
    store.create_all()
    with Engine(store, ALL) as engine:
        if provider is not None:
            instrument(engine, tracer_provider=provider)
        counting = CountingStore(engine.runtime.store)
        engine.runtime.store = counting  # type: ignore[assignment]
        engine.run(confirm_flow, "o1", transaction_id="tx-once")
        engine.set_step_success("tx-once", "confirm", "ok")
        assert engine.get("tx-once").status.value == "done"  # type: ignore[union-attr]
    return counting.get_runs


def test_the_stored_context_is_read_once_per_run_per_process(
    tmp_path: Path, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """Two segments of one run in one instrumented engine read its stored trace context once:
    one `get_run` more than the same engine does without instrumentation."""
    provider, spans = exporter
    assert _reads(tmp_path, provider) == _reads(tmp_path, None) + 1
    segments = _named(spans.get_finished_spans(), "flowkit.run otel-confirm")
    assert len({_parent_of(s) for s in segments} - {None}) == 1
    assert len(segments) == 2


def test_recover_continues_the_stored_trace(
    tmp_path: Path, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A run whose engine crashed inside a request's span is recovered by another engine (its
    lease run out on their shared clock) in a segment under the request's span."""
    provider, spans = exporter
    url = f"sqlite:///{tmp_path}/otel.db"
    store = SqlStore(url)
    store.create_all()
    clock = ManualClock(datetime.now(UTC))
    crashing = Engine(store, ALL, clock=clock)
    crashing.faults["tx-crashed"] = PlanFaults(FailurePlan(crash=Crash("book", "invoke", "after")))
    later = Engine(SqlStore(url), ALL, clock=clock)
    with crashing, later:
        instrument(crashing, tracer_provider=provider)
        instrument(later, tracer_provider=provider)
        web = provider.get_tracer("web")
        with web.start_as_current_span("POST /confirm") as request, pytest.raises(SimulatedCrash):
            crashing.run(confirm_flow, "r1", transaction_id="tx-crashed")
        clock.advance(later.lease_seconds + 1)
        assert [r.transaction_id for r in later.recover()] == ["tx-crashed"]
    found = spans.get_finished_spans()
    (segment,) = _named(found, "flowkit.run otel-confirm")  # the crashed one never ended
    assert segment.attributes["flowkit.state"] == "waiting"
    assert segment.context.trace_id == request.get_span_context().trace_id
    assert _parent_of(segment) == request.get_span_context().span_id
    (asked,) = _named(found, "flowkit.step confirm")
    assert _parent_of(asked) == segment.context.span_id
