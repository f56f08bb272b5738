"""Unit tests of `flowkit.refs`: what a `Ref` records, and every use it refuses."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import pytest

from flowkit import DefinitionError, Ref, StepContext, WorkflowResponse, step, workflow


@step("load")
def load(inp: Any, ctx: StepContext) -> Any:
    """A step whose output the refs below stand for."""
    return inp


async def _await(ref: Any) -> Any:
    return await ref


def _await_ref(ref: Any) -> Any:
    coro = _await(ref)
    try:
        return coro.send(None)
    finally:
        coro.close()


def _with(ref: Any) -> None:
    with ref:
        pass


def _set_attr(ref: Any) -> None:
    ref.total = 3


def _set_item(ref: Any) -> None:
    ref["total"] = 3


def _del_item(ref: Any) -> None:
    del ref["total"]


def _for(ref: Any) -> None:
    for _ in ref:
        pass


def _unpack(ref: Any) -> Any:
    first, _second = ref
    return first


def _if(ref: Any) -> Any:
    return 1 if ref else 0


FORBIDDEN: dict[str, Callable[[Any], Any]] = {
    "bool": bool,
    "if": _if,
    "and": lambda r: r and 1,
    "not": operator.not_,
    "iter": iter,
    "for": _for,
    "unpack": _unpack,
    "list": list,
    "reversed": reversed,
    "len": len,
    "in": lambda r: 1 in r,
    "in-list": lambda r: r in [1, 2],
    "eq": lambda r: r == 1,
    "ne": lambda r: r != 1,
    "lt": lambda r: r < 1,
    "le": lambda r: r <= 1,
    "gt": lambda r: r > 1,
    "ge": lambda r: r >= 1,
    "reflected-lt": lambda r: 1 < r,  # noqa: SIM300
    "add": lambda r: r + 1,
    "radd": lambda r: 1 + r,
    "sub": lambda r: r - 1,
    "rsub": lambda r: 1 - r,
    "mul": lambda r: r * 2,
    "truediv": lambda r: r / 2,
    "floordiv": lambda r: r // 2,
    "mod": lambda r: r % 2,
    "pow": lambda r: r**2,
    "matmul": lambda r: r @ r,
    "divmod": lambda r: divmod(r, 2),
    "lshift": lambda r: r << 1,
    "rshift": lambda r: r >> 1,
    "and-bits": lambda r: r & 1,
    "or-bits": lambda r: r | 1,
    "xor": lambda r: r ^ 1,
    "neg": operator.neg,
    "pos": operator.pos,
    "invert": operator.invert,
    "abs": abs,
    "round": round,
    "int": int,
    "float": float,
    "complex": complex,
    "index": lambda r: [1, 2][r],
    "str": str,
    "bytes": bytes,
    "fstring": lambda r: f"{r}",
    "format-spec": lambda r: f"{r:>10}",
    "format": "{}".format,
    "format-builtin": format,
    "percent": lambda r: "%s" % r,  # noqa: UP031
    "call": lambda r: r(),
    "method-call": lambda r: r.upper(),
    "await": _await_ref,
    "with": _with,
    "setattr": _set_attr,
    "setitem": _set_item,
    "delitem": _del_item,
}


def _define_using(use: Callable[[Any], Any], name: str, *, of_input: bool) -> None:
    @workflow(name)
    def flow(inp: Any) -> Any:
        ref = inp if of_input else load(inp)
        use(ref)
        return WorkflowResponse(ref)


@pytest.mark.parametrize("use", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_forbidden_use_of_a_step_ref_raises(use: Callable[[Any], Any]) -> None:
    """Plain Python on a step's ref raises `DefinitionError` naming the workflow, pointing on."""
    with pytest.raises(DefinitionError) as caught:
        _define_using(use, "misuse-step", of_input=False)
    message = str(caught.value)
    assert "'misuse-step'" in message
    assert "transform(" in message
    assert "when(" in message


@pytest.mark.parametrize("use", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_forbidden_use_of_the_input_ref_raises(use: Callable[[Any], Any]) -> None:
    """Plain Python on the input ref, or on a path of it, raises the same `DefinitionError`."""
    with pytest.raises(DefinitionError, match="'misuse-input'"):
        _define_using(lambda r: use(r.customer), "misuse-input", of_input=True)


def test_ref_index_that_is_a_ref_is_refused() -> None:
    """`ref[other_ref]` is refused: the index is only known at run time."""
    with pytest.raises(DefinitionError, match="transform"):

        @workflow("ref-index")
        def flow(inp: Any) -> Any:
            return WorkflowResponse(load(inp)[inp.key])


def _recorded(path: Callable[[Any], Any]) -> Any:
    seen: list[Any] = []

    @workflow("recorder")
    def flow(inp: Any) -> Any:
        seen.append(path(inp))
        return WorkflowResponse(None)

    return seen[0]


def test_attribute_and_item_access_return_refs() -> None:
    """Attribute access, item access and chains of both return refs with the path recorded."""
    ref = _recorded(lambda inp: inp.customer["emails"][0].domain)
    assert isinstance(ref, Ref)
    assert repr(ref) == "Ref(input.customer['emails'][0].domain)"


def test_a_ref_has_no_public_attributes_of_its_own() -> None:
    """Common attribute names on a ref are recorded paths, never attributes of `Ref`."""
    for name in ("name", "value", "source", "path", "get", "then", "index", "items", "keys"):
        ref = _recorded(lambda inp, name=name: getattr(inp, name))
        assert isinstance(ref, Ref), name
        assert repr(ref) == f"Ref(input.{name})"


def test_dunder_lookups_are_not_recorded() -> None:
    """Protocol lookups (`__deepcopy__`, `__fspath__`...) raise AttributeError, not a path."""
    ref = _recorded(lambda inp: inp)
    with pytest.raises(AttributeError):
        _ = ref.__deepcopy__
    assert not hasattr(ref, "__fspath__")


def test_step_ref_repr_describes_its_source() -> None:
    """A step output's ref describes where it comes from, with its path."""
    seen: list[Any] = []

    @workflow("repr-step")
    def flow(inp: Any) -> Any:
        out = load(inp)
        seen.append(out.total)
        return WorkflowResponse(out)

    assert repr(seen[0]).startswith("Ref(")
    assert repr(seen[0]).endswith(".total)")


def test_refs_are_hashable() -> None:
    """A ref hashes by identity, so it can be kept in sets and dict keys while defining."""
    ref = _recorded(lambda inp: inp)
    assert {ref: 1}[ref] == 1


def test_leaked_ref_still_refuses_plain_python() -> None:
    """A ref used after its workflow was defined still raises `DefinitionError`."""
    ref = _recorded(lambda inp: inp)
    with pytest.raises(DefinitionError, match="transform"):
        bool(ref)
