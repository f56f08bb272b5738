"""Unit tests of `flowkit.step`: the decorator, `Step`, `StepResponse` and `StepContext`."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from flowkit import (
    DefinitionError,
    PermanentFailure,
    Registry,
    RetryPolicy,
    Step,
    StepContext,
    StepResponse,
    step,
)

# --- StepResponse -----------------------------------------------------------------------------


def test_step_response_compensate_input_defaults_to_output() -> None:
    """Without `compensate_input`, the compensate input is the output itself."""
    output = {"id": 1}
    response = StepResponse(output)
    assert response.output is output
    assert response.compensate_input is output
    assert response.skipped is False


def test_step_response_keeps_an_explicit_none_compensate_input() -> None:
    """`compensate_input=None` is kept as None, not replaced by the output."""
    response = StepResponse("out", compensate_input=None)
    assert response.compensate_input is None


def test_step_response_skip() -> None:
    """`StepResponse.skip()` is a skipped response with no output."""
    response = StepResponse.skip()
    assert response.skipped is True
    assert response.output is None
    assert repr(response) == "StepResponse.skip()"


def test_step_response_repr_shows_both_values() -> None:
    """The repr shows the output and the compensate input."""
    assert repr(StepResponse(1, compensate_input="x")) == "StepResponse(1, compensate_input='x')"


def test_step_response_permanent_failure_raises() -> None:
    """`StepResponse.permanent_failure(msg)` raises `PermanentFailure(msg)`."""
    with pytest.raises(PermanentFailure, match="card declined"):
        StepResponse.permanent_failure("card declined")


# --- the decorator ----------------------------------------------------------------------------


def _noop(inp: Any, ctx: StepContext) -> None:
    return None


def test_bare_decorator_and_call_forms_make_steps() -> None:
    """`@step`, `@step()` and `@step("name")` all make a `Step`."""
    bare = step(_noop)
    called = step()(_noop)
    named = step("named")(_noop)
    assert all(isinstance(s, Step) for s in (bare, called, named))
    assert bare.name == called.name == "_noop"
    assert named.name == "named"


def test_default_name_of_a_nested_function_has_no_colon_or_angle_brackets() -> None:
    """A function defined in a function gets a qualified name without `<locals>` or `:`."""

    def inner(inp: Any, ctx: StepContext) -> None:
        return None

    made = step(inner)
    assert made.name.endswith("locals.inner")
    assert "<" not in made.name
    assert ":" not in made.name


def test_options_are_kept_on_the_step() -> None:
    """The decorator's options become the step's read-only attributes."""
    policy = RetryPolicy(max_retries=2)
    made = step("opts", retry=policy, timeout=1.5, continue_on_permanent_failure=True)(_noop)
    assert made.fn is _noop
    assert made.retry is policy
    assert made.timeout == 1.5
    assert made.continue_on_permanent_failure is True
    assert made.skip_on_permanent_failure is False
    assert made.async_completion is False
    assert made.is_async is False


def test_async_def_is_detected() -> None:
    """An `async def` function makes an async step."""

    async def fetch(inp: Any, ctx: StepContext) -> None:
        return None

    assert step("fetch")(fetch).is_async is True


def test_callable_objects_and_partials_are_accepted() -> None:
    """Callable objects and `functools.partial`s taking `(input, ctx)` are valid steps."""

    class Charger:
        """A callable object."""

        def __call__(self, inp: Any, ctx: StepContext) -> str:
            return "charged"

    def with_extra(extra: str, inp: Any, ctx: StepContext) -> str:
        return extra

    assert step("obj")(Charger()).name == "obj"
    assert step("partial")(functools.partial(with_extra, "x")).name == "partial"


def test_functions_with_defaults_beyond_two_are_accepted() -> None:
    """A function taking `(input, ctx)` plus optional parameters is a valid step."""

    def flexible(inp: Any, ctx: StepContext, verbose: bool = False) -> None:
        return None

    assert step("flexible")(flexible).fn is flexible


@pytest.mark.parametrize("name", ["", 3])
def test_empty_or_non_string_names_are_refused(name: Any) -> None:
    """A step name must be a non-empty string."""
    with pytest.raises(DefinitionError, match="name"):
        step(name)(_noop)


def test_repr_names_the_step() -> None:
    """A step's repr shows its name."""
    assert repr(step("reserve")(_noop)) == "<Step 'reserve'>"


