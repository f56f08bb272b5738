"""The `Instrumentation` of one engine: its events turned into spans and metric points (see
the `flowkit.otel` package docstring for what is traced and how traces cross processes)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, Status, StatusCode

from flowkit.engine import Engine
from flowkit.events import Event
from flowkit.otel.context import fresh_context, iso, ns, parent_context, traceparent
from flowkit.otel.records import (
    FailedWait,
    Parked,
    RunSpans,
    SignalInFlight,
    may_end_wait,
    record_error,
    signalled_end,
    start_of,
    stored_wait,
)

__all__ = ["PARENTS_KEPT", "SCOPE", "Instrumentation", "instrument"]

SCOPE = "flowkit"
PARENTS_KEPT = 4096
"""How many runs' stored trace contexts an instrumentation keeps (the most recent)."""
_STEP_END = {
    "step_succeeded": "done",
    "step_failed": "failed",
    "step_retrying": "failed",
    "step_waiting": "waiting",
    "step_skipped": "skipped",
}
_COMPENSATION_END = {"step_compensated": "reverted", "compensation_failed": "compensation_failed"}
_EXPIRED = {"flowkit.state": "timeout", "flowkit.wait.ended_by": "deadline"}
_FAILED_RUN = ("failed", "reverted", "timeout", "compensation_failed")


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
        self._runs: dict[str, RunSpans] = {}
        self._parents: OrderedDict[str, Context] = OrderedDict()
        self._signals: dict[str, SignalInFlight] = {}
        self._lock = threading.Lock()
        self._previous_provider = engine.runtime.trace_context
        engine.runtime.trace_context = self.trace_context
        self._signal_success = self._wrap_success(engine.set_step_success)
        engine.set_step_success = self._signal_success  # type: ignore[method-assign]
        self._unsubscribe: Callable[[], None] | None = engine.subscribe(self.handle)

    def trace_context(self) -> str | None:
        """The `traceparent` a new run is stored with: the current span's, else a fresh one."""
        current = trace.get_current_span().get_span_context()
        return traceparent(current if current.is_valid else fresh_context())

    def uninstrument(self) -> None:
        """Stop listening to the engine (spans still open are ended) and give back its
        trace-context provider and `set_step_success`."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        runtime = self.engine.runtime
        if runtime.trace_context == self.trace_context:
            runtime.trace_context = self._previous_provider
        if self.engine.__dict__.get("set_step_success") is self._signal_success:
            del self.engine.__dict__["set_step_success"]
        with self._lock:
            open_runs, self._runs = list(self._runs.values()), {}
        for run in open_runs:
            self._settle(None, run)
            for span in run.steps.values():
                span.end()
            run.span.end()

    def handle(self, event: Event) -> None:
        """Turn one engine event into span starts and ends and metric points."""
        if event.name == "schedule_fired":
            self._schedule_fired(event)
            return
        tx = event.transaction_id
        if event.name == "run_parked":  # a drive that parked with no new step waiting
            with self._lock:
                parked_run = self._runs.get(tx)
                if parked_run is not None:
                    self._finish(event, parked_run, "waiting")
            return
        open_run = self._runs.get(tx)
        parent = self._parent(tx) if open_run is None else None
        parked = self._parked(event) if may_end_wait(event, open_run) else None
        with self._lock:
            run = self._run(event, parent)
            if run.failed_wait is not None and self._settle(event, run):
                return
            if event.name == "run_finished":
                self._finish(event, run)
            elif event.name == "run_woken":
                self._woken(event, run, parked)
            elif event.step is not None:
                self._step(event, run, parked)

    # --- runs -------------------------------------------------------------------------------

    def _parent(self, transaction_id: str) -> Context:
        """The stored trace context of a run, read once (a failed read is not kept)."""
        with self._lock:
            found = self._parents.get(transaction_id)
            if found is not None:
                self._parents.move_to_end(transaction_id)
                return found
        try:
            stored = self.engine.runtime.store.get_run(transaction_id)
        except Exception:  # a tracing aid must not fail the run: derive the parent instead
            return parent_context(None, transaction_id)
        context = parent_context(stored.trace_context if stored else None, transaction_id)
        with self._lock:
            self._parents[transaction_id] = context
            while len(self._parents) > PARENTS_KEPT:
                self._parents.popitem(last=False)
        return context

    def _run(self, event: Event, parent: Context | None) -> RunSpans:
        found = self._runs.get(event.transaction_id)
        if found is not None:
            return found
        span = self._tracer.start_span(
            f"flowkit.run {event.workflow}",
            context=parent or parent_context(None, event.transaction_id),
            kind=trace.SpanKind.INTERNAL,
            attributes=self._attributes(event),
            start_time=ns(event.timestamp),
        )
        made = self._runs[event.transaction_id] = RunSpans(span)
        signal = self._signals.get(event.transaction_id)
        if signal is not None and signal.segment is None:
            signal.segment = span
        return made

    def _finish(self, event: Event, run: RunSpans, status: str | None = None) -> None:
        status = status or str(event.data.get("status", "unknown"))
        self._settle(None, run)
        for span in run.steps.values():  # a step left open (a crash between events)
            span.end(end_time=ns(event.timestamp))
        run.span.set_attribute("flowkit.state", status)
        if status in _FAILED_RUN:
            run.span.set_status(Status(StatusCode.ERROR, f"run {status}"))
        run.span.end(end_time=ns(event.timestamp))
        del self._runs[event.transaction_id]
        self._runs_counter.add(1, {"flowkit.workflow": event.workflow, "flowkit.outcome": status})

    # --- steps ------------------------------------------------------------------------------

    def _step(self, event: Event, run: RunSpans, parked: Parked | None) -> None:
        step = event.step
        assert step is not None  # checked by `handle`
        if event.name == "step_started":
            self._open(event, run, ("invoke", step), f"flowkit.step {step}")
        elif event.name == "compensation_started":
            self._open(event, run, ("compensate", step), f"flowkit.compensate {step}")
        elif event.name == "step_failed" and parked is not None:
            self._wait_failed(event, run, parked)
        elif event.name == "step_expired":  # its step_failed found no stored wait
            span = self._wait_span(event, run.span, None, "timeout", "deadline")
            record_error(span, "the wait's deadline passed")
            span.end(end_time=ns(event.timestamp))
        elif event.name in _STEP_END:
            self._close(event, run, ("invoke", step), _STEP_END[event.name])
            if event.name == "step_waiting" and not run.steps:
                # nothing else in flight: the run parks (the engine emits no run_finished then)
                self._finish(event, run, "waiting")
        elif event.name in _COMPENSATION_END:
            self._close(event, run, ("compensate", step), _COMPENSATION_END[event.name])

    def _open(self, event: Event, run: RunSpans, key: tuple[str, str], name: str) -> Span:
        span = self._tracer.start_span(
            name,
            context=trace.set_span_in_context(run.span),
            attributes=self._attributes(event),
            start_time=ns(event.timestamp),
        )
        run.steps[key] = span
        return span

    def _close(self, event: Event, run: RunSpans, key: tuple[str, str], state: str) -> None:
        span = run.steps.pop(key, None)
        if span is None:  # ended without a start here (a nested workflow's node)
            kind = "flowkit.step" if key[0] == "invoke" else "flowkit.compensate"
            span = self._open(event, run, key, f"{kind} {key[1]}")
            run.steps.pop(key)
        span.set_attribute("flowkit.state", state)
        error = event.data.get("error")
        if error is None and event.name == "step_retrying":
            error = "the attempt failed; it is retried"  # the event carries no error
        if error is not None:
            record_error(span, str(error))
        duration = event.data.get("duration")
        if isinstance(duration, int | float):
            seconds = float(duration)
        else:
            seconds = max(event.timestamp - start_of(span, event.timestamp), 0.0)
        span.end(end_time=ns(event.timestamp))
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

    # --- waits ------------------------------------------------------------------------------

    def _parked(self, event: Event) -> Parked | None:
        """The stored wait of the event's step (None: the step never waited)."""
        assert event.step is not None  # `may_end_wait` checked
        try:
            loaded = self.engine.runtime.store.load(event.transaction_id)
        except Exception:  # a tracing aid must not fail the run
            return None
        return stored_wait(loaded[1] if loaded is not None else (), event.step)

    def _wait_span(
        self, event: Event, segment: Span, parked: Parked | None, state: str, ended_by: str
    ) -> Span:
        start = event.timestamp
        if parked is not None and parked.at is not None:
            start = min(parked.at, start)
        attributes = self._attributes(event)
        attributes.pop("flowkit.attempt", None)
        attributes.update({"flowkit.state": state, "flowkit.wait.ended_by": ended_by})
        due = parked.due if parked is not None else event.data.get("deadline")
        if isinstance(due, int | float):
            attributes["flowkit.due_at"] = iso(float(due))
        assert event.step is not None  # waits are steps'
        return self._tracer.start_span(
            f"flowkit.wait {event.step}",
            context=trace.set_span_in_context(segment),
            attributes=attributes,
            start_time=ns(start),
        )

    def _wait_failed(self, event: Event, run: RunSpans, parked: Parked) -> None:
        """A waiting step failed: by a failure signal, unless `step_expired` comes next."""
        span = self._wait_span(event, run.span, parked, "failed", "signal")
        assert event.step is not None  # a step's event
        run.failed_wait = FailedWait(
            span, event.step, str(event.data.get("error")), event.timestamp
        )

    def _settle(self, event: Event | None, run: RunSpans) -> bool:
        """End the run's failed wait; True when `event` was its `step_expired` (consumed)."""
        wait, run.failed_wait = run.failed_wait, None
        if wait is None:
            return False
        expired = event is not None and event.name == "step_expired" and event.step == wait.step
        if expired:
            wait.span.set_attributes(_EXPIRED)
        record_error(wait.span, wait.error)
        wait.span.end(end_time=ns(wait.end))
        return expired

    def _woken(self, event: Event, run: RunSpans, parked: Parked | None) -> None:
        span = self._wait_span(event, run.span, parked, "done", "wake")
        span.end(end_time=ns(event.timestamp))

    # --- signals and schedules --------------------------------------------------------------

    def _wrap_success(self, signal: Callable[..., Any]) -> Callable[..., Any]:
        def set_step_success(transaction_id: str, step: str, *args: Any, **kwargs: Any) -> Any:
            pending = SignalInFlight(step, time.time())
            with self._lock:
                self._signals[transaction_id] = pending
            try:
                return signal(transaction_id, step, *args, **kwargs)
            finally:
                with self._lock:
                    if self._signals.get(transaction_id) is pending:
                        del self._signals[transaction_id]
                self._signalled(transaction_id, pending)

        set_step_success.__doc__ = signal.__doc__
        return set_step_success

    def _signalled(self, transaction_id: str, signal: SignalInFlight) -> None:
        """The wait span of a step a success signal finished (nothing if the signal was kept,
        refused, or came too late)."""
        try:
            loaded = self.engine.runtime.store.load(transaction_id)
        except Exception:  # a tracing aid must not fail the caller
            return
        if loaded is None:
            return
        stored, rows = loaded
        ended = signalled_end(rows, signal)
        if ended is None:
            return
        segment = signal.segment or self._quiet_segment(transaction_id, stored.workflow, signal)
        event = Event("step_signalled", stored.workflow, transaction_id, signal.step)
        span = self._wait_span(event, segment, stored_wait(rows, signal.step), "done", "signal")
        span.end(end_time=ns(max(ended, start_of(span, ended))))

    def _quiet_segment(self, transaction_id: str, workflow: str, signal: SignalInFlight) -> Span:
        """The run span of a signal's continuation that emitted no event (it parked again)."""
        event = Event("run_signalled", workflow, transaction_id, timestamp=signal.at)
        span = self._tracer.start_span(
            f"flowkit.run {workflow}",
            context=self._parent(transaction_id),
            attributes={**self._attributes(event), "flowkit.state": "waiting"},
            start_time=ns(signal.at),
        )
        span.end()
        self._runs_counter.add(1, {"flowkit.workflow": workflow, "flowkit.outcome": "waiting"})
        return span

    def _schedule_fired(self, event: Event) -> None:
        """A tick enqueued a scheduled run: an instant in the run's trace."""
        schedule = str(event.data.get("schedule"))
        attributes = {**self._attributes(event), "flowkit.schedule": schedule}
        tick = event.data.get("tick")
        if isinstance(tick, datetime):
            attributes["flowkit.tick"] = tick.isoformat()
        span = self._tracer.start_span(
            f"flowkit.schedule {schedule}",
            context=self._parent(event.transaction_id),
            attributes=attributes,
            start_time=ns(event.timestamp),
        )
        span.end(end_time=ns(event.timestamp))


def instrument(
    engine: Engine,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Instrumentation:
    """Send spans and metrics of `engine`'s runs to OpenTelemetry, and store every new run
    with the trace context it starts under.

    Args:
        engine: The engine whose runs are traced.
        tracer_provider: Where spans go (default: the global tracer provider).
        meter_provider: Where metrics go (default: the global meter provider).

    Returns:
        The instrumentation; `uninstrument()` stops it.
    """
    return Instrumentation(engine, tracer_provider, meter_provider)
