"""Trace contexts of runs: the `traceparent` a run is stored with, and the parent its
segments hang on."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["fresh_context", "iso", "ns", "parent_context", "run_parent", "traceparent"]

_PROPAGATOR = TraceContextTextMapPropagator()


def run_parent(transaction_id: str) -> SpanContext:
    """The remote parent of a run stored without a trace context: ids derived from its
    transaction id, so every process derives the same.

    Args:
        transaction_id: The run's transaction id.

    Returns:
        A sampled, remote `SpanContext` (a non-zero trace id and span id).
    """
    digest = hashlib.sha256(f"flowkit.trace:{transaction_id}".encode()).digest()
    trace_id = int.from_bytes(digest[:16], "big") or 1
    span_id = int.from_bytes(digest[16:24], "big") or 1
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(1))


def traceparent(context: SpanContext) -> str:
    """`context` as a W3C `traceparent` header value (what a run is stored with).

    Args:
        context: A valid span context.

    Returns:
        `00-<trace id>-<span id>-<flags>`.
    """
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(NonRecordingSpan(context)))
    return carrier["traceparent"]


def parent_context(stored: str | None, transaction_id: str) -> Context:
    """The context a run's segment is parented on: its stored `traceparent`, or (none stored,
    or not a valid one) the parent `run_parent` derives.

    Args:
        stored: The run's stored trace context (`RunRecord.trace_context`).
        transaction_id: The run's transaction id.

    Returns:
        An OpenTelemetry `Context` holding the remote parent span.
    """
    if stored:
        extracted = _PROPAGATOR.extract({"traceparent": stored})
        if trace.get_current_span(extracted).get_span_context().is_valid:
            return extracted
    return trace.set_span_in_context(NonRecordingSpan(run_parent(transaction_id)))


def fresh_context() -> SpanContext:
    """A new sampled context with random ids (a run started outside any span)."""
    trace_id = secrets.randbits(128) or 1
    return SpanContext(trace_id, secrets.randbits(64) or 1, True, TraceFlags(TraceFlags.SAMPLED))


def ns(seconds: float) -> int:
    """Epoch seconds as the nanoseconds OpenTelemetry takes."""
    return int(seconds * 1e9)


def iso(seconds: float) -> str:
    """Epoch seconds as ISO 8601, UTC."""
    return datetime.fromtimestamp(seconds, UTC).isoformat()
