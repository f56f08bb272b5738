"""OpenTelemetry traces and metrics of an engine's runs, built on its event subscription.

    from flowkit.otel import instrument
    instrumentation = instrument(engine)        # the global tracer and meter providers
    ...
    instrumentation.uninstrument()

Traces: a span `flowkit.run <workflow>` per run in each process that drives it (ended at
`run_finished`, or when the run parks: state `waiting`), a child span per step attempt
(`flowkit.step <step>`) and per compensation (`flowkit.compensate <step>`), with the attributes
`flowkit.transaction_id`, `flowkit.workflow`, `flowkit.step`, `flowkit.attempt`,
`flowkit.state` and `flowkit.version`; failed attempts and compensations record their error
and an ERROR status (a retried attempt only that it failed: `step_retrying` carries no error).

The end of a wait is a span `flowkit.wait <step>` in the segment that ended it, from the step's
parking (its stored `waiting` row, dated on the engine's clock) to its end, with
`flowkit.wait.ended_by`: `signal`, `deadline` (expired by `tick()` or a late signal: state
`timeout`, an ERROR) or `wake` (a `flowkit.sleep`), and `flowkit.due_at` (ISO 8601). The engine
emits no event when a signal succeeds a step, so `instrument` wraps the engine's
`set_step_success`, as OpenTelemetry's instrumentations wrap their libraries' calls (a signal
kept until its step waits, and delivered later by the run's owner, gets no wait span). A
schedule's tick is a span `flowkit.schedule <schedule>` in the trace of the run it enqueued.

One trace per run across processes: `instrument` sets the engine's trace-context provider
(`engine.runtime.trace_context`), so every new run is stored with a W3C `traceparent`: the
caller's current span (a run started inside a web request's span is its child) or, outside any
span, a fresh sampled context made for the run (its parent is never exported: backends show the
run's segments under a root they report as missing). Each process that continues the run (a
signal, `recover`, a worker, `tick`, `cancel`) reads the stored context once (the store's
`get_run` on the run's first event there; the last `PARENTS_KEPT` runs' are kept) and parents
its `flowkit.run` span on it. A run stored without one (by an engine not instrumented) falls
back to a parent derived from its transaction id (`run_parent`), the same in every process.

Metrics: the counter `flowkit.runs` (attributes `flowkit.workflow`, `flowkit.outcome`: the
status a run stopped at in this process) and the histogram `flowkit.step.duration` (seconds;
`flowkit.workflow`, `flowkit.step`, `flowkit.state`).

Nothing in flowkit imports this module: an engine that is not instrumented pays nothing, and
flowkit runs without `opentelemetry-api` installed (the `otel` extra installs it).
"""

from flowkit.otel.context import parent_context, run_parent, traceparent
from flowkit.otel.instrumentation import PARENTS_KEPT, SCOPE, Instrumentation, instrument

__all__ = [
    "PARENTS_KEPT",
    "SCOPE",
    "Instrumentation",
    "instrument",
    "parent_context",
    "run_parent",
    "traceparent",
]
