"""Queued runs and the worker loop that executes them (`Engine.enqueue`, `Engine.work`).

Workers on any number of machines share one database. A worker claims queued runs with
`SELECT ... FOR UPDATE SKIP LOCKED` (PostgreSQL; SQLite serializes writers), so a run is
claimed by exactly one worker; it runs them on a thread pool, renews their leases, and also
finishes runs whose owner died (expired leases). On PostgreSQL an idle worker sleeps on
LISTEN/NOTIFY and wakes as soon as a run is queued; elsewhere it polls with a backoff.

A stop request (SIGTERM in `flowkit worker`) is graceful: no new run is claimed, running runs
finish the step they are in, release their lease, and another worker resumes them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import structlog
from attrs import define, field, frozen

from flowkit import continuations, timers
from flowkit.exceptions import DefinitionError
from flowkit.runtime import Container, Runtime
from flowkit.state import RunResult, TransactionState
from flowkit.store import StoredRun

__all__ = ["TICK_EVERY", "Queue", "WorkReport"]

TICK_EVERY = 1.0
"""Seconds between two `tick()` calls of a worker's loop."""


@frozen
class Queue:
    """A named queue of runs.

    Args:
        name: The queue's name.
        concurrency: At most this many of its runs execute at once across every worker
            (None: no limit beyond each worker's own `concurrency`).
    """

    name: str
    concurrency: int | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or ":" in self.name:
            raise DefinitionError(
                f"a queue name is a non-empty string without ':', not {self.name!r}"
            )
        if self.concurrency is not None and (
            not isinstance(self.concurrency, int) or self.concurrency < 1
        ):
            raise DefinitionError(f"queue {self.name!r}: concurrency must be >= 1")


@define
class WorkReport:
    """What a `work()` loop did before it stopped.

    Attributes:
        claimed: Queued runs it claimed.
        recovered: Runs of dead workers it took over.
        finished: Runs it drove to an end (or to a wait), by final status.
        released: Runs it stopped between steps and gave back (graceful shutdown).
        not_handled: Queued runs of workflows (or versions: fingerprints) this worker does not
            hold, by workflow: left queued for a worker that does.
        incompatible: Runs of dead workers it left alone because it does not hold the
            definition they started on (their fingerprint), by transaction id: a worker that
            holds it takes them over.
        expired, woken, scheduled: What its ticks did (see `TickReport`): waits timed out,
            sleeps ended, schedule runs enqueued.
    """

    claimed: int = 0
    recovered: int = 0
    finished: dict[str, int] = field(factory=dict)
    released: int = 0
    not_handled: dict[str, int] = field(factory=dict)
    incompatible: list[str] = field(factory=list)
    expired: int = 0
    woken: int = 0
    scheduled: int = 0


