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
from flowkit.otel import instrument, run_parent
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


def _by_name(found: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


def test_one_trace_across_two_engines(
    tmp_path: Path, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    """A run parked by one engine and signalled on another gives one trace under one parent."""
    provider, exporter = spans
    url = f"sqlite:///{tmp_path}/otel.db"
    first, second = _engine(url), _engine(url)
    with first, second:
        instrument(first, tracer_provider=provider)
        instrument(second, tracer_provider=provider)
        parked = first.run(order_flow, "o1", transaction_id="tx-otel-1")
        assert parked.status.value == "waiting"
        done = second.set_step_success("tx-otel-1", "approve", "ok")
        assert done.status.value == "done"
    found = exporter.get_finished_spans()
    runs = _by_name(found, "flowkit.run otel-order")
    assert len(runs) == 2  # one segment per engine
    parent = run_parent("tx-otel-1")
    assert {s.context.trace_id for s in found} == {parent.trace_id}
    assert all(s.parent is not None and s.parent.span_id == parent.span_id for s in runs)
    assert runs[0].attributes["flowkit.state"] == "waiting"
    assert runs[1].attributes["flowkit.state"] == "done"
    run_ids = {s.context.span_id for s in runs}
    steps = [s for s in found if s.name.startswith("flowkit.step ")]
    assert all(s.parent is not None and s.parent.span_id in run_ids for s in steps)
    charges = _by_name(found, "flowkit.step charge")
    assert [s.attributes["flowkit.attempt"] for s in charges] == [1, 2]
    assert charges[0].status.status_code is StatusCode.ERROR
    assert charges[0].events[0].name == "exception"
    assert charges[1].attributes["flowkit.state"] == "done"
    approvals = _by_name(found, "flowkit.step approve")
    assert [s.attributes["flowkit.state"] for s in approvals] == ["waiting"]
    assert approvals[0].attributes["flowkit.transaction_id"] == "tx-otel-1"


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
