"""`MemoryStore`: the store protocol kept in process memory.

It keeps the semantics of `flowkit.sqlalchemy.SqlStore` (fencing on owners, leases, the inbox of
early signals, queues); values are still encoded, so what works here works on a database.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from attrs import evolve

from flowkit.clock import Clock, epoch_of
from flowkit.exceptions import LeaseLost, StoreError
from flowkit.state import TransactionState
from flowkit.store import ACTIVE, Checkpoint, NewRun, RunUpdate, Signal, StoredRun, StoredStep

__all__ = ["MemoryStore"]


class MemoryStore:
    """A thread-safe store in process memory, shared by engines that are given it.

    Args:
        durable: False for the private store of an `Engine(store=None)`: such an engine
            refuses `async_completion` steps, since nothing outlives the process.
    """

    def __init__(self, *, durable: bool = True) -> None:
        self.durable = durable
        self.sync_key: str | None = None  # nothing to fsync in memory
        self.syncs_each_commit = False
        self._lock = threading.RLock()
        self._runs: dict[str, StoredRun] = {}
        self._steps: dict[str, list[StoredStep]] = {}
        self._inbox: dict[tuple[str, str], Signal] = {}
        self.closed = False
        self._clock: Clock | None = None

    def start_run(self, new: NewRun) -> StoredRun | None:
        with self._lock:
            found = self._runs.get(new.transaction_id)
            if found is not None:
                return found
            now = self.now()
            self._runs[new.transaction_id] = StoredRun(
                new.transaction_id,
                new.workflow,
                new.status,
                new.input,
                owner=new.owner,
                lease_expires_at=now + new.lease_seconds if new.owner else None,
                created_at=now,
                updated_at=now,
                deadline=new.deadline,
                queue=new.queue,
                event_group_id=new.event_group_id,
                version=new.version,
                fingerprint=new.fingerprint,
                start_at=new.start_at,
                trace_context=new.trace_context,
            )
            self._steps[new.transaction_id] = []
            return None

    def load(self, transaction_id: str) -> tuple[StoredRun, list[StoredStep]] | None:
        with self._lock:
            run = self._runs.get(transaction_id)
            return None if run is None else (run, list(self._steps[transaction_id]))

    def get_run(self, transaction_id: str) -> StoredRun | None:
        with self._lock:
            return self._runs.get(transaction_id)

    def write(self, checkpoint: Checkpoint, session: Any = None) -> None:
        with self._lock:
            tx = checkpoint.transaction_id
            run = self._runs.get(tx)
            if run is None or run.owner != checkpoint.owner:
                raise LeaseLost(tx)
            self._steps[tx].extend(checkpoint.steps)
            update = checkpoint.run
            if update is not None and update.status == TransactionState.WAITING:
                taken = [
                    self._inbox.pop((tx, s))
                    for s in checkpoint.take_signals
                    if (tx, s) in self._inbox
                ]
                if taken:
                    checkpoint.taken.extend(taken)
                    update = None
            self._runs[tx] = _apply(run, update, self.now())

    def claim(
        self, transaction_id: str, owner: str, lease_seconds: float, statuses: Iterable[str]
    ) -> StoredRun | None:
        with self._lock:
            run = self._runs.get(transaction_id)
            now = self.now()
            if run is None or run.status not in set(statuses) or _live(run, now):
                return None
            claimed = evolve(run, owner=owner, lease_expires_at=now + lease_seconds, updated_at=now)
            self._runs[transaction_id] = claimed
            return claimed

    def renew(self, owner: str, transaction_ids: Sequence[str], lease_seconds: float) -> None:
        with self._lock:
            now = self.now()
            for tx in transaction_ids:
                run = self._runs.get(tx)
                if run is not None and run.owner == owner:
                    self._runs[tx] = evolve(run, lease_expires_at=now + lease_seconds)

    def expired(self, limit: int = 100) -> list[StoredRun]:
        with self._lock:
            now = self.now()
            found = [r for r in self._runs.values() if r.status in ACTIVE and not _live(r, now)]
            return sorted(found, key=lambda r: r.created_at)[:limit]

    def expire_lease(self, transaction_id: str) -> None:
        with self._lock:
            run = self._runs.get(transaction_id)
            if run is not None:
                self._runs[transaction_id] = evolve(run, lease_expires_at=self.now() - 1)

    def put_signal(self, transaction_id: str, signal: Signal) -> str:
        with self._lock:
            key = (transaction_id, signal.step)
            if key in self._inbox:
                return "duplicate"
            run = self._runs.get(transaction_id)
            if run is not None and run.status == TransactionState.WAITING:
                return "waiting"
            self._inbox[key] = signal
            return "stored"

    def list_runs(
        self,
        status: str | None = None,
        workflow: str | None = None,
        since: float | None = None,
        limit: int = 100,
        version: int | None = None,
    ) -> list[StoredRun]:
        with self._lock:
            runs = [
                r
                for r in self._runs.values()
                if (status is None or r.status == status)
                and (workflow is None or r.workflow == workflow)
                and (since is None or r.created_at >= since)
                and (version is None or r.version == version)
            ]
        return sorted(runs, key=lambda r: r.created_at, reverse=True)[:limit]

    def purge(self, before: float) -> int:
        with self._lock:
            doomed = [
                tx
                for tx, r in self._runs.items()
                if TransactionState(r.status).is_finished and r.updated_at < before
            ]
            for tx in doomed:
                del self._runs[tx]
                del self._steps[tx]
            return len(doomed)

    def now(self) -> float:
        clock = self._clock
        return time.time() if clock is None else epoch_of(clock)

    def use_clock(self, clock: Clock) -> None:
        """Read leases and times from `clock` (an engine given an explicit clock calls this).

        Raises:
            StoreError: the store already reads another clock.
        """
        if self._clock is not None and self._clock is not clock:
            raise StoreError("this MemoryStore already reads another engine's clock")
        self._clock = clock

    def claim_queued(
        self,
        queue: str,
        owner: str,
        lease_seconds: float,
        workflows: Sequence[str],
        limit: int,
        concurrency: int | None = None,
        fingerprints: Sequence[str] | None = None,
        now: float | None = None,
    ) -> list[StoredRun]:
        with self._lock:
            not_before, now = now, self.now()
            if concurrency is not None:
                running = sum(
                    1
                    for r in self._runs.values()
                    if r.queue == queue and r.status in ACTIVE and _live(r, now)
                )
                limit = min(limit, concurrency - running)
            picked = sorted(
                (
                    r
                    for r in self._runs.values()
                    if r.queue == queue
                    and r.status == TransactionState.QUEUED
                    and r.owner is None
                    and r.workflow in workflows
                    and _held(r, fingerprints)
                    and (not_before is None or r.start_at is None or r.start_at <= not_before)
                ),
                key=lambda r: r.created_at,
            )[: max(limit, 0)]
            claimed = [
                evolve(
                    r,
                    status=TransactionState.INVOKING.value,
                    owner=owner,
                    lease_expires_at=now + lease_seconds,
                    updated_at=now,
                )
                for r in picked
            ]
            for run in claimed:
                self._runs[run.transaction_id] = run
            return claimed

    def due(self, now: float, workflows: Sequence[str], limit: int) -> list[StoredRun]:
        with self._lock:
            live = self.now()
            found = [
                r
                for r in self._runs.values()
                if r.status == TransactionState.WAITING
                and r.wake_at is not None
                and r.wake_at <= now
                and r.workflow in workflows
                and not _live(r, live)
            ]
        return sorted(found, key=lambda r: r.wake_at or 0.0)[:limit]

    def latest_scheduled(self, prefix: str) -> str | None:
        with self._lock:
            return max((tx for tx in self._runs if tx.startswith(prefix)), default=None)

    def queued_elsewhere(
        self, queue: str, workflows: Sequence[str], fingerprints: Sequence[str] | None = None
    ) -> dict[str, int]:
        """Queued runs of workflows not in `workflows` (or of fingerprints not held)."""
        with self._lock:
            found: dict[str, int] = {}
            for r in self._runs.values():
                if (
                    r.queue == queue
                    and r.status == TransactionState.QUEUED
                    and (r.workflow not in workflows or not _held(r, fingerprints))
                ):
                    found[r.workflow] = found.get(r.workflow, 0) + 1
            return found

    def listen(self, on_notify: Any) -> None:
        """No notifications in memory: workers poll."""

    def check(self) -> None:
        """Nothing to check in memory."""

    def open_session(self) -> Any:
        raise RuntimeError("the in-memory store has no database session: use a SqlStore")

    def sync_scope(self) -> None:
        """No file, no fsync to defer."""

    def close(self) -> None:
        self.closed = True


def _held(run: StoredRun, fingerprints: Sequence[str] | None) -> bool:
    return fingerprints is None or run.fingerprint is None or run.fingerprint in fingerprints


def _live(run: StoredRun, now: float) -> bool:
    return run.owner is not None and (run.lease_expires_at or 0.0) > now


def _apply(run: StoredRun, update: RunUpdate | None, now: float) -> StoredRun:
    if update is None:
        return evolve(run, updated_at=now)
    changes: dict[str, Any] = {"updated_at": now}
    for name in ("status", "output", "errors", "recoveries", "recovery_step"):
        value = getattr(update, name)
        if value is not None:
            changes[name] = value
    if update.status is not None:
        changes["wake_at"] = update.wake_at
    if update.release:
        changes["owner"] = None
        changes["lease_expires_at"] = None
    return evolve(run, **changes)
