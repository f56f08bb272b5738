"""SQLite write serialization inside one process.

SQLite lets one writer at a time hold a database. When two threads of a process want to write,
the loser normally waits in SQLite's busy handler, which sleeps in steps of 1 to 100 ms: under
concurrency most of the time goes to sleeping while the lock is free. Writers of one file in
one process therefore take this lock (re-entrant, per file) before `BEGIN IMMEDIATE` and give it
back after COMMIT or ROLLBACK: they queue on it instead, and only other processes still meet
SQLite's own busy wait. flowkit's store and the payment module share it when they share a file.

Holding that lock, they also write through one connection per file (`SharedConnection`).
SQLite throws away a connection's whole page cache whenever another connection has changed
the file since its last transaction, so two writers taking turns on two connections re-read
every page they touch, each transaction (a durable step alternates the payment module's write
and its checkpoint). On one connection the cache stays warm.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from flowkit.syncscope import deferred_sync

if TYPE_CHECKING:  # the driver loads when a connection opens, not on import
    import sqlite3

__all__ = [
    "SharedConnection",
    "acknowledge",
    "database_key",
    "file_key",
    "shared_connection",
    "sync_wal",
    "writer_lock",
]

_locks: dict[str, threading.RLock] = {}
_shared: dict[str, SharedConnection] = {}
_inherited: list[object] = []  # a forked child's copies of its parent's connections
_syncers: dict[str, _WalSyncer] = {}
_guard = threading.Lock()
# what SQLite itself calls to sync a log on Linux: data and size, not the modification time
_datasync = getattr(os, "fdatasync", os.fsync)


def database_key(database: str) -> str:
    """One name per SQLite file, whatever path reaches it (`""` and `:memory:` as they are)."""
    return database if database in ("", ":memory:") else os.path.realpath(database)


def file_key(database: str) -> str | None:
    """`database_key` of a database on disk; None for an in-memory one (nothing to fsync)."""
    return None if database in ("", ":memory:") else database_key(database)


def writer_lock(database: str) -> threading.RLock:
    """The lock every writer of the SQLite file `database` in this process takes.

    Args:
        database: The file's path (relative paths are resolved; `:memory:` gets its own lock).
    """
    key = database_key(database)
    with _guard:
        found = _locks.get(key)
        if found is None:
            found = _locks[key] = threading.RLock()
        return found


def shared_connection(database: str, busy_timeout: float) -> SharedConnection:
    """Attach to the connection through which this process writes the SQLite file `database`
    (opened on first use); call `SharedConnection.detach` when done with it.

    Args:
        database: The file's path (relative paths are resolved).
        busy_timeout: Seconds a write waits for another process's lock (the first attach sets it).
    """
    key = database_key(database)
    lock = writer_lock(database)
    with _guard:
        found = _shared.get(key)
        if found is None:
            found = _shared[key] = SharedConnection(key, busy_timeout, lock)
        found.users += 1
        return found


class SharedConnection:
    """One `sqlite3` connection to a file in WAL mode, for its writers in this process.

    Use it only while holding `lock` (the file's writer lock), and end every transaction
    begun on it before letting go. Each user sets the `synchronous` it commits with first.

    Args:
        database: The file (a `database_key`).
        busy_timeout: Seconds a statement waits for another process's lock.
        lock: The file's writer lock.
    """

    def __init__(self, database: str, busy_timeout: float, lock: threading.RLock) -> None:
        self.database = database
        self.lock = lock
        self.users = 0
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._synchronous = ""

    def busy(self) -> bool:
        """Whether a transaction is open on the connection (its lock is held re-entrantly by
        a thread already inside one: a second transaction must go elsewhere)."""
        conn = self._conn
        return conn is not None and conn.in_transaction

    def connection(self, synchronous: str | None) -> sqlite3.Connection:
        """The connection (opened if need be), set to commit with `synchronous` (None: as it
        is; for a transaction that writes nothing)."""
        conn = self._conn
        if conn is None:
            conn = self._open()
        if synchronous is not None and self._synchronous != synchronous:
            conn.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous = synchronous
        return conn

    def _open(self) -> sqlite3.Connection:
        import sqlite3  # the driver, on first use (see the imports above)

        conn = sqlite3.connect(
            self.database,
            timeout=self._busy_timeout,
            isolation_level=None,  # users issue BEGIN themselves
            check_same_thread=False,  # any thread holding the lock
            cached_statements=256,
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout * 1000)}")
        self._conn, self._synchronous = conn, ""
        return conn

    def forget(self) -> None:
        """Let go of the connection without closing it (in a forked child, whose copy of its
        parent's must never run SQLite's close on the parent's file); the next use reopens."""
        conn, self._conn = self._conn, None
        if conn is not None:
            _inherited.append(conn)  # kept referenced: garbage collection would close it

    def discard(self) -> None:
        """Close the connection after an error that may have broken it; the next use reopens."""
        conn, self._conn = self._conn, None
        if conn is not None:
            import sqlite3  # loaded already: a connection was opened

            with contextlib.suppress(sqlite3.Error):  # already broken: nothing to release
                conn.close()

    def detach(self) -> None:
        """One user is done; the last one closes the connection."""
        with _guard:
            self.users -= 1
            if self.users > 0:
                return
            if _shared.get(self.database) is self:
                del _shared[self.database]
        with self.lock:
            self.discard()


def _forget_after_fork() -> None:
    """In a forked child: no shared connection of the parent is used (each reopens)."""
    for shared in _shared.values():
        shared.forget()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_after_fork)


def acknowledge(key: str | None, database: str, sync: Callable[[str], None]) -> None:
    """After a commit under acknowledged durability: inside a drive's sync scope the fsync is
    left to the scope (one at the end of the drive); outside any scope, `sync` it now."""
    scope = deferred_sync(key) if key is not None else None
    if scope is not None:
        scope.defer()
    else:
        sync(database)


def sync_wal(database: str) -> None:
    """Make every commit to the SQLite file `database` so far durable: sync its WAL.

    A commit in WAL mode is in the log once it returns; `synchronous=FULL` adds an fsync of the
    log, which this does after the fact (for all commits before it at once). Without a log
    (no WAL file: nothing was written since the last checkpoint, which synced) it does nothing.

    Threads of this process syncing one file at once share fsyncs: a caller waits for a sync
    that began after it called (which covers its commits), and one sync serves every caller
    that was waiting when it began.
    """
    syncer = _syncers.get(database)  # a `database_key` already: no path to resolve
    if syncer is None:
        key = database_key(database)
        with _guard:
            syncer = _syncers.get(key)
            if syncer is None:
                syncer = _syncers[key] = _WalSyncer()
    syncer.sync(database)


class _WalSyncer:
    """The fsyncs of one WAL file, shared by the threads that ask for one at once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._started = 0  # syncs begun so far
        self._done = 0  # the newest sync finished
        self._running = False

    def sync(self, database: str) -> None:
        with self._cond:
            needed = self._started + 1  # one that begins after this call
            while self._done < needed:
                if not self._running:
                    self._running = True
                    self._started += 1
                    number = self._started
                    break
                self._cond.wait()
            else:
                return  # another thread's sync, begun after this call, covered it
        try:
            _fsync_log(database)
        except BaseException:  # nobody is covered: a waiter starts the next sync itself
            with self._cond:
                self._running = False
                self._cond.notify_all()
            raise
        with self._cond:
            self._running = False
            self._done = max(self._done, number)
            self._cond.notify_all()


def _fsync_log(database: str) -> None:
    try:
        fd = os.open(database + "-wal", os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        _datasync(fd)
    finally:
        os.close(fd)
