"""Spec §1, steps: names, `StepResponse`, compensation inputs, skip, `PermanentFailure`, context."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flowkit import (
    DefinitionError,
    PermanentFailure,
    Registry,
    RetryPolicy,
    StepContext,
    StepResponse,
    StepState,
    TransactionState,
    WorkflowResponse,
    step,
    transform,
    workflow,
)


def test_step_name_defaults_to_the_function_qualified_name() -> None:
    """Without a name, a step is named after its function's qualified name."""

    @step
    def reserve(inp: Any, ctx: StepContext) -> None:
        return None

    assert reserve.name.endswith("reserve")
    assert "test_step_name_defaults_to_the_function_qualified_name" in reserve.name
    assert ":" not in reserve.name
    assert not reserve.explicit_name


def test_explicit_step_name_is_kept() -> None:
    """`@step("reserve-stock")` names the step `reserve-stock`."""

    @step("reserve-stock")
    def reserve(inp: Any, ctx: StepContext) -> None:
        return None

    assert reserve.name == "reserve-stock"
    assert reserve.explicit_name


def test_sync_and_async_steps_both_run(saga) -> None:
    """A plain `def` step and an `async def` step run in one workflow, in call order."""

    @step("double")
    async def double(inp: int, ctx: StepContext) -> int:
        await asyncio.sleep(0)
        return inp * 2

    add_one = saga.custom("add-one", lambda inp, ctx: inp + 1)

    @workflow("sync-and-async")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(add_one(double(inp)))

    assert flow.run(5).result == 11


def test_with_name_lets_a_step_run_twice(saga) -> None:
    """`step.with_name(other)` runs the same function again under another name."""
    inc = saga.custom("inc", lambda inp, ctx: inp + 1)

    @workflow("twice")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(inc.with_name("inc-again")(inc(inp)))

    result = flow.run(1)
    assert result.result == 3
    assert list(result.steps) == ["inc", "inc-again"]
    assert [ctx.step_name for ctx in saga.contexts] == ["inc", "inc-again"]


def test_plain_return_value_is_the_compensate_input(saga) -> None:
    """A step returning a plain value is compensated with that value."""
    a = saga.step("a", returns={"id": 7})
    boom = saga.step("boom", fail=ValueError("boom"), compensated=False)

    @workflow("plain-return")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(boom(a(inp)))

    flow.run(0, throw_on_error=False)
    assert saga.compensated == [("a", {"id": 7})]


def test_step_response_without_compensate_input_compensates_with_output() -> None:
    """`StepResponse(out)` without a compensate input compensates with `out`."""
    seen: list[Any] = []

    @step("a")
    def a(inp: Any, ctx: StepContext) -> StepResponse[str, str]:
        return StepResponse("the-output")

    @a.compensate
    def undo_a(value: Any, ctx: StepContext) -> None:
        seen.append(value)

    @step("boom")
    def boom(inp: Any, ctx: StepContext) -> None:
        raise ValueError("boom")

    @workflow("response-no-comp")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(boom(a(inp)))

    flow.run(0, throw_on_error=False)
    assert seen == ["the-output"]


def test_step_response_compensate_input_differs_from_output(saga) -> None:
    """`StepResponse(out, compensate_input=x)`: downstream sees `out`, the compensation gets `x`."""
    a = saga.step("a", returns="public", comp_input="private-id")
    b = saga.step("b", fail=ValueError("boom"), compensated=False)

    @workflow("response-comp")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(b(a(inp)))

    flow.run(0, throw_on_error=False)
    assert ("invoke", "b", "public") in saga.calls
    assert saga.compensated == [("a", "private-id")]


def test_failing_step_is_compensated_with_none(saga) -> None:
    """The step that fails is compensated too, with `None`."""
    a = saga.step("a")
    b = saga.step("b", fail=ValueError("boom"))

    @workflow("fail-comp-none")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(b(a(inp)))

    flow.run(0, throw_on_error=False)
    assert saga.compensated == [("b", None), ("a", "a-out")]


def test_step_without_compensation_is_not_compensated(saga) -> None:
    """A step with no compensate function is skipped by compensation; others still run."""
    a = saga.step("a")
    b = saga.step("b", compensated=False)
    c = saga.step("c", fail=ValueError("boom"), compensated=False)

    @workflow("no-comp")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(c(b(a(inp))))

    result = flow.run(0, throw_on_error=False)
    assert saga.compensated == [("a", "a-out")]
    assert result.status is TransactionState.REVERTED


def test_skip_marks_the_step_skipped_and_not_compensated(saga) -> None:
    """`StepResponse.skip()` marks the step `skipped`; it is not compensated on later failure."""
    skipper = saga.custom("skipper", lambda inp, ctx: StepResponse.skip())
    boom = saga.step("boom", fail=ValueError("boom"), compensated=False)

    @workflow("skip-not-comp")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(boom(skipper(inp)))

    result = flow.run(0, throw_on_error=False)
    assert result.steps["skipper"].state is StepState.SKIPPED
    assert saga.compensated == []


def test_refs_to_a_skipped_step_resolve_to_none(saga) -> None:
    """Downstream refs to a skipped step, and attribute/item access on them, resolve to None."""
    skipper = saga.custom("skipper", lambda inp, ctx: StepResponse.skip())
    whole = saga.step("whole")
    attr = saga.step("attr")
    item = saga.step("item")
    mapped = saga.step("mapped")

    @workflow("skip-refs")
    def flow(inp: Any) -> Any:
        out = skipper(inp)
        whole(out)
        attr(out.customer.email)
        item(out["lines"][0])
        mapped(transform(out, lambda v: ("seen", v)))
        return WorkflowResponse(out.total)

    result = flow.run(0)
    received = {name: value for act, name, value in saga.calls if act == "invoke"}
    assert received == {
        "skipper": 0,
        "whole": None,
        "attr": None,
        "item": None,
        "mapped": ("seen", None),
    }
    assert result.status is TransactionState.DONE
    assert result.result is None


