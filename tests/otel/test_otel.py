"""flowkit.otel: spans per run, step attempt and compensation; one trace across engines; metrics."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import flowkit
from flowkit import Engine, RetryPolicy, StepContext, WorkflowResponse, step, workflow
from flowkit.otel import instrument, run_parent, traceparent
from flowkit.sqlalchemy import SqlStore


class Flaky(Exception):
    """Fails the first attempt of `charge`."""


_calls: dict[str, int] = {}


@step("reserve")
def reserve(order: str, ctx: StepContext) -> str:
    """Reserve; undone by `release`."""
    return f"res-{order}"


@reserve.compensate
def release(reservation: str | None, ctx: StepContext) -> None:
    """Release the reservation (nothing to undo here)."""


@step("charge", retry=RetryPolicy(max_retries=1))
def charge(order: str, ctx: StepContext) -> str:
    """Fail the first attempt, then charge; always fail for an order named `bad`."""
    _calls[order] = _calls.get(order, 0) + 1
    if order == "bad" or _calls[order] == 1:
        raise Flaky(f"attempt {_calls[order]} of {order}")
    return f"paid-{order}"


@step("approve", async_completion=True)
def approve(order: str, ctx: StepContext) -> str:
    """Park until someone signals."""
    return f"asked-{order}"


@workflow("otel-order")
def order_flow(order: flowkit.Ref[str]) -> WorkflowResponse[str]:
    """Reserve, charge (retried), wait for approval."""
    reserve(order)
    charge(order)
    return WorkflowResponse(approve(order))


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A tracer provider exporting into memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _engine(url: str) -> Engine:
    store = SqlStore(url)
    store.create_all()
    return Engine(store, [order_flow])


def _parent_of(span: ReadableSpan) -> int | None:
    """The span id of a span's parent (None for a root)."""
    return span.parent.span_id if span.parent is not None else None


