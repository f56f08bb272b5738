"""Group commit: checkpoints of concurrent runs share one transaction.

The first thread to arrive writes everything queued so far in one transaction and commits; the
threads that arrived meanwhile wait for that commit (or the next one). Nobody continues before
its own checkpoint is committed, so durability is the same as one commit per step, while the
number of commits (each an fsync on SQLite) falls with concurrency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Entry", "GroupCommit"]


class Entry:
    """One queued item and, once written, its error (None when it was committed)."""

    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.done = False
        self.error: BaseException | None = None
        self.result: Any = None


class GroupCommit:
    """Serializes batch writes; each caller returns once its own item is committed.

    Args:
        write_batch: Writes and commits a batch, setting `error` on entries that failed.
    """

    def __init__(self, write_batch: Callable[[Sequence[Entry]], None]) -> None:
        self._write_batch = write_batch
        self._cond = threading.Condition()
        self._queue: list[Entry] = []
        self._busy = False
        self.batches = 0
        self.items = 0

    def submit(self, item: Any) -> Any:
        """Queue `item` and return when it is committed, with what the writer set as result.

        Raises:
            BaseException: the error the batch writer recorded for this item.
        """
        entry = Entry(item)
        with self._cond:
            self._queue.append(entry)
            while not entry.done:
                if self._busy:
                    self._cond.wait()
                else:
                    self._lead()
        if entry.error is not None:
            raise entry.error
        return entry.result

    def _lead(self) -> None:
        """Write everything queued (called with the condition held; releases it meanwhile)."""
        self._busy = True
        batch, self._queue = self._queue, []
        self._cond.release()
        try:
            self._write_batch(batch)
        except BaseException as exc:
            for entry in batch:
                if not entry.done:
                    entry.error = exc
        finally:
            for entry in batch:
                entry.done = True
            self._cond.acquire()
            self._busy = False
            self.batches += 1
            self.items += len(batch)
            self._cond.notify_all()
