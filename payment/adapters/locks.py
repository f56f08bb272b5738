"""Named locks held across processes: one holder of a name at a time, on one database.

The payment module holds one around a session's authorization (the read, the provider call and
the record), so that a second caller, in this process or another, waits and then finds the
first one's payment instead of calling the provider again.

Names are spread over `STRIPES` stripes (two names rarely share one; memory stays flat):

- In the process, a striped `threading.Lock` per database. Only the thread holding stripe k
  goes on to the cross-process lock of stripe k, so threads never meet there.
- On PostgreSQL, ``pg_advisory_xact_lock`` of a 64-bit digest of the name, in a transaction of
  its own that is rolled back when the block ends (a lost connection releases it too).
- On SQLite, an exclusive ``lockf`` on byte k of the file ``<database>-locks`` beside the
  database, through one descriptor per file kept for the life of the process (POSIX drops a
  process's locks on a file when any of its descriptors of that file closes). The kernel
  releases it when a holder's process dies.

A lock is never held by a process that is gone, so a crash leaves nothing to clean up.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.pool import PoolProxiedConnection

from flowkit.sqlalchemy.sqlite import database_key

__all__ = ["STRIPES", "AdvisoryLocks", "FileLocks", "ThreadLocks", "lock_digest"]

STRIPES = 64
"""How many stripes the names of one database are spread over."""

_ADVISORY = "SELECT pg_advisory_xact_lock(%s)"  # held until the transaction ends
_guard = threading.Lock()
_files: dict[str, tuple[int, tuple[threading.Lock, ...]]] = {}


def lock_digest(name: str) -> int:
    """A stable signed 64-bit number for `name` (PostgreSQL's advisory lock key)."""
    digest = hashlib.blake2b(b"payment-lock:" + name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _stripe(name: str) -> int:
    return lock_digest(name) % STRIPES


class ThreadLocks:
    """Named locks inside this process only (a SQLite database in memory has no other)."""

    def __init__(self) -> None:
        self._stripes = tuple(threading.Lock() for _ in range(STRIPES))

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Run the block while no other holder of `name` runs its own."""
        with self._stripes[_stripe(name)]:
            yield


class AdvisoryLocks:
    """Named locks on a PostgreSQL database, shared with every process using it.

    Args:
        connect: Lends a connection (outside any transaction), as the store's idle pool does.
        give_back: Takes it back once the lock's transaction is rolled back.
    """

    def __init__(
        self,
        connect: Callable[[], PoolProxiedConnection],
        give_back: Callable[[PoolProxiedConnection], None],
    ) -> None:
        self._connect = connect
        self._give_back = give_back
        self._stripes = tuple(threading.Lock() for _ in range(STRIPES))

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Run the block while no other holder of `name` runs its own."""
        with self._stripes[_stripe(name)]:
            pooled = self._connect()
            connection: Any = pooled.dbapi_connection
            try:
                connection.cursor().execute(_ADVISORY, (lock_digest(name),))
                yield
            finally:
                try:
                    connection.rollback()  # ends the transaction: the lock goes with it
                except Exception:
                    pooled.invalidate()  # closing the connection releases it too
                self._give_back(pooled)


class FileLocks:
    """Named locks on a SQLite file, shared with every process on this machine using it.

    Args:
        database: The SQLite file's path (not ``:memory:``).
    """

    def __init__(self, database: str) -> None:
        self._fd, self._stripes = _lock_file(database_key(database))

    @contextmanager
    def hold(self, name: str) -> Iterator[None]:
        """Run the block while no other holder of `name` runs its own."""
        stripe = _stripe(name)
        with self._stripes[stripe]:
            fcntl.lockf(self._fd, fcntl.LOCK_EX, 1, stripe)
            try:
                yield
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN, 1, stripe)


def _lock_file(path: str) -> tuple[int, tuple[threading.Lock, ...]]:
    """The process's one descriptor of ``<path>-locks`` and the thread stripes that go with it."""
    with _guard:
        found = _files.get(path)
        if found is None:
            fd = os.open(path + "-locks", os.O_RDWR | os.O_CREAT, 0o600)
            found = _files[path] = (fd, tuple(threading.Lock() for _ in range(STRIPES)))
        return found
