"""Engines configured for the payment module's transactions on SQLite and PostgreSQL.

SQLite: WAL, ``synchronous=FULL``, foreign keys on, a busy timeout, and SQLAlchemy's pysqlite
recipe for real transactions: the driver's own BEGIN handling is turned off on connect and the
``begin`` event emits ``BEGIN IMMEDIATE`` for write transactions (so two writers can never both
read and then write: the second waits at BEGIN) and a deferred ``BEGIN`` for reads.
PostgreSQL: psycopg 3 (``postgresql+psycopg://``); writers lock rows with ``FOR UPDATE``. A
pooled connection is pinged before use only when it sat idle for `PING_AFTER_IDLE_SECONDS`
(as HikariCP does): a ping on every checkout would cost a round trip per transaction.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, StaticPool

__all__ = [
    "BUSY_TIMEOUT_SECONDS",
    "PING_AFTER_IDLE_SECONDS",
    "WRITE_OPTION",
    "create_payment_engine",
    "is_sqlite",
]

BUSY_TIMEOUT_SECONDS = 30
"""How long a SQLite writer waits for the write lock before failing."""

PING_AFTER_IDLE_SECONDS = 1.0
"""A pooled PostgreSQL connection idle for longer than this is pinged before it is handed out."""

WRITE_OPTION = "payment_write"
"""The execution option that makes a SQLite transaction begin with ``BEGIN IMMEDIATE``."""

_SQLITE_PRAGMAS = (
    "journal_mode=WAL",
    "synchronous=FULL",
    "foreign_keys=ON",
    f"busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}",
)


def is_sqlite(engine: Engine) -> bool:
    """Whether the engine talks to SQLite."""
    return engine.dialect.name == "sqlite"


def _on_sqlite_connect(dbapi_connection: Any, _record: object) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_sqlite_begin)
    cursor = dbapi_connection.cursor()
    try:
        for pragma in _SQLITE_PRAGMAS:
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    write = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _ping_idle_connections(engine: Engine) -> None:
    """Ping a connection on checkout when it was idle long enough to have been dropped."""

    def on_checkin(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info["idle_since"] = time.monotonic()

    def on_checkout(
        dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
    ) -> None:
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise DisconnectionError(str(error)) from error  # the pool reconnects

    event.listen(engine, "checkin", on_checkin)
    event.listen(engine, "checkout", on_checkout)


def create_payment_engine(database_url: str) -> Engine:
    """Create an engine for the payment module (nothing connects until first use).

    Args:
        database_url: ``sqlite:///path.db`` or ``postgresql+psycopg://user@host/db``. An
            in-memory SQLite URL shares one connection and suits single-threaded tests only.

    Returns:
        The engine; dispose of it (or close the module) when done.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        engine = create_engine(url)
        _ping_idle_connections(engine)
        return engine
    options: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS}
    }
    if url.database in (None, "", ":memory:"):
        options["poolclass"] = StaticPool
    engine = create_engine(url, **options)
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine
