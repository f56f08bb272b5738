"""Spec §2, workflows: refs, transform, when, parallelize, hooks and nested workflows."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from flowkit import (
    DefinitionError,
    Ref,
    StepContext,
    StepState,
    TransactionState,
    Workflow,
    WorkflowResponse,
    create_hook,
    parallelize,
    step,
    transform,
    when,
    workflow,
)

# --- recording once, refs ---------------------------------------------------------------------


def test_composition_function_runs_once_at_definition(saga) -> None:
    """The decorated function runs once, when decorated; runs never call it again."""
    calls: list[Any] = []
    a = saga.step("a")

    @workflow("once")
    def flow(inp: Any) -> Any:
        calls.append(inp)
        return WorkflowResponse(a(inp))

    assert len(calls) == 1
    assert isinstance(calls[0], Ref)
    flow.run(1)
    flow.run(2)
    assert len(calls) == 1


def test_step_calls_return_refs(saga) -> None:
    """Calling a step inside a workflow records it and returns a `Ref`, not its output."""
    a = saga.step("a")
    seen: list[Any] = []

    @workflow("returns-ref")
    def flow(inp: Any) -> Any:
        out = a(inp)
        seen.append(out)
        return WorkflowResponse(out)

    assert isinstance(seen[0], Ref)
    assert saga.calls == []


def test_attribute_and_item_access_resolve_at_run_time(saga) -> None:
    """`ref.attr`, `ref[key]` and chains of both are recorded and resolved when the run runs."""
    a = saga.step("a")
    b = saga.step("b")

    class Order:
        """An input with attributes."""

        def __init__(self) -> None:
            self.customer = {"emails": ["x@example.com"]}
            self.total = 12

    @workflow("paths")
    def flow(inp: Any) -> Any:
        a(inp.customer["emails"][0])
        b(inp.total)
        return WorkflowResponse(inp.customer)

    result = flow.run(Order())
    assert saga.calls[0][2] == "x@example.com"
    assert saga.calls[1][2] == 12
    assert result.result == {"emails": ["x@example.com"]}


def test_refs_inside_dicts_lists_and_tuples_are_resolved(saga) -> None:
    """Refs nested in dicts, lists and tuples passed to a step are replaced by their values."""
    a = saga.step("a", returns="A")
    b = saga.step("b")

    @workflow("structures")
    def flow(inp: Any) -> Any:
        out = a(inp)
        return WorkflowResponse(b({"a": out, "all": [inp, (out, 3)], "k": "const"}))

    flow.run(1)
    assert saga.calls[1][2] == {"a": "A", "all": [1, ("A", 3)], "k": "const"}


def test_steps_run_in_call_order(saga) -> None:
    """Steps run in the order they were called, even when they do not depend on each other."""
    steps = [saga.step(name) for name in ("c", "a", "b")]

    @workflow("call-order")
    def flow(inp: Any) -> Any:
        for s in steps:
            s(inp)
        return WorkflowResponse(None)

    flow.run(0)
    assert saga.invoked == ["c", "a", "b"]


def test_workflow_response_value_is_the_run_result(saga) -> None:
    """`WorkflowResponse(structure)` becomes `RunResult.result`, refs resolved."""
    a = saga.step("a", returns=5)

    @workflow("response")
    def flow(inp: Any) -> Any:
        return WorkflowResponse({"a": a(inp), "input": inp})

    assert flow.run("in").result == {"a": 5, "input": "in"}


# --- transform --------------------------------------------------------------------------------


def test_transform_is_lazy_and_runs_per_run(saga) -> None:
    """A transform's function is not called at definition; it runs when its consumer runs."""
    calls: list[Any] = []
    a = saga.step("a")

    def double(v: int) -> int:
        calls.append(v)
        return v * 2

    @workflow("lazy")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(a(transform(inp, double)))

    assert calls == []
    flow.run(3)
    flow.run(4)
    assert calls == [3, 4]
    assert [v for _, _, v in saga.calls] == [6, 8]


