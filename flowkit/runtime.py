"""What every room of the engine shares: its store, its workflows, its identity, and driving.

A `Runtime` is the engine's state and the one way a run is driven through its store (leases
renewed, crashes abandoned, signals that arrived meanwhile delivered). `flowkit.Engine` is the
facade over it; `starting`, `continuations` and `worker` are the rooms that use it.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from flowkit import events
from flowkit.clock import Clock, SystemClock, epoch_of
from flowkit.codec import Codec
from flowkit.container import Registry, Scope
from flowkit.encryption import Encryption
from flowkit.events import Subscription
from flowkit.exceptions import (
    DefinitionError,
    IncompatibleRun,
    LeaseLost,
    SimulatedCrash,
    UnknownWorkflow,
)
from flowkit.journal import StoreJournal
from flowkit.leases import LeaseKeeper
from flowkit.reading import record_of, stored_result
from flowkit.rebuild import apply_signal, position
from flowkit.recording import Composite
from flowkit.run import Faults, Run
from flowkit.runner import drive, drive_to_end
from flowkit.schedule import Schedule
from flowkit.sealing import SealedStore
from flowkit.state import RunRecord, RunResult, TransactionState
from flowkit.store import Store, StoredRun
from flowkit.syncscope import sync_scope
from flowkit.workflow import Workflow, check_version

__all__ = ["SCAN", "UNFINISHED", "UNKNOWN_WORKFLOW", "Container", "Runtime", "journal_of"]

Container = Registry | Scope
UNKNOWN_WORKFLOW = "unknown workflow"
"""The reason given for a run of a workflow the engine does not hold at all."""
UNFINISHED = (
    TransactionState.QUEUED,
    TransactionState.INVOKING,
    TransactionState.WAITING,
    TransactionState.COMPENSATING,
)
"""The states of runs that something may still continue."""
SCAN = 10_000
"""Runs of each unfinished state `Runtime.incompatible` reads at most."""


class Runtime:
    """The state an engine's rooms share, and driving runs through its store.

    Args:
        store: Where runs are kept (checked on construction).
        container: The registry or scope runs resolve services from by default.
        worker_id: A name for this engine in run records (default: host and pid).
        lease_seconds: How long a run stays owned without renewal.
        retention: How long finished runs are kept before a purge.
        encryption: When given, every stored value is encrypted (the store is wrapped in a
            `SealedStore`) and `flowkit.Secret` values may be stored.
        clock: What every time-dependent decision reads (default: the system clock).

    Raises:
        DefinitionError: `lease_seconds` is not positive.
    """

    def __init__(
        self,
        store: Store,
        *,
        container: Container | None,
        worker_id: str | None,
        lease_seconds: float,
        retention: timedelta,
        encryption: Encryption | None = None,
        clock: Clock | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise DefinitionError(f"lease_seconds must be > 0, not {lease_seconds!r}")
        store.check()
        self.encryption = encryption
        self.store: Store = store if encryption is None else SealedStore(store, encryption)
        self.container = container
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.owner = f"{self.worker_id}#{secrets.token_hex(4)}"
        self.lease_seconds = lease_seconds
        self.retention = retention
        if clock is not None and not isinstance(clock, Clock):
            raise DefinitionError(
                f"clock must have a now() method (a flowkit.Clock), not {clock!r}"
            )
        self.clock: Clock = clock if clock is not None else SystemClock()
        if clock is not None:  # leases, step times and retention follow it too
            self.store.use_clock(clock)
        self.schedules: dict[str, Schedule] = {}
        """The schedules `tick()` fires, by name."""
        self.trace_context: Callable[[], str | None] | None = None
        """Gives the W3C `traceparent` a new run is stored with (set by `flowkit.otel`)."""
        self.codec = Codec(protected=encryption is not None)
        self.faults: dict[str, Faults] = {}
        self.workflows: dict[str, Workflow[Any, Any]] = {}
        """The highest version held of each workflow, by name."""
        self.versions: dict[str, dict[int, Workflow[Any, Any]]] = {}
        """Every version held, by name and version."""
        self.subscriptions: tuple[Subscription, ...] = ()
        self.leases = LeaseKeeper(self.renew, lease_seconds / 3)

    # --- workflows and events -----------------------------------------------------------------

    def register(self, workflow: Workflow[Any, Any]) -> None:
        """Hold `workflow` beside the other versions of its name (see `Engine.register`)."""
        versions = self.versions.get(workflow.name, {})
        held = versions.get(workflow.version)
        if held is workflow:
            return
        if held is not None:
            raise DefinitionError(_taken_message(held, workflow, max(versions)))
        if self.store.durable:
            _check_durable_names(workflow)
        self.versions[workflow.name] = {**versions, workflow.version: workflow}
        if workflow.version == max(self.versions[workflow.name]):
            self.workflows[workflow.name] = workflow

    def add_schedule(self, schedule: Schedule) -> None:
        """Fire `schedule` from this engine's `tick()`.

        Raises:
            DefinitionError: not a `Schedule`, or another schedule has its name.
            UnknownWorkflow: this engine holds no workflow of the schedule's workflow name.
        """
        if not isinstance(schedule, Schedule):
            raise DefinitionError(f"schedules must be flowkit.Schedule, not {schedule!r}")
        held = self.schedules.get(schedule.name)
        if held is not None and held is not schedule:
            raise DefinitionError(f"two schedules are named {schedule.name!r}")
        if schedule.workflow_name not in self.workflows:
            raise UnknownWorkflow(
                f"schedule {schedule.name!r} starts workflow {schedule.workflow_name!r}, which "
                f"this engine does not hold (it holds {sorted(self.workflows)})"
            )
        self.schedules[schedule.name] = schedule

    def now(self) -> float:
        """This engine's clock, in seconds since the epoch."""
        return epoch_of(self.clock)

    def pick(self, workflow: Workflow[Any, Any], version: int | None) -> Workflow[Any, Any]:
        """The definition a new run of `workflow`'s name starts on: the highest version held,
        or `version` (registering `workflow` first).

        Raises:
            DefinitionError: `version` is not a positive int, or `workflow` clashes with a
                held definition.
            UnknownWorkflow: `version` is not held.
        """
        if version is not None:
            check_version(version, workflow.name)
        self.register(workflow)
        if version is None:
            return self.workflows[workflow.name]
        found = self.versions[workflow.name].get(version)
        if found is None:
            raise UnknownWorkflow(
                f"this engine holds versions {sorted(self.versions[workflow.name])} of "
                f"workflow {workflow.name!r}, not version {version}"
            )
        return found

    def held(self, stored: StoredRun) -> Workflow[Any, Any]:
        """The definition a stored run is continued on (checked before claiming it): the one
        whose fingerprint the run recorded, or, for a run recorded before fingerprints, the
        highest version held (its checkpoints are then matched by step names).

        Raises:
            UnknownWorkflow: this engine holds no version of the run's workflow.
            IncompatibleRun: it holds none with the run's fingerprint.
        """
        versions = self.versions.get(stored.workflow)
        if not versions:
            raise UnknownWorkflow(
                f"run {stored.transaction_id!r} belongs to workflow {stored.workflow!r}, which "
                f"this engine does not hold (it holds {sorted(self.workflows)})"
            )
        if stored.fingerprint is None:
            return self.workflows[stored.workflow]
        same = versions.get(stored.version)
        if same is not None and same.fingerprint == stored.fingerprint:
            return same
        for candidate in versions.values():  # renumbered, graph unchanged
            if candidate.fingerprint == stored.fingerprint:
                return candidate
        held = [(v, w.fingerprint) for v, w in sorted(versions.items())]
        raise IncompatibleRun(
            f"run {stored.transaction_id!r} started on version {stored.version} of workflow "
            f"{stored.workflow!r} (fingerprint {stored.fingerprint}); this engine holds "
            + ", ".join(f"version {v} (fingerprint {fp})" for v, fp in held)
            + f": register version {stored.version} beside the new one until its runs finish",
            transaction_id=stored.transaction_id,
            workflow=stored.workflow,
            version=stored.version,
            fingerprint=stored.fingerprint,
            held=held,
        )

    def incompatible(self, workflow: str | None, limit: int, *, decode: bool) -> list[RunRecord]:
        """Unfinished runs this engine cannot continue, newest first (`Engine.incompatible`).

        Reads at most `SCAN` runs of each unfinished state.
        """
        found = [
            stored
            for status in UNFINISHED
            for stored in self.store.list_runs(status.value, workflow, None, SCAN)
            if self.incompatibility(stored) is not None
        ]
        found.sort(key=lambda r: r.created_at, reverse=True)
        return [record_of(r, None, self.codec, decode=decode) for r in found[:limit]]

    def fingerprints(self) -> list[str]:
        """The fingerprints of every definition held, sorted."""
        return sorted({w.fingerprint for held in self.versions.values() for w in held.values()})

    def incompatibility(self, stored: StoredRun) -> str | None:
        """Why this engine cannot continue a stored run (None when it can)."""
        try:
            self.held(stored)
        except UnknownWorkflow:
            return UNKNOWN_WORKFLOW
        except IncompatibleRun as exc:
            return str(exc)
        return None

    def subscribe(
        self, handler: Callable[[events.Event], None], workflow: str | None, tx: str | None
    ) -> Callable[[], None]:
        """Deliver events of matching runs to `handler`; returns a function that unsubscribes."""
        subscription = Subscription(handler, workflow, tx)
        self.subscriptions = (*self.subscriptions, subscription)

        def unsubscribe() -> None:
            self.subscriptions = tuple(s for s in self.subscriptions if s is not subscription)

        return unsubscribe

    # --- runs -----------------------------------------------------------------------------------

    def make_run(
        self,
        workflow: Workflow[Any, Any],
        input: Any,
        tx: str,
        container: Container | None,
        event_group_id: str | None,
    ) -> Run:
        """A new `Run` of `workflow` journalled to the store under this engine's ownership."""
        return Run(
            workflow.plan,
            input,
            tx,
            container if container is not None else self.container,
            event_group_id=event_group_id,
            emitter=events.emitter_for(workflow.name, tx, self.subscriptions),
            journal=StoreJournal(self.store, self.codec, tx, self.owner),
            faults=self.faults.get(tx),
            clock=self.clock,
        )

    def fresh_run(self, stored: StoredRun, container: Container | None) -> Run:
        """A new `Run` of a stored run (its steps not loaded yet), owned by this engine."""
        workflow = self.held(stored)
        run = self.make_run(
            workflow, self.codec.loads(stored.input), stored.transaction_id, container,
            stored.event_group_id,
        )  # fmt: skip
        if stored.deadline is not None:
            run.deadline = time.monotonic() + (stored.deadline - time.time())
        return run

    def stored_result(self, transaction_id: str) -> RunResult[Any]:
        """The stored `RunResult` of a run known to exist."""
        loaded = self.store.load(transaction_id)
        assert loaded is not None
        return stored_result(loaded[0], loaded[1], self.codec)

    # --- driving --------------------------------------------------------------------------------

    def drive(self, run: Run) -> RunResult[Any]:
        """Drive an owned run to its end (or to a wait), renewing its lease meanwhile."""
        self.leases.track(run.transaction_id, run)
        try:
            with sync_scope(self.store.sync_scope()):
                result = drive_to_end(run)
                while _taken(run):
                    self._deliver_taken(run)
                    result = drive_to_end(run)
            return result
        except (SimulatedCrash, LeaseLost):
            _abandon(run)
            raise
        finally:
            self.leases.untrack(run.transaction_id)

    async def drive_async(self, run: Run) -> RunResult[Any]:
        """`drive`, awaited on the running loop."""
        self.leases.track(run.transaction_id, run)
        try:
            with sync_scope(self.store.sync_scope()):
                result = await drive(run, on_loop=True)
                while _taken(run):
                    self._deliver_taken(run)
                    result = await drive(run, on_loop=True)
            return result
        except (SimulatedCrash, LeaseLost):
            _abandon(run)
            raise
        finally:
            self.leases.untrack(run.transaction_id)

    def _deliver_taken(self, run: Run) -> None:
        """Signals that arrived before their steps waited, taken when the run parked."""
        journal = run.journal
        assert isinstance(journal, StoreJournal)
        signals, journal.taken = journal.taken, []
        for signal in signals:
            apply_signal(run, signal, self.codec)
        position(run)

    # --- leases and lifetime --------------------------------------------------------------------

    def renew(self, transaction_ids: Sequence[str]) -> None:
        """Extend this engine's leases on the runs it executes."""
        self.store.renew(self.owner, transaction_ids, self.lease_seconds)

    def close(self) -> None:
        """Stop renewing leases and close the store."""
        self.leases.close()
        self.store.close()