def _by_name(found: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


def test_one_trace_across_two_engines(
    tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A run started inside a request's span, parked by engine A and signalled on engine B, is
    stored with that span's context: both segments are its children, in its trace."""
    provider, exporter = spans
    url = f"sqlite:///{tmp_path}/otel.db"
    first, second = _engine(url), _engine(url)
    with first, second:
        instrument(first, tracer_provider=provider)
        instrument(second, tracer_provider=provider)
        with provider.get_tracer("web").start_as_current_span("POST /orders") as request:
            parked = first.run(order_flow, "o1", transaction_id="tx-otel-1")
        assert parked.status.value == "waiting"
        stored = traceparent(request.get_span_context())
        assert first.get("tx-otel-1").trace_context == stored  # type: ignore[union-attr]
        assert second.runtime.store.get_run("tx-otel-1").trace_context == stored  # type: ignore[union-attr]
        done = second.set_step_success("tx-otel-1", "approve", "ok")
        assert done.status.value == "done"
    found = exporter.get_finished_spans()
    runs = _by_name(found, "flowkit.run otel-order")
    assert len(runs) == 2  # one segment per engine
    request_context = request.get_span_context()
    assert {s.context.trace_id for s in found} == {request_context.trace_id}
    assert all(_parent_of(s) == request_context.span_id for s in runs)
    assert runs[0].attributes["flowkit.state"] == "waiting"
    assert runs[1].attributes["flowkit.state"] == "done"
    run_ids = {s.context.span_id for s in runs}
    steps = [s for s in found if s.name.startswith(("flowkit.step ", "flowkit.wait "))]
    assert all(_parent_of(s) in run_ids for s in steps)
    charges = _by_name(found, "flowkit.step charge")
    assert [s.attributes["flowkit.attempt"] for s in charges] == [1, 2]
    assert charges[0].status.status_code is StatusCode.ERROR
    assert charges[0].events[0].name == "exception"
    assert charges[1].attributes["flowkit.state"] == "done"
    approvals = _by_name(found, "flowkit.step approve")
    assert [s.attributes["flowkit.state"] for s in approvals] == ["waiting"]
    assert approvals[0].attributes["flowkit.transaction_id"] == "tx-otel-1"
    (wait,) = _by_name(found, "flowkit.wait approve")
    assert _parent_of(wait) == runs[1].context.span_id
    assert wait.attributes["flowkit.wait.ended_by"] == "signal"
    assert wait.attributes["flowkit.state"] == "done"
    asked = approvals[0]
    assert asked.start_time is not None
    assert asked.end_time is not None
    assert wait.start_time is not None
    assert wait.end_time is not None
    assert asked.start_time <= wait.start_time <= asked.end_time < wait.end_time  # park..signal


def test_a_run_outside_any_span_gets_a_fresh_trace_of_its_own(
    tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """Started outside a span, each run is stored with a fresh sampled context (not the
    derived one), and the engine that continues it joins that trace."""
    provider, exporter = spans
    url = f"sqlite:///{tmp_path}/otel.db"
    first, second = _engine(url), _engine(url)
    with first, second:
        instrument(first, tracer_provider=provider)
        instrument(second, tracer_provider=provider)
        first.run(order_flow, "f1", transaction_id="tx-fresh-1")
        first.run(order_flow, "f2", transaction_id="tx-fresh-2")
        second.set_step_success("tx-fresh-1", "approve", "ok")
        stored = first.get("tx-fresh-1").trace_context  # type: ignore[union-attr]
        other = first.get("tx-fresh-2").trace_context  # type: ignore[union-attr]
    assert stored is not None
    assert other is not None
    version, trace_hex, span_hex, flags = stored.split("-")
    assert (version, flags, len(trace_hex), len(span_hex)) == ("00", "01", 32, 16)
    assert trace_hex != other.split("-")[1]
    assert int(trace_hex, 16) != run_parent("tx-fresh-1").trace_id
    segments = [
        s
        for s in _by_name(exporter.get_finished_spans(), "flowkit.run otel-order")
        if s.attributes["flowkit.transaction_id"] == "tx-fresh-1"
    ]
    assert len(segments) == 2
    assert {s.context.trace_id for s in segments} == {int(trace_hex, 16)}
    assert {_parent_of(s) for s in segments} == {int(span_hex, 16)}


def test_a_run_stored_without_context_falls_back_to_the_derived_parent(
    tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A run parked by an engine that was not instrumented (no stored context) is continued
    under the parent derived from its transaction id."""
    provider, exporter = spans
    url = f"sqlite:///{tmp_path}/otel.db"
    first, second = _engine(url), _engine(url)
    with first, second:
        first.run(order_flow, "n1", transaction_id="tx-untraced")
        assert first.get("tx-untraced").trace_context is None  # type: ignore[union-attr]
        instrument(second, tracer_provider=provider)
        second.set_step_success("tx-untraced", "approve", "ok")
    (segment,) = _by_name(exporter.get_finished_spans(), "flowkit.run otel-order")
    parent = run_parent("tx-untraced")
    assert segment.context.trace_id == parent.trace_id
    assert _parent_of(segment) == parent.span_id


def test_uninstrument_gives_back_the_provider_and_the_signal_method(tmp_path: Path) -> None:
    """After `uninstrument()`, new runs are stored without a context and signals are the
    engine's own method again."""
    with _engine(f"sqlite:///{tmp_path}/otel.db") as engine:
        own = engine.set_step_success
        instrumentation = instrument(engine)
        assert engine.runtime.trace_context is not None
        assert engine.set_step_success != own
        instrumentation.uninstrument()
        assert engine.runtime.trace_context is None
        assert engine.set_step_success == own
        engine.run(order_flow, "u1", transaction_id="tx-after")
        assert engine.get("tx-after").trace_context is None  # type: ignore[union-attr]


def test_compensations_have_spans_and_the_run_an_error(
    tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A failed run has a compensation span per undone step and an ERROR run span."""
    provider, exporter = spans
    with _engine(f"sqlite:///{tmp_path}/otel.db") as engine:
        instrument(engine, tracer_provider=provider)
        result = engine.run(order_flow, "bad", transaction_id="tx-bad", throw_on_error=False)
    assert result.status.value == "reverted"
    found = exporter.get_finished_spans()
    (run,) = _by_name(found, "flowkit.run otel-order")
    assert run.status.status_code is StatusCode.ERROR
    assert run.attributes["flowkit.state"] == "reverted"
    undo = _by_name(found, "flowkit.compensate reserve")
    assert len(undo) == 1
    assert undo[0].attributes["flowkit.state"] == "reverted"
    assert undo[0].parent is not None
    assert undo[0].parent.span_id == run.context.span_id


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def test_metrics_count_runs_by_outcome_and_time_steps(tmp_path: Path) -> None:
    """`flowkit.runs` counts runs by outcome; `flowkit.step.duration` records each attempt."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    with _engine(f"sqlite:///{tmp_path}/otel.db") as engine:
        instrumentation = instrument(engine, meter_provider=provider)
        engine.run(order_flow, "m1", transaction_id="tx-m1")
        engine.run(order_flow, "bad", transaction_id="tx-m2", throw_on_error=False)
        instrumentation.uninstrument()
        engine.run(order_flow, "m3", transaction_id="tx-m3")  # not counted any more
    counts = {p.attributes["flowkit.outcome"]: p.value for p in _points(reader, "flowkit.runs")}
    assert counts == {"waiting": 1, "reverted": 1}
    durations = _points(reader, "flowkit.step.duration")
    charge_failed = [
        p
        for p in durations
        if p.attributes["flowkit.step"] == "charge" and p.attributes["flowkit.state"] == "failed"
    ]
    assert sum(p.count for p in charge_failed) == 3  # m1's first attempt, both of bad's
    assert all(p.min >= 0 for p in durations)
    provider.shutdown()


def test_flowkit_does_not_import_opentelemetry() -> None:
    """Importing flowkit and its CLI loads no OpenTelemetry: an engine not instrumented pays nil."""
    code = (
        "import sys, flowkit, flowkit.cli, flowkit.engine; "
        "print([m for m in sys.modules if m.startswith('opentelemetry')])"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"
