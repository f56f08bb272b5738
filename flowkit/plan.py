"""Compiling a recorded workflow into a run plan, once per workflow.

The plan is what the runner walks: a flat list of stages (a node, or a tuple of parallel
siblings), each node with a precompiled getter for its input. Nothing here is rebuilt per run.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from inspect import iscoroutinefunction
from typing import Any

from flowkit.recording import Composite, NodeDef
from flowkit.refs import (
    Condition,
    InputSource,
    NodeSource,
    PathItem,
    Ref,
    TransformSource,
    WhenSource,
    ref_path,
    ref_source,
)
from flowkit.step import Step

Getter = Callable[[Any], Any]


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NOT_RUN: Any = _Sentinel("NOT_RUN")
SKIPPED: Any = _Sentinel("SKIPPED")


class CompiledCondition:
    """A `when` condition ready to evaluate against a run (once per run, cached there)."""

    __slots__ = ("get", "index", "parent", "predicate")

    def __init__(
        self,
        index: int,
        get: Getter,
        predicate: Callable[[Any], Any],
        parent: CompiledCondition | None,
    ) -> None:
        self.index = index
        self.get = get
        self.predicate = predicate
        self.parent = parent


class PlanNode:
    """One executable node: a step, a bound hook, or a nested workflow."""

    __slots__ = (
        "async_completion",
        "child",
        "cond",
        "continue_on",
        "fast",
        "get",
        "group",
        "index",
        "is_async",
        "kind",
        "name",
        "retry",
        "skip_on",
        "sleep",
        "step",
        "timeout",
    )

    def __init__(
        self,
        definition: NodeDef,
        step: Step[Any, Any] | None,
        get: Getter,
        cond: CompiledCondition | None,
        child: Plan | None,
    ) -> None:
        self.index = definition.index
        self.name = definition.name
        self.kind = definition.kind
        self.group = definition.group
        self.step = step
        self.get = get
        self.cond = cond
        self.child = child
        self.is_async = bool(step and step.is_async) or bool(child and child.needs_loop)
        self.retry = step.retry if step else None
        self.timeout = step.timeout if step else None
        self.async_completion = bool(step and step.async_completion)
        self.sleep = bool(step and step.sleeps)  # a `flowkit.sleep`: its deadline wakes it
        self.continue_on = bool(step and step.continue_on_permanent_failure)
        self.skip_on = bool(step and step.skip_on_permanent_failure)
        # a plain sync step: the runner calls it inline, without awaiting anything
        self.fast = step is not None and not step.is_async and not self.async_completion

    @property
    def compensate_fn(self) -> Callable[..., Any] | None:
        """The step's compensation (read at compensation time, so late attachment works)."""
        return self.step.compensate_fn if self.step is not None else None

    @property
    def fails_softly(self) -> bool:
        """A final failure of this node lets the run go on (and is not compensated)."""
        return self.continue_on or self.skip_on

    def __repr__(self) -> str:
        return f"<PlanNode #{self.index} {self.name!r}>"


Stage = PlanNode | tuple[PlanNode, ...]


def stage_nodes(stage: Stage) -> Sequence[PlanNode]:
    """The nodes of a stage (one, or the parallel siblings)."""
    return (stage,) if isinstance(stage, PlanNode) else stage


class Plan:
    """A workflow compiled for running.

    Attributes:
        name: The workflow's name.
        timeout: The workflow timeout in seconds, or None.
        nodes: Every node, by index (None for hooks without a handler).
        stages: What runs, in order.
        result: The getter of the workflow's response.
        needs_loop: True when some step or compensation is `async def`.
        has_async_completion: True when some step waits for a signal (needs a store).
        n_conditions: How many `when` conditions the workflow has.
        initial_outputs: The per-run outputs list to copy (hooks without handler yield None).
    """

    __slots__ = (
        "by_name",
        "has_async_completion",
        "initial_outputs",
        "n_conditions",
        "name",
        "needs_loop",
        "nodes",
        "result",
        "stages",
        "timeout",
    )

    def __init__(self, workflow: Composite) -> None:
        self.name = workflow.name
        self.timeout = workflow.timeout
        compiler = _Compiler(workflow.definition.conditions)
        self.nodes: list[PlanNode | None] = [
            compiler.node(d, workflow.hooks) for d in workflow.definition.nodes
        ]
        self.stages = _stages(self.nodes)
        self.result = compiler.value(workflow.definition.result)
        self.n_conditions = len(workflow.definition.conditions)
        self.initial_outputs = [NOT_RUN if n is not None else None for n in self.nodes]
        self.by_name: Mapping[str, PlanNode] = {n.name: n for n in self.nodes if n is not None}
        self.needs_loop: bool
        self.has_async_completion = any(n is not None and n.async_completion for n in self.nodes)
        self.needs_loop = any(
            n is not None and (n.is_async or _async_compensation(n)) for n in self.nodes
        )


