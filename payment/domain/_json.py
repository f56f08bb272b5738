"""Immutable JSON objects for the data, context and metadata fields of the domain records."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from payment.exceptions import InvalidData

__all__ = [
    "EMPTY_JSON",
    "FrozenJson",
    "freeze_context",
    "freeze_data",
    "freeze_json",
    "freeze_metadata",
    "thaw_json",
]

_MAX_DEPTH = 32


class FrozenJson(Mapping[str, Any]):
    """A read-only JSON object: nested objects are `FrozenJson`, arrays are tuples.

    It compares equal to a `dict` with the same content. Use `thaw_json` for a mutable copy.
    """

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, Any]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"FrozenJson({self._items!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenJson):  # the common case, without Mapping's two dict copies
            return self is other or self._items == other._items
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))


EMPTY_JSON = FrozenJson({})
"""The empty JSON object (immutable, so one instance serves every default)."""


def _freeze(value: object, field: str, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise InvalidData(field, f"nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidData(field, "holds a number that is not finite")
        return value
    if isinstance(value, Mapping):
        return _freeze_mapping(value, field, depth)
    if isinstance(value, list | tuple):
        return tuple(_freeze(item, field, depth + 1) for item in value)
    raise InvalidData(field, f"holds a {type(value).__name__}, which JSON cannot store")


def _freeze_mapping(value: Mapping[Any, Any], field: str, depth: int) -> FrozenJson:
    if type(value) is FrozenJson:
        return value
    items: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise InvalidData(field, "has a key that is not a string")
        items[key] = _freeze(item, field, depth + 1)
    return FrozenJson(items)


def freeze_json(value: object, field: str = "data") -> FrozenJson:
    """Check that `value` is a JSON object and return an immutable deep copy of it.

    Args:
        value: A mapping with string keys and JSON values, or None (an empty object).
        field: The argument name shown in the error.

    Raises:
        InvalidData: not a mapping, or it holds something JSON cannot store.
    """
    if type(value) is FrozenJson:  # already frozen (and checked): the records' usual case
        return value
    if value is None:
        return FrozenJson({})
    if not isinstance(value, Mapping):
        raise InvalidData(field, f"must be a JSON object, not {type(value).__name__}")
    return _freeze_mapping(value, field, 0)


def freeze_data(value: object) -> FrozenJson:
    """The attrs converter of ``data`` fields (see `freeze_json`)."""
    return freeze_json(value, "data")


def freeze_context(value: object) -> FrozenJson:
    """The attrs converter of ``context`` fields (see `freeze_json`)."""
    return freeze_json(value, "context")


def freeze_metadata(value: object) -> FrozenJson:
    """The attrs converter of ``metadata`` fields (see `freeze_json`)."""
    return freeze_json(value, "metadata")


def thaw_json(value: Any) -> Any:
    """Return a mutable deep copy (dicts and lists) of a frozen JSON value, for storage."""
    if isinstance(value, Mapping):
        return {key: thaw_json(item) for key, item in value.items()}
    if isinstance(value, tuple | list):
        return [thaw_json(item) for item in value]
    return value
