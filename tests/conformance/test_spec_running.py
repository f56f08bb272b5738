"""Spec §3, running: `run`/`run_async`, `RunResult`, states, errors raised, isolation."""

from __future__ import annotations

import asyncio
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from flowkit import (
    CompensationFailed,
    RunResult,
    StepContext,
    StepError,
    StepState,
    TransactionState,
    WorkflowResponse,
    parallelize,
    step,
    workflow,
)


class Declined(Exception):
    """A domain error a caller would catch by type."""


def test_transaction_id_defaults_to_a_fresh_uuid4_hex(saga) -> None:
    """Without a transaction id, each run gets a fresh uuid4 hex."""
    a = saga.step("a")

    @workflow("fresh-id")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(a(inp))

    first, second = flow.run(0).transaction_id, flow.run(0).transaction_id
    assert first != second
    for tx in (first, second):
        assert uuid.UUID(hex=tx).version == 4
        assert tx == uuid.UUID(hex=tx).hex


def test_given_transaction_id_is_used(saga) -> None:
    """`transaction_id=` is the run's id, seen by steps and in the result."""
    a = saga.step("a")

    @workflow("given-id")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(a(inp))

    result = flow.run(0, transaction_id="cart_123")
    assert result.transaction_id == "cart_123"
    assert saga.contexts[0].transaction_id == "cart_123"


def test_run_result_of_a_successful_run(saga) -> None:
    """A `done` run: result, status, no errors, per-step records, not partially completed."""
    a = saga.step("a")
    b = saga.step("b")

    @workflow("success")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(b(a(inp)))

    result = flow.run(0)
    assert isinstance(result, RunResult)
    assert result.result == "b-out"
    assert result.status is TransactionState.DONE
    assert result.errors == []
    assert result.workflow == "success"
    assert result.is_partially_completed is False
    assert list(result.steps) == ["a", "b"]
    record = result.steps["a"]
    assert (record.name, record.state, record.attempts) == ("a", StepState.DONE, 1)
    assert record.started_at is not None
    assert record.ended_at is not None
    assert record.started_at <= record.ended_at
    assert record.compensated_at is None


def test_run_result_of_a_reverted_run(saga) -> None:
    """A reverted run: no result, `reverted`, the error recorded, steps `reverted`."""
    a = saga.step("a")
    b = saga.step("b", fail=Declined("card declined"))
    c = saga.step("c")

    @workflow("reverted")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(c(b(a(inp))))

    result = flow.run(0, throw_on_error=False)
    assert result.status is TransactionState.REVERTED
    assert result.result is None
    [error] = result.errors
    assert isinstance(error, StepError)
    assert (error.step, error.action, error.message) == ("b", "invoke", "card declined")
    assert error.type_name.endswith("Declined")
    assert isinstance(error.exception, Declined)
    assert result.steps["a"].state is StepState.REVERTED
    assert result.steps["a"].compensated_at is not None
    assert result.steps["b"].state is StepState.REVERTED
    assert result.steps["c"].state is StepState.NOT_STARTED


def test_reverted_run_reraises_the_original_exception_with_a_note(saga) -> None:
    """`throw_on_error=True`: the step's own exception is raised, with a PEP 678 note."""
    declined = Declined("card declined")
    a = saga.step("a")
    pay = saga.step("pay", fail=declined)

    @workflow("checkout")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(pay(a(inp)))

    with pytest.raises(Declined) as caught:
        flow.run(0, transaction_id="cart_9")
    assert caught.value is declined
    [note] = caught.value.__notes__
    assert "checkout" in note
    assert "pay" in note
    assert "cart_9" in note


def test_throw_on_error_false_returns_the_result(saga) -> None:
    """`throw_on_error=False` returns the reverted result instead of raising."""
    a = saga.step("a", fail=Declined("no"))

    @workflow("no-throw")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(a(inp))

    result = flow.run(0, throw_on_error=False)
    assert result.status is TransactionState.REVERTED
    assert not result.succeeded


def test_failed_run_raises_compensation_failed(saga) -> None:
    """A run whose compensation fails raises `CompensationFailed`: original error first."""
    original = Declined("declined")
    undo_error = OSError("release failed")
    a = saga.step("a", comp_fail=undo_error)
    b = saga.step("b", fail=original)

    @workflow("comp-fails")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(b(a(inp)))

    with pytest.raises(CompensationFailed) as caught:
        flow.run(0, transaction_id="tx-cf")
    group = caught.value
    assert isinstance(group, ExceptionGroup)
    assert list(group.exceptions) == [original, undo_error]
    assert group.transaction_id == "tx-cf"


def test_compensation_failed_splits_with_except_star(saga) -> None:
    """`except* Declined` catches the original error out of a `CompensationFailed`."""
    a = saga.step("a", comp_fail=OSError("release failed"))
    b = saga.step("b", fail=Declined("declined"))

    @workflow("comp-fails-star")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(b(a(inp)))

    caught: list[BaseException] = []
    try:
        flow.run(0)
    except* Declined as group:
        caught.extend(group.exceptions)
    except* OSError:
        pass
    assert [type(e) for e in caught] == [Declined]


