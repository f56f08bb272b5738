"""Unit tests of `Workflow.fingerprint`: what changes it (the graph and the options that change
execution) and what does not (code bodies, transforms, predicates, compensations, timeouts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flowkit import (
    DefinitionError,
    Engine,
    RetryPolicy,
    StepContext,
    Workflow,
    WorkflowResponse,
    create_hook,
    parallelize,
    step,
    transform,
    when,
    workflow,
)


def _body(inp: Any, ctx: StepContext) -> Any:
    return inp


def _other_body(inp: Any, ctx: StepContext) -> Any:
    return [inp, inp]


def make(
    *,
    names: tuple[str, ...] = ("a", "b", "c"),
    body: Callable[..., Any] = _body,
    option: dict[str, Any] | None = None,
    parallel: bool = False,
    conditional: bool = False,
    edge_from_a: bool = False,
    version: int = 1,
    timeout: float | None = None,
) -> Workflow[Any, Any]:
    """A workflow of steps in a row (a, b, c by default); each argument changes one thing."""
    steps = [step(n, **(option if n == names[-1] and option else {}))(body) for n in names]

    @workflow("fp", version=version, timeout=timeout)
    def fp(inp: Any) -> WorkflowResponse[Any]:
        first = steps[0](inp)
        value = first if edge_from_a else transform(inp, lambda v: v)
        if parallel:
            _, last = parallelize(steps[1](value), steps[2](inp))
            return WorkflowResponse(last)
        for middle in steps[1:-1]:
            value = middle(value)
        if conditional:
            return WorkflowResponse(when(inp, bool).then(lambda: steps[-1](value)))
        return WorkflowResponse(steps[-1](value))

    return fp


BASE = make()


@pytest.mark.parametrize(
    "same",
    [
        make(body=_other_body),
        make(version=7),
        make(timeout=5.0),
        make(option={"timeout": 3.0}),
        make(option={"retry": RetryPolicy(max_retries=0, interval=9.0)}),
    ],
    ids=["body", "version", "workflow-timeout", "step-timeout", "retry-interval"],
)
def test_what_keeps_the_fingerprint(same: Workflow[Any, Any]) -> None:
    """Code bodies, the version label, timeouts and retry intervals leave it alone."""
    assert same.fingerprint == BASE.fingerprint


@pytest.mark.parametrize(
    "changed",
    [
        make(names=("a", "b", "d")),
        make(names=("a", "c", "b")),
        make(names=("a", "b", "c", "d")),
        make(names=("a", "b")),
        make(parallel=True),
        make(conditional=True),
        make(edge_from_a=True),
        make(option={"async_completion": True}),
        make(option={"retry": RetryPolicy(max_retries=2)}),
        make(option={"continue_on_permanent_failure": True}),
        make(option={"skip_on_permanent_failure": True}),
    ],
    ids=[
        "renamed", "reordered", "inserted", "removed", "parallel", "when", "edge",
        "async_completion", "retries", "continue", "skip",
    ],
)  # fmt: skip
def test_what_changes_the_fingerprint(changed: Workflow[Any, Any]) -> None:
    """Step names, order, additions, removals, groups, conditions, edges and execution
    options each give another fingerprint."""
    assert changed.fingerprint != BASE.fingerprint


def test_a_nested_workflow_and_a_hook_handler_change_the_parent() -> None:
    """A child workflow's graph is part of its parent's; so is whether a hook has a handler."""
    child_one, child_two = make(), make(names=("a", "b", "x"))

    def parent(child: Workflow[Any, Any]) -> Workflow[Any, Any]:
        @workflow("parent")
        def composed(inp: Any) -> WorkflowResponse[Any]:
            create_hook("validate", inp)
            return WorkflowResponse(child.as_step(inp, "child"))

        return composed

    plain = parent(child_one)
    assert parent(child_one).fingerprint == plain.fingerprint
    assert parent(child_two).fingerprint != plain.fingerprint
    hooked = plain.with_hooks(validate=lambda inp, ctx: inp)
    assert hooked.fingerprint != plain.fingerprint
    assert hooked.version == plain.version


def test_the_fingerprint_is_a_sha256_hex_digest() -> None:
    """64 lowercase hex digits, computed once."""
    assert len(BASE.fingerprint) == 64
    assert BASE.fingerprint == BASE.fingerprint.lower()
    int(BASE.fingerprint, 16)


def test_an_engine_holds_versions_and_refuses_a_second_graph_per_version() -> None:
    """Versions 1 and 2 live side by side; the highest is the one `workflows` names; another
    graph under a held name and version is a DefinitionError."""
    one, two = make(), make(names=("a", "b", "d"), version=2)
    with Engine(workflows=[two, one]) as engine:
        assert engine.workflows == {"fp": two}
        assert engine.runtime.versions == {"fp": {1: one, 2: two}}
        engine.register(one)  # the same object again: a no-op
        with pytest.raises(DefinitionError, match="already holds version 2"):
            engine.register(make(names=("a", "b", "e"), version=2))
        assert engine.runtime.versions["fp"] == {1: one, 2: two}
