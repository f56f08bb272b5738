"""The store's SQL, built with SQLAlchemy Core from `payment.adapters.tables` and compiled once.

Executing compiled text on the DBAPI cursor skips SQLAlchemy's per-call work (building and
hashing constructs, cache lookups, parameter and result processing), which cost far more than
the database's own work for these small statements. `RecordCodec` does the type conversions
instead. Queries whose shape depends on their filters (the ``list_*`` reads) are compiled once
per shape and cached.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from payment.adapters import tables as t
from payment.adapters.rows import RecordCodec
from payment.domain import (
    AccountHolder,
    Capture,
    Payment,
    PaymentCollection,
    PaymentProviderInfo,
    PaymentSession,
    Refund,
    RefundReason,
)

__all__ = ["Filters", "Sql", "Statements", "TableSql"]

Filters = Sequence[tuple[sa.ColumnElement[Any], object]]
"""Equality filters in order, as (column, value); None skips one, a sequence means ``IN``."""

_MAX_SHAPES = 512  # distinct filter shapes kept compiled (IN lists of every length count)


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
    if not positional:
        return lambda values: dict(zip(names, values, strict=True))
    if sorted(order or []) != sorted(names):
        raise ValueError(f"bind parameters {order} are not {names}")
    if order == names:
        return tuple
    picks = [names.index(name) for name in order or []]
    if len(picks) == 1:
        return lambda values: (values[picks[0]],)
    pick = itemgetter(*picks)
    return lambda values: pick(values)


def _bind(name: str) -> sa.BindParameter[Any]:
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
        self.insert = Sql(table.insert().values({c: _bind(c) for c in columns}), dialect, columns)
        self.delete = Sql(table.delete().where(table.c.id == _bind("row_id")), dialect, ["row_id"])
        self._updates: dict[tuple[int, ...], Sql] = {}

    def insert_args(self, record: Any) -> Any:
        """The INSERT parameters of a record."""
        return self.insert.args(self.codec.encode(record))

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
        return statement, statement.args((*(encode(i, after[i]) for i in changed), after[0]))

    def _compile_update(self, changed: tuple[int, ...]) -> Sql:
        table, names = self.codec.table, [self.codec.columns[i] for i in changed]
        update = table.update().where(table.c.id == _bind("row_id"))
        statement = Sql(
            update.values({n: _bind(n) for n in names}), self._dialect, [*names, "row_id"]
        )
        self._updates[changed] = statement  # a race compiles it twice, harmlessly
        return statement

    def select(self, *extra: sa.ColumnElement[Any]) -> sa.Select[Any]:
        """``SELECT`` of the record's columns in field order, then `extra` ones."""
        table = self.codec.table
        return sa.select(*(table.c[name] for name in self.codec.columns), *extra)


