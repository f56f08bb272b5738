"""Placeholders recorded while a workflow is defined: `Ref`, `transform`, `when`, `parallelize`.

A workflow's function runs once, at definition time. Step calls record nodes and return `Ref`s;
attribute and item access on a `Ref` is recorded and replayed when the workflow runs. Anything
else done to a `Ref` would need its value now, which does not exist yet: it raises
`DefinitionError` pointing to `transform` and `when`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, Literal, NoReturn, TypeVar

import attrs
from attrs import define, field

from flowkit.exceptions import DefinitionError

if TYPE_CHECKING:
    from flowkit.step import Step
    from flowkit.workflow import Workflow

__all__ = ["Ref", "create_hook", "parallelize", "transform", "when"]

T = TypeVar("T")
NodeKind = Literal["step", "hook", "child"]
PathItem = tuple[Literal["attr", "item"], Any]


# --- what a Ref points at ---------------------------------------------------------------------


class Source:
    """Where a `Ref`'s value comes from at run time."""

    def dependencies(self) -> frozenset[int]:
        """Indices of the nodes whose outputs this value needs."""
        return frozenset()


class InputSource(Source):
    """The workflow's input."""


@define(eq=False)
class NodeSource(Source):
    """The output of the node with this index."""

    index: int

    def dependencies(self) -> frozenset[int]:
        return frozenset({self.index})


@define(eq=False)
class TransformSource(Source):
    """`fns` applied in turn to a resolved structure."""

    value: Any
    fns: tuple[Callable[[Any], Any], ...]

    def dependencies(self) -> frozenset[int]:
        return dependencies_of(self.value)


@define(eq=False)
class WhenSource(Source):
    """The value built inside `when(...).then(fn)`: None when the condition is false."""

    condition: Condition
    value: Any

    def dependencies(self) -> frozenset[int]:
        return dependencies_of(self.value) | self.condition.dependencies()


@define(eq=False)
class Condition:
    """A `when` predicate over a resolved value; nested conditions need their parent's too."""

    index: int
    value: Any
    predicate: Callable[[Any], Any]
    parent: Condition | None

    def dependencies(self) -> frozenset[int]:
        own = dependencies_of(self.value)
        return own if self.parent is None else own | self.parent.dependencies()


@define(eq=False)
class NodeDef:
    """One recorded step, hook or nested workflow, in call order."""

    index: int
    name: str
    kind: NodeKind
    arg: Any
    step: Step[Any, Any] | None = None
    child: Workflow[Any, Any] | None = None
    condition: Condition | None = None
    group: int | None = None

    def dependencies(self) -> frozenset[int]:
        deps = dependencies_of(self.arg)
        return deps if self.condition is None else deps | self.condition.dependencies()


# --- the Ref itself --------------------------------------------------------------------------


def _refuse(operation: str) -> Callable[..., NoReturn]:
    def refuse(self: Ref[Any], *args: object) -> NoReturn:
        builder = _BUILDER.get()
        where = f" in workflow {builder.name!r}" if builder else ""
        raise DefinitionError(
            f"{operation} on {self!r}{where}: a Ref stands for a value that exists only when the "
            "workflow runs. Compute with transform(ref, fn), branch with "
            "when(ref, predicate).then(...)."
        )

    refuse.__name__ = operation
    return refuse


