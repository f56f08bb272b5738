"""Parallel waiting steps: signalling one parks the run again until every sibling is signalled."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from flowkit import (
    Engine,
    StepContext,
    StepResponse,
    TransactionState,
    WorkflowResponse,
    parallelize,
    step,
    workflow,
)
from flowkit.store import Store
from flowkit.testing import ManualClock

UNDONE: list[str] = []


@step("wait-a", async_completion=True)
def wait_a(value: Any, ctx: StepContext) -> StepResponse[str, str]:
    """One of two waits started together."""
    return StepResponse("asked a", compensate_input="undo a")


@step("wait-b", async_completion=True, timeout=60)
def wait_b(value: Any, ctx: StepContext) -> StepResponse[str, str]:
    """The other, with a deadline."""
    return StepResponse("asked b", compensate_input="undo b")


@wait_a.compensate
@wait_b.compensate
def _undo(token: str, ctx: StepContext) -> None:
    UNDONE.append(token)


@step("wait-c", async_completion=True)
def wait_c(value: Any, ctx: StepContext) -> str:
    """A third sibling."""
    return "asked c"


@workflow("three-waits")
def three_waits(value: Any) -> WorkflowResponse[list[Any]]:
    """Three waits in parallel, signalled in any order."""
    return WorkflowResponse(list(parallelize(wait_a(value), wait_b(value), wait_c(value))))


@workflow("two-waits")
def two_waits(value: Any) -> WorkflowResponse[dict[str, Any]]:
    """Two waits in parallel; the result holds both answers."""
    a, b = parallelize(wait_a(value), wait_b(value))
    return WorkflowResponse({"a": a, "b": b})


@pytest.fixture
def store(durable_store: Store) -> Store:
    """The test's durable store (memory, SQLite or PostgreSQL), the step log emptied."""
    UNDONE.clear()
    return durable_store


def test_signalling_one_sibling_parks_the_run_again(store: Store) -> None:
    """After the first signal the run waits for the other; after both it is done."""
    with Engine(store, [two_waits]) as engine:
        engine.run(two_waits, 1, transaction_id="t")
        half = engine.set_step_success("t", "wait-a", "A")
        assert half.status is TransactionState.WAITING
        assert half.waiting == {"wait-b": "asked b"}
        done = engine.set_step_success("t", "wait-b", "B")
        assert done.status is TransactionState.DONE
        assert done.result == {"a": "A", "b": "B"}


def test_three_siblings_signalled_last_first_finish_without_a_recovery_count(
    store: Store,
) -> None:
    """Continuing a parked run is no crash recovery: signalling the siblings in reverse order
    never counts the first one as a step that died in flight (no ProcessKilled)."""
    with Engine(store, [three_waits]) as engine:
        engine.run(three_waits, 1, transaction_id="t3")
        assert engine.set_step_success("t3", "wait-c", "C").status is TransactionState.WAITING
        assert engine.set_step_success("t3", "wait-b", "B").status is TransactionState.WAITING
        done = engine.set_step_success("t3", "wait-a", "A")
        assert done.status is TransactionState.DONE
        assert done.result == ["A", "B", "C"]


def test_a_sibling_deadline_compensates_both_waits(store: Store) -> None:
    """One wait signalled, the other past its deadline: tick times it out, both are undone."""
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    with Engine(store, [two_waits], clock=clock) as engine:
        engine.run(two_waits, 1, transaction_id="t")
        engine.set_step_success("t", "wait-a", "A")
        clock.advance(61)
        assert engine.tick().expired == ["t"]
        record = engine.get("t")
        assert record is not None
        assert record.status is TransactionState.REVERTED
    assert sorted(UNDONE) == ["undo a", "undo b"]
