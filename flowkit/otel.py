"""OpenTelemetry traces and metrics of an engine's runs, built on its event subscription.

    from flowkit.otel import instrument
    instrumentation = instrument(engine)        # the global tracer and meter providers
    ...
    instrumentation.uninstrument()

Traces: a span `flowkit.run <workflow>` per run in each process that drives it, a child span
per step attempt (`flowkit.step <step>`) and per compensation (`flowkit.compensate <step>`),
with the attributes `flowkit.transaction_id`, `flowkit.workflow`, `flowkit.step`,
`flowkit.attempt`, `flowkit.state` and `flowkit.version` (when the engine's records carry a
version); failed attempts and compensations record their error and an ERROR status (a retried
attempt records only that it failed: the engine's `step_retrying` event carries no error).

A process's run span ends at `run_finished`, or, since the engine emits none when a run parks,
at a `step_waiting` with no other step of the run in flight (state `waiting`).

A run continued in another process (a signal, a recovery, a worker) continues the same trace.
The run record has no field for a trace context, and this module adds none (no schema change):
the trace id and the span id of the run's parent are derived from the transaction id (SHA-256),
so every process reconstructs the same remote parent, and every process's `flowkit.run` span is
its child. That parent span itself is never exported: a backend shows one trace whose run
segments hang under a root it reports as missing.

Metrics: the counter `flowkit.runs` (attributes `flowkit.workflow`, `flowkit.outcome`: the
status a run stopped at in this process) and the histogram `flowkit.step.duration` (seconds;
`flowkit.workflow`, `flowkit.step`, `flowkit.state`).

Nothing in flowkit imports this module: an engine that is not instrumented pays nothing, and
flowkit runs without `opentelemetry-api` installed (the `otel` extra installs it).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

from attrs import define, field
from opentelemetry import metrics, trace
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, Status, StatusCode, TraceFlags

from flowkit.engine import Engine
from flowkit.events import Event

__all__ = ["Instrumentation", "instrument", "run_parent"]

SCOPE = "flowkit"
_STEP_END = {
    "step_succeeded": "done",
    "step_failed": "failed",
    "step_retrying": "failed",
    "step_waiting": "waiting",
    "step_skipped": "skipped",
}
_COMPENSATION_END = {"step_compensated": "reverted", "compensation_failed": "compensation_failed"}


def run_parent(transaction_id: str) -> SpanContext:
    """The remote parent every process gives the run's spans: ids derived from the transaction id.

    Args:
        transaction_id: The run's transaction id.

    Returns:
        A sampled, remote `SpanContext` (a non-zero trace id and span id).
    """
    digest = hashlib.sha256(f"flowkit.trace:{transaction_id}".encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


@define
class _Run:
    span: Span
    steps: dict[tuple[str, str], Span] = field(factory=dict)


class Instrumentation:
    """The spans and metrics of one engine's runs (an engine event subscriber).

    Attributes:
        engine: The instrumented engine.
    """

    def __init__(
        self,
        engine: Engine,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.engine = engine
        self._tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, meter_provider=meter_provider)
        self._runs_counter = meter.create_counter(
            "flowkit.runs", unit="{run}", description="Runs by the status they stopped at"
        )
        self._step_duration = meter.create_histogram(
            "flowkit.step.duration", unit="s", description="Step attempts and compensations"
        )
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = engine.subscribe(self.handle)

    def uninstrument(self) -> None:
        """Stop listening to the engine (spans still open are ended)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        with self._lock:
            open_runs, self._runs = list(self._runs.values()), {}
        for run in open_runs:
            for span in run.steps.values():
                span.end()
            run.span.end()

    def handle(self, event: Event) -> None:
        """Turn one engine event into span starts and ends and metric points."""
        with self._lock:
            run = self._run(event)
            if event.name == "run_finished":
                self._finish(event, run)
            elif event.step is not None:
                self._step(event, run)

    # --- runs -------------------------------------------------------------------------------

    def _run(self, event: Event) -> _Run:
        found = self._runs.get(event.transaction_id)
        if found is not None:
            return found
        parent = trace.set_span_in_context(NonRecordingSpan(run_parent(event.transaction_id)))
        span = self._tracer.start_span(
            f"flowkit.run {event.workflow}",
            context=parent,
            kind=trace.SpanKind.INTERNAL,
            attributes=self._attributes(event),
            start_time=_ns(event.timestamp),
        )
        made = self._runs[event.transaction_id] = _Run(span)
        return made

    def _finish(self, event: Event, run: _Run, status: str | None = None) -> None:
        status = status or str(event.data.get("status", "unknown"))
        for span in run.steps.values():  # a step left open (a crash between events)
            span.end(end_time=_ns(event.timestamp))
        run.span.set_attribute("flowkit.state", status)
        if status in ("failed", "reverted", "timeout", "compensation_failed"):
            run.span.set_status(Status(StatusCode.ERROR, f"run {status}"))
        run.span.end(end_time=_ns(event.timestamp))
        del self._runs[event.transaction_id]
        self._runs_counter.add(1, {"flowkit.workflow": event.workflow, "flowkit.outcome": status})

    # --- steps ------------------------------------------------------------------------------

    def _step(self, event: Event, run: _Run) -> None:
        step = event.step
        assert step is not None  # checked by `handle`
        if event.name == "step_started":
            self._open(event, run, ("invoke", step), f"flowkit.step {step}")
        elif event.name == "compensation_started":
            self._open(event, run, ("compensate", step), f"flowkit.compensate {step}")
        elif event.name in _STEP_END:
            self._close(event, run, ("invoke", step), _STEP_END[event.name])
            if event.name == "step_waiting" and not run.steps:
                # nothing else in flight: the run parks (the engine emits no run_finished then)
                self._finish(event, run, "waiting")
        elif event.name in _COMPENSATION_END:
            self._close(event, run, ("compensate", step), _COMPENSATION_END[event.name])

    def _open(self, event: Event, run: _Run, key: tuple[str, str], name: str) -> Span:
        span = self._tracer.start_span(
            name,
            context=trace.set_span_in_context(run.span),
            attributes=self._attributes(event),
            start_time=_ns(event.timestamp),
        )
        run.steps[key] = span
        return span

    def _close(self, event: Event, run: _Run, key: tuple[str, str], state: str) -> None:
        span = run.steps.pop(key, None)
        if span is None:  # ended without a start here: a step finished by a signal
            kind = "flowkit.step" if key[0] == "invoke" else "flowkit.compensate"
            span = self._open(event, run, key, f"{kind} {key[1]}")
            run.steps.pop(key)
        span.set_attribute("flowkit.state", state)
        error = event.data.get("error")
        if error is None and event.name == "step_retrying":
            error = "the attempt failed; it is retried"  # the event carries no error
        if error is not None:
            span.add_event("exception", {"exception.message": str(error)})
            span.set_status(Status(StatusCode.ERROR, str(error)[:200]))
        duration = event.data.get("duration")
        if isinstance(duration, int | float):
            seconds = float(duration)
        else:
            seconds = max(event.timestamp - _start_of(span, event.timestamp), 0.0)
        span.end(end_time=_ns(event.timestamp))
        self._step_duration.record(
            seconds,
            {"flowkit.workflow": event.workflow, "flowkit.step": key[1], "flowkit.state": state},
        )

    def _attributes(self, event: Event) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "flowkit.transaction_id": event.transaction_id,
            "flowkit.workflow": event.workflow,
        }
        if event.step is not None:
            attributes["flowkit.step"] = event.step
        if event.attempt is not None:
            attributes["flowkit.attempt"] = event.attempt
        version = event.data.get("version")
        if version is None:
            version = getattr(self.engine.workflows.get(event.workflow), "version", None)
        if version is not None:
            attributes["flowkit.version"] = str(version)
        return attributes


def _start_of(span: Span, default: float) -> float:
    start = getattr(span, "start_time", None)  # the SDK's spans know it, the API's do not
    return start / 1e9 if isinstance(start, int) else default


def instrument(
    engine: Engine,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Instrumentation:
    """Send spans and metrics of `engine`'s runs to OpenTelemetry.

    Args:
        engine: The engine whose runs are traced.
        tracer_provider: Where spans go (default: the global tracer provider).
        meter_provider: Where metrics go (default: the global meter provider).

    Returns:
        The instrumentation; `uninstrument()` stops it.
    """
    return Instrumentation(engine, tracer_provider, meter_provider)
