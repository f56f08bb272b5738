"""The `Engine`: durable runs through a store, idempotency, signals, recovery and cancel."""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

import structlog

from flowkit import events
from flowkit.codec import Codec
from flowkit.container import Registry, Scope
from flowkit.durable import (
    IncompatibleRun,
    StoreJournal,
    decode_errors,
    find_node,
    inflight,
    locate,
    position,
    rebuild,
    step_records,
    stored_result,
)
from flowkit.events import Subscription
from flowkit.exceptions import (
    DefinitionError,
    FlowkitError,
    LeaseLost,
    RunNotFound,
    SimulatedCrash,
    StepNotWaiting,
    StoredError,
    TransactionConflict,
    TransactionInProgress,
    UnknownQueue,
)
from flowkit.leases import LeaseKeeper
from flowkit.plan import PlanNode
from flowkit.run import Faults, Run
from flowkit.runner import (
    drive,
    drive_to_end,
    first_fatal_error,
    new_transaction_id,
    raise_for,
)
from flowkit.state import RunRecord, RunResult, StepState, TransactionState
from flowkit.store import (
    ACTIVE,
    Checkpoint,
    MemoryStore,
    NewRun,
    RunUpdate,
    Signal,
    Store,
    StoredRun,
)
from flowkit.worker import Queue, Worker, WorkReport, queue_map
from flowkit.workflow import Workflow

__all__ = ["Engine", "RecoveryReport", "SkippedRun"]

T = TypeVar("T")
Container = Registry | Scope
_CLAIMABLE_FOR_CANCEL = (TransactionState.DONE, TransactionState.WAITING, *ACTIVE)


class UnknownWorkflow(FlowkitError, LookupError):
    """A stored run belongs to a workflow this engine does not hold."""


class SkippedRun:
    """A run `recover()` left alone, and why.

    Attributes:
        transaction_id: The run's id.
        workflow: Its workflow's name.
        reason: Why it was not recovered.
    """

    __slots__ = ("reason", "transaction_id", "workflow")

    def __init__(self, transaction_id: str, workflow: str, reason: str) -> None:
        self.transaction_id = transaction_id
        self.workflow = workflow
        self.reason = reason

    def __repr__(self) -> str:
        return f"SkippedRun({self.transaction_id!r}, {self.workflow!r}, {self.reason!r})"