class Worker:
    """One `Engine.work()` loop (see the module docstring)."""

    def __init__(
        self,
        runtime: Runtime,
        queue: Queue,
        concurrency: int,
        stop: threading.Event,
        container: Container | None,
    ) -> None:
        if concurrency < 1:
            raise DefinitionError(f"concurrency must be >= 1, not {concurrency!r}")
        self.runtime = runtime
        self.queue = queue
        self.concurrency = concurrency
        self.stop = stop
        self.container = container
        self.report = WorkReport()
        self._wake = threading.Event()
        self._active: set[Future[RunResult[Any]]] = set()
        self._lock = threading.Lock()
        self._last_sweep = 0.0
        self._last_tick = -TICK_EVERY

    def run(self, idle_timeout: float | None, poll: tuple[float, float]) -> WorkReport:
        """Claim and run until `stop` is set (or nothing happened for `idle_timeout`)."""
        listener = self.runtime.store.listen(self._notified)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"flowkit-{self.queue.name}")
        idle_since = time.monotonic()
        wait = poll[0]
        try:
            while not self.stop.is_set():
                self._tick()
                started = self._fill(pool)
                if started or self._busy():
                    idle_since, wait = time.monotonic(), poll[0]
                elif idle_timeout is not None and time.monotonic() - idle_since > idle_timeout:
                    break
                if not started:
                    self._wake.wait(min(wait, TICK_EVERY))
                    self._wake.clear()
                    wait = min(wait * 2, poll[1])
        finally:
            self.stop.set()  # running runs stop between steps and release their lease
            pool.shutdown(wait=True)
            if listener is not None:
                listener.close()
        self._report_not_handled()
        return self.report

    def _tick(self) -> None:
        """Expire waits, wake sleepers and fire schedules, at most every `TICK_EVERY` s."""
        now = time.monotonic()
        if now - self._last_tick < TICK_EVERY:
            return
        self._last_tick = now
        try:
            ticked = timers.tick(self.runtime, self.container, 100)
        except Exception as exc:  # a failing tick must not stop the worker
            _log("worker_tick_failed", error=repr(exc))
            return
        self.report.expired += len(ticked.expired)
        self.report.woken += len(ticked.woken)
        self.report.scheduled += len(ticked.scheduled)

    def _notified(self, queue: str) -> None:
        if queue == self.queue.name:
            self._wake.set()

    def _busy(self) -> bool:
        with self._lock:
            return bool(self._active)

    def _free(self) -> int:
        with self._lock:
            return self.concurrency - len(self._active)

    def _fill(self, pool: ThreadPoolExecutor) -> int:
        """Start as many runs as there are free slots; returns how many started."""
        started = self._sweep_expired(pool)
        free = self._free()
        if free <= 0:
            return started
        rt = self.runtime
        claimed = rt.store.claim_queued(
            self.queue.name,
            rt.owner,
            rt.lease_seconds,
            sorted(rt.workflows),
            free,
            self.queue.concurrency,
            rt.fingerprints(),
            rt.now(),
        )
        self.report.claimed += len(claimed)
        for stored in claimed:
            self._start(pool, stored, fresh=True)
        return started + len(claimed)

    def _sweep_expired(self, pool: ThreadPoolExecutor) -> int:
        """Take over runs of dead workers, now and then (every third of a lease)."""
        now = time.monotonic()
        if now - self._last_sweep < self.runtime.lease_seconds / 3:
            return 0
        self._last_sweep = now
        taken = 0
        rt = self.runtime
        free = max(self._free(), 0)
        skipped = len(self.report.incompatible)  # read past the runs it leaves alone
        for stored in rt.store.expired(limit=free + skipped):
            if taken >= free or stored.workflow not in rt.workflows:
                continue
            reason = rt.incompatibility(stored)
            if reason is not None:  # another worker may hold its definition
                if stored.transaction_id not in self.report.incompatible:
                    self.report.incompatible.append(stored.transaction_id)
                    _log("run_incompatible", transaction_id=stored.transaction_id, reason=reason)
                continue
            claimed = rt.store.claim(
                stored.transaction_id, rt.owner, rt.lease_seconds, (stored.status,)
            )
            if claimed is not None:
                self.report.recovered += 1
                self._start(pool, claimed, fresh=False)
                taken += 1
        return taken

    def _start(self, pool: ThreadPoolExecutor, stored: StoredRun, *, fresh: bool) -> None:
        future = pool.submit(self._execute, stored, fresh)
        with self._lock:
            self._active.add(future)
        future.add_done_callback(self._done)

    def _execute(self, stored: StoredRun, fresh: bool) -> RunResult[Any]:
        rt = self.runtime
        if fresh:  # claimed from the queue: it has no steps yet
            run = continuations.start_claimed(rt, stored, self.container)
        else:
            run = continuations.resume(rt, stored, self.container)
        run.stop = self.stop
        return rt.drive(run)

    def _done(self, future: Future[RunResult[Any]]) -> None:
        with self._lock:
            self._active.discard(future)
        self._wake.set()
        error = future.exception()
        if error is not None:
            _log("worker_run_failed", error=repr(error))
            return
        status = future.result().status
        if status is TransactionState.INVOKING:
            self.report.released += 1
        else:
            self.report.finished[status.value] = self.report.finished.get(status.value, 0) + 1

    def _report_not_handled(self) -> None:
        rt = self.runtime
        elsewhere = rt.store.queued_elsewhere(
            self.queue.name, sorted(rt.workflows), rt.fingerprints()
        )
        self.report.not_handled = elsewhere
        for workflow, count in elsewhere.items():
            _log("runs_not_handled", queue=self.queue.name, workflow=workflow, count=count)


def _log(event: str, **fields: Any) -> None:
    if structlog.is_configured():
        structlog.get_logger("flowkit").warning(event, **fields)


def queue_map(queues: Iterable[Queue | str] | None) -> dict[str, Queue]:
    """Queues by name (`"default"` when none are given)."""
    found = [q if isinstance(q, Queue) else Queue(q) for q in (queues or ("default",))]
    return {q.name: q for q in found}