def journal_of(run: Run) -> StoreJournal:
    """The store journal of a run this engine made."""
    journal = run.journal
    assert isinstance(journal, StoreJournal)
    return journal


def _taken_message(held: Workflow[Any, Any], new: Workflow[Any, Any], highest: int) -> str:
    where = f"version {new.version} of workflow {new.name!r}"
    if held.fingerprint != new.fingerprint:
        return (
            f"engine already holds {where} with fingerprint {held.fingerprint}, and this "
            f"definition's is {new.fingerprint}: a changed graph needs a new version "
            f"(@workflow({new.name!r}, version={highest + 1}))"
        )
    return (
        f"engine already holds another definition of {where} (fingerprint "
        f"{held.fingerprint}); a hooked variant needs its own engine, name or version"
    )


def _check_durable_names(workflow: Composite) -> None:
    for node in workflow.definition.nodes:
        step = node.step
        if node.kind == "step" and step is not None and not step.explicit_name:
            raise DefinitionError(
                f"workflow {workflow.name!r}: step {step.name!r} needs an explicit name to run "
                "durably (a qualified name changes when code moves): @step('my-step')"
            )
        if node.child is not None:
            _check_durable_names(node.child)


def _taken(run: Run) -> bool:
    journal = run.journal
    return isinstance(journal, StoreJournal) and bool(journal.taken)


def _abandon(run: Run) -> None:
    journal = run.journal
    if isinstance(journal, StoreJournal):
        journal.abandon()
