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

__all__ = ["writer_lock"]

_locks: dict[str, threading.RLock] = {}
_guard = threading.Lock()


def writer_lock(database: str) -> threading.RLock:
    """The lock every writer of the SQLite file `database` in this process takes.

    Args:
        database: The file's path (relative paths are resolved; `:memory:` gets its own lock).
    """
    key = database if database in ("", ":memory:") else os.path.realpath(database)
    with _guard:
        found = _locks.get(key)
        if found is None:
            found = _locks[key] = threading.RLock()
        return found
