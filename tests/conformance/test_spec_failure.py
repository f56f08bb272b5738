"""Spec §4, failure: compensation order and inputs, retries, soft failures, timeouts."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from flowkit import (
    CompensationFailed,
    PermanentFailure,
    RetryPolicy,
    StepContext,
    StepResponse,
    StepState,
    StepTimeout,
    TransactionState,
    WorkflowResponse,
    WorkflowTimeout,
    parallelize,
    step,
    workflow,
)


class Flaky(Exception):
    """A transient error worth retrying."""


class Fatal(Exception):
    """An error no retry can fix."""


def _failing_until(attempts_to_fail: int, exc: type[Exception] = Flaky) -> Any:
    """A step body that fails its first `attempts_to_fail` attempts, then returns `ok`."""

    def body(inp: Any, ctx: StepContext) -> str:
        if ctx.attempt <= attempts_to_fail:
            raise exc(f"attempt {ctx.attempt}")
        return "ok"

    return body


# --- compensation order and inputs -------------------------------------------------------------


def test_compensation_runs_in_exact_reverse_order(saga) -> None:
    """Done steps are compensated in exact reverse order, the failing step first, with None."""
    names = ["s1", "s2", "s3", "s4", "s5"]
    steps = [saga.step(n, comp_input=f"undo-{n}") for n in names]
    boom = saga.step("boom", fail=Fatal("boom"))

    @workflow("reverse")
    def flow(inp: Any) -> Any:
        value = inp
        for s in steps:
            value = s(value)
        return WorkflowResponse(boom(value))

    result = flow.run(0, throw_on_error=False)
    assert saga.compensated == [("boom", None)] + [(n, f"undo-{n}") for n in reversed(names)]
    assert result.status is TransactionState.REVERTED
    assert all(r.state is StepState.REVERTED for r in result.steps.values())


def test_parallel_group_is_compensated_at_its_place(saga) -> None:
    """A `parallelize` group is compensated together, between the steps around it."""
    first = saga.step("first")
    left, right = saga.step("left"), saga.step("right")
    boom = saga.step("boom", fail=Fatal("boom"))

    @workflow("group-place")
    def flow(inp: Any) -> Any:
        got = parallelize(left(first(inp)), right(inp))
        return WorkflowResponse(boom(got))

    with pytest.raises(Fatal):
        flow.run(0)
    order = [name for name, _ in saga.compensated]
    assert order[0] == "boom"
    assert sorted(order[1:3]) == ["left", "right"]
    assert order[3] == "first"


def _parallel_with_slow_compensations(saga: Any, *, async_comp: bool) -> Any:
    def make(name: str) -> Any:
        @step(name)
        def invoke(inp: Any, ctx: StepContext) -> str:
            return name

        if async_comp:

            @invoke.compensate
            async def undo_async(value: Any, ctx: StepContext) -> None:
                await asyncio.sleep(0.2)
                saga.record("compensate", name, value, ctx)

        else:

            @invoke.compensate
            def undo(value: Any, ctx: StepContext) -> None:
                time.sleep(0.2)
                saga.record("compensate", name, value, ctx)

        return invoke

    left, right = make("left"), make("right")
    boom = saga.step("boom", fail=Fatal("boom"), compensated=False)

    @workflow("slow-comp")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(boom(parallelize(left(inp), right(inp))))

    return flow


def test_parallel_sync_siblings_are_compensated_concurrently(saga) -> None:
    """Sync siblings' compensations run at the same time (two 0.2 s undos in < 0.35 s)."""
    flow = _parallel_with_slow_compensations(saga, async_comp=False)
    start = time.perf_counter()
    flow.run(0, throw_on_error=False)
    assert time.perf_counter() - start < 0.35
    assert sorted(name for name, _ in saga.compensated) == ["left", "right"]


