"""Group commit: checkpoints of concurrent runs share one transaction.

The first thread to arrive becomes the leader: it writes everything queued so far in one
transaction and commits. Threads that arrive meanwhile queue up and sleep on their own lock.
When the commit is done the leader wakes exactly the threads whose items it wrote, and hands
leadership to the first thread still queued (no thundering herd). Nobody continues before its
own item is committed, so durability is that of one commit per step, while the number of
commits (each an fsync on SQLite) falls as concurrency rises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Entry", "GroupCommit"]


class Entry:
    """One queued item; `error` and `result` are set by the writer."""

    __slots__ = ("_wake", "done", "error", "item", "lead", "result")

    def __init__(self, item: Any) -> None:
        self.item = item
        self.done = False
        self.lead = False
        self.error: BaseException | None = None
        self.result: Any = None
        self._wake = threading.Lock()
        self._wake.acquire()

    def sleep(self) -> None:
        """Block until the leader wakes this entry (done, or to lead)."""
        self._wake.acquire()

    def wake(self) -> None:
        """Let the sleeping owner of this entry go on."""
        self._wake.release()


class GroupCommit:
    """Serializes batch writes; each caller returns once its own item is committed.

    Args:
        write_batch: Writes and commits a batch, setting `error`/`result` on its entries.
    """

    def __init__(self, write_batch: Callable[[Sequence[Entry]], None]) -> None:
        self._write_batch = write_batch
        self._lock = threading.Lock()
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
        with self._lock:
            self._queue.append(entry)
            entry.lead = not self._busy
            self._busy = True
        if not entry.lead:
            entry.sleep()
        if not entry.done:
            self._lead()
        if entry.error is not None:
            raise entry.error
        return entry.result

    def _lead(self) -> None:
        """Write the queue, wake whoever it holds, then pass leadership on (or stand down)."""
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            self._write_batch(batch)
        except BaseException as exc:
            for entry in batch:
                if entry.error is None:
                    entry.error = exc
        finally:
            self._finish(batch)

    def _finish(self, batch: list[Entry]) -> None:
        with self._lock:
            self.batches += 1
            self.items += len(batch)
            successor = self._queue[0] if self._queue else None
            self._busy = successor is not None
        for entry in batch:
            entry.done = True
            if not entry.lead:
                entry.wake()
        if successor is not None:
            successor.lead = True
            successor.wake()
