"""One conversion from what a caller passes to what a payment step or workflow takes.

A strict cattrs converter: an instance of the wanted class passes through; a mapping is
structured field by field (nested records, lists, enums and optional fields included); unknown
or missing keys, and values of another type, raise `InvalidData` naming the wanted class and
the path of each fault. Nothing is coerced: `5` is not a `str`, a `str` is not a list.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any, TypeVar, Union, get_args, get_origin, overload

import attrs
import cattrs
from cattrs.cols import is_mapping, is_sequence, list_structure_factory
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.gen import make_dict_structure_fn

from flowkit import StepContext
from payment.exceptions import InvalidData, PaymentError

__all__ = ["accepts_input", "as_input"]

T = TypeVar("T")
R = TypeVar("R")


class _Refused(TypeError):
    """A value of another type than the field's (its message says what was expected)."""


_LEAVES = (str, int, bool, float, datetime, Enum)


def _leaf(value: Any, kind: type[Any]) -> Any:
    """A value that must already be of its type (a `str` enum is an enum, not a `str`)."""
    if issubclass(kind, Enum):
        return _enum(value, kind)
    if isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool):
        return value
    raise _Refused(f"expected {_name(kind)}")


def _enum(value: Any, kind: type[Enum]) -> Enum:
    try:
        return kind(value)
    except ValueError:
        raise _Refused(f"expected one of {[member.value for member in kind]}") from None


def _decimal(value: Any, _: Any) -> Decimal:
    """An amount as the module accepts one: a Decimal, an int, or a string of ASCII digits."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str) and value.isascii():
        try:
            parsed = Decimal(value)
        except InvalidOperation:
            pass
        else:
            if parsed.is_finite():
                return parsed
    raise _Refused("expected a Decimal, an int or a numeric string")


def _mapping(value: Any, _: Any) -> Any:
    if isinstance(value, Mapping):
        return value  # the field's own converter copies or freezes it
    raise _Refused("expected a mapping")


def _is_union(kind: Any) -> bool:
    return get_origin(kind) in (Union, types.UnionType)


def _is_mapping_type(kind: Any) -> bool:
    if is_mapping(kind):
        return True
    return isinstance(kind, type) and issubclass(kind, Mapping)


def _name(kind: Any) -> str:
    """`kind` as a reader would write it: `CapturePaymentInput`, `list[RefundPaymentInput]`."""
    if _is_union(kind):
        return " | ".join(_name(arg) for arg in get_args(kind))
    origin = get_origin(kind)
    if origin is not None:
        return f"{origin.__name__}[{', '.join(_name(a) for a in get_args(kind))}]"
    if kind is type(None):
        return "None"
    return str(getattr(kind, "__name__", kind))


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    for leaf in _LEAVES:
        converter.register_structure_hook(leaf, _leaf)
    converter.register_structure_hook(Decimal, _decimal)
    converter.register_structure_hook_func(_is_mapping_type, _mapping)
    converter.register_structure_hook_factory(attrs.has, lambda kind: _record(kind, converter))
    converter.register_structure_hook_factory(is_sequence, lambda k: _sequence(k, converter))
    converter.register_structure_hook_factory(_is_union, lambda k: _union(k, converter))
    return converter


def _record(kind: type[Any], converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    fields = make_dict_structure_fn(kind, converter, _cattrs_forbid_extra_keys=True)

    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, kind):
            return value
        if isinstance(value, Mapping):
            return fields(value, kind)
        raise _Refused(f"expected a {kind.__name__} or a mapping with its keys")

    return structure


def _sequence(kind: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    args = get_args(kind)
    item = args[0] if args else Any
    items = list_structure_factory(list[item], converter)  # type: ignore[valid-type]
    wanted = tuple if get_origin(kind) is tuple else list

    def structure(value: Any, _: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _Refused("expected a list")
        return wanted(items(value, kind))

    return structure


def _union(kind: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    members = get_args(kind)
    plain = tuple(m for m in members if isinstance(m, type) and get_origin(m) is None)
    records = [m for m in members if attrs.has(m)]

    def structure(value: Any, _: Any) -> Any:
        if value is None and type(None) in members:
            return None
        if isinstance(value, plain) and not isinstance(value, bool):
            return value
        if isinstance(value, Mapping) and len(records) == 1:
            return converter.structure(value, records[0])  # its own faults, with their paths
        for member in members:
            try:
                return converter.structure(value, member)
            except Exception:  # the next member may take it
                continue
        raise _Refused(f"expected {_name(kind)}")

    return structure


_CONVERTER = _make_converter()


def _describe(exc: BaseException, kind: type[Any] | None) -> str:
    """One fault in words, never quoting the value (it may be a secret)."""
    if isinstance(exc, ForbiddenExtraKeysError):
        return f"unknown keys {sorted(exc.extra_fields)}"
    if isinstance(exc, KeyError):
        return "missing"
    if isinstance(exc, (_Refused, PaymentError)):
        return str(exc)
    return f"expected {_name(kind)}" if kind is not None else type(exc).__name__


@overload
def as_input(value: Any, kind: type[T]) -> T: ...
@overload
def as_input(value: Any, kind: Any) -> Any: ...
def as_input(value: Any, kind: Any) -> Any:
    """`value` as a `kind`: the payment steps' and workflows' one input conversion.

    Args:
        value: An instance of `kind`, or a mapping with `kind`'s keys (nested records, lists
            and enums are converted too).
        kind: An attrs class, or a type such as `str` or `list[RefundPaymentInput]`.

    Returns:
        `value` itself when it already is a `kind`, else the converted value.

    Raises:
        InvalidData: unknown or missing keys, or a value of another type; `field` names `kind`
            and `reason` lists each fault with its path (``$.payment_id: missing``).
    """
    try:
        return _CONVERTER.structure(value, kind)
    except Exception as exc:
        faults = cattrs.transform_error(exc, format_exception=_describe)
        reason = "; ".join(_with_path(fault) for fault in faults)
        raise InvalidData(_name(kind), reason) from None


def _with_path(fault: str) -> str:
    message, _, path = fault.rpartition(" @ ")
    return message if path == "$" else f"{path}: {message}"


def accepts_input(
    kind: Any,
) -> Callable[[Callable[[Any, StepContext], R]], Callable[[Any, StepContext], R]]:
    """Make a step function take `kind` or a mapping with its keys, converted when it runs.

    Put it under `@step(...)`. Whatever the step is given (the workflow's input, a `Ref` to a
    step's output, a `transform`, a dict literal holding refs) is resolved by the engine first,
    then converted by `as_input`; a bad value fails the step with `InvalidData` before it does
    anything (a retry policy does not retry it).

    Args:
        kind: What the step function receives (see `as_input`).

    Returns:
        A decorator of `fn(input, ctx)`.
    """

    def decorate(fn: Callable[[Any, StepContext], R]) -> Callable[[Any, StepContext], R]:
        @functools.wraps(fn)
        def converted(inp: Any, ctx: StepContext) -> R:
            return fn(as_input(inp, kind), ctx)

        return converted

    return decorate