def test_transform_chains_functions(saga) -> None:
    """The first function gets the resolved structure, each next one the previous result."""
    a = saga.step("a", returns=10)
    b = saga.step("b")

    @workflow("chain")
    def flow(inp: Any) -> Any:
        out = a(inp)
        total = transform({"x": inp, "y": out}, lambda d: d["x"] + d["y"], str, lambda s: s + "!")
        return WorkflowResponse(b(total))

    flow.run(5)
    assert saga.calls[1][2] == "15!"


def test_raising_transform_fails_the_consuming_step(saga) -> None:
    """A transform that raises fails the step that consumes it; that step's function never runs."""
    a = saga.step("a")
    b = saga.step("b")
    c = saga.step("c")

    @workflow("bad-transform")
    def flow(inp: Any) -> Any:
        out = a(inp)
        b(transform(out, lambda v: 1 / 0))
        return WorkflowResponse(c(inp))

    result = flow.run(0, throw_on_error=False)
    assert result.status is TransactionState.REVERTED
    assert saga.invoked == ["a"]
    assert result.errors[0].step == "b"
    assert result.errors[0].type_name == "ZeroDivisionError"
    assert result.steps["b"].state in (StepState.FAILED, StepState.REVERTED)
    assert result.steps["c"].state is StepState.NOT_STARTED
    assert ("a", "a-out") in saga.compensated


def test_raising_transform_reraises_its_exception(saga) -> None:
    """With `throw_on_error`, the transform's own exception is raised from `run()`."""
    a = saga.step("a")

    @workflow("bad-transform-raise")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(a(transform(inp, lambda v: v["missing"])))

    with pytest.raises(KeyError):
        flow.run({})


# --- when -------------------------------------------------------------------------------------


def _branching(saga: Any, predicate: Any) -> Workflow[Any, Any]:
    before = saga.step("before")
    charge = saga.step("charge", returns="charged")
    notify = saga.step("notify")
    after = saga.step("after")

    @workflow("branching")
    def flow(inp: Any) -> Any:
        before(inp)
        branch = when(inp, predicate).then(lambda: {"charge": charge(inp), "n": notify(inp)})
        after(branch)
        return WorkflowResponse(branch)

    return flow


def test_when_runs_the_branch_when_the_predicate_holds(saga) -> None:
    """`when(ref, pred).then(fn)`: the steps recorded in `fn` run when `pred(value)` is true."""
    flow = _branching(saga, lambda v: v > 0)
    result = flow.run(1)
    assert saga.invoked == ["before", "charge", "notify", "after"]
    assert result.result == {"charge": "charged", "n": "notify-out"}


def test_when_skips_the_branch_and_then_value_is_none(saga) -> None:
    """When the predicate is false, the branch's steps are `skipped` and `.then`'s ref is None."""
    flow = _branching(saga, lambda v: v > 0)
    result = flow.run(0)
    assert saga.invoked == ["before", "after"]
    assert saga.calls[-1] == ("invoke", "after", None)
    assert result.result is None
    assert result.steps["charge"].state is StepState.SKIPPED
    assert result.steps["notify"].state is StepState.SKIPPED
    assert result.status is TransactionState.DONE


def test_when_predicate_is_evaluated_once_per_run(saga) -> None:
    """The predicate runs once per run, however many steps and refs depend on it."""
    seen: list[Any] = []

    def predicate(v: int) -> bool:
        seen.append(v)
        return v > 0

    flow = _branching(saga, predicate)
    flow.run(1)
    assert seen == [1]
    flow.run(0)
    assert seen == [1, 0]


def test_when_then_fn_is_called_once_at_definition(saga) -> None:
    """The `then` function is called once, at definition time, with no arguments."""
    calls: list[int] = []
    a = saga.step("a")

    def branch() -> Any:
        calls.append(1)
        return a(None)

    @workflow("then-once")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(when(inp, bool).then(branch))

    assert calls == [1]
    flow.run(1)
    flow.run(0)
    assert calls == [1]


