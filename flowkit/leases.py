"""Keeping an engine's leases alive while its runs execute."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from flowkit.plan import PlanNode
from flowkit.state import StepState

Renew = Callable[[Sequence[str]], None]


class LeaseKeeper:
    """A daemon thread renewing the leases of the runs an engine is executing.

    It never keeps the process alive. A run whose in-flight step has a timeout and has run past
    it is no longer renewed, so a hung sync step's run can be recovered by another engine.
    """

    def __init__(self, renew: Renew, interval: float) -> None:
        self._renew = renew
        self._interval = interval
        self._runs: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.errors = 0

    def track(self, transaction_id: str, run: Any) -> None:
        """Start renewing the lease on a run (starts the thread on first use)."""
        with self._lock:
            self._runs[transaction_id] = run
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._loop, name="flowkit-leases", daemon=True
                )
                self._thread.start()

    def untrack(self, transaction_id: str) -> None:
        """Stop renewing the lease on a run."""
        with self._lock:
            self._runs.pop(transaction_id, None)

    def close(self) -> None:
        """Stop the thread."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._wake.wait(self._interval):
            with self._lock:
                due = [tx for tx, run in self._runs.items() if not _overdue(run)]
            if due:
                try:
                    self._renew(due)
                except Exception:  # a failed renewal is retried next round; fencing stays safe
                    self.errors += 1


def _overdue(run: Any) -> bool:
    """True when some invoking step with a timeout has run past it."""
    now = time.time()
    for node in run.plan.nodes:
        if not isinstance(node, PlanNode) or node.timeout is None:
            continue
        i = node.index
        started = run.started[i]
        if run.states[i] is StepState.INVOKING and started and now - started > node.timeout:
            return True
    return False
