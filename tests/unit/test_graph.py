"""Unit tests of `flowkit.graph`: the static graph and its Mermaid and Graphviz renderings."""

from __future__ import annotations

from typing import Any

from flowkit import (
    RetryPolicy,
    StepContext,
    Workflow,
    WorkflowResponse,
    create_hook,
    parallelize,
    step,
    when,
    workflow,
)


@step("reserve", retry=RetryPolicy(max_retries=2))
def reserve(inp: Any, ctx: StepContext) -> str:
    """A compensated step with retries."""
    return "reservation"


@reserve.compensate
def release(reservation: Any, ctx: StepContext) -> None:
    """Undo `reserve`."""


@step("fraud")
async def fraud(inp: Any, ctx: StepContext) -> bool:
    """An async step."""
    return False


@step("tax")
def tax(inp: Any, ctx: StepContext) -> int:
    """A plain step."""
    return 0


@step("capture")
def capture(inp: Any, ctx: StepContext) -> None:
    """A conditional step."""


def _define_checkout() -> Workflow[Any, Any]:
    @workflow("child")
    def child(inp: Any) -> Any:
        return WorkflowResponse(reserve.with_name("hold")(inp))

    @workflow("checkout")
    def checkout(inp: Any) -> Any:
        reservation = reserve(inp)
        create_hook("validate", reservation)
        checks = parallelize(fraud(inp), tax(inp))
        when(inp, bool).then(lambda: capture(reservation))
        return WorkflowResponse(child.as_step(checks, name="sub"))

    return checkout


CHECKOUT_MERMAID = """\
flowchart TD
    start(["start"])
    n_reserve_a22["reserve (retries 2, compensated)"]
    start --> n_reserve_a22
    n_validate_254{{"validate (hook, no handler)"}}
    n_reserve_a22 --> n_validate_254
    n_fraud_402["fraud (async)"]
    n_validate_254 --> n_fraud_402
    n_tax_a76["tax"]
    n_validate_254 --> n_tax_a76
    n_capture_6e5["capture"]
    n_fraud_402 -.->|when| n_capture_6e5
    n_tax_a76 -.->|when| n_capture_6e5
    n_sub_2dc[["sub (workflow, compensated)"]]
    n_capture_6e5 --> n_sub_2dc
    n_fraud_402 -.->|skipped| n_sub_2dc
    n_tax_a76 -.->|skipped| n_sub_2dc
    n_sub_hold_209["hold (retries 2, compensated)"]
    n_sub_2dc --> n_sub_hold_209
    finish(["end"])
    n_sub_hold_209 --> finish
"""

CHECKOUT_DOT = """\
digraph "checkout" {
    rankdir=TB;
    start [shape=oval];
    n_reserve_a22 [shape=box, label="reserve (retries 2, compensated)"];
    start -> n_reserve_a22;
    n_validate_254 [shape=hexagon, label="validate (hook, no handler)"];
    n_reserve_a22 -> n_validate_254;
    n_fraud_402 [shape=box, label="fraud (async)"];
    n_validate_254 -> n_fraud_402;
    n_tax_a76 [shape=box, label="tax"];
    n_validate_254 -> n_tax_a76;
    n_capture_6e5 [shape=box, label="capture"];
    n_fraud_402 -> n_capture_6e5 [style=dashed, label="when"];
    n_tax_a76 -> n_capture_6e5 [style=dashed, label="when"];
    n_sub_2dc [shape=box3d, label="sub (workflow, compensated)"];
    n_capture_6e5 -> n_sub_2dc;
    n_fraud_402 -> n_sub_2dc [style=dashed, label="skipped"];
    n_tax_a76 -> n_sub_2dc [style=dashed, label="skipped"];
    n_sub_hold_209 [shape=box, label="hold (retries 2, compensated)"];
    n_sub_2dc -> n_sub_hold_209;
    finish [shape=oval, label="end"];
    n_sub_hold_209 -> finish;
}
"""


def test_graph_lists_nodes_in_call_order_with_their_traits() -> None:
    """`graph()` has one node per recorded step, hook or child, with what it is marked as."""
    graph = _define_checkout().graph()
    assert graph.name == "checkout"
    names = [n.name for n in graph.nodes]
    assert names == ["reserve", "validate", "fraud", "tax", "capture", "sub"]
    by_name = {n.name: n for n in graph.nodes}
    assert (by_name["reserve"].compensated, by_name["reserve"].max_retries) == (True, 2)
    assert (by_name["validate"].kind, by_name["validate"].bound) == ("hook", False)
    assert by_name["fraud"].is_async
    assert by_name["fraud"].group is not None
    assert by_name["fraud"].group == by_name["tax"].group
    assert by_name["capture"].conditional
    assert not by_name["tax"].conditional
    assert by_name["sub"].kind == "child"
    assert [c.name for c in by_name["sub"].children] == ["hold"]


def test_step_names_include_nested_steps_and_bound_hooks_only() -> None:
    """`step_names()` lists `child/step` names, and hooks only once a handler is attached."""
    checkout = _define_checkout()
    assert checkout.step_names() == ["reserve", "fraud", "tax", "capture", "sub", "sub/hold"]
    hooked = checkout.with_hooks(validate=lambda value, ctx: value)
    assert hooked.step_names() == [
        "reserve",
        "validate",
        "fraud",
        "tax",
        "capture",
        "sub",
        "sub/hold",
    ]
    assert hooked.graph().nodes[1].bound is True


def test_to_mermaid_is_pinned() -> None:
    """`to_mermaid()` renders the exact flowchart (stable ids, labels, `when` and skip edges)."""
    assert _define_checkout().to_mermaid() == CHECKOUT_MERMAID


def test_to_dot_is_pinned() -> None:
    """`to_dot()` renders the exact Graphviz text."""
    assert _define_checkout().graph().to_dot() == CHECKOUT_DOT


def test_renderings_are_deterministic_across_definitions() -> None:
    """Two definitions of the same workflow render byte for byte the same text."""
    first, second = _define_checkout(), _define_checkout()
    assert first.to_mermaid() == second.to_mermaid()
    assert first.graph().to_dot() == second.graph().to_dot()
    assert first.graph() == second.graph()


def test_workflow_to_mermaid_is_the_graph_rendering() -> None:
    """`Workflow.to_mermaid()` is `graph().to_mermaid()`."""
    checkout = _define_checkout()
    assert checkout.to_mermaid() == checkout.graph().to_mermaid()


def test_labels_with_quotes_stay_valid() -> None:
    """A double quote in a step name does not break the rendered syntax."""

    @step('say "hi"')
    def say(inp: Any, ctx: StepContext) -> None:
        return None

    @workflow("quotes")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(say(inp))

    mermaid = flow.to_mermaid()
    assert "say 'hi'" in mermaid
    assert mermaid.count('"') % 2 == 0
    assert flow.graph().to_dot().count('"') % 2 == 0


def test_empty_workflow_goes_from_start_to_end() -> None:
    """A workflow without steps renders a start linked to the end."""

    @workflow("empty")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(inp)

    assert flow.to_mermaid() == (
        'flowchart TD\n    start(["start"])\n    finish(["end"])\n    start --> finish\n'
    )