def test_parallel_sync_siblings_are_compensated_concurrently_under_run_async(saga) -> None:
    """Under `run_async`, sync siblings' compensations still run concurrently (in threads)."""
    flow = _parallel_with_slow_compensations(saga, async_comp=False)

    async def main() -> float:
        start = time.perf_counter()
        await flow.run_async(0, throw_on_error=False)
        return time.perf_counter() - start

    assert asyncio.run(main()) < 0.35
    assert sorted(name for name, _ in saga.compensated) == ["left", "right"]


def test_parallel_async_compensations_run_concurrently(saga) -> None:
    """Async compensations of siblings run concurrently as tasks."""
    flow = _parallel_with_slow_compensations(saga, async_comp=True)
    start = time.perf_counter()
    flow.run(0, throw_on_error=False)
    assert time.perf_counter() - start < 0.35
    assert sorted(name for name, _ in saga.compensated) == ["left", "right"]


# --- retries ----------------------------------------------------------------------------------


def test_retries_make_n_plus_one_attempts_with_the_same_input(saga) -> None:
    """`max_retries=2` means 3 attempts, each with the same input object and idempotency key."""
    payload = {"amount": 10}
    flaky = saga.custom("flaky", _failing_until(99), retry=RetryPolicy(max_retries=2))

    @workflow("retries")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(flaky(inp))

    result = flow.run(payload, throw_on_error=False, transaction_id="tx-r")
    calls = zip(saga.calls, saga.contexts, strict=True)
    invokes = [(value, ctx) for (act, _, value), ctx in calls if act == "invoke"]
    assert len(invokes) == 3
    assert all(value is payload for value, _ in invokes)
    assert [ctx.attempt for _, ctx in invokes] == [1, 2, 3]
    assert {ctx.idempotency_key for _, ctx in invokes} == {"retries:tx-r:flaky:invoke"}
    assert result.steps["flaky"].attempts == 3
    assert result.steps["flaky"].state is StepState.REVERTED
    assert saga.compensated == [("flaky", None)]


def test_retry_succeeds_on_a_later_attempt(saga) -> None:
    """A step that fails twice then succeeds under `max_retries=2` ends `done` after 3 attempts."""
    flaky = saga.custom("flaky", _failing_until(2), retry=RetryPolicy(max_retries=2))

    @workflow("retry-ok")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(flaky(inp))

    result = flow.run(0)
    assert result.result == "ok"
    assert result.steps["flaky"].attempts == 3
    assert result.errors == []


def test_async_step_retries(saga) -> None:
    """An `async def` step is retried like a sync one: N+1 attempts, the same input."""
    seen: list[tuple[int, Any]] = []

    @step("flaky-async", retry=RetryPolicy(max_retries=3))
    async def flaky(inp: Any, ctx: StepContext) -> str:
        seen.append((ctx.attempt, inp))
        await asyncio.sleep(0)
        if ctx.attempt < 4:
            raise Flaky("again")
        return "ok"

    @workflow("async-retries")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(flaky(inp))

    assert flow.run("x").result == "ok"
    assert seen == [(1, "x"), (2, "x"), (3, "x"), (4, "x")]


def test_retry_on_limits_what_is_retried(saga) -> None:
    """An exception outside `retry_on` is not retried."""
    flaky = saga.custom(
        "flaky", _failing_until(99, Fatal), retry=RetryPolicy(max_retries=3, retry_on=(Flaky,))
    )

    @workflow("retry-on")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(flaky(inp))

    with pytest.raises(Fatal):
        flow.run(0)
    assert saga.invoked == ["flaky"]


def test_give_up_on_and_retry_if_stop_retries(saga) -> None:
    """`give_up_on` and a false `retry_if` end retries after the first attempt."""
    give_up = saga.custom(
        "give-up", _failing_until(99), retry=RetryPolicy(max_retries=3, give_up_on=(Flaky,))
    )
    refused = saga.custom(
        "refused", _failing_until(99), retry=RetryPolicy(max_retries=3, retry_if=lambda e: False)
    )

    @workflow("give-up")
    def first(inp: Any) -> Any:
        return WorkflowResponse(give_up(inp))

    @workflow("retry-if")
    def second(inp: Any) -> Any:
        return WorkflowResponse(refused(inp))

    first.run(0, throw_on_error=False)
    second.run(0, throw_on_error=False)
    assert saga.invoked == ["give-up", "refused"]