def _async_compensation(node: PlanNode) -> bool:
    fn = node.compensate_fn
    return fn is not None and iscoroutinefunction(fn)


def _stages(nodes: list[PlanNode | None]) -> list[Stage]:
    """Consecutive members of one parallel group become one tuple stage."""
    stages: list[Stage] = []
    current: int | None = None
    for node in nodes:
        if node is None:
            continue
        last = stages[-1] if stages else None
        if node.group is None:
            stages.append(node)
        elif node.group == current and isinstance(last, tuple):
            stages[-1] = (*last, node)
        else:
            stages.append((node,))
        current = node.group
    return stages


class _Compiler:
    def __init__(self, conditions: list[Condition]) -> None:
        self.conditions: dict[int, CompiledCondition] = {}
        for condition in conditions:
            self.condition(condition)

    def condition(self, condition: Condition) -> CompiledCondition:
        found = self.conditions.get(condition.index)
        if found is None:
            parent = self.condition(condition.parent) if condition.parent else None
            found = CompiledCondition(
                condition.index, self.value(condition.value), condition.predicate, parent
            )
            self.conditions[condition.index] = found
        return found

    def node(self, definition: NodeDef, hooks: Mapping[str, Step[Any, Any]]) -> PlanNode | None:
        step = definition.step
        if definition.kind == "hook":
            step = hooks.get(definition.name)
            if step is None:
                return None
        cond = self.condition(definition.condition) if definition.condition else None
        child = Plan(definition.child) if definition.child is not None else None
        return PlanNode(definition, step, self.value(definition.arg), cond, child)

    def value(self, value: Any) -> Getter:
        getter, _ = self._value(value)
        return getter

    def _value(self, value: Any) -> tuple[Getter, bool]:
        """Compile a structure; the flag says whether it is a constant."""
        if isinstance(value, Ref):
            return self.ref(value), False
        if isinstance(value, dict):
            items = [(k, *self._value(v)) for k, v in value.items()]
            if all(const for _, _, const in items):
                return _constant(value), True
            pairs = [(k, g) for k, g, _ in items]
            return (lambda run: {k: g(run) for k, g in pairs}), False
        if isinstance(value, (list, tuple)):
            parts = [self._value(v) for v in value]
            if all(const for _, const in parts):
                return _constant(value), True
            getters = [g for g, _ in parts]
            kind = type(value)
            if kind is list or kind is tuple:
                return (lambda run: kind(g(run) for g in getters)), False
            return (lambda run: kind(*(g(run) for g in getters))), False  # named tuples
        return _constant(value), True

    def ref(self, ref: Ref[Any]) -> Getter:
        source = ref_source(ref)
        walk = _path(ref_path(ref))
        if isinstance(source, InputSource):
            return _input_getter(walk)
        if isinstance(source, NodeSource):
            return _node_getter(source.index, walk)
        if isinstance(source, TransformSource):
            return _then_walk(_transform(self.value(source.value), source.fns), walk)
        assert isinstance(source, WhenSource)
        return _when_getter(self.condition(source.condition), self.value(source.value), walk)


def _constant(value: Any) -> Getter:
    return lambda run: value


def _path(path: tuple[PathItem, ...]) -> Getter | None:
    if not path:
        return None
    if all(kind == "attr" for kind, _ in path):
        return operator.attrgetter(".".join(key for _, key in path))
    if len(path) == 1:
        return operator.itemgetter(path[0][1])

    def walk(value: Any) -> Any:
        for kind, key in path:
            value = getattr(value, key) if kind == "attr" else value[key]
        return value

    return walk


def _input_getter(walk: Getter | None) -> Getter:
    if walk is None:
        return lambda run: run.input
    return lambda run: walk(run.input)


def _node_getter(index: int, walk: Getter | None) -> Getter:
    if walk is None:

        def get(run: Any) -> Any:
            value = run.outputs[index]
            return None if value is SKIPPED else value

        return get

    def get_path(run: Any) -> Any:
        value = run.outputs[index]
        return None if value is SKIPPED else walk(value)

    return get_path


def _transform(inner: Getter, fns: tuple[Callable[[Any], Any], ...]) -> Getter:
    def get(run: Any) -> Any:
        value = inner(run)
        for fn in fns:
            value = fn(value)
        return value

    return get


def _then_walk(get: Getter, walk: Getter | None) -> Getter:
    if walk is None:
        return get
    return lambda run: walk(get(run))


def _when_getter(cond: CompiledCondition, inner: Getter, walk: Getter | None) -> Getter:
    def get(run: Any) -> Any:
        if not run.condition(cond):
            return None
        value = inner(run)
        return value if walk is None else walk(value)

    return get