def test_skipped_branch_steps_are_not_compensated(saga) -> None:
    """Steps skipped by `when` are not compensated when a later step fails."""
    a = saga.step("a")
    b = saga.step("b")
    boom = saga.step("boom", fail=ValueError("boom"), compensated=False)

    @workflow("when-comp")
    def flow(inp: Any) -> Any:
        a(inp)
        when(inp, lambda v: False).then(lambda: b(inp))
        return WorkflowResponse(boom(inp))

    flow.run(0, throw_on_error=False)
    assert saga.compensated == [("a", "a-out")]


def test_raising_predicate_fails_the_run_at_that_point(saga) -> None:
    """A predicate that raises fails the run there: later steps never start, earlier ones undo."""
    a = saga.step("a")
    b = saga.step("b")
    c = saga.step("c")

    @workflow("bad-predicate")
    def flow(inp: Any) -> Any:
        a(inp)
        when(inp, lambda v: v["missing"]).then(lambda: b(inp))
        return WorkflowResponse(c(inp))

    with pytest.raises(KeyError):
        flow.run({})
    assert saga.invoked == ["a"]
    assert ("a", "a-out") in saga.compensated
    result = flow.run({}, throw_on_error=False)
    assert result.status is TransactionState.REVERTED
    assert result.steps["c"].state is StepState.NOT_STARTED


# --- parallelize ------------------------------------------------------------------------------


def _sleeper(name: str, seconds: float, spans: list[Any]) -> Any:
    @step(name)
    def sleep(inp: Any, ctx: StepContext) -> str:
        start = time.perf_counter()
        time.sleep(seconds)
        spans.append((name, threading.get_ident(), start, time.perf_counter()))
        return name

    return sleep


def _async_sleeper(name: str, seconds: float, spans: list[Any]) -> Any:
    @step(name)
    async def sleep(inp: Any, ctx: StepContext) -> str:
        start = time.perf_counter()
        await asyncio.sleep(seconds)
        spans.append((name, asyncio.current_task(), start, time.perf_counter()))
        return name

    return sleep


def _overlap(spans: list[Any]) -> bool:
    (_, _, start1, end1), (_, _, start2, end2) = spans
    return start1 < end2 and start2 < end1


def test_parallel_sync_siblings_overlap_in_threads(saga) -> None:
    """Sync siblings of `parallelize` run at the same time, in different threads."""
    spans: list[Any] = []
    a, b = _sleeper("a", 0.2, spans), _sleeper("b", 0.2, spans)
    after = saga.step("after")

    @workflow("par-sync")
    def flow(inp: Any) -> Any:
        x, y = parallelize(a(inp), b(inp))
        return WorkflowResponse(after([x, y]))

    start = time.perf_counter()
    result = flow.run(0)
    assert time.perf_counter() - start < 0.35
    assert _overlap(spans)
    assert spans[0][1] != spans[1][1]
    assert result.result == "after-out"
    assert saga.calls == [("invoke", "after", ["a", "b"])]


def test_parallel_async_siblings_overlap_as_tasks() -> None:
    """Async siblings of `parallelize` run concurrently as tasks (in `run()` too)."""
    spans: list[Any] = []
    a, b = _async_sleeper("a", 0.2, spans), _async_sleeper("b", 0.2, spans)

    @workflow("par-async")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(parallelize(a(inp), b(inp)))

    start = time.perf_counter()
    result = flow.run(0)
    assert time.perf_counter() - start < 0.35
    assert _overlap(spans)
    assert result.result == ("a", "b")


def test_parallel_async_siblings_overlap_under_run_async() -> None:
    """Under `run_async`, async siblings run concurrently on the caller's loop."""
    spans: list[Any] = []
    a, b = _async_sleeper("a", 0.2, spans), _async_sleeper("b", 0.2, spans)

    @workflow("par-async-run-async")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(parallelize(a(inp), b(inp)))

    async def main() -> float:
        start = time.perf_counter()
        await flow.run_async(0)
        return time.perf_counter() - start

    assert asyncio.run(main()) < 0.35
    assert _overlap(spans)