def test_retry_if_sees_the_exception(saga) -> None:
    """`retry_if(exc)` decides per exception: retried while it returns True."""
    seen: list[str] = []

    def worth_it(exc: BaseException) -> bool:
        seen.append(str(exc))
        return str(exc) != "attempt 2"

    flaky = saga.custom(
        "flaky", _failing_until(99), retry=RetryPolicy(max_retries=5, retry_if=worth_it)
    )

    @workflow("retry-if-exc")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(flaky(inp))

    flow.run(0, throw_on_error=False)
    assert saga.invoked == ["flaky", "flaky"]
    assert set(seen) == {"attempt 1", "attempt 2"}


def test_compensation_is_retried_under_the_step_policy() -> None:
    """A compensation that fails is retried under its step's policy; success means `reverted`."""
    attempts: list[int] = []

    @step("a", retry=RetryPolicy(max_retries=2))
    def a(inp: Any, ctx: StepContext) -> str:
        return "a"

    @a.compensate
    def undo(value: Any, ctx: StepContext) -> None:
        attempts.append(ctx.attempt)
        if len(attempts) < 3:
            raise Flaky("not yet")

    @step("boom")
    def boom(inp: Any, ctx: StepContext) -> None:
        raise Fatal("boom")

    @workflow("comp-retry")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(boom(a(inp)))

    result = flow.run(0, throw_on_error=False)
    assert attempts == [1, 2, 3]
    assert result.status is TransactionState.REVERTED
    assert [e.action for e in result.errors] == ["invoke"]


def test_failed_compensation_goes_on_and_ends_failed(saga) -> None:
    """A compensation failing for good: earlier compensations still run; the run ends `failed`."""
    a = saga.step("a")
    b = saga.step("b", comp_fail=OSError("cannot undo b"))
    c = saga.step("c")
    boom = saga.step("boom", fail=Fatal("boom"))

    @workflow("comp-fail-go-on")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(boom(c(b(a(inp)))))

    result = flow.run(0, throw_on_error=False)
    assert [name for name, _ in saga.compensated] == ["boom", "c", "b", "a"]
    assert result.status is TransactionState.FAILED
    assert [(e.step, e.action) for e in result.errors] == [("boom", "invoke"), ("b", "compensate")]
    assert result.steps["b"].state is StepState.COMPENSATION_FAILED
    assert result.steps["a"].state is StepState.REVERTED
    with pytest.raises(CompensationFailed):
        flow.run(0)


# --- soft failures ----------------------------------------------------------------------------


def test_continue_on_permanent_failure_lets_the_run_go_on(saga) -> None:
    """`continue_on_permanent_failure`: the step is `failed`, later steps run, the run is `done`."""
    a = saga.step("a")
    optional = saga.step(
        "optional",
        fail=Flaky("down"),
        retry=RetryPolicy(max_retries=1),
        continue_on_permanent_failure=True,
    )
    c = saga.step("c")

    @workflow("continue")
    def flow(inp: Any) -> Any:
        a(inp)
        optional(inp)
        return WorkflowResponse(c(inp))

    result = flow.run(0)
    assert saga.invoked == ["a", "optional", "optional", "c"]
    assert result.status is TransactionState.DONE
    assert result.result == "c-out"
    assert result.is_partially_completed is True
    assert result.steps["optional"].state is StepState.FAILED
    [error] = result.errors
    assert (error.step, error.type_name) == ("optional", f"{Flaky.__module__}.Flaky")
    assert saga.compensated == []


def test_continue_on_permanent_failure_applies_to_permanent_failure(saga) -> None:
    """A `PermanentFailure` in a `continue_on_permanent_failure` step lets the run go on."""
    optional = saga.step(
        "optional", fail=PermanentFailure("no"), continue_on_permanent_failure=True
    )
    c = saga.step("c")

    @workflow("continue-permanent")
    def flow(inp: Any) -> Any:
        optional(inp)
        return WorkflowResponse(c(inp))

    result = flow.run(0)
    assert result.status is TransactionState.DONE
    assert result.is_partially_completed


