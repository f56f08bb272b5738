"""Recording a workflow definition: the `Builder`, and the DSL that records into it.

`transform`, `when`, `parallelize` and `create_hook` record into the workflow being defined; a
`Step` called there records itself through `flowkit.refs.current_recording`. What is recorded is
a `Definition` (nodes in call order, conditions, the response) that `flowkit.plan` compiles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, Protocol, TypeVar

import attrs
from attrs import define, field, frozen

from flowkit.exceptions import DefinitionError
from flowkit.refs import (
    RECORDING,
    Condition,
    InputSource,
    NodeSource,
    Ref,
    TransformSource,
    WhenSource,
    dependencies_of,
    ref_path,
    ref_recording,
    ref_source,
)
from flowkit.step import Step

__all__ = [
    "Builder",
    "Composite",
    "Definition",
    "NodeDef",
    "create_hook",
    "current_builder",
    "parallelize",
    "recording",
    "transform",
    "when",
]

T = TypeVar("T")
NodeKind = Literal["step", "hook", "child"]


@define(eq=False)
class NodeDef:
    """One recorded step, hook or nested workflow, in call order."""

    index: int
    name: str
    kind: NodeKind
    arg: Any
    step: Step[Any, Any] | None = None
    child: Composite | None = None
    condition: Condition | None = None
    group: int | None = None

    def dependencies(self) -> frozenset[int]:
        """Indices of the nodes whose outputs this node's input (and its `when`) needs."""
        deps = dependencies_of(self.arg)
        return deps if self.condition is None else deps | self.condition.dependencies()


@frozen
class Definition:
    """The recorded graph of a workflow: nodes in call order, conditions, and the response."""

    nodes: tuple[NodeDef, ...]
    conditions: list[Condition]
    result: Any


class Composite(Protocol):
    """A recorded workflow as the plan compiler and the graph see it (`Workflow` is one)."""

    @property
    def name(self) -> str:
        """The workflow's durable name."""
        ...

    @property
    def timeout(self) -> float | None:
        """Seconds a run may take, or None."""
        ...

    @property
    def definition(self) -> Definition:
        """The recorded graph."""
        ...

    @property
    def hooks(self) -> Mapping[str, Step[Any, Any]]:
        """Handlers attached to hooks, by hook name."""
        ...


# --- recording --------------------------------------------------------------------------------


@define(eq=False)
class Builder:
    """Records one workflow definition while its function runs."""

    name: str
    nodes: list[NodeDef] = field(factory=list)
    conditions: list[Condition] = field(factory=list)
    condition_stack: list[Condition] = field(factory=list)
    groups: int = 0

    def input_ref(self) -> Ref[Any]:
        """The ref standing for the workflow's input."""
        return Ref(self, InputSource())

    def node_name(self, index: int) -> str:
        """The name of the recorded node with this index."""
        return self.nodes[index].name

    def record_step(self, step: Step[Any, Any], input: Any) -> Ref[Any]:
        """Record a call of `step` with `input` (see `Step.__call__`)."""
        return self.add(step.name, "step", input, step=step)

    def add(
        self,
        name: str,
        kind: NodeKind,
        arg: Any,
        *,
        step: Step[Any, Any] | None = None,
        child: Composite | None = None,
    ) -> Ref[Any]:
        """Record a node; returns a ref to its output."""
        if any(node.name == name for node in self.nodes):
            raise DefinitionError(
                f"workflow {self.name!r}: duplicate step name {name!r}; use "
                f".with_name('{name}-2')(...) to run a step twice"
            )
        self.check_value(arg, f"input of step {name!r}")
        condition = self.condition_stack[-1] if self.condition_stack else None
        node = NodeDef(len(self.nodes), name, kind, arg, step, child, condition)
        self.nodes.append(node)
        return Ref(self, NodeSource(node.index))

    def check_value(self, value: Any, what: str) -> None:
        """Refuse refs of another workflow, and refs hidden inside objects the runner won't walk."""
        if isinstance(value, Ref):
            owner = ref_recording(value)
            if owner is not self:
                raise DefinitionError(
                    f"workflow {self.name!r}: {what} uses a Ref of workflow {owner.name!r}"
                )
        elif isinstance(value, dict):
            for item in value.values():
                self.check_value(item, what)
        elif isinstance(value, (list, tuple)):
            for item in value:
                self.check_value(item, what)
        elif _holds_ref(value):
            raise DefinitionError(
                f"workflow {self.name!r}: {what} is a {type(value).__qualname__} built around a "
                "Ref; build it inside transform(ref, lambda v: ...) instead"
            )


def _holds_ref(value: Any) -> bool:
    if attrs.has(type(value)):
        return any(isinstance(getattr(value, a.name, None), Ref) for a in attrs.fields(type(value)))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(isinstance(getattr(value, f.name), Ref) for f in dataclasses.fields(value))
    return False


@contextmanager
def recording(name: str) -> Iterator[Builder]:
    """Make a fresh `Builder` current while a workflow function runs."""
    builder = Builder(name)
    token = RECORDING.set(builder)
    try:
        yield builder
    finally:
        RECORDING.reset(token)


def current_builder(what: str) -> Builder:
    """The builder of the workflow being defined.

    Raises:
        DefinitionError: no workflow is being defined.
    """
    builder = RECORDING.get()
    if not isinstance(builder, Builder):
        raise DefinitionError(f"{what} can only be used inside a @workflow function")
    return builder


# --- the DSL ---------------------------------------------------------------------------------


