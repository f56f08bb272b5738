"""A run is stored with the trace context it was started under (what tracing tools continue)."""

from __future__ import annotations

from time_app import ALL, hold_and_wait

from flowkit import Engine
from flowkit.sqlalchemy import SqlStore

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_run_and_enqueue_store_the_provider_trace_context(database_url: str) -> None:
    """The runtime's trace-context provider is asked once per new run; records carry it."""
    store = SqlStore(database_url)
    store.create_all()
    with Engine(store, ALL) as engine:
        asked: list[str] = []

        def provider() -> str:
            asked.append("asked")
            return PARENT

        engine.runtime.trace_context = provider
        engine.run(hold_and_wait, "t", transaction_id="traced")
        queued = engine.enqueue(hold_and_wait, "q")
        engine.runtime.trace_context = None
        engine.run(hold_and_wait, "u", transaction_id="untraced")
        assert len(asked) == 2
        assert engine.get("traced").trace_context == PARENT  # type: ignore[union-attr]
        assert engine.get(queued).trace_context == PARENT  # type: ignore[union-attr]
        assert engine.get("untraced").trace_context is None  # type: ignore[union-attr]
