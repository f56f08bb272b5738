"""SQLite write serialization inside one process.

SQLite lets one writer at a time hold a database. When two threads of a process want to write,
the loser normally waits in SQLite's busy handler, which sleeps in steps of 1 to 100 ms: under
concurrency most of the time goes to sleeping while the lock is free. Writers of one file in
one process therefore take this lock (re-entrant, per file) before `BEGIN IMMEDIATE` and give it
back after COMMIT or ROLLBACK: they queue on it instead, and only other processes still meet
SQLite's own busy wait. flowkit's store and the payment module share it when they share a file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from flowkit.syncscope import deferred_sync

__all__ = ["acknowledge", "database_key", "file_key", "sync_wal", "writer_lock"]

_locks: dict[str, threading.RLock] = {}
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
