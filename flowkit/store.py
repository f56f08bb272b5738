"""What a durable run store does, and its records.

A store keeps one row per run and an append-only log of step rows (one per finished invoke or
compensation). Every write made on behalf of a run is fenced on its owner: an engine that lost
a run's lease gets `LeaseLost` instead of writing. `flowkit.sqlalchemy.SqlStore` is the SQL
implementation; `flowkit.memory.MemoryStore` keeps the same semantics in a process.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from attrs import define, field, frozen

from flowkit.clock import Clock
from flowkit.state import TransactionState
from flowkit.syncscope import SyncScope

__all__ = [
    "Checkpoint",
    "NewRun",
    "RunUpdate",
    "Signal",
    "Store",
    "StoredRun",
    "StoredStep",
]

ACTIVE = (TransactionState.INVOKING, TransactionState.COMPENSATING)


@frozen
class StoredStep:
    """One row of a run's step log (values are encoded JSON text)."""

    step: str
    action: str
    status: str
    attempt: int = 0
    output: str | None = None
    compensate_input: str | None = None
    error: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    due_at: float | None = None
    """A waiting step's deadline, or a sleeping step's wake-up (epoch seconds, engine clock)."""


@frozen
class StoredRun:
    """A run's row (values are encoded JSON text; times are seconds since the epoch)."""

    transaction_id: str
    workflow: str
    status: str
    input: str
    output: str | None = None
    errors: str = "[]"
    owner: str | None = None
    lease_expires_at: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    deadline: float | None = None
    recoveries: int = 0
    recovery_step: str | None = None
    queue: str | None = None
    event_group_id: str | None = None
    version: int = 1
    fingerprint: str | None = None
    """None for a run recorded before fingerprints: it is continued by step names."""
    wake_at: float | None = None
    """When a `waiting` run needs a tick: its earliest deadline or wake-up (None: never)."""
    start_at: float | None = None
    """A queued run is not claimed before this instant (None: at once)."""
    trace_context: str | None = None
    """The W3C `traceparent` the run was started under (tracing tools continue it)."""


@frozen
class NewRun:
    """A run about to start (or be queued)."""

    transaction_id: str
    workflow: str
    input: str
    owner: str | None
    lease_seconds: float
    deadline: float | None = None
    status: str = TransactionState.INVOKING
    queue: str | None = None
    event_group_id: str | None = None
    version: int = 1
    fingerprint: str | None = None
    start_at: float | None = None
    trace_context: str | None = None


@frozen
class RunUpdate:
    """A change of the run row written with a checkpoint (None fields are left alone).

    `wake_at` is written whenever `status` is (a run that is not parked needs no tick).
    """

    status: str | None = None
    output: str | None = None
    errors: str | None = None
    release: bool = False
    recoveries: int | None = None
    recovery_step: str | None = None
    wake_at: float | None = None


@frozen
class Signal:
    """A signal for a waiting step (`kind` is `success` or `failure`; payload is JSON text)."""

    step: str
    kind: str
    payload: str


@define
class Checkpoint:
    """Rows to append and a run change, written in one transaction fenced on `owner`.

    `take_signals` (only with a `waiting` update): steps whose inbox signals, if any, are taken
    instead of parking the run.
    """

    transaction_id: str
    owner: str
    steps: Sequence[StoredStep] = ()
    run: RunUpdate | None = None
    take_signals: Sequence[str] = ()
    taken: list[Signal] = field(factory=list)


@runtime_checkable
class Store(Protocol):
    """The persistence a durable `Engine` needs."""

    durable: bool
    sync_key: str | None
    """The database file whose fsync runs may take over (`flowkit.syncscope`), or None."""
    syncs_each_commit: bool
    """True when each commit is durable as it returns (then a checkpoint covers the deferred
    commits before it); False under acknowledged durability (the scope syncs at its end)."""

    def start_run(self, new: NewRun) -> StoredRun | None:
        """Insert the run row; returns None when inserted, else the existing row."""

    def load(self, transaction_id: str) -> tuple[StoredRun, list[StoredStep]] | None:
        """The run row and its step log in write order, or None."""

    def get_run(self, transaction_id: str) -> StoredRun | None:
        """The run row only."""

    def write(self, checkpoint: Checkpoint, session: Any = None) -> None:
        """Append rows and apply the run change atomically (with `session`'s writes, if given).

        Raises:
            LeaseLost: the run is no longer owned by `checkpoint.owner`.
        """

    def claim(
        self, transaction_id: str, owner: str, lease_seconds: float, statuses: Iterable[str]
    ) -> StoredRun | None:
        """Take ownership when the run has one of `statuses` and no live owner."""

    def renew(self, owner: str, transaction_ids: Sequence[str], lease_seconds: float) -> None:
        """Extend the leases `owner` holds on these runs."""

    def expired(self, limit: int = 100) -> list[StoredRun]:
        """Active runs whose owner's lease has run out."""

    def expire_lease(self, transaction_id: str) -> None:
        """Mark a run's lease expired now (tests, and crash recovery in `flowkit.testing`)."""

    def put_signal(self, transaction_id: str, signal: Signal) -> str:
        """Keep a signal for a step that is not parked yet, atomically with a look at the run.

        Returns `"stored"`, `"duplicate"` (one is kept already) or `"waiting"` (the run is
        parked now: claim it and deliver the signal directly instead).
        """

    def list_runs(
        self,
        status: str | None = None,
        workflow: str | None = None,
        since: float | None = None,
        limit: int = 100,
        version: int | None = None,
    ) -> list[StoredRun]:
        """Runs, newest first (of one workflow version, when `version` is given)."""

    def purge(self, before: float) -> int:
        """Delete finished runs last updated before `before`; returns how many."""

    def use_clock(self, clock: Clock) -> None:
        """Read leases, times and the purge cut-off from `clock` from now on (an engine given
        an explicit clock calls it); `StoreError` when it already reads another one."""

    def now(self) -> float:
        """The store's clock, in seconds since the epoch."""

    def check(self) -> None:
        """Raise `SchemaMismatch` when the store cannot hold runs as it is."""

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
        """Take up to `limit` queued runs of `queue` (oldest first) whose workflow is one of
        `workflows` (and, when `fingerprints` is given, whose fingerprint is one of them or
        none), each by exactly one caller, keeping the queue under `concurrency` runs
        executing at once across every worker. With `now` (the engine's clock), runs whose
        `start_at` is later are left queued."""

    def due(self, now: float, workflows: Sequence[str], limit: int) -> list[StoredRun]:
        """Waiting runs of `workflows` with no live owner whose `wake_at` is at or before
        `now`, the earliest first."""

    def latest_scheduled(self, prefix: str) -> str | None:
        """The greatest transaction id that starts with `prefix` (a schedule's `name@`)."""

    def queued_elsewhere(
        self, queue: str, workflows: Sequence[str], fingerprints: Sequence[str] | None = None
    ) -> dict[str, int]:
        """Queued runs of workflows not in `workflows` (or, when `fingerprints` is given, with
        a fingerprint not in it), counted by workflow."""

    def listen(self, on_notify: Any) -> Any:
        """Something with `close()` that calls `on_notify(queue)` when runs are queued, or
        None when the store cannot notify (workers poll)."""

    def open_session(self) -> Any:
        """A unit-of-work session (SQL stores only)."""

    def sync_scope(self) -> SyncScope | None:
        """A fresh deferred-fsync scope for one drive of a run, or None (`flowkit.syncscope`)."""

    def close(self) -> None:
        """Release connections."""
