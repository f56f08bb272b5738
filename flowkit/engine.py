"""The `Engine`: durable runs through a store, idempotency, signals, recovery and cancel."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from flowkit import continuations, events
from flowkit.codec import Codec
from flowkit.container import Registry, Scope
from flowkit.continuations import RecoveryReport
from flowkit.durable import (
    StoreJournal,
    position,
)
from flowkit.events import Subscription
from flowkit.exceptions import (
    DefinitionError,
    LeaseLost,
    SimulatedCrash,
    TransactionConflict,
    TransactionInProgress,
    UnknownQueue,
    UnknownWorkflow,
)
from flowkit.leases import LeaseKeeper
from flowkit.reading import raise_any, record_of, stored_result
from flowkit.run import Faults, Run
from flowkit.runner import (
    drive,
    drive_to_end,
    new_transaction_id,
)
from flowkit.state import RunRecord, RunResult, TransactionState
from flowkit.store import (
    ACTIVE,
    MemoryStore,
    NewRun,
    Signal,
    Store,
    StoredRun,
)
from flowkit.syncscope import sync_scope
from flowkit.worker import Queue, Worker, WorkReport, queue_map
from flowkit.workflow import Workflow

__all__ = ["Engine"]

T = TypeVar("T")
Container = Registry | Scope
_CLAIMABLE_FOR_CANCEL = (TransactionState.DONE, TransactionState.WAITING, *ACTIVE)


class Engine:
    """Runs workflows durably through a store, and finishes them after signals and crashes.

    Args:
        store: A `flowkit.sqlalchemy.SqlStore`, a shared `MemoryStore`, or None for a private
            in-memory store (`async_completion` steps then need a real store).
        workflows: The workflows this engine runs and recovers (one per name).
        container: The registry or scope continuations (recover, signals, cancel) resolve from.
        worker_id: A name for this engine in run records (default: host and pid).
        lease_seconds: How long a run stays owned without renewal.
        retention: How long finished runs are kept before `purge()` deletes them.
        queues: The queues `enqueue` and `work` accept (names or `Queue`s; default:
            `"default"`).

    Raises:
        DefinitionError: two workflows under one name, or (with a durable store) a step
            without an explicit name.
    """

    def __init__(
        self,
        store: Store | None = None,
        workflows: Iterable[Workflow[Any, Any]] = (),
        *,
        container: Container | None = None,
        worker_id: str | None = None,
        lease_seconds: float = 30.0,
        retention: timedelta = timedelta(days=7),
        queues: Iterable[Queue | str] | None = None,
    ) -> None:
        if lease_seconds <= 0:
            raise DefinitionError(f"lease_seconds must be > 0, not {lease_seconds!r}")
        self.store: Store = store if store is not None else MemoryStore(durable=False)
        self.store.check()
        self.container = container
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}"
        self.owner = f"{self.worker_id}#{secrets.token_hex(4)}"
        self.lease_seconds = lease_seconds
        self.retention = retention
        self.codec = Codec()
        self.faults: dict[str, Faults] = {}
        self._workflows: dict[str, Workflow[Any, Any]] = {}
        self._subscriptions: tuple[Subscription, ...] = ()
        self._leases = LeaseKeeper(self._renew, lease_seconds / 3)
        self.queues = queue_map(queues)
        for wf in workflows:
            self.register(wf)

    # --- registration and events ------------------------------------------------------------

    def register(self, workflow: Workflow[Any, Any]) -> None:
        """Hold `workflow` under its name (registering the same object twice is a no-op).

        Raises:
            DefinitionError: another workflow holds the name, or a step lacks an explicit name
                while the store is durable.
        """
        held = self._workflows.get(workflow.name)
        if held is workflow:
            return
        if held is not None:
            raise DefinitionError(
                f"engine already holds a workflow named {workflow.name!r}; a hooked variant "
                "needs its own engine or name"
            )
        if self.store.durable:
            _check_durable_names(workflow)
        self._workflows[workflow.name] = workflow

    @property
    def workflows(self) -> dict[str, Workflow[Any, Any]]:
        """The workflows this engine holds, by name."""
        return dict(self._workflows)

    def subscribe(
        self,
        handler: Callable[[events.Event], None],
        workflow: str | None = None,
        transaction_id: str | None = None,
    ) -> Callable[[], None]:
        """Deliver events of matching runs to `handler`; returns a function that unsubscribes."""
        subscription = Subscription(handler, workflow, transaction_id)
        self._subscriptions = (*self._subscriptions, subscription)

        def unsubscribe() -> None:
            self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

        return unsubscribe

    # --- running ----------------------------------------------------------------------------

    def run(
        self,
        workflow: Workflow[Any, T],
        input: Any,
        *,
        container: Container | None = None,
        transaction_id: str | None = None,
        throw_on_error: bool = True,
        event_group_id: str | None = None,
    ) -> RunResult[T]:
        """Run `workflow` durably (see `Workflow.run` for the arguments).

        A known `transaction_id` invokes nothing: a finished run returns its stored result, a
        waiting run its waiting result, a run whose owner's lease expired is taken over.

        Raises:
            TransactionInProgress: a live engine owns the run.
            TransactionConflict: the id belongs to another workflow or input.
            NotSerializable: the input cannot be stored.
            StoredError: with `throw_on_error`, a stored run that was reverted or failed.
        """
        started = self._start(workflow, input, container, transaction_id, event_group_id)
        result = started if isinstance(started, RunResult) else self._drive(started)
        if throw_on_error:
            raise_any(result)
        return result

    async def run_async(
        self,
        workflow: Workflow[Any, T],
        input: Any,
        *,
        container: Container | None = None,
        transaction_id: str | None = None,
        throw_on_error: bool = True,
        event_group_id: str | None = None,
    ) -> RunResult[T]:
        """`run`, awaited on the running loop."""
        started = self._start(workflow, input, container, transaction_id, event_group_id)
        if isinstance(started, RunResult):
            result = started
        else:
            result = await self._drive_async(started)
        if throw_on_error:
            raise_any(result)
        return result

    def _start(
        self,
        workflow: Workflow[Any, Any],
        input: Any,
        container: Container | None,
        transaction_id: str | None,
        event_group_id: str | None,
    ) -> Run | RunResult[Any]:
        self.register(workflow)
        plan = workflow.plan
        if plan.has_async_completion and not self.store.durable:
            raise DefinitionError(
                f"workflow {workflow.name!r} has an async_completion step: it needs an Engine "
                "with a durable store (the process may exit while the step waits)"
            )
        tx = new_transaction_id(transaction_id)
        encoded = self.codec.dumps(input, "the run's input")
        deadline = time.time() + plan.timeout if plan.timeout is not None else None
        new = NewRun(
            tx,
            workflow.name,
            encoded,
            self.owner,
            self.lease_seconds,
            deadline,
            event_group_id=event_group_id,
        )
        existing = self.store.start_run(new)
        if existing is None:
            return self._new_run(workflow, input, tx, container, event_group_id, deadline)
        return self._existing(existing, workflow, encoded, container)

    def _new_run(
        self,
        workflow: Workflow[Any, Any],
        input: Any,
        tx: str,
        container: Container | None,
        event_group_id: str | None,
        deadline: float | None,
    ) -> Run:
        run = self._make_run(workflow, input, tx, container, event_group_id)
        if run.emitter is not None:
            run.emitter.emit("run_started", events.DEBUG)
        return run

    def _existing(
        self,
        stored: StoredRun,
        workflow: Workflow[Any, Any],
        encoded: str,
        container: Container | None,
    ) -> Run | RunResult[Any]:
        tx = stored.transaction_id
        _same_run(stored, workflow, encoded)
        status = TransactionState(stored.status)
        if status.is_finished or status is TransactionState.WAITING:
            return self._stored_result(tx)
        self._held(stored)
        claimed = self.store.claim(tx, self.owner, self.lease_seconds, (status,))
        if claimed is None:
            raise TransactionInProgress(tx, stored.owner)
        return continuations.resume(self, claimed, container)

    # --- queues -----------------------------------------------------------------------------

    def enqueue(
        self,
        workflow: Workflow[Any, Any],
        input: Any,
        *,
        transaction_id: str | None = None,
        queue: str = "default",
        event_group_id: str | None = None,
    ) -> str:
        """Store a run as `queued`, for a worker (`work()`, `flowkit worker`) to execute.

        Idempotent by transaction id: the same id, workflow and input enqueue once.

        Returns:
            The run's transaction id.

        Raises:
            UnknownQueue: the queue is not one this engine serves.
            TransactionConflict: the id is taken by another workflow or input.
            NotSerializable: the input cannot be stored.
        """
        self._queue(queue)
        self.register(workflow)
        tx = new_transaction_id(transaction_id)
        encoded = self.codec.dumps(input, "the run's input")
        new = NewRun(
            tx, workflow.name, encoded, None, self.lease_seconds,
            status=TransactionState.QUEUED, queue=queue, event_group_id=event_group_id,
        )  # fmt: skip
        existing = self.store.start_run(new)
        if existing is not None:
            _same_run(existing, workflow, encoded)
        return tx

    def work(
        self,
        queue: str = "default",
        *,
        concurrency: int = 1,
        stop: threading.Event | None = None,
        idle_timeout: float | None = None,
        container: Container | None = None,
        poll: tuple[float, float] = (0.05, 1.0),
    ) -> WorkReport:
        """Execute queued runs until `stop` is set (see `flowkit.worker`).

        Args:
            queue: The queue to serve.
            concurrency: Runs executed at once by this worker (threads).
            stop: Set it to stop gracefully: running runs finish their current step and
                release their lease.
            idle_timeout: Also stop after this many seconds with nothing to do.
            container: What runs resolve services from (default: the engine's).
            poll: First and longest wait between polls when idle (backoff doubles).

        Returns:
            A `WorkReport` of what was done.

        Raises:
            UnknownQueue: the queue is not one this engine serves.
        """
        spec = self._queue(queue)
        worker = Worker(self, spec, concurrency, stop or threading.Event(), container)
        return worker.run(idle_timeout, poll)

    def _queue(self, name: str) -> Queue:
        found = self.queues.get(name)
        if found is None:
            raise UnknownQueue(name, sorted(self.queues))
        return found

    # --- resuming ---------------------------------------------------------------------------

    def _held(self, stored: StoredRun) -> Workflow[Any, Any]:
        """The workflow of a stored run (checked before claiming it).

        Raises:
            UnknownWorkflow: this engine does not hold it.
        """
        workflow = self._workflows.get(stored.workflow)
        if workflow is None:
            raise UnknownWorkflow(
                f"run {stored.transaction_id!r} belongs to workflow {stored.workflow!r}, which "
                f"this engine does not hold (it holds {sorted(self._workflows)})"
            )
        return workflow

    def _fresh_run(self, stored: StoredRun, container: Container | None) -> Run:
        """A new `Run` of a stored run (its steps not loaded yet), owned by this engine."""
        workflow = self._held(stored)
        run = self._make_run(
            workflow, self.codec.loads(stored.input), stored.transaction_id, container,
            stored.event_group_id,
        )  # fmt: skip
        if stored.deadline is not None:
            run.deadline = time.monotonic() + (stored.deadline - time.time())
        return run

    def _make_run(
        self,
        workflow: Workflow[Any, Any],
        input: Any,
        tx: str,
        container: Container | None,
        event_group_id: str | None,
    ) -> Run:
        return Run(
            workflow.plan,
            input,
            tx,
            container if container is not None else self.container,
            event_group_id=event_group_id,
            emitter=events.emitter_for(workflow.name, tx, self._subscriptions),
            journal=StoreJournal(self.store, self.codec, tx, self.owner),
            faults=self.faults.get(tx),
        )

    # --- driving ----------------------------------------------------------------------------

    def _drive(self, run: Run) -> RunResult[Any]:
        self._leases.track(run.transaction_id, run)
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
            self._leases.untrack(run.transaction_id)

    async def _drive_async(self, run: Run) -> RunResult[Any]:
        self._leases.track(run.transaction_id, run)
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
            self._leases.untrack(run.transaction_id)

    def _deliver_taken(self, run: Run) -> None:
        journal = run.journal
        assert isinstance(journal, StoreJournal)
        signals, journal.taken = journal.taken, []
        for signal in signals:
            continuations.apply_signal(self, run, signal)
        position(run)

    # --- signals ----------------------------------------------------------------------------

    def set_step_success(
        self,
        transaction_id: str,
        step: str,
        output: Any = None,
        *,
        container: Container | None = None,
    ) -> RunResult[Any]:
        """Finish a waiting `async_completion` step with `output` and continue its run.

        A signal that arrives before the step is waiting is kept and delivered when it waits.

        Returns:
            The run's result after continuing (or its current state when the signal was kept).

        Raises:
            RunNotFound: no such run, or no such step in it.
            StepNotWaiting: the step is not an async_completion step, already finished, or
                already signalled.
            NotSerializable: the output cannot be stored.
        """
        payload = self.codec.dumps(output, f"the output given to step {step!r}")
        return continuations.signal(
            self, transaction_id, Signal(step, "success", payload), container
        )

    def set_step_failure(
        self,
        transaction_id: str,
        step: str,
        error: BaseException | str,
        *,
        container: Container | None = None,
    ) -> RunResult[Any]:
        """Fail a waiting `async_completion` step and compensate its run (see `set_step_success`).

        Args:
            error: The exception, or a message.
        """
        type_name = _type_name(error) if isinstance(error, BaseException) else "StepFailed"
        payload = self.codec.dumps([type_name, str(error)])
        return continuations.signal(
            self, transaction_id, Signal(step, "failure", payload), container
        )

    # --- continuations ----------------------------------------------------------------------

    def recover(self, *, container: Container | None = None, limit: int = 100) -> RecoveryReport:
        """Finish every run whose owner's lease expired and whose workflow this engine holds.

        The in-flight step is re-invoked with the same idempotency key, or compensation resumes
        where it stopped. Runs of unknown workflows, or with checkpoints of steps the workflow
        no longer has, are reported in `skipped` and left alone.

        Returns:
            The results of the recovered runs (never re-raising their failures).
        """
        return continuations.recover(self, container, limit)

    def cancel(self, transaction_id: str, *, container: Container | None = None) -> RunResult[Any]:
        """Compensate a `done` or `waiting` run; returns the reverted (or failed) result.

        Raises:
            RunNotFound: no such run.
            TransactionInProgress: a live engine is executing it.
        """
        return continuations.cancel(self, transaction_id, container)

    # --- reading ----------------------------------------------------------------------------

    def get(self, transaction_id: str, *, decode: bool = True) -> RunRecord | None:
        """The stored run, or None when unknown.

        Args:
            transaction_id: The run's id.
            decode: Rebuild inputs and outputs as the classes they were (which imports their
                modules); False gives their JSON form, for tools that run outside the app.
        """
        loaded = self.store.load(transaction_id)
        if loaded is None:
            return None
        return record_of(loaded[0], loaded[1], self.codec, decode=decode)

    def list(
        self,
        status: TransactionState | str | None = None,
        workflow: str | None = None,
        *,
        since: datetime | None = None,
        limit: int = 100,
        decode: bool = True,
    ) -> list[RunRecord]:
        """Stored runs, newest first (step records are left empty: use `get` for them).

        `decode=False` leaves inputs and outputs in their JSON form (see `get`).
        """
        rows = self.store.list_runs(
            None if status is None else TransactionState(status).value,
            workflow,
            since.timestamp() if since is not None else None,
            limit,
        )
        return [record_of(row, None, self.codec, decode=decode) for row in rows]

    def purge(self, older_than: timedelta | None = None) -> int:
        """Delete finished runs last updated more than `older_than` (default: retention) ago.

        After that, their transaction ids are new again.

        Returns:
            How many runs were deleted.
        """
        age = older_than if older_than is not None else self.retention
        return self.store.purge(self.store.now() - age.total_seconds())

    def result(self, transaction_id: str) -> RunResult[Any] | None:
        """The stored `RunResult` of a run (None when unknown); errors carry no exceptions."""
        loaded = self.store.load(transaction_id)
        return None if loaded is None else stored_result(loaded[0], loaded[1], self.codec)

    def _stored_result(self, transaction_id: str) -> RunResult[Any]:
        loaded = self.store.load(transaction_id)
        assert loaded is not None
        return stored_result(loaded[0], loaded[1], self.codec)

    # --- leases and lifetime ----------------------------------------------------------------

    def _renew(self, transaction_ids: Sequence[str]) -> None:
        self.store.renew(self.owner, transaction_ids, self.lease_seconds)

    def close(self) -> None:
        """Stop renewing leases and close the store."""
        self._leases.close()
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Engine {self.owner!r} workflows={sorted(self._workflows)}>"


def _same_run(stored: StoredRun, workflow: Workflow[Any, Any], encoded: str) -> None:
    """Raise `TransactionConflict` unless a stored run has this workflow and input."""
    tx = stored.transaction_id
    if stored.workflow != workflow.name:
        raise TransactionConflict(tx, f"it belongs to workflow {stored.workflow!r}")
    if stored.input != encoded:
        raise TransactionConflict(tx, "it was started with another input")


def _check_durable_names(workflow: Workflow[Any, Any]) -> None:
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


def _type_name(exc: BaseException) -> str:
    from flowkit.state import type_name_of

    return type_name_of(exc)