# --- compensation and with_name ---------------------------------------------------------------


def test_compensate_is_a_decorator_returning_the_function() -> None:
    """`@s.compensate` attaches the function and returns it unchanged."""
    made = step("s")(_noop)
    assert made.compensate_fn is None

    def undo(value: Any, ctx: StepContext) -> None:
        return None

    assert made.compensate(undo) is undo
    assert made.compensate_fn is undo


def test_with_name_copies_without_changing_the_original() -> None:
    """`with_name` returns a renamed copy; the original keeps its name and options."""
    policy = RetryPolicy(max_retries=1)
    original = step("original", retry=policy, timeout=2.0)(_noop)
    copy = original.with_name("copy")
    assert copy is not original
    assert (copy.name, original.name) == ("copy", "original")
    assert copy.explicit_name is True
    assert copy.retry is policy
    assert copy.timeout == 2.0
    assert copy.fn is original.fn


def test_with_name_shares_the_compensation_both_ways() -> None:
    """A compensation attached to the original or to a copy applies to both."""
    original = step("original")(_noop)
    copy = original.with_name("copy")

    def undo(value: Any, ctx: StepContext) -> None:
        return None

    copy.compensate(undo)
    assert original.compensate_fn is undo
    with pytest.raises(DefinitionError, match="already"):
        original.compensate(undo)


# --- StepContext ------------------------------------------------------------------------------


class FakePlan:
    """The part of a plan a context reads."""

    name = "checkout"


class FakeNode:
    """The part of a plan node a context reads."""

    name = "reserve"


class FakeRun:
    """The part of a run a context reads."""

    def __init__(self, scope: Any) -> None:
        self.plan = FakePlan()
        self.transaction_id = "cart_1"
        self.event_group_id = "group"
        self.metadata = {"k": "v"}
        self.scope = scope


def test_step_context_reads_its_run_lazily() -> None:
    """Each context field is read from the run when asked for."""
    registry = Registry()
    registry.register_value("answer", 42)
    with registry.scope() as scope:
        run = FakeRun(scope)
        ctx = StepContext(run, FakeNode(), 2)
        assert ctx.container is scope
        assert ctx.resolve("answer") == 42
        assert (ctx.workflow_name, ctx.step_name) == ("checkout", "reserve")
        assert ctx.transaction_id == "cart_1"
        assert ctx.attempt == 2
        assert ctx.event_group_id == "group"
        assert ctx.metadata == {"k": "v"}
        run.transaction_id = "cart_2"
        assert ctx.transaction_id == "cart_2"


def test_idempotency_key_format() -> None:
    """The key is `workflow:transaction:step:action`, independent of the attempt."""
    run = FakeRun(None)
    first = StepContext(run, FakeNode(), 1)
    third = StepContext(run, FakeNode(), 3)
    undo = StepContext(run, FakeNode(), 1, "compensate")
    assert first.idempotency_key == third.idempotency_key == "checkout:cart_1:reserve:invoke"
    assert undo.idempotency_key == "checkout:cart_1:reserve:compensate"


def test_step_context_repr() -> None:
    """The context's repr names workflow, step, transaction, attempt and action."""
    text = repr(StepContext(FakeRun(None), FakeNode(), 1))
    assert text == (
        "StepContext(workflow='checkout', step='reserve', transaction_id='cart_1', "
        "attempt=1, action='invoke')"
    )
