"""Issue 2's bad input: each mistake is a `DefinitionError` at definition time, named."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest

from flowkit import (
    DefinitionError,
    Registry,
    RetryPolicy,
    StepContext,
    WorkflowResponse,
    create_hook,
    step,
    transform,
    when,
    workflow,
)


@step("reserve")
def reserve(inp: Any, ctx: StepContext) -> str:
    """A valid step the bad workflows below use."""
    return "reservation"


@step("charge")
def charge(inp: Any, ctx: StepContext) -> str:
    """Another valid step."""
    return "charged"


def test_definition_error_is_a_type_error() -> None:
    """`DefinitionError` is a `TypeError`, so it reads as a programming mistake."""
    assert issubclass(DefinitionError, TypeError)


# --- steps ------------------------------------------------------------------------------------


def test_non_callable_step_is_refused() -> None:
    """Decorating something that is not callable names the step."""
    with pytest.raises(DefinitionError, match="'reserve-stock'"):
        step("reserve-stock")(42)  # type: ignore[arg-type]


def test_step_function_of_the_wrong_arity_is_refused() -> None:
    """A step function that cannot take `(input, ctx)` is refused, naming the step."""
    with pytest.raises(DefinitionError, match="'one-arg'"):

        @step("one-arg")
        def one_arg(inp: Any) -> None:
            return None

    with pytest.raises(DefinitionError, match="'three-args'"):

        @step("three-args")
        def three_args(inp: Any, ctx: Any, extra: Any) -> None:
            return None


@pytest.mark.parametrize(
    "compensation",
    [lambda value: None, lambda value, ctx, extra: None, lambda: None],
    ids=["one-arg", "three-args", "no-args"],
)
def test_compensation_of_the_wrong_arity_is_refused(compensation: Any) -> None:
    """A compensate function that cannot take `(compensate_input, ctx)` names the step."""

    @step("refundable")
    def refundable(inp: Any, ctx: StepContext) -> None:
        return None

    with pytest.raises(DefinitionError, match="'refundable'"):
        refundable.compensate(compensation)


def test_non_callable_compensation_is_refused() -> None:
    """Attaching something not callable as a compensation names the step."""

    @step("refundable")
    def refundable(inp: Any, ctx: StepContext) -> None:
        return None

    with pytest.raises(DefinitionError, match="'refundable'"):
        refundable.compensate("not a function")  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1, -0.5, math.nan, math.inf, True, "5"])
def test_bad_step_timeout_is_refused(timeout: Any) -> None:
    """A step timeout that is not a finite number of seconds > 0 names the step."""
    with pytest.raises(DefinitionError, match="'slow'"):

        @step("slow", timeout=timeout)
        def slow(inp: Any, ctx: StepContext) -> None:
            return None


@pytest.mark.parametrize("timeout", [0, -3, math.nan])
def test_bad_workflow_timeout_is_refused(timeout: Any) -> None:
    """A non-positive workflow timeout names the workflow."""
    with pytest.raises(DefinitionError, match="'checkout'"):

        @workflow("checkout", timeout=timeout)
        def checkout(inp: Any) -> Any:
            return WorkflowResponse(reserve(inp))


def test_negative_retries_are_refused() -> None:
    """`RetryPolicy(max_retries=-1)` is a `DefinitionError` naming the option."""
    with pytest.raises(DefinitionError, match="max_retries"):
        RetryPolicy(max_retries=-1)


def test_retry_option_must_be_a_retry_policy() -> None:
    """`retry=` with something other than a `RetryPolicy` names the step."""
    with pytest.raises(DefinitionError, match="'flaky'"):

        @step("flaky", retry=3)  # type: ignore[arg-type]
        def flaky(inp: Any, ctx: StepContext) -> None:
            return None


def test_continue_and_skip_on_permanent_failure_exclude_each_other() -> None:
    """Asking for both soft-failure modes names the step."""
    with pytest.raises(DefinitionError, match="'soft'"):

        @step("soft", continue_on_permanent_failure=True, skip_on_permanent_failure=True)
        def soft(inp: Any, ctx: StepContext) -> None:
            return None


# --- names ------------------------------------------------------------------------------------


def test_colon_in_a_step_name_is_refused() -> None:
    """A step name with `:` is refused, naming it."""
    with pytest.raises(DefinitionError, match="'a:b'"):

        @step("a:b")
        def bad(inp: Any, ctx: StepContext) -> None:
            return None


def test_colon_in_with_name_is_refused() -> None:
    """`with_name` with `:` is refused, naming it."""
    with pytest.raises(DefinitionError, match="'again:1'"):
        reserve.with_name("again:1")


def test_colon_in_a_workflow_name_is_refused() -> None:
    """A workflow name with `:` is refused, naming it."""
    with pytest.raises(DefinitionError, match="'shop:checkout'"):

        @workflow("shop:checkout")
        def checkout(inp: Any) -> Any:
            return WorkflowResponse(reserve(inp))


def test_colon_in_an_as_step_name_is_refused() -> None:
    """A nested workflow step name with `:` is refused, naming it."""

    @workflow("inner")
    def inner(inp: Any) -> Any:
        return WorkflowResponse(reserve(inp))

    with pytest.raises(DefinitionError, match="'sub:1'"):

        @workflow("outer-colon")
        def outer(inp: Any) -> Any:
            return WorkflowResponse(inner.as_step(inp, name="sub:1"))


def test_colon_in_a_transaction_id_is_refused() -> None:
    """A transaction id with `:` is refused before any step runs."""
    ran: list[Any] = []

    @step("track")
    def track(inp: Any, ctx: StepContext) -> None:
        ran.append(inp)

    @workflow("tx-colon")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(track(inp))

    with pytest.raises((TypeError, ValueError), match="cart:1"):
        flow.run(0, transaction_id="cart:1")
    assert ran == []


def test_duplicate_step_names_are_refused() -> None:
    """Calling a step twice under one name names the workflow and the step."""
    with pytest.raises(DefinitionError, match="'double-reserve'") as caught:

        @workflow("double-reserve")
        def flow(inp: Any) -> Any:
            reserve(inp)
            return WorkflowResponse(reserve(inp))

    assert "'reserve'" in str(caught.value)
    assert "with_name" in str(caught.value)


def test_duplicate_names_across_steps_hooks_and_children_are_refused() -> None:
    """A hook or nested workflow named like an existing step is a duplicate too."""

    @workflow("reserve")
    def child(inp: Any) -> Any:
        return WorkflowResponse(charge(inp))

    with pytest.raises(DefinitionError, match="'dup-child'"):

        @workflow("dup-child")
        def with_child(inp: Any) -> Any:
            reserve(inp)
            return WorkflowResponse(child.as_step(inp))

    with pytest.raises(DefinitionError, match="'dup-hook'"):

        @workflow("dup-hook")
        def with_hook(inp: Any) -> Any:
            reserve(inp)
            return WorkflowResponse(create_hook("reserve", inp))


# --- refs -------------------------------------------------------------------------------------


def test_ref_used_as_a_value_names_the_workflow_and_the_step() -> None:
    """`if ref:` on a step's output names the workflow and the step that produced the ref."""
    with pytest.raises(DefinitionError) as caught:

        @workflow("branchy")
        def flow(inp: Any) -> Any:
            reservation = reserve(inp)
            if reservation:
                charge(inp)
            return WorkflowResponse(reservation)

    message = str(caught.value)
    assert "'branchy'" in message
    assert "reserve" in message
    assert "when(" in message