def test_skip_on_permanent_failure_skips_every_later_step(saga) -> None:
    """`skip_on_permanent_failure`: later steps are `skipped_failure`, nothing is compensated."""
    a = saga.step("a")
    gate = saga.step("gate", fail=PermanentFailure("closed"), skip_on_permanent_failure=True)
    c, d = saga.step("c"), saga.step("d")

    @workflow("skip-rest")
    def flow(inp: Any) -> Any:
        a(inp)
        gate(inp)
        c(inp)
        return WorkflowResponse(d(inp))

    result = flow.run(0)
    assert saga.invoked == ["a", "gate"]
    assert saga.compensated == []
    assert result.status is TransactionState.DONE
    assert result.is_partially_completed is True
    assert result.steps["a"].state is StepState.DONE
    assert result.steps["gate"].state is StepState.FAILED
    assert result.steps["c"].state is StepState.SKIPPED_FAILURE
    assert result.steps["d"].state is StepState.SKIPPED_FAILURE
    assert [e.step for e in result.errors] == ["gate"]


# --- step timeouts ----------------------------------------------------------------------------


def test_async_step_is_cancelled_at_its_timeout(saga) -> None:
    """An async step past its timeout is cancelled: `StepTimeout`, compensated with None."""
    finished: list[str] = []

    @step("slow", timeout=0.05, retry=RetryPolicy(max_retries=2))
    async def slow(inp: Any, ctx: StepContext) -> str:
        await asyncio.sleep(2)
        finished.append("slow")
        return "late"

    undone: list[Any] = []
    slow.compensate(lambda value, ctx: undone.append(value))
    a = saga.step("a")

    @workflow("async-timeout")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(slow(a(inp)))

    start = time.perf_counter()
    with pytest.raises(StepTimeout) as caught:
        flow.run(0)
    assert time.perf_counter() - start < 1.0
    assert isinstance(caught.value, TimeoutError)
    assert finished == []
    assert undone == [None]
    assert saga.compensated == [("a", "a-out")]
    result = flow.run(0, throw_on_error=False)
    assert result.steps["slow"].attempts == 1


def test_sync_step_returning_late_is_marked_timeout(saga) -> None:
    """A sync step returning late is `timeout` and compensated with the compensate input it gave."""

    @step("late", timeout=0.05, retry=RetryPolicy(max_retries=2))
    def late(inp: Any, ctx: StepContext) -> Any:
        saga.record("invoke", "late", inp, ctx)
        time.sleep(0.1)
        return StepResponse("out", compensate_input="refund-me")

    late.compensate(lambda value, ctx: saga.record("compensate", "late", value, ctx))
    after = saga.step("after")

    @workflow("sync-timeout")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(after(late(inp)))

    result = flow.run(0, throw_on_error=False)
    assert saga.invoked == ["late"]
    assert saga.compensated == [("late", "refund-me")]
    assert result.status is TransactionState.REVERTED
    assert result.errors[0].step == "late"
    assert isinstance(result.errors[0].exception, StepTimeout)
    assert result.steps["late"].attempts == 1


def test_sync_timeout_state_is_timeout_before_compensation(saga) -> None:
    """A late sync step that is not compensated keeps the state `timeout`."""

    @step("late", timeout=0.02)
    def late(inp: Any, ctx: StepContext) -> str:
        time.sleep(0.05)
        return "out"

    @workflow("sync-timeout-state")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(late(inp))

    result = flow.run(0, throw_on_error=False)
    assert result.steps["late"].state is StepState.TIMEOUT
    assert result.status is TransactionState.REVERTED


# --- workflow timeouts ------------------------------------------------------------------------


