"""Engines configured for the payment module's transactions on SQLite and PostgreSQL.

SQLite: WAL, ``synchronous=FULL``, foreign keys on, a busy timeout, and SQLAlchemy's pysqlite
recipe for real transactions: the driver's own BEGIN handling is turned off on connect and the
``begin`` event emits ``BEGIN IMMEDIATE`` for write transactions (so two writers can never both
read and then write: the second waits at BEGIN) and a deferred ``BEGIN`` for reads.
PostgreSQL: psycopg 3 (``postgresql+psycopg://``); writers lock rows with ``FOR UPDATE``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

__all__ = ["BUSY_TIMEOUT_SECONDS", "WRITE_OPTION", "create_payment_engine", "is_sqlite"]

BUSY_TIMEOUT_SECONDS = 30
"""How long a SQLite writer waits for the write lock before failing."""

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
        return create_engine(url, pool_pre_ping=True)
    options: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS}
    }
    if url.database in (None, "", ":memory:"):
        options["poolclass"] = StaticPool
    engine = create_engine(url, **options)
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine
