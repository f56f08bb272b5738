"""`Ref`: a placeholder, recorded while a workflow is defined, for a value that exists at run time.

A workflow's function runs once, at definition time. Step calls record nodes and return `Ref`s;
attribute and item access on a `Ref` is recorded and replayed when the workflow runs. Anything
else done to a `Ref` would need its value now, which does not exist yet: it raises
`DefinitionError` pointing to `transform` and `when`.

This is the floor of the definition layer: it knows the recording in progress only through the
`Recording` protocol (implemented by `flowkit.recording.Builder`), so `Step.__call__` can record
itself without importing the builder.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Generic, Literal, NoReturn, Protocol, TypeVar

from attrs import define

from flowkit.exceptions import DefinitionError

__all__ = [
    "Recording",
    "Ref",
    "current_recording",
    "dependencies_of",
    "ref_path",
    "ref_recording",
    "ref_source",
]

T = TypeVar("T")
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


# --- the recording in progress ------------------------------------------------------------------


class Recording(Protocol):
    """The workflow definition being recorded, as refs and steps see it."""

    name: str

    def node_name(self, index: int) -> str:
        """The name of the recorded node with this index."""
        ...

    def record_step(self, step: Any, input: Any) -> Ref[Any]:
        """Record a call of a `Step` with `input`; returns a ref to its output."""
        ...


RECORDING: ContextVar[Recording | None] = ContextVar("flowkit_recording", default=None)


def current_recording(what: str) -> Recording:
    """The workflow being defined.

    Raises:
        DefinitionError: no workflow is being defined (`what` names the caller).
    """
    recording = RECORDING.get()
    if recording is None:
        raise DefinitionError(f"{what} can only be used inside a @workflow function")
    return recording


# --- the Ref itself --------------------------------------------------------------------------


def _refuse(operation: str) -> Callable[..., NoReturn]:
    def refuse(self: Ref[Any], *args: object) -> NoReturn:
        recording = RECORDING.get()
        where = f" in workflow {recording.name!r}" if recording else ""
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
    _fk_builder: Recording
    _fk_source: Source
    _fk_path: tuple[PathItem, ...]

    def __init__(self, builder: Recording, source: Source, path: tuple[PathItem, ...] = ()) -> None:
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


def _describe_source(source: Source, builder: Recording) -> str:
    if isinstance(source, InputSource):
        return "input"
    if isinstance(source, NodeSource):
        return f"step {builder.node_name(source.index)!r}"
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


def ref_source(ref: Ref[Any]) -> Source:
    """Where a ref's value comes from (for the plan compiler)."""
    return ref._fk_source


def ref_path(ref: Ref[Any]) -> tuple[PathItem, ...]:
    """The attribute and item accesses recorded on a ref, in order."""
    return ref._fk_path


def ref_recording(ref: Ref[Any]) -> Recording:
    """The workflow definition a ref was recorded in."""
    return ref._fk_builder
