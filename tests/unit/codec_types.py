"""Importable classes for the codec tests."""

from __future__ import annotations

import dataclasses
import enum
from decimal import Decimal
from typing import Any

import attrs


class Color(enum.Enum):
    """A plain enum."""

    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    """An int enum."""

    LOW = 1
    HIGH = 2


@attrs.frozen
class Money:
    """An attrs class with a private attribute (attrs strips the underscore in __init__)."""

    amount: Decimal
    currency: str
    _note: str = "n/a"


@attrs.define
class Basket:
    """A mutable attrs class holding nested values in an untyped field."""

    items: list[Money]
    extra: Any = None
    tags: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class Shipment:
    """A dataclass with keyword-only and defaulted fields."""

    basket: Basket
    color: Color
    level: Level = Level.LOW
    dims: tuple[int, int] = (1, 2)