def test_parallel_sync_siblings_overlap_under_run_async() -> None:
    """Under `run_async`, sync siblings still run at the same time, in threads."""
    spans: list[Any] = []
    a, b = _sleeper("a", 0.2, spans), _sleeper("b", 0.2, spans)

    @workflow("par-sync-run-async")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(parallelize(a(inp), b(inp)))

    async def main() -> float:
        start = time.perf_counter()
        await flow.run_async(0)
        return time.perf_counter() - start

    assert asyncio.run(main()) < 0.35
    assert _overlap(spans)
    assert spans[0][1] != spans[1][1]


def test_mixed_sync_and_async_siblings_overlap() -> None:
    """A sync sibling (thread) and an async sibling (task) of one group run at the same time."""
    spans: list[Any] = []
    a, b = _sleeper("a", 0.2, spans), _async_sleeper("b", 0.2, spans)

    @workflow("par-mixed")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(parallelize(a(inp), b(inp)))

    start = time.perf_counter()
    result = flow.run(0)
    assert time.perf_counter() - start < 0.35
    assert _overlap(spans)
    assert result.result == ("a", "b")


def test_next_step_waits_for_every_sibling(saga) -> None:
    """The step after a `parallelize` group starts only once every sibling has finished."""
    spans: list[Any] = []
    fast, slow = _sleeper("fast", 0.01, spans), _sleeper("slow", 0.1, spans)
    ends: list[float] = []
    after = saga.custom("after", lambda inp, ctx: ends.append(time.perf_counter()))

    @workflow("par-wait")
    def flow(inp: Any) -> Any:
        got = parallelize(fast(inp), slow(inp))
        return WorkflowResponse(after(got))

    flow.run(0)
    assert ends[0] >= max(end for *_, end in spans)
    assert saga.calls[0][2] == ("fast", "slow")


def test_failing_sibling_lets_running_siblings_finish_and_starts_nothing_new(saga) -> None:
    """A failing sibling: the others finish and are compensated; nothing after the group starts."""
    spans: list[Any] = []
    slow = _sleeper("slow", 0.1, spans)
    undone: list[Any] = []
    slow.compensate(lambda value, ctx: undone.append(("slow", value)))
    boom = saga.step("boom", fail=ValueError("boom"))
    after = saga.step("after")

    @workflow("par-fail")
    def flow(inp: Any) -> Any:
        got = parallelize(slow(inp), boom(inp))
        return WorkflowResponse(after(got))

    result = flow.run(0, throw_on_error=False)
    assert [name for name, *_ in spans] == ["slow"]
    assert "after" not in saga.invoked
    assert undone == [("slow", "slow")]
    assert saga.compensated == [("boom", None)]
    assert result.status is TransactionState.REVERTED


def test_parallelize_refuses_a_non_step_argument(saga) -> None:
    """`parallelize` with an argument that is not a direct step result is a `DefinitionError`."""
    a = saga.step("a")

    with pytest.raises(DefinitionError, match="par-bad-arg"):

        @workflow("par-bad-arg")
        def flow(inp: Any) -> Any:
            return WorkflowResponse(parallelize(a(inp), inp))


def test_parallelize_refuses_a_ref_path(saga) -> None:
    """`parallelize(a(x).field, ...)` is refused: siblings must be the step calls themselves."""
    a, b = saga.step("a"), saga.step("b")

    with pytest.raises(DefinitionError, match="par-path"):

        @workflow("par-path")
        def flow(inp: Any) -> Any:
            return WorkflowResponse(parallelize(a(inp).field, b(inp)))


def test_parallelize_refuses_an_earlier_step_result(saga) -> None:
    """`parallelize` refuses the result of a step called before other steps were recorded."""
    a, b, c = saga.step("a"), saga.step("b"), saga.step("c")

    with pytest.raises(DefinitionError, match="par-earlier"):

        @workflow("par-earlier")
        def flow(inp: Any) -> Any:
            earlier = a(inp)
            b(inp)
            return WorkflowResponse(parallelize(earlier, c(inp)))


