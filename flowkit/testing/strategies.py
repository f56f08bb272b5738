"""Hypothesis strategies over a workflow's static graph: what can go wrong, and where."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from flowkit.exceptions import DefinitionError, InjectedFailure
from flowkit.graph import GraphNode
from flowkit.testing.faults import CompensationFailure, Crash, FailurePlan, StepFailure
from flowkit.workflow import Workflow

__all__ = ["failure_plans"]


class _StepInfo:
    """What the strategy needs to know about one step of the graph."""

    def __init__(self, name: str, node: GraphNode) -> None:
        self.name = name
        self.retries = node.max_retries
        self.compensated = node.compensated and node.kind != "child"


def _steps(nodes: tuple[GraphNode, ...], prefix: str = "") -> list[_StepInfo]:
    found: list[_StepInfo] = []
    for node in nodes:
        if node.kind == "hook" and not node.bound:
            continue
        if node.children:
            found.extend(_steps(node.children, f"{prefix}{node.name}/"))
        else:
            found.append(_StepInfo(prefix + node.name, node))
    return found


def failure_plans(
    workflow: Workflow[Any, Any],
    *,
    max_faults: int = 3,
    errors: Sequence[type[Exception]] = (InjectedFailure,),
    crashes: bool = True,
) -> st.SearchStrategy[FailurePlan]:
    """Plans of failures for `workflow`: which steps fail (and how often), which compensations
    fail, and at most one crash point.

    Plans shrink toward fewer faults and earlier steps (lists shrink to shorter ones and
    `sampled_from` to its first element, the first step in call order).

    Args:
        workflow: The workflow whose graph (nested workflows included, as `"child/step"`) is used.
        max_faults: The most faults one plan injects.
        errors: Exception types an injected step failure raises (instantiated with a message);
            pass your own to exercise a `RetryPolicy.retry_if` that only retries some errors.
        crashes: Whether plans may contain a crash (needs a durable engine to recover).

    Raises:
        DefinitionError: the workflow has no steps, or `max_faults` is below 1.
    """
    steps = _steps(workflow.graph().nodes)
    if not steps:
        raise DefinitionError(f"workflow {workflow.name!r} has no steps to explore")
    if max_faults < 1:
        raise DefinitionError(f"max_faults must be >= 1, not {max_faults!r}")
    failures = st.lists(_step_failure(steps, errors), max_size=max_faults, unique_by=_key)
    compensated = [s for s in steps if s.compensated]
    comp_failures = (
        st.lists(_compensation_failure(compensated), max_size=max_faults, unique_by=_key)
        if compensated
        else st.just([])
    )
    crash = st.none() | _crash(steps) if crashes else st.none()
    return st.builds(FailurePlan, failures.map(tuple), comp_failures.map(tuple), crash).filter(
        lambda plan: plan.fault_count <= max_faults
    )


def _key(fault: StepFailure | CompensationFailure) -> str:
    return fault.step


def _step_failure(
    steps: list[_StepInfo], errors: Sequence[type[Exception]]
) -> st.SearchStrategy[StepFailure]:
    return st.sampled_from(steps).flatmap(
        lambda s: st.builds(
            StepFailure,
            st.just(s.name),
            st.integers(1, s.retries + 1),
            st.sampled_from(list(errors)),
        )
    )


def _compensation_failure(steps: list[_StepInfo]) -> st.SearchStrategy[CompensationFailure]:
    return st.sampled_from(steps).flatmap(
        lambda s: st.builds(CompensationFailure, st.just(s.name), st.integers(1, s.retries + 1))
    )


def _crash(steps: list[_StepInfo]) -> st.SearchStrategy[Crash]:
    points = [
        (s.name, action, point)
        for s in steps
        for action in (("invoke", "compensate") if s.compensated else ("invoke",))
        for point in ("after", "before")
    ]
    return st.sampled_from(points).map(lambda p: Crash(p[0], p[1], p[2]))  # type: ignore[arg-type]