def test_ref_used_in_an_fstring_names_the_workflow() -> None:
    """An f-string over a ref fails at definition, naming the workflow, pointing to transform."""
    with pytest.raises(DefinitionError, match="'formatting'") as caught:

        @workflow("formatting")
        def flow(inp: Any) -> Any:
            return WorkflowResponse(charge(f"order {inp.id}"))

    assert "transform(" in str(caught.value)


def test_attrs_instance_built_around_a_ref_is_refused() -> None:
    """An attrs object holding a ref, passed to a step, names the step and points to transform."""

    @attrs.frozen
    class ChargeInput:
        """An input object built in the body by mistake."""

        amount: Any

    with pytest.raises(DefinitionError, match="'attrs-body'") as caught:

        @workflow("attrs-body")
        def flow(inp: Any) -> Any:
            return WorkflowResponse(charge(ChargeInput(inp.amount)))

    assert "'charge'" in str(caught.value)
    assert "transform(" in str(caught.value)


def test_ref_of_another_workflow_is_refused() -> None:
    """Using a ref leaked from another workflow's definition names both workflows."""
    leaked: list[Any] = []

    @workflow("leaker")
    def leaker(inp: Any) -> Any:
        leaked.append(inp)
        return WorkflowResponse(reserve(inp))

    with pytest.raises(DefinitionError, match="'borrower'") as caught:

        @workflow("borrower")
        def borrower(inp: Any) -> Any:
            return WorkflowResponse(charge(leaked[0]))

    assert "'leaker'" in str(caught.value)


