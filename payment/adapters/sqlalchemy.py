"""The SQL store: transactions on pooled DBAPI connections running statements compiled once.

SQLAlchemy builds the schema, the engine, the pool and every statement (see
`payment.adapters.statements`); the hot path then talks to the DBAPI cursor directly, with
`payment.adapters.rows` converting values, because SQLAlchemy's per-call statement handling
cost more than the database's own work for these small transactions.

Aggregates are saved by difference: `save_collection(before, after)` inserts, updates and
deletes exactly the rows whose records changed (parents first, deletions children first).
A record the domain did not touch is the same object in both versions, so finding the
changes costs little more than a pass over the ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import Any, NoReturn

from sqlalchemy import Engine
from sqlalchemy.engine.interfaces import DBAPIConnection, DBAPICursor
from sqlalchemy.pool import PoolProxiedConnection

from flowkit.sqlalchemy.sqlite import SharedConnection, file_key, shared_connection
from flowkit.syncscope import SyncScope, deferred_sync
from payment.adapters import tables as t
from payment.adapters.compiled import Sql, TableSql
from payment.adapters.connections import IdleConnections, WriterLock
from payment.adapters.engine import BUSY_TIMEOUT_SECONDS, is_sqlite
from payment.adapters.locks import AdvisoryLocks, FileLocks, ThreadLocks
from payment.adapters.statements import Filters, Statements
from payment.domain import (
    AccountHolder,
    CollectionStatus,
    Payment,
    PaymentCollection,
    PaymentProviderInfo,
    PaymentSession,
    RefundReason,
    SessionStatus,
)
from payment.exceptions import InvalidData
from payment.repository import DuplicateKey

__all__ = ["SqlPaymentRepository", "SqlPaymentStore"]

_UNIQUE_VIOLATION = "23505"  # PostgreSQL's SQLSTATE
_REPEATABLE_READ = 3  # psycopg.IsolationLevel.REPEATABLE_READ
_SYNC_MODE = "payment_synchronous"  # a SQLite connection's synchronous setting, in its info


def _is_unique_violation(error: Exception) -> bool:
    return getattr(error, "sqlstate", None) == _UNIQUE_VIOLATION or "UNIQUE constraint" in str(
        error
    )


def _rolled_back(connection: PoolProxiedConnection | Any) -> bool:
    try:
        connection.rollback()
    except Exception:
        return False
    return True


def _synchronous(pooled: PoolProxiedConnection, connection: Any, mode: str) -> None:
    """Set a SQLite connection's ``synchronous`` (before its transaction) if it differs.

    The setting is remembered with the connection it was made on: a connection the pool
    replaced starts from the engine's ``FULL`` again.
    """
    known = pooled.info.get(_SYNC_MODE)
    current = known[1] if known is not None and known[0] is connection else "FULL"
    if current != mode:
        connection.execute(f"PRAGMA synchronous={mode}")
        pooled.info[_SYNC_MODE] = (connection, mode)


def _commit_mode(scope: SyncScope | None) -> str:
    """The ``synchronous`` a SQLite write commits with: NORMAL when a scope fsyncs for it."""
    return "FULL" if scope is None else "NORMAL"


def _group(records: Iterable[Any], key: str) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for record in records:
        grouped[getattr(record, key)].append(record)
    return grouped


def _one(collection: PaymentCollection | None) -> tuple[PaymentCollection, ...]:
    return () if collection is None else (collection,)


def _children(payments: tuple[Payment, ...], kind: str) -> list[Any]:
    """Every capture (`kind` ``"captures"``) or refund of the payments."""
    return [item for payment in payments for item in getattr(payment, kind)]


class SqlPaymentRepository:
    """The reads and writes of one transaction (see `payment.repository.PaymentRepository`).

    Args:
        connection: A DBAPI connection inside an open transaction.
        sql: The store's compiled statements.
    """

    def __init__(self, connection: DBAPIConnection, sql: Statements) -> None:
        self._connection = connection
        self._sql = sql

    def _send(self, statement: Sql, *values: Any) -> DBAPICursor:
        cursor = self._connection.cursor()
        cursor.execute(statement.text, statement.args(values))
        return cursor

    def _all(self, statement: Sql, *values: Any) -> Sequence[Sequence[Any]]:
        for value in values:  # ids, keys and names: strings the database can compare
            if not isinstance(value, (str, bool)):
                raise InvalidData("id", f"expected a string, not {type(value).__name__}")
            if isinstance(value, str) and "\x00" in value:
                raise InvalidData("id", "contains a NUL character")
        return self._send(statement, *values).fetchall()

    def _shaped(
        self, kind: str, filters: Filters, limit: int | None = None, offset: int = 0
    ) -> Sequence[Sequence[Any]]:
        statement, values = self._sql.shaped(kind, filters, limit=limit, offset=offset)
        return self._send(statement, *values).fetchall()  # shaped() checked the values

    # --- aggregates ---------------------------------------------------------------------------

    def load_collection(
        self, collection_id: str, *, lock: bool = False
    ) -> PaymentCollection | None:
        """The collection with its sessions and payments; `lock` takes its row lock."""
        return self._load("id", collection_id, lock)

    def load_collection_of(
        self, *, session_id: str | None = None, payment_id: str | None = None, lock: bool = False
    ) -> PaymentCollection | None:
        """The collection holding a session or a payment; `lock` takes its row lock."""
        if session_id is not None:
            return self._load("session", session_id, lock)
        return self._load("payment", payment_id, lock)

    def _load(self, by: str, key: object, lock: bool) -> PaymentCollection | None:
        """Two statements: the collection's row, locked first on PostgreSQL (what the second
        then reads is what the previous holder of the lock committed; SQLite's writers hold
        the database's lock from ``BEGIN IMMEDIATE``), then every row it holds."""
        sql = self._sql
        rows = self._all(sql.heads[by, lock], key)
        if not rows:
            return None
        children = self._all(sql.children.sql, rows[0][0])
        sessions, payments, captures, refunds = sql.children.split(children)
        found: PaymentCollection = sql.collections.codec.decode(
            rows[0],
            sessions=tuple(map(sql.sessions.codec.decode, sessions)),
            payments=tuple(self._payments(payments, captures, refunds)),
        )
        return found

    def _payments(
        self,
        rows: Sequence[Sequence[Any]],
        capture_rows: Sequence[Sequence[Any]],
        refund_rows: Sequence[Sequence[Any]],
    ) -> list[Payment]:
        """Payments from their rows, with their captures and refunds."""
        sql = self._sql
        captures = _group(map(sql.captures.codec.decode, capture_rows), "payment_id")
        refunds = _group(map(sql.refunds.codec.decode, refund_rows), "payment_id")
        decode = sql.payments.codec.decode
        return [
            decode(row, captures=tuple(captures[row[0]]), refunds=tuple(refunds[row[0]]))
            for row in rows
        ]

    def _assemble(self, rows: Sequence[Sequence[Any]]) -> list[PaymentCollection]:
        """Collections from their rows, with their sessions and payments (a few queries)."""
        ids = [row[0] for row in rows]
        if not ids:
            return []
        decode = self._sql.sessions.codec.decode
        session_rows = self._shaped("sessions", [(t.sessions.c.payment_collection_id, ids)])
        sessions = _group(map(decode, session_rows), "payment_collection_id")
        payment_rows = self._shaped("payments", [(t.payments.c.payment_collection_id, ids)])
        payments = _group(self._with_children(payment_rows), "payment_collection_id")
        decode = self._sql.collections.codec.decode
        return [
            decode(row, sessions=tuple(sessions[row[0]]), payments=tuple(payments[row[0]]))
            for row in rows
        ]

    def _with_children(self, rows: Sequence[Sequence[Any]]) -> list[Payment]:
        ids = [row[0] for row in rows]
        if not ids:
            return []
        captures = self._shaped("captures", [(t.captures.c.payment_id, ids)])
        refunds = self._shaped("refunds", [(t.refunds.c.payment_id, ids)])
        return self._payments(rows, captures, refunds)

    def find_collection(
        self, *, idempotency_key: str | None = None, live_cart_id: str | None = None
    ) -> PaymentCollection | None:
        """The collection made with this key if one is given, else the cart's live collection."""
        if idempotency_key is not None:
            rows = self._all(self._sql.collection_by_key, idempotency_key)
        else:
            rows = self._all(self._sql.collection_by_live_cart, live_cart_id)
        found = self._assemble(rows[:1])
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
        c = t.collections.c
        filters = [(c.id, ids), (c.status, status and status.value), (c.cart_id, cart_id)]
        return self._assemble(self._shaped("collections", filters, limit, offset))

    def list_sessions(
        self,
        *,
        ids: Sequence[str] | None = None,
        collection_id: str | Sequence[str] | None = None,
        provider_id: str | None = None,
        status: SessionStatus | None = None,
    ) -> list[PaymentSession]:
        """Sessions matching every filter, oldest first, each with its payment's id."""
        s = t.sessions.c
        filters = [
            (s.id, ids),
            (s.payment_collection_id, collection_id),
            (s.provider_id, provider_id),
            (s.status, status and status.value),
        ]
        return list(map(self._sql.sessions.codec.decode, self._shaped("sessions", filters)))

    def list_payments(
        self,
        *,
        ids: Sequence[str] | None = None,
        collection_id: str | None = None,
        session_id: str | None = None,
        provider_id: str | None = None,
    ) -> list[Payment]:
        """Payments with their captures and refunds, matching every filter, oldest first."""
        p = t.payments.c
        filters = [
            (p.id, ids),
            (p.payment_collection_id, collection_id),
            (p.payment_session_id, session_id),
            (p.provider_id, provider_id),
        ]
        return self._with_children(self._shaped("payments", filters))

    def list_uncaptured_authorizations(
        self,
        *,
        authorized_before: datetime,
        provider_ids: Sequence[str],
        limit: int,
        after_id: str | None = None,
    ) -> list[Payment]:
        """Live payments without captures created before a time, in id order (one page)."""
        if not provider_ids or limit <= 0:
            return []
        sql = self._sql
        statement = sql.uncaptured_authorizations(len(provider_ids), after_id is not None)
        codec = sql.payments.codec
        before = codec.encode_at(codec.columns.index("created_at"), authorized_before)
        after = () if after_id is None else (after_id,)
        values = (before, *provider_ids, *after, limit, 0)
        return self._with_children(self._send(statement, *values).fetchall())

    def save_collection(
        self, before: PaymentCollection | None, after: PaymentCollection | None
    ) -> None:
        """Insert, update and delete the rows that differ between two versions.

        A relation the domain left alone is the same tuple in both versions and is skipped.
        """
        sql, deleted = self._sql, []
        old_payments = before.payments if before is not None else ()
        new_payments = after.payments if after is not None else ()
        deleted.append(self._diff(sql.collections, _one(before), _one(after)))
        old_sessions = before.sessions if before is not None else ()
        new_sessions = after.sessions if after is not None else ()
        if old_sessions is not new_sessions:
            deleted.append(self._diff(sql.sessions, old_sessions, new_sessions))
        if old_payments is not new_payments:
            deleted.append(self._diff(sql.payments, old_payments, new_payments))
            for table, kind in ((sql.captures, "captures"), (sql.refunds, "refunds")):
                deleted.append(
                    self._diff(table, _children(old_payments, kind), _children(new_payments, kind))
                )
        for table, ids in reversed(deleted):  # children first
            if ids:
                cursor = self._connection.cursor()
                cursor.executemany(table.delete.text, [table.delete.args((i,)) for i in ids])

    def _diff(
        self, table: TableSql, old: Iterable[Any], new: Iterable[Any]
    ) -> tuple[TableSql, list[str]]:
        """Insert and update the rows of `new` that differ; return the ids gone from `old`."""
        previous_by_id = {record.id: record for record in old}
        cursor = None
        for record in new:
            previous = previous_by_id.pop(record.id, None)
            if previous is record:
                continue
            cursor = cursor or self._connection.cursor()
            if previous is None:
                cursor.execute(table.insert.text, table.insert_args(record))
            elif (update := table.update(previous, record)) is not None:
                cursor.execute(update[0].text, update[1])
        return table, list(previous_by_id)

    # --- the other records --------------------------------------------------------------------

    def add_refund_reasons(self, reasons: Sequence[RefundReason]) -> None:
        """Insert refund reasons."""
        table = self._sql.refund_reasons
        if reasons:
            cursor = self._connection.cursor()
            cursor.executemany(table.insert.text, [table.insert_args(r) for r in reasons])

    def list_refund_reasons(
        self, *, ids: Sequence[str] | None = None, codes: Sequence[str] | None = None
    ) -> list[RefundReason]:
        """Refund reasons matching the filters, oldest first."""
        r = t.refund_reasons.c
        rows = self._shaped("refund_reasons", [(r.id, ids), (r.code, codes)])
        return list(map(self._sql.refund_reasons.codec.decode, rows))

    def add_account_holder(self, holder: AccountHolder) -> None:
        """Insert an account holder."""
        table = self._sql.holders
        self._connection.cursor().execute(table.insert.text, table.insert_args(holder))

    def find_account_holder(self, provider_id: str, customer_id: str) -> AccountHolder | None:
        """The holder of a customer at a provider."""
        rows = self._all(self._sql.holder_of, provider_id, customer_id)
        return self._sql.holders.codec.decode(rows[0]) if rows else None

    def get_account_holder(self, holder_id: str) -> AccountHolder | None:
        """The holder with this id."""
        rows = self._all(self._sql.holder, holder_id)
        return self._sql.holders.codec.decode(rows[0]) if rows else None

    def provider_states(self) -> list[PaymentProviderInfo]:
        """Every provider whose flag was ever set."""
        return list(map(self._sql.providers.codec.decode, self._all(self._sql.provider_states)))

    def provider_enabled(self, provider_id: str) -> bool | None:
        """Whether a provider is enabled; None when its flag was never set."""
        rows = self._all(self._sql.provider_enabled, provider_id)
        return bool(rows[0][0]) if rows else None

    def set_provider_enabled(self, provider_id: str, is_enabled: bool) -> None:
        """Enable or disable a provider (insert the row the first time)."""
        if not self._all(self._sql.set_provider, is_enabled, provider_id):
            table = self._sql.providers
            info = PaymentProviderInfo(provider_id, is_enabled)
            self._connection.cursor().execute(table.insert.text, table.insert_args(info))