class Statements:
    """Every statement the store runs, compiled for one engine's dialect.

    Args:
        dialect: The engine's dialect (``sqlite`` or ``postgresql``).
    """

    def __init__(self, dialect: Dialect) -> None:
        name = dialect.name
        self.dialect = dialect
        self.collections = TableSql(RecordCodec(t.collections, PaymentCollection, name), dialect)
        self.sessions = TableSql(
            RecordCodec(t.sessions, PaymentSession, name, extra=["payment_id"]), dialect
        )
        self.payments = TableSql(RecordCodec(t.payments, Payment, name), dialect)
        self.captures = TableSql(RecordCodec(t.captures, Capture, name), dialect)
        self.refunds = TableSql(RecordCodec(t.refunds, Refund, name), dialect)
        self.refund_reasons = TableSql(RecordCodec(t.refund_reasons, RefundReason, name), dialect)
        self.holders = TableSql(RecordCodec(t.account_holders, AccountHolder, name), dialect)
        self.providers = TableSql(RecordCodec(t.providers, PaymentProviderInfo, name), dialect)
        self._aggregate_reads()
        self._lookups()
        self.bases = {
            "collections": self.collections.select().order_by(t.collections.c.id),
            "sessions": self._sessions().order_by(t.sessions.c.id),
            "payments": self.payments.select().order_by(t.payments.c.id),
            "captures": self.captures.select().order_by(t.captures.c.id),
            "refunds": self.refunds.select().order_by(t.refunds.c.id),
            "refund_reasons": self.refund_reasons.select().order_by(t.refund_reasons.c.id),
        }
        """The filterable queries of `shaped`, in id order (oldest first: ids sort by time)."""
        self._shapes: dict[tuple[Any, ...], Sql] = {}
        self._shapes_lock = threading.Lock()

    def _one(self, query: sa.Select[Any], *names: str) -> Sql:
        return Sql(query, self.dialect, names)

    def _aggregate_reads(self) -> None:
        """One collection, and its sessions, payments, captures and refunds (locked or not)."""
        c, s, p = t.collections, t.sessions, t.payments
        collection = self.collections.select().where(c.c.id == _bind("id"))
        self.collection = self._one(collection, "id")
        self.collection_locked = self._one(collection.with_for_update(), "id")
        sessions = self._sessions().where(s.c.payment_collection_id == _bind("id"))
        self.sessions_of = self._one(sessions.order_by(s.c.id), "id")
        payments = self.payments.select().where(p.c.payment_collection_id == _bind("id"))
        self.payments_of = self._one(payments.order_by(p.c.id), "id")
        self.payments_of_locked = self._one(payments.order_by(p.c.id).with_for_update(), "id")
        self.captures_of = self._one(self._of_collection(self.captures, t.captures), "id")
        self.refunds_of = self._one(self._of_collection(self.refunds, t.refunds), "id")
        self.aggregate = (
            self.collection, self.sessions_of, self.payments_of, self.captures_of, self.refunds_of
        )  # fmt: skip
        """What loads an aggregate: its collection, sessions, payments, captures, refunds."""
        self.aggregate_locked = (
            self.collection_locked, self.sessions_of, self.payments_of_locked, self.captures_of,
            self.refunds_of,
        )  # fmt: skip
        """The same, locking the collection's row and its payments' rows (the lock first)."""

    def _of_collection(self, movements: TableSql, table: sa.Table) -> sa.Select[Any]:
        """Captures or refunds of every payment of a collection (no list of payment ids)."""
        p = t.payments
        joined = movements.select().join(p, p.c.id == table.c.payment_id)
        return joined.where(p.c.payment_collection_id == _bind("id")).order_by(table.c.id)

    def _sessions(self) -> sa.Select[Any]:
        s, p = t.sessions, t.payments
        joined = self.sessions.select(p.c.id.label("payment_id"))
        return joined.outerjoin(p, p.c.payment_session_id == s.c.id)

    def _lookups(self) -> None:
        c, s, p = t.collections, t.sessions, t.payments
        self.collection_id_of_session = self._one(
            sa.select(s.c.payment_collection_id).where(s.c.id == _bind("id")), "id"
        )
        self.collection_id_of_payment = self._one(
            sa.select(p.c.payment_collection_id).where(p.c.id == _bind("id")), "id"
        )
        self.collection_by_key = self._one(
            self.collections.select().where(c.c.idempotency_key == _bind("key")), "key"
        )
        live = c.c.cart_id == _bind("cart"), c.c.canceled_at.is_(None)
        self.collection_by_live_cart = self._one(self.collections.select().where(*live), "cart")
        pr, h = t.providers, t.account_holders
        self.provider_enabled = self._one(
            sa.select(pr.c.is_enabled).where(pr.c.id == _bind("id")), "id"
        )
        self.provider_states = self._one(self.providers.select().order_by(pr.c.id))
        self.set_provider = Sql(
            pr.update()
            .where(pr.c.id == _bind("id"))
            .values(is_enabled=_bind("on"))
            .returning(pr.c.id),
            self.dialect,
            ["on", "id"],
        )
        self.holder = self._one(self.holders.select().where(h.c.id == _bind("id")), "id")
        customer = h.c.provider_id == _bind("provider"), h.c.customer_id == _bind("customer")
        self.holder_of = self._one(self.holders.select().where(*customer), "provider", "customer")

    def shaped(
        self,
        kind: str,
        filters: Filters,
        *,
        limit: int | None = None,
        offset: int = 0,
    ) -> tuple[Sql, list[Any]]:
        """`base` with a WHERE made of the given filters, compiled once per shape.

        Args:
            kind: The query without filters: a key of `bases`.
            filters: (column, value) pairs; None values are skipped, sequences mean ``IN``.
            limit: At most this many rows.
            offset: Skip this many rows first.

        Returns:
            The compiled query and its parameter values, in order.
        """
        values: list[Any] = []
        shape: list[Any] = [kind, limit is not None, offset > 0]
        for column, value in filters:
            if isinstance(value, Sequence) and not isinstance(value, str):
                values.extend(value)
                shape.append((column.key, len(value)))
            elif value is not None:
                values.append(value)
                shape.append((column.key, None))
        values += [v for v in (limit, offset or None) if v is not None]
        key = tuple(shape)
        found = self._shapes.get(key)
        if found is None:
            found = self._compile_shape(key, self.bases[kind], filters, len(values))
        return found, values

    def _compile_shape(
        self, key: tuple[Any, ...], base: sa.Select[Any], filters: Filters, count: int
    ) -> Sql:
        names = iter([f"p{i}" for i in range(count)])
        query = base
        for column, value in filters:
            if isinstance(value, Sequence) and not isinstance(value, str):
                query = query.where(column.in_([_bind(next(names)) for _ in value]))
            elif value is not None:
                query = query.where(column == _bind(next(names)))
        if key[1]:
            query = query.limit(_bind(next(names)))
        if key[2]:
            query = query.offset(_bind(next(names)))
        compiled = Sql(query, self.dialect, [f"p{i}" for i in range(count)])
        with self._shapes_lock:
            if len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()
            self._shapes[key] = compiled
        return compiled