def test_permanent_failure_skips_retries(saga) -> None:
    """`raise PermanentFailure` fails the step at once, whatever its retry policy."""
    a = saga.step("a", fail=PermanentFailure("no"), retry=RetryPolicy(max_retries=5))

    @workflow("permanent")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(a(inp))

    result = flow.run(0, throw_on_error=False)
    assert saga.invoked == ["a"]
    assert result.steps["a"].attempts == 1
    assert result.errors[0].type_name == "flowkit.exceptions.PermanentFailure"


def test_step_response_permanent_failure_raises_permanent_failure(saga) -> None:
    """`StepResponse.permanent_failure(msg)` raises `PermanentFailure(msg)`, skipping retries."""
    a = saga.custom(
        "a",
        lambda inp, ctx: StepResponse.permanent_failure("card declined"),
        retry=RetryPolicy(max_retries=3),
    )

    @workflow("permanent-response")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(a(inp))

    with pytest.raises(PermanentFailure, match="card declined"):
        flow.run(0)
    assert saga.invoked == ["a"]


def test_compensation_receives_input_and_context(saga) -> None:
    """A compensation is called with `(compensate_input, ctx)`; ctx names the step."""
    a = saga.step("a", comp_input="undo-me")
    b = saga.step("b", fail=ValueError("boom"), compensated=False)

    @workflow("comp-ctx")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(b(a(inp)))

    flow.run(0, throw_on_error=False, transaction_id="tx-1")
    comp_ctx = saga.contexts[-1]
    assert saga.calls[-1] == ("compensate", "a", "undo-me")
    assert comp_ctx.step_name == "a"
    assert comp_ctx.idempotency_key == "comp-ctx:tx-1:a:compensate"


def test_step_context_exposes_every_field() -> None:
    """`StepContext` has container, resolve, workflow/step names, ids, attempt and metadata."""
    seen: dict[str, Any] = {}

    class Clock:
        """A service to resolve."""

    registry = Registry()
    clock = Clock()
    registry.register_value(Clock, clock)

    @step("look")
    def look(inp: Any, ctx: StepContext) -> None:
        seen.update(
            container=ctx.container,
            clock=ctx.resolve(Clock),
            workflow=ctx.workflow_name,
            step=ctx.step_name,
            tx=ctx.transaction_id,
            attempt=ctx.attempt,
            key=ctx.idempotency_key,
            group=ctx.event_group_id,
            metadata=ctx.metadata,
        )

    @workflow("ctx-fields")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(look(inp))

    flow.run(0, container=registry, transaction_id="tx-9", event_group_id="group-3")
    assert seen["container"].resolve(Clock) is clock
    assert seen["clock"] is clock
    assert (seen["workflow"], seen["step"], seen["tx"]) == ("ctx-fields", "look", "tx-9")
    assert seen["attempt"] == 1
    assert seen["key"] == "ctx-fields:tx-9:look:invoke"
    assert seen["group"] == "group-3"
    assert isinstance(seen["metadata"], dict)


def test_metadata_is_shared_by_the_steps_of_a_run() -> None:
    """`ctx.metadata` is one dict per run: a later step sees what an earlier one put there."""

    @step("put")
    def put(inp: Any, ctx: StepContext) -> None:
        ctx.metadata["seen"] = inp

    @step("get")
    def get(inp: Any, ctx: StepContext) -> Any:
        return ctx.metadata.get("seen")

    @workflow("metadata")
    def flow(inp: Any) -> Any:
        put(inp)
        return WorkflowResponse(get(inp))

    assert flow.run("a").result == "a"
    assert flow.run("b").result == "b"


def test_session_is_refused_without_a_database_unit_of_work() -> None:
    """`ctx.session` in an in-memory run raises `RuntimeError` saying an Engine store is needed."""

    @step("wants-session")
    def wants_session(inp: Any, ctx: StepContext) -> None:
        return ctx.session

    @workflow("no-session")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(wants_session(inp))

    with pytest.raises(RuntimeError, match="Engine"):
        flow.run(0)


def test_compensate_attached_after_with_name_applies_to_the_copy() -> None:
    """A compensation attached after `with_name()` also compensates the renamed copy."""
    seen: list[Any] = []

    @step("a")
    def a(inp: Any, ctx: StepContext) -> str:
        return "out"

    again = a.with_name("a-again")

    @a.compensate
    def undo(value: Any, ctx: StepContext) -> None:
        seen.append(ctx.step_name)

    @step("boom")
    def boom(inp: Any, ctx: StepContext) -> None:
        raise ValueError("boom")

    @workflow("late-comp")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(boom(again(inp)))

    flow.run(0, throw_on_error=False)
    assert seen == ["a-again"]


def test_second_compensation_is_refused() -> None:
    """Attaching a second compensation to a step raises `DefinitionError` naming the step."""

    @step("once")
    def once(inp: Any, ctx: StepContext) -> None:
        return None

    once.compensate(lambda value, ctx: None)
    with pytest.raises(DefinitionError, match="once"):
        once.compensate(lambda value, ctx: None)