def test_step_called_outside_a_workflow_is_refused() -> None:
    """Calling a step outside a `@workflow` function is a `DefinitionError` naming the step."""
    with pytest.raises(DefinitionError, match="'reserve'"):
        reserve(1)


def test_dsl_functions_outside_a_workflow_are_refused() -> None:
    """`transform`, `when` and `create_hook` outside a workflow raise `DefinitionError`."""
    with pytest.raises(DefinitionError):
        transform(1, str)
    with pytest.raises(DefinitionError):
        when(1, bool)
    with pytest.raises(DefinitionError):
        create_hook("validate", 1)


def test_bad_transform_and_when_arguments_are_refused() -> None:
    """A transform without a callable, or a non-callable predicate, names the workflow."""
    with pytest.raises(DefinitionError, match="'no-fn'"):

        @workflow("no-fn")
        def no_fn(inp: Any) -> Any:
            return WorkflowResponse(transform(inp))

    with pytest.raises(DefinitionError, match="'bad-fn'"):

        @workflow("bad-fn")
        def bad_fn(inp: Any) -> Any:
            return WorkflowResponse(transform(inp, "upper"))  # type: ignore[arg-type]

    with pytest.raises(DefinitionError, match="'bad-predicate'"):

        @workflow("bad-predicate")
        def bad_predicate(inp: Any) -> Any:
            return WorkflowResponse(when(inp, True).then(lambda: None))  # type: ignore[arg-type]


# --- hooks and workflows ----------------------------------------------------------------------


@workflow("hookable")
def hookable(inp: Any) -> Any:
    """A workflow with one hook, for the hook mistakes below."""
    return WorkflowResponse(charge(create_hook("validate", inp)))


def test_unknown_hook_name_is_refused() -> None:
    """`with_hooks` with an undeclared hook names the workflow and the hook."""
    with pytest.raises(DefinitionError, match="'hookable'") as caught:
        hookable.with_hooks(validat=lambda value, ctx: value)
    assert "'validat'" in str(caught.value)


def test_hook_name_must_be_an_identifier() -> None:
    """`create_hook` with a name that is not an identifier names the workflow."""
    with pytest.raises(DefinitionError, match="'bad-hook-name'"):

        @workflow("bad-hook-name")
        def flow(inp: Any) -> Any:
            return WorkflowResponse(create_hook("not valid", inp))


def test_hook_handler_of_the_wrong_arity_is_refused() -> None:
    """A handler that cannot take `(input, ctx)` names the workflow and the hook."""
    with pytest.raises(DefinitionError, match="'hookable'") as caught:
        hookable.with_hooks(validate=lambda value: value)
    assert "'validate'" in str(caught.value)


def test_non_callable_hook_handler_is_refused() -> None:
    """A handler that is not callable names the workflow and the hook."""
    with pytest.raises(DefinitionError, match="'hookable'") as caught:
        hookable.with_hooks(validate="nope")  # type: ignore[arg-type]
    assert "'validate'" in str(caught.value)


def test_async_composition_function_is_refused() -> None:
    """An `async def` composition function is refused, naming the workflow."""
    with pytest.raises(DefinitionError, match="'async-body'"):

        @workflow("async-body")
        async def flow(inp: Any) -> Any:
            return WorkflowResponse(None)


def test_composition_function_must_take_the_input() -> None:
    """A composition function that cannot take one argument names the workflow."""
    with pytest.raises(DefinitionError, match="'no-input'"):

        @workflow("no-input")
        def flow() -> Any:
            return WorkflowResponse(None)


def test_bad_container_registrations_are_refused() -> None:
    """Unknown lifetimes, non-callable factories and bad keys are refused at registration."""
    registry = Registry()
    with pytest.raises(DefinitionError, match="lifetime"):
        registry.register_factory("x", object, lifetime="forever")  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="not callable"):
        registry.register_factory("x", 42)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError):
        registry.register_value(3, "three")
    with pytest.raises(DefinitionError, match="parameters"):
        registry.register_factory("x", lambda a, b: None)