class Ref(Generic[T]):
    """A placeholder for a value that exists only when the workflow runs.

    Attribute and item access are recorded (`ref.payment.id`, `ref["items"][0]`) and replayed at
    run time. Any other use raises `DefinitionError`. A `Ref` has no public attributes of its own.
    """

    __slots__ = ("_fk_builder", "_fk_path", "_fk_source")
    _fk_builder: Builder
    _fk_source: Source
    _fk_path: tuple[PathItem, ...]

    def __init__(self, builder: Builder, source: Source, path: tuple[PathItem, ...] = ()) -> None:
        object.__setattr__(self, "_fk_builder", builder)
        object.__setattr__(self, "_fk_source", source)
        object.__setattr__(self, "_fk_path", path)

    def __getattr__(self, name: str) -> Ref[Any]:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return Ref(self._fk_builder, self._fk_source, (*self._fk_path, ("attr", name)))

    def __getitem__(self, key: Any) -> Ref[Any]:
        if isinstance(key, Ref):
            raise DefinitionError(
                f"{self!r}[{key!r}]: an index that is itself a Ref is only known at run time; "
                "use transform((value, key), lambda v: v[0][v[1]])"
            )
        return Ref(self._fk_builder, self._fk_source, (*self._fk_path, ("item", key)))

    def __repr__(self) -> str:
        source = _describe_source(self._fk_source, self._fk_builder)
        return f"Ref({source}{_describe_path(self._fk_path)})"

    __hash__ = object.__hash__
    __setattr__ = _refuse("assigning an attribute")
    __delattr__ = _refuse("deleting an attribute")
    __setitem__ = _refuse("assigning an item")
    __delitem__ = _refuse("deleting an item")
    __bool__ = _refuse("truth test (if/and/or/not)")
    __iter__ = _refuse("iteration (for/unpacking)")
    __reversed__ = _refuse("reversed()")
    __len__ = _refuse("len()")
    __contains__ = _refuse("`in`")
    __eq__ = _refuse("comparison ==")
    __ne__ = _refuse("comparison !=")
    __lt__ = _refuse("comparison <")
    __le__ = _refuse("comparison <=")
    __gt__ = _refuse("comparison >")
    __ge__ = _refuse("comparison >=")
    __call__ = _refuse("calling")
    __str__ = _refuse("str()")
    __format__ = _refuse("formatting (f-string / format())")
    __bytes__ = _refuse("bytes()")
    __int__ = _refuse("int()")
    __float__ = _refuse("float()")
    __complex__ = _refuse("complex()")
    __index__ = _refuse("use as an index")
    __round__ = _refuse("round()")
    __abs__ = _refuse("abs()")
    __neg__ = _refuse("unary -")
    __pos__ = _refuse("unary +")
    __invert__ = _refuse("unary ~")
    __await__ = _refuse("await")
    __enter__ = _refuse("`with`")
    __exit__ = _refuse("`with`")
    __add__ = __radd__ = _refuse("arithmetic +")
    __sub__ = __rsub__ = _refuse("arithmetic -")
    __mul__ = __rmul__ = _refuse("arithmetic *")
    __matmul__ = __rmatmul__ = _refuse("arithmetic @")
    __truediv__ = __rtruediv__ = _refuse("arithmetic /")
    __floordiv__ = __rfloordiv__ = _refuse("arithmetic //")
    __mod__ = __rmod__ = _refuse("arithmetic % (or %-formatting)")
    __divmod__ = __rdivmod__ = _refuse("divmod()")
    __pow__ = __rpow__ = _refuse("arithmetic **")
    __lshift__ = __rlshift__ = _refuse("shift <<")
    __rshift__ = __rrshift__ = _refuse("shift >>")
    __and__ = __rand__ = _refuse("operator &")
    __or__ = __ror__ = _refuse("operator |")
    __xor__ = __rxor__ = _refuse("operator ^")


def _describe_source(source: Source, builder: Builder) -> str:
    if isinstance(source, InputSource):
        return "input"
    if isinstance(source, NodeSource):
        return f"step {builder.nodes[source.index].name!r}"
    if isinstance(source, TransformSource):
        return "transform(...)"
    return "when(...)"


def _describe_path(path: tuple[PathItem, ...]) -> str:
    return "".join(f".{key}" if kind == "attr" else f"[{key!r}]" for kind, key in path)


def dependencies_of(value: Any) -> frozenset[int]:
    """The node indices a recorded structure (refs inside dicts, lists, tuples) depends on."""
    if isinstance(value, Ref):
        return value._fk_source.dependencies()
    if isinstance(value, dict):
        return frozenset().union(*(dependencies_of(v) for v in value.values()))
    if isinstance(value, (list, tuple)):
        return frozenset().union(*(dependencies_of(v) for v in value))
    return frozenset()


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
        return Ref(self, InputSource())

    def add(
        self,
        name: str,
        kind: NodeKind,
        arg: Any,
        *,
        step: Step[Any, Any] | None = None,
        child: Workflow[Any, Any] | None = None,
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
            if value._fk_builder is not self:
                raise DefinitionError(
                    f"workflow {self.name!r}: {what} uses a Ref of workflow "
                    f"{value._fk_builder.name!r}"
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


_BUILDER: ContextVar[Builder | None] = ContextVar("flowkit_builder", default=None)


@contextmanager
def recording(name: str) -> Iterator[Builder]:
    """Make a fresh `Builder` current while a workflow function runs."""
    builder = Builder(name)
    token = _BUILDER.set(builder)
    try:
        yield builder
    finally:
        _BUILDER.reset(token)


def current_builder(what: str) -> Builder:
    """The builder of the workflow being defined.

    Raises:
        DefinitionError: no workflow is being defined.
    """
    builder = _BUILDER.get()
    if builder is None:
        raise DefinitionError(f"{what} can only be used inside a @workflow function")
    return builder


def record_step(step: Step[Any, Any], input: Any) -> Ref[Any]:
    """Record a call of `step` with `input` (see `Step.__call__`)."""
    builder = current_builder(f"step {step.name!r}")
    return builder.add(step.name, "step", input, step=step)


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
    if (
        not isinstance(ref, Ref)
        or ref._fk_builder is not builder
        or not isinstance(ref._fk_source, NodeSource)
        or ref._fk_path
    ):
        raise DefinitionError(
            f"workflow {builder.name!r}: parallelize() takes step results directly, got {ref!r}"
        )
    return ref._fk_source.index


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
