"""Deferred fsync: a write made inside a durable run may leave its fsync to the run's checkpoint.

On SQLite in WAL mode every commit appends to one log file, and an fsync of that file makes
every commit before it durable. A durable step's checkpoint commits with an fsync after the
step returns, and recovery re-invokes a step whose checkpoint is missing (with the same
idempotency key). So a library writing to the *same* database file from inside the step (the
payment module, say) gains nothing from an fsync of its own: a power cut before the checkpoint
loses its write and the checkpoint together, and the step runs again, exactly as if the cut had
come before the write. Such a library asks `deferred_sync(key)` whether a scope for its file is
open; if so it commits without fsync and calls `SyncScope.defer()`.

The engine opens a scope (from its store's optional `sync_scope()`) around each drive of a
durable run. Every durable checkpoint marks it synced; when the drive ends with a write still
unsynced (one made after the last checkpoint, by an event subscriber say), the scope syncs the
file before the drive returns. Writes outside any scope, or to another file, keep their own fsync.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["SyncScope", "deferred_sync", "sync_scope"]


class SyncScope:
    """The pending fsync of one database file inside one drive of a durable run.

    Thread-safe: a durable commit covers exactly the deferred commits counted before it began
    (`mark()`), so a write that lands while a checkpoint is committing stays pending.

    Args:
        key: Names the file (`flowkit.sqlalchemy.sqlite.database_key` of its path).
        flush: Makes everything committed to the file so far durable.
    """

    __slots__ = ("_covered", "_deferred", "_flush", "_lock", "key")

    def __init__(self, key: str, flush: Callable[[], None]) -> None:
        self.key = key
        self._flush = flush
        self._lock = threading.Lock()
        self._deferred = 0  # commits that skipped their fsync so far
        self._covered = 0  # how many of them a durable commit has covered

    @property
    def pending(self) -> bool:
        """Whether a commit that skipped its fsync is not yet covered by a durable one."""
        return self._deferred > self._covered

    def defer(self) -> None:
        """Record a commit to the file that skipped its fsync (call it after the commit)."""
        with self._lock:
            self._deferred += 1

    def mark(self) -> int:
        """Call before a durable commit begins; pass the result to `synced` once it is done."""
        return self._deferred

    def synced(self, mark: int) -> None:
        """Record a durable commit to the file: it covered the deferred commits before `mark`."""
        with self._lock:
            self._covered = max(self._covered, mark)

    def close(self) -> None:
        """Sync the file if a deferred commit is still not covered."""
        mark = self.mark()
        if mark > self._covered:
            self._flush()
            self.synced(mark)


_current: ContextVar[SyncScope | None] = ContextVar("flowkit_sync_scope", default=None)


def deferred_sync(key: str) -> SyncScope | None:
    """The open scope of the database file `key`, or None (then a write syncs by itself)."""
    scope = _current.get()
    return scope if scope is not None and scope.key == key else None


@contextmanager
def sync_scope(scope: SyncScope | None) -> Iterator[None]:
    """Open `scope` for the block (None opens nothing); sync what is still pending at its end."""
    if scope is None:
        yield
        return
    token = _current.set(scope)
    try:
        yield
    finally:
        _current.reset(token)
        scope.close()