def test_workflow_timeout_is_checked_between_steps(saga) -> None:
    """Past the workflow deadline, no new step starts; done steps are compensated."""

    @step("slow")
    def slow(inp: Any, ctx: StepContext) -> str:
        time.sleep(0.15)
        return "slow-out"

    slow.compensate(lambda value, ctx: saga.record("compensate", "slow", value, ctx))
    after = saga.step("after")

    @workflow("wf-timeout", timeout=0.1)
    def flow(inp: Any) -> Any:
        return WorkflowResponse(after(slow(inp)))

    with pytest.raises(WorkflowTimeout) as caught:
        flow.run(0)
    assert isinstance(caught.value, TimeoutError)
    assert saga.invoked == []
    assert saga.compensated == [("slow", "slow-out")]


def test_workflow_timeout_cancels_running_async_steps(saga) -> None:
    """A workflow timeout cancels a running async step; the run is reverted promptly."""
    a = saga.step("a")
    finished: list[str] = []

    @step("hang")
    async def hang(inp: Any, ctx: StepContext) -> None:
        await asyncio.sleep(2)
        finished.append("hang")

    @workflow("wf-timeout-async", timeout=0.1)
    def flow(inp: Any) -> Any:
        return WorkflowResponse(hang(a(inp)))

    start = time.perf_counter()
    result = flow.run(0, throw_on_error=False)
    assert time.perf_counter() - start < 1.0
    assert finished == []
    assert result.status is TransactionState.REVERTED
    assert isinstance(result.errors[0].exception, WorkflowTimeout)
    assert saga.compensated == [("a", "a-out")]


def test_continue_on_permanent_failure_covers_a_timeout(saga) -> None:
    """A `continue_on_permanent_failure` step that times out lets the run go on to `done`."""

    @step("late", timeout=0.02, continue_on_permanent_failure=True)
    def late(inp: Any, ctx: StepContext) -> str:
        time.sleep(0.05)
        return "late-out"

    after = saga.step("after")

    @workflow("continue-timeout")
    def flow(inp: Any) -> Any:
        late(inp)
        return WorkflowResponse(after(inp))

    result = flow.run(0)
    assert result.status is TransactionState.DONE
    assert result.is_partially_completed
    assert saga.invoked == ["after"]
    assert [type(e.exception) for e in result.errors] == [StepTimeout]


def test_revert_after_a_soft_failure_reraises_the_error_that_reverted(saga) -> None:
    """A run reverted by a hard failure re-raises that error, not an earlier tolerated one."""
    optional = saga.step("optional", fail=Flaky("tolerated"), continue_on_permanent_failure=True)
    boom = saga.step("boom", fail=Fatal("reverts the run"))

    @workflow("soft-then-hard")
    def flow(inp: Any) -> Any:
        optional(inp)
        return WorkflowResponse(boom(inp))

    with pytest.raises(Fatal, match="reverts the run"):
        flow.run(0)
    result = flow.run(0, throw_on_error=False)
    assert result.status is TransactionState.REVERTED
    assert [(e.step, e.action) for e in result.errors] == [
        ("optional", "invoke"),
        ("boom", "invoke"),
    ]


def test_failed_compensation_inside_a_child_fails_the_parent(saga) -> None:
    """A child step whose compensation fails makes the parent run `failed`, named `child/step`."""
    one = saga.step("one", comp_fail=OSError("cannot undo"))
    boom = saga.step("boom", fail=Fatal("boom"), compensated=False)

    @workflow("child-comp-fails")
    def child(inp: Any) -> Any:
        return WorkflowResponse(one(inp))

    @workflow("parent-comp-fails")
    def parent(inp: Any) -> Any:
        return WorkflowResponse(boom(child.as_step(inp, name="sub")))

    result = parent.run(0, throw_on_error=False)
    assert result.status is TransactionState.FAILED
    assert [(e.step, e.action) for e in result.errors] == [
        ("boom", "invoke"),
        ("sub/one", "compensate"),
    ]
    assert result.steps["sub/one"].state is StepState.COMPENSATION_FAILED
    with pytest.raises(CompensationFailed):
        parent.run(0)