def test_run_with_async_steps_works_from_sync_code() -> None:
    """`run()` drives async steps and async compensations on its own event loop."""
    undone: list[Any] = []

    @step("fetch")
    async def fetch(inp: int, ctx: StepContext) -> int:
        await asyncio.sleep(0)
        return inp + 1

    @fetch.compensate
    async def unfetch(value: int, ctx: StepContext) -> None:
        await asyncio.sleep(0)
        undone.append(value)

    @step("boom")
    def boom(inp: Any, ctx: StepContext) -> None:
        raise Declined("boom")

    @workflow("async-in-run")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(fetch(inp))

    @workflow("async-in-run-fails")
    def failing(inp: Any) -> Any:
        return WorkflowResponse(boom(fetch(inp)))

    assert flow.run(1).result == 2
    assert failing.run(1, throw_on_error=False).status is TransactionState.REVERTED
    assert undone == [2]


def test_run_inside_a_running_loop_points_to_run_async() -> None:
    """`run()` of a workflow with async steps inside a running loop points to `run_async`."""

    @step("tick")
    async def tick(inp: Any, ctx: StepContext) -> None:
        await asyncio.sleep(0)

    @workflow("in-loop")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(tick(inp))

    async def main() -> None:
        flow.run(0)

    with pytest.raises(RuntimeError, match="run_async"):
        asyncio.run(main())


def test_run_of_a_parallel_sync_workflow_inside_a_running_loop(saga) -> None:
    """`run()` of a sync workflow with parallel steps inside a loop works or points to run_async."""
    a, b = saga.step("a"), saga.step("b")

    @workflow("par-in-loop")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(parallelize(a(inp), b(inp)))

    async def main() -> Any:
        try:
            return flow.run(0).result
        except RuntimeError as exc:
            return str(exc)

    outcome = asyncio.run(main())
    assert outcome == ("a-out", "b-out") or "run_async" in outcome


def test_run_async_of_a_sync_workflow(saga) -> None:
    """`run_async` runs a workflow of plain sync steps on the running loop."""
    a, b = saga.step("a"), saga.step("b")

    @workflow("async-of-sync")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(parallelize(a(inp), b(inp)))

    assert asyncio.run(flow.run_async(0)).result == ("a-out", "b-out")


def test_run_async_raises_like_run(saga) -> None:
    """`run_async` re-raises a reverted run's original exception too."""
    a = saga.step("a", fail=Declined("no"))

    @workflow("async-raise")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(a(inp))

    with pytest.raises(Declined):
        asyncio.run(flow.run_async(0))


def _echo_workflow(name: str) -> Any:
    @step("stamp")
    def stamp(inp: int, ctx: StepContext) -> dict[str, Any]:
        ctx.metadata.setdefault("inputs", []).append(inp)
        return {"inp": inp, "tx": ctx.transaction_id, "thread": threading.get_ident()}

    @step("check")
    def check(got: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        if ctx.metadata["inputs"] != [got["inp"]] or got["tx"] != ctx.transaction_id:
            raise AssertionError(f"runs leaked into each other: {got} {ctx.metadata}")
        return got

    @workflow(name)
    def flow(inp: Any) -> Any:
        return WorkflowResponse(check(stamp(inp)))

    return flow


def test_concurrent_runs_in_threads_are_isolated() -> None:
    """Threads running the same workflow at once never see each other's inputs or state."""
    flow = _echo_workflow("isolated-threads")

    def one(i: int) -> tuple[int, Any]:
        return i, flow.run(i, transaction_id=f"tx-{i}").result

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(400)))
    for i, result in results:
        assert result["inp"] == i
        assert result["tx"] == f"tx-{i}"
    assert len({r["thread"] for _, r in results}) > 1


def test_concurrent_async_runs_are_isolated() -> None:
    """Many `run_async` calls gathered on one loop keep their own state."""

    @step("wait")
    async def wait(inp: int, ctx: StepContext) -> tuple[int, str]:
        await asyncio.sleep(0.001 * (inp % 3))
        return inp, ctx.transaction_id

    @workflow("isolated-async")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(wait(inp))

    async def main() -> list[Any]:
        runs = [flow.run_async(i, transaction_id=f"tx-{i}") for i in range(50)]
        return [r.result for r in await asyncio.gather(*runs)]

    assert asyncio.run(main()) == [(i, f"tx-{i}") for i in range(50)]


def test_spec_transaction_states_exist() -> None:
    """Every transaction state the spec names exists, with its spec value."""
    names = {"not_started", "invoking", "waiting", "compensating", "done", "reverted", "failed"}
    assert names <= {s.value for s in TransactionState}


def test_spec_step_states_are_exactly_the_listed_ones() -> None:
    """`StepState` has exactly the step states the spec lists."""
    assert {s.value for s in StepState} == {
        "not_started",
        "invoking",
        "waiting",
        "done",
        "failed",
        "timeout",
        "skipped",
        "skipped_failure",
        "compensating",
        "reverted",
        "compensation_failed",
    }


def test_event_group_id_reaches_every_step(saga) -> None:
    """`event_group_id=` is passed to the context of every step, nested ones included."""
    a = saga.step("a")
    inner = saga.step("inner")

    @workflow("group-child")
    def child(inp: Any) -> Any:
        return WorkflowResponse(inner(inp))

    @workflow("group-parent")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(child.as_step(a(inp)))

    flow.run(0, event_group_id="cart-group")
    assert [ctx.event_group_id for ctx in saga.contexts] == ["cart-group", "cart-group"]
