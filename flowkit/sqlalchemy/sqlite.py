"""SQLite write serialization inside one process.

SQLite lets one writer at a time hold a database. When two threads of a process want to write,
the loser normally waits in SQLite's busy handler, which sleeps in steps of 1 to 100 ms: under
concurrency most of the time goes to sleeping while the lock is free. Writers of one file in
one process therefore take this lock (re-entrant, per file) before `BEGIN IMMEDIATE` and give it
back after COMMIT or ROLLBACK: they queue on it instead, and only other processes still meet
SQLite's own busy wait. flowkit's store and the payment module share it when they share a file.

`WalFlusher` moves the fsync of `synchronous=FULL` out of that lock: a writer commits without
it (`synchronous=NORMAL`: the commit is in the log, atomic, and survives a process crash), lets
the lock go, then waits until one fsync of the log that began after its commit has finished.
Concurrent writers share that fsync, and the next writer appends while it runs.
"""

from __future__ import annotations

import os
import threading

__all__ = ["WalFlusher", "database_key", "sync_wal", "wal_flusher", "writer_lock"]

_locks: dict[str, threading.RLock] = {}
_flushers: dict[str, WalFlusher] = {}
_guard = threading.Lock()
# what SQLite itself calls for a WAL sync on Linux: data and size, not the modification time
_datasync = getattr(os, "fdatasync", os.fsync)


def database_key(database: str) -> str:
    """One name per SQLite file, whatever path reaches it (`""` and `:memory:` as they are)."""
    return database if database in ("", ":memory:") else os.path.realpath(database)


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


def sync_wal(database: str, known: int | None = None) -> int | None:
    """Make every commit to the SQLite file `database` so far durable: sync its WAL.

    A commit in WAL mode is in the log once it returns; `synchronous=FULL` adds a sync of the
    log, which this does after the fact (for all commits before it at once). A log it has not
    synced before (its inode is not `known`) gets its directory synced too, as SQLite does for
    a new log, so that the file itself survives a power cut. Without a log (nothing was written
    since the last checkpoint, which synced) it does nothing.

    Returns:
        The log's inode, to pass as `known` next time (None without a log).
    """
    try:
        fd = os.open(database + "-wal", os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        inode = os.fstat(fd).st_ino
        if inode != known:
            _sync_directory(os.path.dirname(os.path.abspath(database)))
        _datasync(fd)
        return inode
    finally:
        os.close(fd)


def _sync_directory(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # a platform that cannot open directories (Windows): nothing to sync
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WalFlusher:
    """Shares fsyncs of one SQLite file's log between the writers of this process.

    A writer calls `committed()` right after its commit returns and `wait(ticket)` when it
    needs that commit durable: `wait` returns once an fsync that began after the commit has
    finished, starting one if none is running (one fsync covers every commit before it).

    Args:
        database: The file's path.
    """

    def __init__(self, database: str) -> None:
        self.database = database
        self._changed = threading.Condition(threading.Lock())
        self._committed = 0  # tickets handed out: commits made so far
        self._durable = 0  # every ticket up to this one is fsynced
        self._flushing = False
        self._log: int | None = None  # the inode of the log last synced
        self.fsyncs = 0

    def committed(self) -> int:
        """Record a commit that has returned; the ticket to `wait` for."""
        with self._changed:
            self._committed += 1
            return self._committed

    def wait(self, ticket: int) -> None:
        """Return once the commit behind `ticket` (and every one before it) is on disk.

        Raises:
            OSError: the fsync this caller ran failed (the next caller tries again).
        """
        with self._changed:
            while self._durable < ticket:
                if self._flushing:
                    self._changed.wait()
                    continue
                self._flushing = True
                covers = self._committed
                self._changed.release()
                try:
                    self._log = sync_wal(self.database, self._log)
                finally:
                    self._changed.acquire()
                    self._flushing = False
                    self._changed.notify_all()
                self.fsyncs += 1
                self._durable = max(self._durable, covers)

    def sync(self) -> None:
        """Make every commit so far durable (`committed()` then `wait()`)."""
        self.wait(self.committed())


def wal_flusher(database: str) -> WalFlusher:
    """The flusher every writer of the SQLite file `database` in this process shares."""
    key = database_key(database)
    with _guard:
        found = _flushers.get(key)
        if found is None:
            found = _flushers[key] = WalFlusher(key)
        return found