class RecoveryReport(list[RunResult[Any]]):
    """The results of the runs `recover()` finished; `skipped` lists the ones it left alone."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[SkippedRun] = []


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
        run = Run(
            workflow.plan,
            input,
            tx,
            container if container is not None else self.container,
            event_group_id=event_group_id,
            emitter=events.emitter_for(workflow.name, tx, self._subscriptions),
            journal=StoreJournal(self.store, self.codec, tx, self.owner),
            faults=self.faults.get(tx),
        )
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
        return self._resume(claimed, container)

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

    def _start_claimed(self, stored: StoredRun, container: Container | None) -> Run:
        """A queued run a worker just claimed: nothing to rebuild, nothing to count."""
        run = self._fresh_run(stored, container)
        if run.deadline is None and run.plan.timeout is not None:
            run.deadline = time.monotonic() + run.plan.timeout
        if run.emitter is not None:
            run.emitter.emit("run_started", events.DEBUG)
        return run

    def _resume(self, stored: StoredRun, container: Container | None) -> Run:
        """Rebuild a claimed run from its log, counting this recovery of its in-flight step."""
        loaded = self.store.load(stored.transaction_id)
        assert loaded is not None
        stored, steps = loaded
        run = self._fresh_run(stored, container)
        try:
            compensating = stored.status == TransactionState.COMPENSATING
            rebuild(run, steps, self.codec, compensating=compensating)
        except IncompatibleRun:
            release = Checkpoint(stored.transaction_id, self.owner, (), RunUpdate(release=True))
            self.store.write(release)
            raise
        if stored.status == TransactionState.QUEUED:  # run() of a queued id starts it here
            journal = run.journal
            assert isinstance(journal, StoreJournal)
            journal.note(RunUpdate(status=TransactionState.INVOKING))
        self._count_recovery(run, stored)
        return run

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
        workflow = self._held(stored)
        tx = stored.transaction_id
        run = Run(
            workflow.plan,
            self.codec.loads(stored.input),
            tx,
            container if container is not None else self.container,
            event_group_id=stored.event_group_id,
            emitter=events.emitter_for(workflow.name, tx, self._subscriptions),
            journal=StoreJournal(self.store, self.codec, tx, self.owner),
            faults=self.faults.get(tx),
        )
        if stored.deadline is not None:
            run.deadline = time.monotonic() + (stored.deadline - time.time())
        return run

    def _count_recovery(self, run: Run, stored: StoredRun) -> None:
        """Each resume of the same in-flight step counts; past its retries, it fails for good."""
        found = inflight(run)
        if found is None:
            return
        target, node = found
        name = target.full_name(node)
        count = stored.recoveries + 1 if stored.recovery_step == name else 1
        journal = run.journal
        assert isinstance(journal, StoreJournal)
        journal.note(RunUpdate(recoveries=count, recovery_step=name))
        limit = (node.retry.max_retries if node.retry else 0) + 1
        if count > limit:
            _give_up(target, node, count)
            position(run)

    # --- driving ----------------------------------------------------------------------------

    def _drive(self, run: Run) -> RunResult[Any]:
        self._leases.track(run.transaction_id, run)
        try:
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
            self._apply_signal(run, signal, consume=False)
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
        return self._signal(transaction_id, Signal(step, "success", payload), container)

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
        return self._signal(transaction_id, Signal(step, "failure", payload), container)

    def _signal(self, tx: str, signal: Signal, container: Container | None) -> RunResult[Any]:
        for _ in range(20):  # a lost race re-reads the run; it settles in a step or two
            stored = self.store.get_run(tx)
            if stored is None:
                raise RunNotFound(tx)
            state = self._signal_target_state(stored, signal.step)
            status = TransactionState(stored.status)
            if state is StepState.WAITING and status is TransactionState.WAITING:
                claimed = self.store.claim(tx, self.owner, self.lease_seconds, (status,))
                if claimed is not None:
                    return self._continue_signalled(claimed, signal, container)
                continue
            if state is not None and state is not StepState.WAITING:
                raise StepNotWaiting(tx, signal.step, f"it is {state.value}")
            if status.is_finished:
                raise StepNotWaiting(tx, signal.step, f"the run is {status.value}")
            outcome = self.store.put_signal(tx, signal)
            if outcome == "duplicate":
                raise StepNotWaiting(tx, signal.step, "it was already signalled")
            if outcome == "stored":
                return self._stored_result(tx)
        raise TransactionInProgress(tx, None)

    def _signal_target_state(self, stored: StoredRun, step: str) -> StepState | None:
        workflow = self._held(stored)
        node = find_node(workflow.plan, step)
        if node is None:
            raise RunNotFound(stored.transaction_id, step)
        if not node.async_completion:
            raise StepNotWaiting(stored.transaction_id, step, "it is not an async_completion step")
        loaded = self.store.load(stored.transaction_id)
        assert loaded is not None
        states = step_records(loaded[1])
        record = states.get(step)
        return record.state if record is not None else None

    def _continue_signalled(
        self, stored: StoredRun, signal: Signal, container: Container | None
    ) -> RunResult[Any]:
        run = self._resume(stored, container)
        self._apply_signal(run, signal, consume=True)
        position(run)
        return self._drive(run)

    def _apply_signal(self, run: Run, signal: Signal, *, consume: bool) -> None:
        target, node = locate(run, signal.step)
        i = node.index
        if signal.kind == "success":
            output = self.codec.loads(signal.payload)
            target.outputs[i] = output
            if target.comp_inputs[i] is None:
                target.comp_inputs[i] = output
            target.states[i] = StepState.DONE
            target.ended[i] = time.time()
            assert run.journal is not None
            run.journal.invoked(target, node, None)
            return
        type_name, message = self.codec.loads(signal.payload)
        target.fail(node, SignalledFailure(type_name, message), comp_input=target.comp_inputs[i])

    # --- continuations ----------------------------------------------------------------------

    def recover(self, *, container: Container | None = None, limit: int = 100) -> RecoveryReport:
        """Finish every run whose owner's lease expired and whose workflow this engine holds.

        The in-flight step is re-invoked with the same idempotency key, or compensation resumes
        where it stopped. Runs of unknown workflows, or with checkpoints of steps the workflow
        no longer has, are reported in `skipped` and left alone.

        Returns:
            The results of the recovered runs (never re-raising their failures).
        """
        report = RecoveryReport()
        for stored in self.store.expired(limit):
            if stored.workflow not in self._workflows:
                report.skipped.append(
                    SkippedRun(stored.transaction_id, stored.workflow, "unknown workflow")
                )
                continue
            claimed = self.store.claim(
                stored.transaction_id, self.owner, self.lease_seconds, (stored.status,)
            )
            if claimed is None:
                continue
            try:
                run = self._resume(claimed, container)
            except IncompatibleRun as exc:
                report.skipped.append(SkippedRun(stored.transaction_id, stored.workflow, str(exc)))
                continue
            report.append(self._drive(run))
        _log_skipped(report.skipped)
        return report

    def cancel(self, transaction_id: str, *, container: Container | None = None) -> RunResult[Any]:
        """Compensate a `done` or `waiting` run; returns the reverted (or failed) result.

        Raises:
            RunNotFound: no such run.
            TransactionInProgress: a live engine is executing it.
        """
        stored = self.store.get_run(transaction_id)
        if stored is None:
            raise RunNotFound(transaction_id)
        status = TransactionState(stored.status)
        if status in (TransactionState.REVERTED, TransactionState.FAILED):
            return self._stored_result(transaction_id)
        self._held(stored)
        claimed = self.store.claim(transaction_id, self.owner, self.lease_seconds, (status,))
        if claimed is None:
            raise TransactionInProgress(transaction_id, stored.owner)
        run = self._resume(claimed, container)
        run.status = TransactionState.COMPENSATING
        run.next_stage = len(run.plan.stages)
        journal = run.journal
        assert isinstance(journal, StoreJournal)
        journal.note(RunUpdate(status=TransactionState.COMPENSATING))
        return self._drive(run)

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
        return self._record(*loaded, decode=decode)

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
        return [self._record(row, None, decode=decode) for row in rows]

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

    def _record(
        self, stored: StoredRun, steps: Sequence[Any] | None, *, decode: bool = True
    ) -> RunRecord:
        loads = self.codec.loads if decode else _raw_json
        return RunRecord(
            transaction_id=stored.transaction_id,
            workflow=stored.workflow,
            status=TransactionState(stored.status),
            input=loads(stored.input),
            output=loads(stored.output),
            errors=tuple(decode_errors(stored.errors)),
            steps=step_records(list(steps)) if steps is not None else {},
            owner=stored.owner,
            lease_expires_at=_datetime(stored.lease_expires_at),
            created_at=_datetime(stored.created_at) or datetime.fromtimestamp(0),
            updated_at=_datetime(stored.updated_at) or datetime.fromtimestamp(0),
            queue=stored.queue,
        )

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


class SignalledFailure(FlowkitError):
    """The error given to `set_step_failure`, as the waiting step's failure.

    Attributes:
        type_name: The type name of the error that was signalled.
    """

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        super().__init__(message)


def raise_any(result: RunResult[Any]) -> None:
    """Raise for a reverted or failed result, in-process (`raise_for`) or stored (`StoredError`)."""
    if result.status not in (TransactionState.REVERTED, TransactionState.FAILED):
        return
    if any(e.exception is not None for e in result.errors):
        raise_for(result)
    if not result.errors:
        raise StoredError(None, "unknown", f"run {result.transaction_id!r} is {result.status}")
    first = first_fatal_error(result)
    raise StoredError(first.step, first.type_name, first.message)


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


def _give_up(run: Run, node: PlanNode, count: int) -> None:
    """Fail (or fail to compensate) a step whose process died `count` times in a row."""
    error = ProcessKilled(
        f"step {run.full_name(node)!r} was in flight when its process died {count - 1} times"
    )
    if run.status is TransactionState.COMPENSATING:
        run.states[node.index] = StepState.COMPENSATION_FAILED
        run.errors.append(_step_error(run.full_name(node), "compensate", error))
        run.comp_failed = True
        assert run.journal is not None
        run.journal.compensated(run, node, None)
        return
    run.begin(node, count)
    run.fail(node, error)


class ProcessKilled(FlowkitError):
    """A step was in flight in more dead processes than its retries allow."""


def _step_error(step: str, action: Any, exc: BaseException) -> Any:
    from flowkit.state import StepError

    return StepError.from_exception(step, action, exc)


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


def _raw_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _datetime(timestamp: float | None) -> datetime | None:
    from datetime import UTC

    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def _log_skipped(skipped: list[SkippedRun]) -> None:
    if skipped and structlog.is_configured():
        logger = structlog.get_logger("flowkit")
        for run in skipped:
            logger.warning(
                "run_not_recovered",
                transaction_id=run.transaction_id,
                workflow=run.workflow,
                reason=run.reason,
            )
