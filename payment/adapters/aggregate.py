"""One query for every row a collection holds: its sessions, payments, captures and refunds.

Loading an aggregate is the store's most frequent read. Four small queries cost four times a
statement's fixed cost (on PostgreSQL, most of a statement's time), so the children come in one
``UNION ALL``: each branch puts its columns in typed slots (text, amount, time, JSON, integer:
the types line up across branches, as PostgreSQL requires) and fills the others with typed
NULLs; the first column says which table a row comes from. The rows are few: Python sorts
them by id (SQLite would build a temporary b-tree per branch for an ORDER BY).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from payment.adapters import tables as t
from payment.adapters.compiled import Sql, TableSql
from payment.adapters.types import Money, UtcDateTime

__all__ = ["ChildrenQuery"]

Rows = Sequence[Sequence[Any]]

_SLOT_TYPES: dict[str, Callable[[], TypeEngine[Any]]] = {
    "text": sa.String,
    "amount": Money,
    "time": UtcDateTime,
    "json": sa.JSON,
    "integer": sa.Integer,
}


def _slot_kind(column: sa.ColumnElement[Any]) -> str:
    kind = column.type
    for name, slot in (("amount", Money), ("time", UtcDateTime), ("json", sa.JSON)):
        if isinstance(kind, slot):
            return name
    if isinstance(kind, sa.Integer):
        return "integer"
    if isinstance(kind, sa.String):
        return "text"
    raise TypeError(f"no slot for column {column} of type {kind}")


def _branches(
    tables: Sequence[TableSql],
) -> list[tuple[list[sa.ColumnElement[Any]], Any, sa.ColumnElement[bool]]]:
    """(columns in record order, FROM, WHERE) of each table, in the order of `KINDS`."""
    s, p, c, r = t.sessions, t.payments, t.captures, t.refunds
    collection_id: sa.BindParameter[str] = sa.bindparam("id")
    sessions, payments, captures, refunds = tables
    of_collection = p.c.payment_collection_id == collection_id

    def columns(table: TableSql) -> list[sa.ColumnElement[Any]]:
        return [table.codec.table.c[name] for name in table.codec.columns]

    return [
        (
            [*columns(sessions), p.c.id],  # the session's payment id, from the join
            s.outerjoin(p, p.c.payment_session_id == s.c.id),
            s.c.payment_collection_id == collection_id,
        ),
        (columns(payments), p, of_collection),
        (columns(captures), c.join(p, p.c.id == c.c.payment_id), of_collection),
        (columns(refunds), r.join(p, p.c.id == r.c.payment_id), of_collection),
    ]


class ChildrenQuery:
    """The sessions, payments, captures and refunds of one collection, in one statement.

    Args:
        tables: The sessions', payments', captures' and refunds' statements and codecs.
        dialect: The engine's dialect.
    """

    KINDS = ("sessions", "payments", "captures", "refunds")
    """The tables, in the order `split` returns their rows."""

    def __init__(self, tables: Sequence[TableSql], dialect: Dialect) -> None:
        branches = _branches(tables)
        placed = [self._place(columns) for columns, _, _ in branches]
        self._slot_kinds = ["table"]  # column 0: the table's number
        offsets = {}
        for kind in _SLOT_TYPES:
            offsets[kind] = len(self._slot_kinds)
            width = max(sum(1 for k, _ in slots if k == kind) for slots in placed)
            self._slot_kinds += [kind] * width
        selects = [
            self._select(number, columns, from_, where, [offsets[k] + i for k, i in slots])
            for number, ((columns, from_, where), slots) in enumerate(
                zip(branches, placed, strict=True)
            )
        ]
        self.sql = Sql(sa.union_all(*selects), dialect, ["id"])
        self._id = itemgetter(offsets["text"])  # every record's first column, its id, is text
        self._pickers = [itemgetter(*(offsets[k] + i for k, i in slots)) for slots in placed]

    @staticmethod
    def _place(columns: list[sa.ColumnElement[Any]]) -> list[tuple[str, int]]:
        """Each column's (slot kind, index among the branch's columns of that kind)."""
        seen: dict[str, int] = {}
        placed = []
        for column in columns:
            kind = _slot_kind(column)
            placed.append((kind, seen.get(kind, 0)))
            seen[kind] = seen.get(kind, 0) + 1
        return placed

    def _select(
        self,
        number: int,
        columns: list[sa.ColumnElement[Any]],
        from_: Any,
        where: sa.ColumnElement[bool],
        positions: list[int],
    ) -> sa.Select[Any]:
        """One branch: its columns at their slots, typed NULLs elsewhere."""
        filled: dict[int, sa.ColumnElement[Any]] = dict(zip(positions, columns, strict=True))
        output: list[sa.ColumnElement[Any]] = [
            sa.literal_column(str(number), sa.Integer).label("k")
        ]
        for position, kind in enumerate(self._slot_kinds[1:], start=1):
            column = filled.get(position)
            if column is None:
                column = sa.cast(sa.null(), _SLOT_TYPES[kind]())
            output.append(column.label(f"s{position}"))
        return sa.select(*output).select_from(from_).where(where)

    def split(self, rows: Rows) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        """The union's rows as (sessions, payments, captures, refunds) rows in record order,
        each in id order."""
        split: tuple[list[Any], list[Any], list[Any], list[Any]] = ([], [], [], [])
        pickers = self._pickers
        for row in sorted(rows, key=self._id):
            number = row[0]
            split[number].append(pickers[number](row))
        return split
