"""Connections kept between transactions, and the in-process writer lock of a SQLite store.

A transaction of the payment module is a few statements long, so checking a connection out of
SQLAlchemy's pool and back in (events, reset, queue) is a noticeable share of its cost.
`IdleConnections` keeps a few checked-out connections for the next transaction instead; one
that sat idle longer than `PING_AFTER_IDLE_SECONDS` is pinged first, as the pool would.
"""

from __future__ import annotations

import time

from sqlalchemy import Engine
from sqlalchemy.pool import PoolProxiedConnection

from flowkit.sqlalchemy.sqlite import writer_lock
from payment.adapters.engine import BUSY_TIMEOUT_SECONDS, PING_AFTER_IDLE_SECONDS, is_sqlite

__all__ = ["IdleConnections", "WriterLock"]


class IdleConnections:
    """A few pooled connections kept checked out between transactions (thread-safe).

    Args:
        engine: The engine whose pool lends the connections.
        keep: At most this many are kept idle; the others go back to the pool.
    """

    def __init__(self, engine: Engine, keep: int = 8) -> None:
        self._engine = engine
        self._keep = keep
        self._ping = not is_sqlite(engine)  # a SQLite file cannot drop a connection
        self._idle: list[tuple[PoolProxiedConnection, float]] = []
        self._closed = False

    def get(self) -> PoolProxiedConnection:
        """A connection for one transaction: an idle one, else a new checkout from the pool."""
        while True:
            try:
                pooled, idle_since = self._idle.pop()  # atomic: no two threads get one
            except IndexError:
                return self._engine.raw_connection()
            if not self._ping or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
                return pooled
            if self._alive(pooled):
                return pooled

    def _alive(self, pooled: PoolProxiedConnection) -> bool:
        dialect, connection = self._engine.dialect, pooled.dbapi_connection
        try:
            if connection is None:
                raise dialect.loaded_dbapi.Error("the connection is gone")
            dialect.do_ping(connection)
        except dialect.loaded_dbapi.Error:
            pooled.invalidate()
            return False
        return True

    def put(self, pooled: PoolProxiedConnection) -> None:
        """Take back a connection whose transaction ended (committed or rolled back)."""
        if self._closed or not pooled.is_valid or len(self._idle) >= self._keep:
            pooled.close()  # back to the pool (an invalidated one is discarded there)
        else:
            self._idle.append((pooled, time.monotonic()))

    def close(self) -> None:
        """Give every idle connection back to the pool; later ones go back as they come."""
        self._closed = True
        while self._idle:
            self._idle.pop()[0].close()


class WriterLock:
    """Serializes the write transactions on one SQLite file inside the process.

    SQLite lets one writer in at a time; ``BEGIN IMMEDIATE`` makes the others wait in SQLite's
    busy handler, which sleeps a millisecond or more between tries. Threads of one process
    wait here instead and go in as soon as the writer before them commits. The lock is
    flowkit's per-file writer lock, so a flowkit store on the same file queues on it too.
    Other processes still meet at ``BEGIN IMMEDIATE``.

    Args:
        database: The SQLite file's path.
    """

    def __init__(self, database: str) -> None:
        self._lock = writer_lock(database)

    def acquire(self) -> None:
        """Wait for the lock (release it when the transaction ends).

        Raises:
            TimeoutError: another writer held it for `BUSY_TIMEOUT_SECONDS`.
        """
        if not self._lock.acquire(timeout=BUSY_TIMEOUT_SECONDS):
            raise TimeoutError(f"no write lock after {BUSY_TIMEOUT_SECONDS} s")

    def release(self) -> None:
        """Let the next writer in."""
        self._lock.release()
