"""The store's SQL, built with SQLAlchemy Core from `payment.adapters.tables` and compiled once.

Executing compiled text on the DBAPI cursor skips SQLAlchemy's per-call work (building and
hashing constructs, cache lookups, parameter and result processing), which cost far more than
the database's own work for these small statements. `RecordCodec` does the type conversions
instead. Queries whose shape depends on their filters (the ``list_*`` reads) are compiled once
per shape and cached.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from payment.adapters import tables as t
from payment.adapters.aggregate import ChildrenQuery
from payment.adapters.compiled import Sql, TableSql, bind
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
from payment.exceptions import InvalidData

__all__ = ["Filters", "Statements"]

Filters = Sequence[tuple[sa.ColumnElement[Any], object]]
"""Equality filters in order, as (column, value); None skips one, a sequence means ``IN``."""

_MAX_SHAPES = 512  # distinct filter shapes kept compiled (IN lists of every length count)


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
        self._uncaptured: dict[tuple[int, bool], Sql] = {}

    def _one(self, query: sa.Select[Any], *names: str) -> Sql:
        return Sql(query, self.dialect, names)

    def _aggregate_reads(self) -> None:
        """One collection's row (locked or not), found by its id or by the id of a session or a
        payment it holds, and every row it holds in one query.

        The lock is on the collection's row only: every write transaction takes it before it
        reads or writes anything the collection holds, so it serializes them all.
        """
        c, s, p = t.collections, t.sessions, t.payments
        by: dict[str, sa.ColumnElement[Any]] = {
            "id": bind("id"),
            "session": sa.select(s.c.payment_collection_id)
            .where(s.c.id == bind("id"))
            .scalar_subquery(),
            "payment": sa.select(p.c.payment_collection_id)
            .where(p.c.id == bind("id"))
            .scalar_subquery(),
        }
        tables = (self.sessions, self.payments, self.captures, self.refunds)
        self.heads: dict[tuple[str, bool], Sql] = {}
        """The collection's row, by (what the id names, lock)."""
        for name, collection_id in by.items():
            head = self.collections.select().where(c.c.id == collection_id)
            self.heads[name, False] = self._one(head, "id")
            self.heads[name, True] = self._one(head.with_for_update(), "id")
        self.children = ChildrenQuery(tables, self.dialect)
        """Every row the collection with that id holds."""

    def _sessions(self) -> sa.Select[Any]:
        s, p = t.sessions, t.payments
        joined = self.sessions.select(p.c.id.label("payment_id"))
        return joined.outerjoin(p, p.c.payment_session_id == s.c.id)

    def _lookups(self) -> None:
        c = t.collections
        self.collection_by_key = self._one(
            self.collections.select().where(c.c.idempotency_key == bind("key")), "key"
        )
        live = c.c.cart_id == bind("cart"), c.c.canceled_at.is_(None)
        self.collection_by_live_cart = self._one(self.collections.select().where(*live), "cart")
        pr, h = t.providers, t.account_holders
        self.provider_enabled = self._one(
            sa.select(pr.c.is_enabled).where(pr.c.id == bind("id")), "id"
        )
        self.provider_states = self._one(self.providers.select().order_by(pr.c.id))
        self.set_provider = Sql(
            pr.update()
            .where(pr.c.id == bind("id"))
            .values(is_enabled=bind("on"))
            .returning(pr.c.id),
            self.dialect,
            ["on", "id"],
        )
        self.holder = self._one(self.holders.select().where(h.c.id == bind("id")), "id")
        customer = h.c.provider_id == bind("provider"), h.c.customer_id == bind("customer")
        self.holder_of = self._one(self.holders.select().where(*customer), "provider", "customer")

    def uncaptured_authorizations(self, providers: int, after: bool) -> Sql:
        """Live payments without any capture row, created before ``before``, at one of
        ``provider0..n``, in id order, ``limit`` at most, after the id ``after`` if `after`.

        Bind parameters, in this order: ``before``, ``provider{i}`` for each provider,
        ``after`` (when `after`), ``limit``, ``offset`` (0). Compiled once per (providers,
        after).
        """
        key = (providers, after)
        found = self._uncaptured.get(key)
        if found is not None:
            return found
        p, c = t.payments.c, t.captures.c
        names = ["before", *(f"provider{i}" for i in range(providers))]
        query = self.payments.select().where(
            p.canceled_at.is_(None),
            p.created_at < bind("before"),
            p.provider_id.in_([bind(name) for name in names[1:]]),
            ~sa.exists().where(c.payment_id == p.id),
        )
        if after:
            query = query.where(p.id > bind("after"))
            names.append("after")
        # both bound: SQLite's compiler adds an OFFSET parameter of its own to a lone LIMIT
        query = query.order_by(p.id).limit(bind("limit")).offset(bind("offset"))
        compiled = Sql(query, self.dialect, [*names, "limit", "offset"])
        self._uncaptured[key] = compiled  # a race compiles it twice, harmlessly
        return compiled

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
        paging = self._paging(limit, offset)
        values: list[Any] = []
        shape: list[Any] = [kind, paging is not None]
        for column, value in filters:
            if isinstance(value, Sequence) and not isinstance(value, str):
                items = [_filter_value(column, item) for item in value]
                values.extend(items)
                shape.append((column.key, len(items)))
            elif value is not None:
                values.append(_filter_value(column, value))
                shape.append((column.key, None))
        if any(length == 0 for _, length in shape[2:]):  # an empty id list matches nothing
            shape, values = [kind, "nothing"], []
        elif paging is not None:
            values.extend(paging)
        key = tuple(shape)
        found = self._shapes.get(key)
        if found is None:
            found = self._compile_shape(key, self.bases[kind], filters, len(values))
        return found, values

    def _paging(self, limit: Any, offset: Any) -> tuple[Any, int] | None:
        """The (limit, offset) values of a paged query, or None when it is not paged.

        The cache key and the values come from this one answer, so no argument can make
        them disagree. Both are bound whenever either is given (SQLite's compiler otherwise
        adds a literal of its own); "no limit" is -1 on SQLite and NULL on PostgreSQL.

        Raises:
            InvalidData: a limit or offset that is not an int from 0 to 2**63 - 1.
        """
        if limit is None and type(offset) is int and offset == 0:
            return None
        if limit is not None:
            _check_count("limit", limit)
        _check_count("offset", offset)
        if limit is None:
            limit = -1 if self.dialect.name == "sqlite" else None
        return limit, offset

    def _compile_shape(
        self, key: tuple[Any, ...], base: sa.Select[Any], filters: Filters, count: int
    ) -> Sql:
        names = iter([f"p{i}" for i in range(count)])
        query = base
        if key[1] == "nothing":
            query = query.where(sa.false())
            filters = []
        for column, value in filters:
            if isinstance(value, Sequence) and not isinstance(value, str):
                query = query.where(column.in_([bind(next(names)) for _ in value]))
            elif value is not None:
                query = query.where(column == bind(next(names)))
        if key[1] is True:
            query = query.limit(bind(next(names))).offset(bind(next(names)))
        compiled = Sql(query, self.dialect, [f"p{i}" for i in range(count)])
        with self._shapes_lock:
            if len(self._shapes) >= _MAX_SHAPES:
                self._shapes.clear()
            self._shapes[key] = compiled
        return compiled


_MAX_COUNT = 2**63 - 1


def _check_count(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_COUNT:
        raise InvalidData(name, "expected an int from 0 to 2**63 - 1")


def _filter_value(column: Any, value: Any) -> str:
    """A filter value as the columns hold them: a string, without NUL characters.

    Raises:
        InvalidData: another type (the column's name is the field), or a NUL character.
    """
    if not isinstance(value, str):
        raise InvalidData(column.key, f"expected a string, not {type(value).__name__}")
    if "\x00" in value:
        raise InvalidData(column.key, "contains a NUL character")
    return value