def test_parallelize_refuses_a_sibling_consuming_another(saga) -> None:
    """A sibling that consumes another sibling's output is a `DefinitionError`."""
    a, b = saga.step("a"), saga.step("b")

    with pytest.raises(DefinitionError, match="sibling"):

        @workflow("par-dependent")
        def flow(inp: Any) -> Any:
            first = a(inp)
            return WorkflowResponse(parallelize(first, b(first)))


# --- hooks ------------------------------------------------------------------------------------


def _hooked(saga: Any) -> Workflow[Any, Any]:
    before = saga.step("before")
    after = saga.step("after")

    @workflow("hooked")
    def flow(inp: Any) -> Any:
        before(inp)
        validated = create_hook("validate", {"order": inp})
        return WorkflowResponse(after(validated))

    return flow


def test_hook_without_handler_is_a_no_op(saga) -> None:
    """With no handler attached, a hook does nothing and its ref resolves to None."""
    flow = _hooked(saga)
    result = flow.run(1)
    assert saga.invoked == ["before", "after"]
    assert saga.calls[-1] == ("invoke", "after", None)
    assert result.status is TransactionState.DONE


def test_with_hooks_returns_a_new_workflow_and_leaves_the_original(saga) -> None:
    """`with_hooks` returns another workflow; the original still runs without the handler."""
    flow = _hooked(saga)
    handled: list[Any] = []
    hooked = flow.with_hooks(validate=lambda value, ctx: handled.append(value) or "ok")
    assert hooked is not flow
    assert hooked.name == flow.name
    flow.run(1)
    assert handled == []
    assert dict(flow.hooks) == {}


def test_plain_function_handler_runs_as_a_step_named_by_the_hook(saga) -> None:
    """A plain `(input, ctx)` handler runs at the hook's place, as a step named by the hook."""
    names: list[str] = []

    def validate(value: Any, ctx: StepContext) -> str:
        names.append(ctx.step_name)
        return f"valid:{value['order']}"

    result = _hooked(saga).with_hooks(validate=validate).run(7)
    assert names == ["validate"]
    assert saga.calls[-1] == ("invoke", "after", "valid:7")
    assert list(result.steps) == ["before", "validate", "after"]
    assert result.steps["validate"].state is StepState.DONE


def test_step_handler_is_compensated_on_later_failure(saga) -> None:
    """A `@step` handler keeps its compensation and is compensated like any step."""
    undone: list[Any] = []

    @step("validator")
    def validator(value: Any, ctx: StepContext) -> str:
        return "token"

    @validator.compensate
    def undo(value: Any, ctx: StepContext) -> None:
        undone.append((ctx.step_name, value))

    boom = saga.step("boom", fail=ValueError("boom"), compensated=False)

    @workflow("hook-comp")
    def flow(inp: Any) -> Any:
        checked = create_hook("validate", inp)
        return WorkflowResponse(boom(checked))

    result = flow.with_hooks(validate=validator).run(0, throw_on_error=False)
    assert undone == [("validate", "token")]
    assert result.steps["validate"].state is StepState.REVERTED


def test_second_handler_for_a_hook_is_refused(saga) -> None:
    """Attaching a handler to a hook that already has one raises `DefinitionError`."""
    hooked = _hooked(saga).with_hooks(validate=lambda value, ctx: 1)
    with pytest.raises(DefinitionError, match="validate"):
        hooked.with_hooks(validate=lambda value, ctx: 2)


def test_unknown_hook_is_refused(saga) -> None:
    """`with_hooks(unknown=...)` raises `DefinitionError` naming the workflow and the hook."""
    with pytest.raises(DefinitionError, match="hooked") as caught:
        _hooked(saga).with_hooks(nope=lambda value, ctx: 1)
    assert "nope" in str(caught.value)