class SqlPaymentStore:
    """Transactions on one engine (see `payment.repository.PaymentStore`).

    Reads run in a snapshot (REPEATABLE READ on PostgreSQL, a deferred transaction in WAL mode on
    SQLite); writes begin with ``BEGIN IMMEDIATE`` on SQLite and lock rows on PostgreSQL
    (READ COMMITTED, so what a writer reads after taking its lock is the latest commit).

    A SQLite write commits with an fsync (``synchronous=FULL``), except inside a step of a
    durable flowkit run whose store is the same file: there the step's checkpoint, which
    follows, fsyncs the log for both (see `flowkit.syncscope`), and the write commits with
    ``synchronous=NORMAL``.

    On a SQLite file, writes go through the file's `SharedConnection` (flowkit's store on the
    file writes through it too, so neither re-reads what the other wrote), and so do reads
    whenever no other thread is writing; other reads take a pooled connection.

    Args:
        engine: From `payment.adapters.engine.create_payment_engine`; the store disposes of it.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sql = Statements(engine.dialect)
        self._is_sqlite = is_sqlite(engine)
        self._integrity_error: type[Exception] = engine.dialect.loaded_dbapi.IntegrityError
        self._connections = IdleConnections(engine)
        self._writer = WriterLock(engine.url.database or "") if self._is_sqlite else None
        self._sync_key = file_key(engine.url.database or "") if self._is_sqlite else None
        self._shared: SharedConnection | None = (
            shared_connection(self._sync_key, BUSY_TIMEOUT_SECONDS)
            if self._sync_key is not None and not engine.url.query
            else None
        )
        self._locks = self._named_locks()

    def _named_locks(self) -> AdvisoryLocks | FileLocks | ThreadLocks:
        if not self._is_sqlite:
            return AdvisoryLocks(self._connections.get, self._connections.put)
        return ThreadLocks() if self._sync_key is None else FileLocks(self._sync_key)

    def read(self) -> AbstractContextManager[SqlPaymentRepository]:
        """A read-only transaction."""
        return self._transaction(write=False)

    def write(self) -> AbstractContextManager[SqlPaymentRepository]:
        """A write transaction, committed at the end of the block.

        Raises:
            DuplicateKey: a unique key was hit (the transaction was rolled back).
        """
        return self._transaction(write=True)

    def hold_lock(self, name: str) -> AbstractContextManager[None]:
        """Hold the lock `name` until the block ends: one holder at a time, in any process.

        PostgreSQL: an advisory lock; SQLite: a byte lock on ``<database>-locks``; see
        `payment.adapters.locks`.
        """
        return self._locks.hold(name)

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[SqlPaymentRepository]:
        shared = self._shared
        writer = self._writer if write else None
        if writer is not None:
            writer.acquire()
        elif shared is not None and not shared.lock.acquire(blocking=False):
            shared = None  # a writer has it: read on a pooled connection meanwhile
        try:
            if shared is not None and not shared.busy():
                with self._shared_transaction(shared, write=write) as connection:
                    yield SqlPaymentRepository(connection, self._sql)
            else:
                with self._connection(write=write) as connection:
                    yield SqlPaymentRepository(connection, self._sql)
        finally:
            if writer is not None:
                writer.release()
            elif shared is not None:
                shared.lock.release()

    @contextmanager
    def _shared_transaction(self, shared: SharedConnection, *, write: bool) -> Iterator[Any]:
        """A transaction on the file's shared connection (its lock held), committed at the
        end of the block, else rolled back."""
        scope = self._write_scope(write)
        connection = shared.connection(_commit_mode(scope) if write else None)
        try:
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield connection
            connection.commit()
        except BaseException as error:
            if not _rolled_back(connection):
                shared.discard()
            self._raise_failed(error)
        if scope is not None:
            scope.defer()  # the run's next checkpoint fsyncs the log for this commit

    def _write_scope(self, write: bool) -> SyncScope | None:
        """The durable step's scope a SQLite write leaves its fsync to (None: it fsyncs)."""
        return deferred_sync(self._sync_key) if write and self._sync_key is not None else None

    def _raise_failed(self, error: BaseException) -> NoReturn:
        """Re-raise a transaction's error, a unique-key violation as `DuplicateKey`."""
        if isinstance(error, self._integrity_error) and _is_unique_violation(error):
            raise DuplicateKey(str(error)[:300]) from error
        raise error

    @contextmanager
    def _connection(self, *, write: bool) -> Iterator[Any]:
        """A connection in a transaction, committed when the block ends, else rolled back."""
        pooled = self._connections.get()
        connection: Any = pooled.dbapi_connection
        snapshot = not write and not self._is_sqlite  # PostgreSQL reads: REPEATABLE READ
        scope = self._write_scope(write)
        try:
            if snapshot:
                connection.isolation_level = _REPEATABLE_READ
            elif self._is_sqlite:  # psycopg begins a transaction with its first statement
                if write:
                    _synchronous(pooled, connection, _commit_mode(scope))
                connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            yield connection
            connection.commit()
            if scope is not None:
                scope.defer()  # the run's next checkpoint fsyncs the log for this commit
        except BaseException as error:
            self._abandon(pooled, error)
            self._raise_failed(error)
        finally:
            if snapshot and pooled.is_valid and not connection.closed:
                connection.isolation_level = None
            self._connections.put(pooled)

    def _abandon(self, connection: PoolProxiedConnection, error: BaseException) -> None:
        """Roll back; a connection the error broke (or that cannot roll back) is discarded."""
        dialect = self.engine.dialect
        broken = isinstance(error, dialect.loaded_dbapi.Error) and dialect.is_disconnect(
            error, connection.dbapi_connection, None
        )
        if broken or not _rolled_back(connection):
            connection.invalidate()

    def close(self) -> None:
        """Close every pooled connection (and let go of the shared one)."""
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.detach()
        self._connections.close()
        self.engine.dispose()
