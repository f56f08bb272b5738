"""A process that dies while continuing a signalled run leaves it to recover(), not parked."""

from __future__ import annotations

from typing import Any

import pytest

from flowkit import (
    Engine,
    SimulatedCrash,
    StepContext,
    TransactionState,
    WorkflowResponse,
    step,
    workflow,
)
from flowkit.store import Store
from flowkit.testing.faults import Crash, FailurePlan, PlanFaults

CALLS: list[str] = []


@step("confirm", async_completion=True)
def confirm(value: Any, ctx: StepContext) -> str:
    """Wait for the customer."""
    return "asked"


@step("ship")
def ship(answer: Any, ctx: StepContext) -> Any:
    """The step after the wait, where the process dies."""
    CALLS.append(f"ship {answer}")
    return answer


@step("notify")
def notify(answer: Any, ctx: StepContext) -> Any:
    """The last step."""
    CALLS.append(f"notify {answer}")
    return answer


@workflow("confirm-ship")
def confirm_ship(value: Any) -> WorkflowResponse[Any]:
    """Wait, then two steps."""
    return WorkflowResponse(notify(ship(confirm(value))))


@pytest.fixture
def store(durable_store: Store) -> Store:
    """The test's durable store (memory, SQLite or PostgreSQL), the step log emptied."""
    CALLS.clear()
    return durable_store


def test_a_crash_after_a_signal_is_recovered_and_finishes_once(store: Store) -> None:
    """The signal's continuation dies after `ship`; recover() finishes the run from there."""
    dying = Engine(store, [confirm_ship])
    dying.run(confirm_ship, 1, transaction_id="c1")
    dying.faults["c1"] = PlanFaults(FailurePlan(crash=Crash("ship", "invoke", "after")))
    with pytest.raises(SimulatedCrash):
        dying.set_step_success("c1", "confirm", "yes")
    record = dying.get("c1")
    assert record is not None
    assert record.status is TransactionState.INVOKING  # active, not parked: recover() sees it
    store.expire_lease("c1")  # its process is gone
    recovered = Engine(store, [confirm_ship]).recover()
    assert [r.transaction_id for r in recovered] == ["c1"]
    assert recovered[0].status is TransactionState.DONE
    assert CALLS == ["ship yes", "notify yes"]
