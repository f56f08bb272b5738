"""Rows ↔ domain records for the DBAPI path: each column's value as the database stores it.

The storage formats are the ones `payment.adapters.types` and SQLAlchemy's ``JSON`` use, so
rows written here and rows written through SQLAlchemy read back the same: amounts as decimal
text on SQLite (``NUMERIC`` on PostgreSQL), times as naive UTC text on SQLite (``timestamptz``
on PostgreSQL), JSON as its text. Values read back were checked on their way in: amounts are
already quantized and JSON is frozen without being validated again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from operator import attrgetter
from typing import Any

import attrs
import sqlalchemy as sa

from payment.adapters.types import Money, UtcDateTime
from payment.domain import FrozenJson, freeze_json
from payment.domain._json import EMPTY_JSON

__all__ = ["RecordCodec", "frozen_json_from_text"]

Convert = Callable[[Any], Any]


def frozen_json_from_text(text: str) -> FrozenJson:
    """Parse stored JSON straight into `FrozenJson` (arrays still need a freezing walk)."""
    if text == "{}":
        return EMPTY_JSON
    if "[" in text:  # arrays become tuples only through the full walk
        return freeze_json(json.loads(text))
    parsed: FrozenJson = json.loads(text, object_hook=FrozenJson)
    return parsed


class _ParsedJson:
    """Parses stored JSON once per text: loads read the same rows again and again, and the
    result is immutable, so one object can serve every load of that text."""

    def __init__(self, size: int = 1024) -> None:
        self._parsed: dict[str, FrozenJson] = {}
        self._size = size

    def __call__(self, text: str) -> FrozenJson:
        found = self._parsed.get(text)
        if found is None:
            found = frozen_json_from_text(text)
            if len(self._parsed) >= self._size:
                self._parsed.clear()
            self._parsed[text] = found
        return found


def _frozen_json_from_object(value: dict[str, Any]) -> FrozenJson:
    """Freeze JSON the driver already parsed (PostgreSQL's psycopg does)."""
    if not value:
        return EMPTY_JSON
    if any(isinstance(item, dict | list) for item in value.values()):
        return freeze_json(value)
    return FrozenJson(value)


def _json_encoder() -> Convert:
    """JSON text of a `FrozenJson`: nested ones become objects, tuples arrays (no thawing)."""
    return json.JSONEncoder(default=dict).encode


def _sqlite_time(value: datetime | None) -> str | None:
    """SQLAlchemy's SQLite DATETIME text (always with microseconds) of the UTC time."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not stored: give a timezone")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:-6]  # without its "+00:00"


def _sqlite_time_from_text(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text + "+00:00")


def _aware_time(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("naive datetimes are not stored: give a timezone")
    return value


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _optional(convert: Convert) -> Convert:
    return lambda value: None if value is None else convert(value)


# (encode, decode) per column type and dialect, made per column; None: the value passes as is.
_SQLITE: dict[type, Callable[[], tuple[Convert | None, Convert | None]]] = {
    Money: lambda: (_optional(str), _optional(Decimal)),
    UtcDateTime: lambda: (_sqlite_time, _sqlite_time_from_text),
    sa.JSON: lambda: (_json_encoder(), _ParsedJson()),
    sa.Boolean: lambda: (None, _optional(bool)),
}
_POSTGRES: dict[type, Callable[[], tuple[Convert | None, Convert | None]]] = {
    UtcDateTime: lambda: (_aware_time, _utc),
    sa.JSON: lambda: (_json_encoder(), _frozen_json_from_object),
}


def _enum_value(value: Any) -> Any:
    if type(value) is str or not isinstance(value, Enum):
        return value
    return value.value


def _converters(
    table: sa.Table, names: Sequence[str], dialect: str
) -> tuple[list[Convert | None], list[tuple[int, Convert]]]:
    """Each column's encoder (None: unchanged), and the (index, decode) pairs that convert."""
    by_type = _SQLITE if dialect == "sqlite" else _POSTGRES
    encoders: list[Convert | None] = []
    decoders: list[tuple[int, Convert]] = []
    for index, name in enumerate(names):
        make = by_type.get(type(table.c[name].type))
        encode, decode = (None, None) if make is None else make()
        if isinstance(table.c[name].type, sa.String):
            encode = _enum_value  # statuses and states are StrEnums: store their plain value
        encoders.append(encode)
        if decode is not None:
            decoders.append((index, decode))
    return encoders, decoders


class RecordCodec:
    """Maps one table's rows to one attrs record class and back, for one dialect.

    `columns` are the record's fields that the table stores, in the record's field order: a
    row selected in that order (plus `extra` trailing values, such as a joined payment id)
    builds the record positionally.

    Args:
        table: The table.
        record: The attrs class; its fields that are columns must come first.
        dialect: ``"sqlite"`` or ``"postgresql"``.
        extra: Trailing fields that come from joins, not from the table.
    """

    def __init__(
        self, table: sa.Table, record: type[Any], dialect: str, extra: Sequence[str] = ()
    ) -> None:
        fields = [f.name for f in attrs.fields(record)]
        self.columns = tuple(name for name in fields if name in table.c)
        if tuple(fields[: len(self.columns)]) != self.columns or set(self.columns) != set(
            table.c.keys()
        ):
            raise TypeError(f"{record.__name__}'s first fields must be {table.name}'s columns")
        self.table = table
        self.record = record
        self.extra = tuple(extra)
        self._values = attrgetter(*self.columns)
        self._encoders, self._decoders = _converters(table, self.columns, dialect)
        self._encoding = [(i, f) for i, f in enumerate(self._encoders) if f is not None]

    def values(self, record: Any) -> tuple[Any, ...]:
        """The record's column values as they are in the domain (for comparisons)."""
        values: tuple[Any, ...] = self._values(record)
        return values

    def encode(self, record: Any) -> list[Any]:
        """The record's column values as the database stores them, in `columns` order."""
        values = list(self._values(record))
        for index, encode in self._encoding:
            values[index] = encode(values[index])
        return values

    def encode_at(self, index: int, value: Any) -> Any:
        """One column's value (by its index in `columns`) as the database stores it."""
        encode = self._encoders[index]
        return value if encode is None else encode(value)

    def decode(self, row: Sequence[Any], **relations: Any) -> Any:
        """Build the record from a row (`columns` then `extra`), with its relations."""
        values = list(row)
        for index, decode in self._decoders:
            values[index] = decode(values[index])
        return self.record(*values, **relations)
