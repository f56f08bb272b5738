"""A statement compiled once for a dialect, and a table's codec with its write statements."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from payment.adapters.rows import RecordCodec
from payment.exceptions import InvalidData

__all__ = ["Sql", "TableSql", "bind"]


class Sql:
    """One statement compiled for a dialect; `args` lays out its parameters for the DBAPI.

    Args:
        statement: A Core construct whose bind parameters are exactly `names`.
        dialect: The engine's dialect.
        names: The bind parameter names, in the order `args` receives their values.
    """

    __slots__ = ("args", "text")

    def __init__(self, statement: Any, dialect: Dialect, names: Sequence[str]) -> None:
        compiled = statement.compile(dialect=dialect)
        self.text = str(compiled)
        self.args = _layout(list(names), compiled.positiontup, positional=dialect.positional)


def _layout(
    names: list[str], order: list[str] | None, *, positional: bool
) -> Callable[[Sequence[Any]], Any]:
    """Values in `names` order → the DBAPI's parameters (a name may occur several times)."""
    if not positional:
        return lambda values: dict(zip(names, values, strict=True))
    if set(order or []) != set(names):
        raise ValueError(f"bind parameters {order} are not {names}")
    if order == names:
        return tuple
    picks = [names.index(name) for name in order or []]
    if len(picks) == 1:
        return lambda values: (values[picks[0]],)
    pick = itemgetter(*picks)
    return lambda values: pick(values)


def bind(name: str) -> sa.BindParameter[Any]:
    """A bind parameter (the compiled statement's parameters are named)."""
    return sa.bindparam(name)


class TableSql:
    """A table's codec with its INSERT, DELETE-by-id and UPDATE-by-id statements.

    An UPDATE sets only the columns that changed: one statement per set of changed columns,
    compiled when first needed (a capture changes its state, a payment its capture time).

    Args:
        codec: The table and its record type.
        dialect: The engine's dialect.
    """

    def __init__(self, codec: RecordCodec, dialect: Dialect) -> None:
        table, columns = codec.table, codec.columns
        self.codec = codec
        self._dialect = dialect
        self.insert = Sql(table.insert().values({c: bind(c) for c in columns}), dialect, columns)
        self.delete = Sql(table.delete().where(table.c.id == bind("row_id")), dialect, ["row_id"])
        self._updates: dict[tuple[int, ...], Sql] = {}
        self._strings = string_limits(table, columns)

    def insert_args(self, record: Any) -> Any:
        """The INSERT parameters of a record (its strings checked against the columns first).

        Raises:
            InvalidData: a string longer than its column, or holding a NUL character.
        """
        values = self.codec.encode(record)
        for index, name, length in self._strings:
            check_string(name, values[index], length)
        return self.insert.args(values)

    def update(self, old: Any, new: Any) -> tuple[Sql, Any] | None:
        """The UPDATE of the columns that differ between two versions of a row, if any.

        Returns:
            The statement and its parameters, or None when no column changed.
        """
        before, after = self.codec.values(old), self.codec.values(new)
        changed = tuple(
            i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a is not b and a != b
        )
        if not changed:
            return None
        statement = self._updates.get(changed) or self._compile_update(changed)
        encode = self.codec.encode_at
        values = [encode(i, after[i]) for i in changed]
        for index, name, length in self._strings:
            if index in changed:
                check_string(name, values[changed.index(index)], length)
        return statement, statement.args((*values, after[0]))

    def _compile_update(self, changed: tuple[int, ...]) -> Sql:
        table, names = self.codec.table, [self.codec.columns[i] for i in changed]
        update = table.update().where(table.c.id == bind("row_id"))
        statement = Sql(
            update.values({n: bind(n) for n in names}), self._dialect, [*names, "row_id"]
        )
        self._updates[changed] = statement  # a race compiles it twice, harmlessly
        return statement

    def select(self, *extra: sa.ColumnElement[Any]) -> sa.Select[Any]:
        """``SELECT`` of the record's columns in field order, then `extra` ones."""
        table = self.codec.table
        return sa.select(*(table.c[name] for name in self.codec.columns), *extra)


def string_limits(table: sa.Table, columns: Sequence[str]) -> list[tuple[int, str, int | None]]:
    """(index, name, length) of the string columns among `columns`, from the table definition."""
    found = []
    for i, name in enumerate(columns):
        kind = table.c[name].type
        if isinstance(kind, sa.String):
            found.append((i, name, kind.length))
    return found


def check_string(name: str, value: Any, length: int | None) -> None:
    """Refuse what the database would: a string over its column's length, or with a NUL.

    Raises:
        InvalidData: naming the column.
    """
    if not isinstance(value, str):
        return
    if length is not None and len(value) > length:
        raise InvalidData(name, f"longer than {length} characters")
    if "\x00" in value:
        raise InvalidData(name, "contains a NUL character")