def test_two_hooks_attached_in_turn(saga) -> None:
    """Handlers for different hooks can be attached in one call or in successive ones."""
    after = saga.step("after")

    @workflow("two-hooks")
    def flow(inp: Any) -> Any:
        first = create_hook("first", inp)
        second = create_hook("second", first)
        return WorkflowResponse(after(second))

    hooked = flow.with_hooks(first=lambda v, ctx: v + 1).with_hooks(second=lambda v, ctx: v * 10)
    assert hooked.run(1).result == "after-out"
    assert saga.calls == [("invoke", "after", 20)]


# --- nested workflows -------------------------------------------------------------------------


def _child(saga: Any, *, fail_last: bool = False) -> Workflow[Any, Any]:
    one = saga.step("one")
    two = saga.step("two", fail=ValueError("child boom") if fail_last else None)

    @workflow("child")
    def child(inp: Any) -> Any:
        return WorkflowResponse(two(one(inp)))

    return child


def test_as_step_runs_the_child_and_returns_its_result(saga) -> None:
    """`child.as_step(ref)` runs the child as one step; its ref resolves to the child's result."""
    child = _child(saga)
    after = saga.step("after")

    @workflow("parent")
    def parent(inp: Any) -> Any:
        return WorkflowResponse(after(child.as_step(inp)))

    result = parent.run(0)
    assert saga.invoked == ["one", "two", "after"]
    assert saga.calls[-1] == ("invoke", "after", "two-out")
    assert result.status is TransactionState.DONE


def test_child_transaction_id_and_record_names(saga) -> None:
    """The child's transaction id is `parent/step`; its records are named `step/child_step`."""
    child = _child(saga)

    @workflow("parent-ids")
    def parent(inp: Any) -> Any:
        return WorkflowResponse(child.as_step(inp, name="sub"))

    result = parent.run(0, transaction_id="tx-1")
    ctx = saga.contexts[0]
    assert ctx.transaction_id == "tx-1/sub"
    assert ctx.workflow_name == "child"
    assert ctx.idempotency_key == "child:tx-1/sub:one:invoke"
    assert list(result.steps) == ["sub", "sub/one", "sub/two"]
    assert result.steps["sub/two"].state is StepState.DONE


def test_as_step_default_name_is_the_child_workflow_name(saga) -> None:
    """Without a name, the nested step is named after the child workflow."""
    child = _child(saga)

    @workflow("parent-default-name")
    def parent(inp: Any) -> Any:
        return WorkflowResponse(child.as_step(inp))

    assert list(parent.run(0).steps) == ["child", "child/one", "child/two"]


def test_compensating_a_nested_step_compensates_child_steps_in_reverse(saga) -> None:
    """When a later parent step fails, the child's steps are compensated in reverse, in place."""
    first = saga.step("first")
    child = _child(saga)
    boom = saga.step("boom", fail=ValueError("boom"))

    @workflow("parent-comp")
    def parent(inp: Any) -> Any:
        nested = child.as_step(first(inp))
        return WorkflowResponse(boom(nested))

    result = parent.run(0, throw_on_error=False)
    assert saga.compensated == [
        ("boom", None),
        ("two", "two-out"),
        ("one", "one-out"),
        ("first", "first-out"),
    ]
    assert result.status is TransactionState.REVERTED
    assert result.steps["child/one"].state is StepState.REVERTED


def test_failing_child_compensates_its_steps_then_the_parent(saga) -> None:
    """A failure inside the child compensates the child's steps, then the parent's, in reverse."""
    first = saga.step("first")
    child = _child(saga, fail_last=True)
    after = saga.step("after")

    @workflow("parent-child-fails")
    def parent(inp: Any) -> Any:
        return WorkflowResponse(after(child.as_step(first(inp))))

    with pytest.raises(ValueError, match="child boom"):
        parent.run(0)
    assert "after" not in saga.invoked
    assert saga.compensated == [("two", None), ("one", "one-out"), ("first", "first-out")]
