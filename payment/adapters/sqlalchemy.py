"""The SQL store: transactions over SQLAlchemy Core, rows mapped to domain records by name.

Aggregates are saved by difference: `save_collection(before, after)` inserts, updates and
deletes exactly the rows whose records changed (parents first, deletions children first).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from payment.adapters import tables as t
from payment.adapters.engine import WRITE_OPTION, is_sqlite
from payment.domain import (
    AccountHolder,
    Capture,
    CollectionStatus,
    FrozenJson,
    Payment,
    PaymentCollection,
    PaymentProviderInfo,
    PaymentSession,
    Refund,
    RefundReason,
    SessionStatus,
    thaw_json,
)
from payment.repository import DuplicateKey

__all__ = ["SqlPaymentRepository", "SqlPaymentStore"]

_UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE


def _is_unique_violation(error: IntegrityError) -> bool:
    orig = error.orig
    return getattr(orig, "sqlstate", None) == _UNIQUE_VIOLATION or "UNIQUE constraint" in str(orig)


def _column_value(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, FrozenJson):
        return thaw_json(value)
    return value


def _row(record: object, table: sa.Table) -> dict[str, object]:
    return {c.name: _column_value(getattr(record, c.name)) for c in table.columns}


def _where(table: sa.Table, **filters: object) -> list[sa.ColumnElement[bool]]:
    """Equality filters, skipping None; a sequence value means ``IN``."""
    clauses: list[sa.ColumnElement[bool]] = []
    for name, value in filters.items():
        if value is None:
            continue
        column = table.c[name]
        if isinstance(value, Sequence) and not isinstance(value, str):
            clauses.append(column.in_(list(value)))
        else:
            clauses.append(column == _column_value(value))
    return clauses


def _group(records: Iterable[Any], key: str) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        grouped[getattr(record, key)].append(record)
    return grouped


def _capture(row: sa.Row[Any]) -> Capture:
    return Capture(**row._mapping)


def _refund(row: sa.Row[Any]) -> Refund:
    return Refund(**row._mapping)


def _captures_of(c: PaymentCollection) -> list[Capture]:
    return [capture for p in c.payments for capture in p.captures]


def _refunds_of(c: PaymentCollection) -> list[Refund]:
    return [refund for p in c.payments for refund in p.refunds]


# Parents before children: inserts and updates run in this order, deletes in reverse.
_LEVELS: tuple[tuple[sa.Table, Callable[[PaymentCollection], Iterable[Any]]], ...] = (
    (t.collections, lambda c: (c,)),
    (t.sessions, lambda c: c.sessions),
    (t.payments, lambda c: c.payments),
    (t.captures, _captures_of),
    (t.refunds, _refunds_of),
)


def _in(column: sa.Column[Any]) -> sa.ColumnElement[bool]:
    return column.in_(sa.bindparam("ids", expanding=True))


# The statements of the hot path (loading an aggregate), built once: SQLAlchemy still caches
# their compiled form, but building and hashing a new construct per call costs more.
_SESSIONS = (
    sa.select(t.sessions, t.payments.c.id.label("payment_id"))
    .outerjoin(t.payments, t.payments.c.payment_session_id == t.sessions.c.id)
    .order_by(t.sessions.c.id)
)
_COLLECTION = sa.select(t.collections).where(t.collections.c.id == sa.bindparam("id"))
_SESSIONS_OF = _SESSIONS.where(_in(t.sessions.c.payment_collection_id))
_PAYMENTS_OF = sa.select(t.payments).where(_in(t.payments.c.payment_collection_id))
_CAPTURES_OF = sa.select(t.captures).where(_in(t.captures.c.payment_id)).order_by(t.captures.c.id)
_REFUNDS_OF = sa.select(t.refunds).where(_in(t.refunds.c.payment_id)).order_by(t.refunds.c.id)
_LOCKED = {
    False: (_COLLECTION, _PAYMENTS_OF.order_by(t.payments.c.id)),
    True: (_COLLECTION.with_for_update(), _PAYMENTS_OF.order_by(t.payments.c.id).with_for_update()),
}
_COLLECTION_OF = {
    "session": sa.select(t.sessions.c.payment_collection_id).where(
        t.sessions.c.id == sa.bindparam("id")
    ),
    "payment": sa.select(t.payments.c.payment_collection_id).where(
        t.payments.c.id == sa.bindparam("id")
    ),
}


class SqlPaymentRepository:
    """The reads and writes of one transaction (see `payment.repository.PaymentRepository`).

    Args:
        connection: A connection inside an open transaction.
    """

    def __init__(self, connection: Connection) -> None:
        self._conn = connection

    def _rows(
        self, query: sa.Select[Any], parameters: dict[str, Any] | None = None
    ) -> Sequence[sa.Row[Any]]:
        return self._conn.execute(query, parameters).all()

    def load_collection(
        self, collection_id: str, *, lock: bool = False
    ) -> PaymentCollection | None:
        """The collection with its sessions and payments; `lock` takes its row locks."""
        rows = self._rows(_LOCKED[lock][0], {"id": collection_id})
        found = self._assemble(rows, lock=lock)
        return found[0] if found else None

    def _assemble(
        self, rows: Sequence[sa.Row[Any]], *, lock: bool = False
    ) -> list[PaymentCollection]:
        ids = [row.id for row in rows]
        if not ids:
            return []
        session_rows = self._rows(_SESSIONS_OF, {"ids": ids})
        sessions = _group(
            (PaymentSession(**r._mapping) for r in session_rows), "payment_collection_id"
        )
        payment_rows = self._rows(_LOCKED[lock][1], {"ids": ids})
        payments = _group(self._with_children(payment_rows), "payment_collection_id")
        return [
            PaymentCollection(
                **row._mapping,
                sessions=tuple(sessions.get(row.id, ())),
                payments=tuple(payments.get(row.id, ())),
            )
            for row in rows
        ]

    def collection_id_of(
        self, *, session_id: str | None = None, payment_id: str | None = None
    ) -> str | None:
        """The id of the collection holding a session or a payment."""
        kind, wanted = (
            ("session", session_id) if session_id is not None else ("payment", payment_id)
        )
        result = self._conn.execute(_COLLECTION_OF[kind], {"id": wanted})
        return result.scalar_one_or_none()

    def find_collection(
        self, *, idempotency_key: str | None = None, live_cart_id: str | None = None
    ) -> PaymentCollection | None:
        """The collection made with this key, or the cart's collection that is not canceled."""
        query = sa.select(t.collections)
        if idempotency_key is not None:
            query = query.where(t.collections.c.idempotency_key == idempotency_key)
        if live_cart_id is not None:
            query = query.where(
                t.collections.c.cart_id == live_cart_id, t.collections.c.canceled_at.is_(None)
            )
        found = self._assemble(self._rows(query.limit(1)))
        return found[0] if found else None

    def list_collections(
        self,
        *,
        ids: Sequence[str] | None = None,
        status: CollectionStatus | None = None,
        cart_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[PaymentCollection]:
        """Collections matching every filter, oldest first."""
        clauses = _where(t.collections, id=ids, status=status, cart_id=cart_id)
        query = sa.select(t.collections).where(*clauses).order_by(t.collections.c.id)
        return self._assemble(self._rows(query.limit(limit).offset(offset)))

    def list_sessions(
        self,
        *,
        ids: Sequence[str] | None = None,
        collection_id: str | Sequence[str] | None = None,
        provider_id: str | None = None,
        status: SessionStatus | None = None,
    ) -> list[PaymentSession]:
        """Sessions matching every filter, oldest first, each with its payment's id."""
        clauses = _where(
            t.sessions,
            id=ids,
            payment_collection_id=collection_id,
            provider_id=provider_id,
            status=status,
        )
        return [PaymentSession(**row._mapping) for row in self._rows(_SESSIONS.where(*clauses))]

    def list_payments(
        self,
        *,
        ids: Sequence[str] | None = None,
        collection_id: str | None = None,
        session_id: str | None = None,
        provider_id: str | None = None,
    ) -> list[Payment]:
        """Payments with their captures and refunds, matching every filter, oldest first."""
        clauses = _where(
            t.payments,
            id=ids,
            payment_collection_id=collection_id,
            payment_session_id=session_id,
            provider_id=provider_id,
        )
        query = sa.select(t.payments).where(*clauses).order_by(t.payments.c.id)
        return self._with_children(self._rows(query))

    def _with_children(self, rows: Sequence[sa.Row[Any]]) -> list[Payment]:
        """Payments from their rows, with their captures and refunds."""
        ids = [row.id for row in rows]
        if not ids:
            return []
        captures = _group(map(_capture, self._rows(_CAPTURES_OF, {"ids": ids})), "payment_id")
        refunds = _group(map(_refund, self._rows(_REFUNDS_OF, {"ids": ids})), "payment_id")
        return [
            Payment(
                **row._mapping,
                captures=tuple(captures.get(row.id, ())),
                refunds=tuple(refunds.get(row.id, ())),
            )
            for row in rows
        ]

    def _records(self, table: sa.Table, kind: Callable[..., Any], **filters: object) -> list[Any]:
        query = sa.select(table).where(*_where(table, **filters)).order_by(table.c.id)
        return [kind(**row._mapping) for row in self._rows(query)]

    def save_collection(
        self, before: PaymentCollection | None, after: PaymentCollection | None
    ) -> None:
        """Insert, update and delete the rows that differ between two versions."""
        removals: list[tuple[sa.Table, list[str]]] = []
        for table, records_of in _LEVELS:
            old = {r.id: r for r in records_of(before)} if before is not None else {}
            new = {r.id: r for r in records_of(after)} if after is not None else {}
            self._write_level(table, old, new)
            removals.append((table, [key for key in old if key not in new]))
        for table, ids in reversed(removals):
            if ids:
                self._conn.execute(sa.delete(table).where(table.c.id.in_(ids)))

    def _write_level(self, table: sa.Table, old: dict[str, Any], new: dict[str, Any]) -> None:
        inserts = [_row(r, table) for key, r in new.items() if key not in old]
        updates = []
        for key, record in new.items():
            if key in old and old[key] != record:
                row = _row(record, table)
                if row != _row(old[key], table):
                    updates.append({**row, "row_id": row.pop("id")})
        if inserts:
            self._conn.execute(sa.insert(table), inserts)
        if updates:
            statement = sa.update(table).where(table.c.id == sa.bindparam("row_id"))
            self._conn.execute(statement, updates)

    def add_refund_reasons(self, reasons: Sequence[RefundReason]) -> None:
        """Insert refund reasons."""
        if reasons:
            rows = [_row(r, t.refund_reasons) for r in reasons]
            self._conn.execute(sa.insert(t.refund_reasons), rows)

    def list_refund_reasons(
        self, *, ids: Sequence[str] | None = None, codes: Sequence[str] | None = None
    ) -> list[RefundReason]:
        """Refund reasons matching the filters, oldest first."""
        return self._records(t.refund_reasons, RefundReason, id=ids, code=codes)

    def add_account_holder(self, holder: AccountHolder) -> None:
        """Insert an account holder."""
        self._conn.execute(sa.insert(t.account_holders), [_row(holder, t.account_holders)])

    def find_account_holder(self, provider_id: str, customer_id: str) -> AccountHolder | None:
        """The holder of a customer at a provider."""
        found = self._records(
            t.account_holders, AccountHolder, provider_id=provider_id, customer_id=customer_id
        )
        return found[0] if found else None

    def get_account_holder(self, holder_id: str) -> AccountHolder | None:
        """The holder with this id."""
        found = self._records(t.account_holders, AccountHolder, id=holder_id)
        return found[0] if found else None

    def provider_states(self) -> list[PaymentProviderInfo]:
        """Every provider whose flag was ever set."""
        return self._records(t.providers, PaymentProviderInfo)

    def set_provider_enabled(self, provider_id: str, is_enabled: bool) -> None:
        """Enable or disable a provider (insert the row the first time)."""
        table = t.providers
        changed = self._conn.execute(
            sa.update(table).where(table.c.id == provider_id).values(is_enabled=is_enabled)
        ).rowcount
        if not changed:
            self._conn.execute(sa.insert(table).values(id=provider_id, is_enabled=is_enabled))


class SqlPaymentStore:
    """Transactions on one engine (see `payment.repository.PaymentStore`).

    Reads run in a snapshot (REPEATABLE READ on PostgreSQL, a deferred transaction in WAL mode on
    SQLite); writes begin with ``BEGIN IMMEDIATE`` on SQLite and lock rows on PostgreSQL.

    Args:
        engine: From `payment.adapters.engine.create_payment_engine`; the store disposes of it.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        self._reader = (
            engine
            if is_sqlite(engine)
            else engine.execution_options(isolation_level="REPEATABLE READ")
        )

    @contextmanager
    def read(self) -> Iterator[SqlPaymentRepository]:
        """A read-only transaction."""
        with self._reader.connect() as connection, connection.begin():
            yield SqlPaymentRepository(connection)

    @contextmanager
    def write(self) -> Iterator[SqlPaymentRepository]:
        """A write transaction, committed at the end of the block.

        Raises:
            DuplicateKey: a unique key was hit (the transaction was rolled back).
        """
        try:
            with self._writer.begin() as connection:
                yield SqlPaymentRepository(connection)
        except IntegrityError as error:
            if _is_unique_violation(error):
                raise DuplicateKey(str(error.orig)[:300]) from error
            raise

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