def transform(value: Any, *fns: Callable[[Any], Any]) -> Ref[Any]:
    """A lazily computed value: `fns[0](resolved value)`, then each next function on the result.

    Args:
        value: A `Ref`, or a dict/list/tuple with refs inside.
        fns: Pure functions of one argument.

    Returns:
        A `Ref` to the last function's result. A function that raises fails the step that
        consumes the value.

    Raises:
        DefinitionError: outside a workflow, no function, or something not callable.
    """
    builder = current_builder("transform()")
    if not fns:
        raise DefinitionError(f"workflow {builder.name!r}: transform() needs a function")
    for fn in fns:
        if not callable(fn):
            raise DefinitionError(f"workflow {builder.name!r}: transform() got {fn!r}")
    builder.check_value(value, "a transform's input")
    return Ref(builder, TransformSource(value, fns))


class When:
    """The half-built branch returned by `when(ref, predicate)`; finish it with `.then(fn)`."""

    def __init__(self, builder: Builder, value: Any, predicate: Callable[[Any], Any]) -> None:
        self._builder = builder
        self._value = value
        self._predicate = predicate

    def then(self, fn: Callable[[], T]) -> Ref[Any]:
        """Record the steps `fn()` calls so they run only when the predicate holds.

        Args:
            fn: Called once, now, with no arguments.

        Returns:
            A ref to `fn`'s return value (None in runs where the predicate is false).
        """
        builder = self._builder
        if not callable(fn):
            raise DefinitionError(f"workflow {builder.name!r}: when(...).then() got {fn!r}")
        parent = builder.condition_stack[-1] if builder.condition_stack else None
        condition = Condition(len(builder.conditions), self._value, self._predicate, parent)
        builder.conditions.append(condition)
        builder.condition_stack.append(condition)
        try:
            value = fn()
        finally:
            builder.condition_stack.pop()
        builder.check_value(value, "the value returned inside when(...).then()")
        return Ref(builder, WhenSource(condition, value))


def when(value: Any, predicate: Callable[[Any], Any]) -> When:
    """Branch on a run-time value: `when(ref, lambda v: v.capture_now).then(lambda: capture(...))`.

    The predicate is evaluated once per run; steps recorded in `then` are `skipped` when it is
    false. A predicate that raises fails the run at that point.

    Raises:
        DefinitionError: outside a workflow, or a predicate that is not callable.
    """
    builder = current_builder("when()")
    if not callable(predicate):
        raise DefinitionError(f"workflow {builder.name!r}: when() needs a callable predicate")
    builder.check_value(value, "a when() value")
    return When(builder, value, predicate)


def parallelize(*refs: Ref[Any]) -> tuple[Ref[Any], ...]:
    """Run the steps called in this argument list concurrently; returns their refs.

    Sync siblings run in threads, async ones as tasks; the next step waits for all of them.

    Raises:
        DefinitionError: an argument that is not the direct result of a step call made in this
            argument list, or a sibling that consumes another sibling's output.
    """
    builder = current_builder("parallelize()")
    if len(refs) < 2:
        raise DefinitionError(f"workflow {builder.name!r}: parallelize() needs two steps or more")
    indices = [_direct_node(builder, ref) for ref in refs]
    recent = list(range(len(builder.nodes) - len(refs), len(builder.nodes)))
    if indices != recent:
        raise DefinitionError(
            f"workflow {builder.name!r}: parallelize() takes the results of step calls made in "
            "its own argument list, in order"
        )
    siblings = [builder.nodes[i] for i in indices]
    _check_siblings(builder, siblings)
    group = builder.groups
    builder.groups += 1
    for node in siblings:
        node.group = group
    return refs


def _direct_node(builder: Builder, ref: object) -> int:
    source = ref_source(ref) if isinstance(ref, Ref) else None
    if (
        not isinstance(ref, Ref)
        or ref_recording(ref) is not builder
        or not isinstance(source, NodeSource)
        or ref_path(ref)
    ):
        raise DefinitionError(
            f"workflow {builder.name!r}: parallelize() takes step results directly, got {ref!r}"
        )
    return source.index


def _check_siblings(builder: Builder, siblings: list[NodeDef]) -> None:
    indices = {node.index for node in siblings}
    for node in siblings:
        if node.group is not None or node.kind == "hook":
            raise DefinitionError(
                f"workflow {builder.name!r}: step {node.name!r} cannot join parallelize()"
            )
        if node.dependencies() & indices:
            raise DefinitionError(
                f"workflow {builder.name!r}: parallel step {node.name!r} consumes the output of a "
                "sibling; siblings must be independent"
            )
        if node.condition is not siblings[0].condition:
            raise DefinitionError(
                f"workflow {builder.name!r}: parallel steps must share one when() branch"
            )


def create_hook(name: str, value: Any) -> Ref[Any]:
    """Declare a hook: a place where `workflow.with_hooks(name=handler)` plugs in a step.

    Args:
        name: An identifier; the hook runs as a step with that name.
        value: What the handler receives (a ref or a structure with refs).

    Returns:
        A ref to the handler's output (None when no handler is attached).

    Raises:
        DefinitionError: outside a workflow, a name that is not an identifier, or a name taken.
    """
    builder = current_builder("create_hook()")
    if not isinstance(name, str) or not name.isidentifier():
        raise DefinitionError(
            f"workflow {builder.name!r}: hook name {name!r} must be an identifier"
        )
    return builder.add(name, "hook", value)
