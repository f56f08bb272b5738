"""The `Engine`: the facade over the rooms that run workflows durably.

Each public method delegates to the room named for what it does: `starting` (run, enqueue),
`continuations` (signals, recover, cancel), `worker` (work) and `reading` (get, list, result),
all sharing one `Runtime` (store, workflows, identity, leases, driving).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, TypeVar

from flowkit import continuations, events, starting, timers
from flowkit.clock import Clock
from flowkit.codec import Codec
from flowkit.continuations import RecoveryReport
from flowkit.encryption import Encryption
from flowkit.exceptions import UnknownQueue
from flowkit.memory import MemoryStore
from flowkit.queries import RunQueries
from flowkit.reading import raise_any
from flowkit.run import Faults
from flowkit.runtime import Container, Runtime
from flowkit.schedule import Schedule
from flowkit.state import RunResult, type_name_of
from flowkit.store import Signal, Store
from flowkit.timers import TickReport
from flowkit.worker import Queue, Worker, WorkReport, queue_map
from flowkit.workflow import Workflow

__all__ = ["Engine"]

T = TypeVar("T")


class Engine(RunQueries):
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
        encryption: Encrypt every stored value (inputs, outputs, compensate inputs, errors,
            signal payloads) with these keys; ids, names, statuses and times stay in clear.
            Needed to store `flowkit.Secret` values (see the README's "Data at rest").
        clock: What deadlines, sleeps, delayed starts and schedules read the time from
            (default: the system clock; tests give `flowkit.testing.ManualClock`).
        schedules: `flowkit.Schedule`s that `tick()` fires (their workflows must be held).

    Attributes:
        runtime: The state the engine's rooms share (a documented internal API, for the
            rooms and for tools built on them; applications use the methods below).
        queues: The queues this engine serves, by name.

    Raises:
        DefinitionError: two workflows under one name, (with a durable store) a step
            without an explicit name, or two schedules under one name.
        UnknownWorkflow: a schedule of a workflow the engine does not hold.
        UnknownQueue: a schedule whose queue the engine does not serve.
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
        encryption: Encryption | None = None,
        clock: Clock | None = None,
        schedules: Iterable[Schedule] = (),
    ) -> None:
        self.runtime = Runtime(
            store if store is not None else MemoryStore(durable=False),
            container=container,
            worker_id=worker_id,
            lease_seconds=lease_seconds,
            retention=retention,
            encryption=encryption,
            clock=clock,
        )
        self.queues = queue_map(queues)
        for wf in workflows:
            self.register(wf)
        for schedule in schedules:
            self.runtime.add_schedule(schedule)
            self._queue(schedule.queue)  # its runs must go to a queue this engine serves

    @property
    def store(self) -> Store:
        """Where this engine keeps its runs."""
        return self.runtime.store

    @property
    def codec(self) -> Codec:
        """How inputs and outputs are stored."""
        return self.runtime.codec

    @property
    def container(self) -> Container | None:
        """What runs resolve services from when they are given none."""
        return self.runtime.container

    @property
    def worker_id(self) -> str:
        """This engine's name in run records."""
        return self.runtime.worker_id

    @property
    def owner(self) -> str:
        """The owner this engine writes into the leases it takes (worker id and a nonce)."""
        return self.runtime.owner

    @property
    def lease_seconds(self) -> float:
        """How long a run stays owned without renewal."""
        return self.runtime.lease_seconds

    @property
    def retention(self) -> timedelta:
        """How long finished runs are kept before `purge()` deletes them."""
        return self.runtime.retention

    @property
    def clock(self) -> Clock:
        """What this engine reads the time from."""
        return self.runtime.clock

    @property
    def schedules(self) -> dict[str, Schedule]:
        """The schedules `tick()` fires, by name."""
        return dict(self.runtime.schedules)

    @property
    def faults(self) -> dict[str, Faults]:
        """Injected failures by transaction id (see `flowkit.testing`)."""
        return self.runtime.faults

    def register(self, workflow: Workflow[Any, Any]) -> None:
        """Hold `workflow` beside other versions of its name (twice the same: a no-op).

        Raises:
            DefinitionError: another definition holds the same name and version, or a step
                lacks an explicit name while the store is durable.
        """
        self.runtime.register(workflow)

    @property
    def workflows(self) -> dict[str, Workflow[Any, Any]]:
        """The workflows this engine holds, by name (the highest version of each)."""
        return dict(self.runtime.workflows)

    def subscribe(
        self,
        handler: Callable[[events.Event], None],
        workflow: str | None = None,
        transaction_id: str | None = None,
    ) -> Callable[[], None]:
        """Deliver events of matching runs to `handler`; returns a function that unsubscribes."""
        return self.runtime.subscribe(handler, workflow, transaction_id)

    def run(
        self,
        workflow: Workflow[Any, T],
        input: Any,
        *,
        container: Container | None = None,
        transaction_id: str | None = None,
        throw_on_error: bool = True,
        event_group_id: str | None = None,
        version: int | None = None,
    ) -> RunResult[T]:
        """Run `workflow` durably (see `Workflow.run` for the arguments).

        It starts on the highest version held (or `version`), continued on that one only. A
        known `transaction_id` invokes nothing: a finished run returns its stored result, a
        waiting run its waiting result, a run whose owner's lease expired is taken over.

        Raises:
            DefinitionError, UnknownWorkflow: a bad or unheld `version`.
            IncompatibleRun: a known run of a definition this engine does not hold.
            TransactionInProgress: a live engine owns the run.
            TransactionConflict: the id belongs to another workflow or input.
            NotSerializable: the input cannot be stored.
            StoredError: with `throw_on_error`, a stored run that was reverted or failed.
        """
        rt, chosen = self.runtime, self.runtime.pick(workflow, version)
        started = starting.start(rt, chosen, input, container, transaction_id, event_group_id)
        result = started if isinstance(started, RunResult) else rt.drive(started)
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
        version: int | None = None,
    ) -> RunResult[T]:
        """`run`, awaited on the running loop."""
        rt, chosen = self.runtime, self.runtime.pick(workflow, version)
        started = starting.start(rt, chosen, input, container, transaction_id, event_group_id)
        result = started if isinstance(started, RunResult) else await rt.drive_async(started)
        if throw_on_error:
            raise_any(result)
        return result

    def enqueue(
        self,
        workflow: Workflow[Any, Any],
        input: Any,
        *,
        transaction_id: str | None = None,
        queue: str = "default",
        event_group_id: str | None = None,
        version: int | None = None,
        start_at: datetime | None = None,
        delay: float | timedelta | None = None,
    ) -> str:
        """Store a run as `queued`, for a worker (`work()`, `flowkit worker`) to execute.

        Idempotent by transaction id: the same id, workflow and input enqueue once. Versions:
        see `run`. With `start_at` (an aware datetime) or `delay` (seconds or a timedelta,
        on the engine's clock), no worker claims it before then.

        Returns:
            The run's transaction id.

        Raises:
            UnknownQueue: the queue is not one this engine serves.
            InvalidTime: both `start_at` and `delay`, a naive `start_at`, a bad `delay`.
            TransactionConflict: the id is taken by another workflow or input.
            NotSerializable: the input cannot be stored.
        """
        self._queue(queue)
        begin = starting.start_time(self.runtime, start_at, delay)
        chosen = self.runtime.pick(workflow, version)
        rt = self.runtime
        return starting.enqueue(rt, chosen, input, transaction_id, queue, event_group_id, begin)[0]

    def tick(self, *, container: Container | None = None, limit: int = 100) -> TickReport:
        """Do, once, what is due at `clock.now()`: time out waits past their deadline (the run
        compensates), wake sleeping runs (they go on), enqueue due schedule ticks.

        Workers call it in their loop; any process may, several at once (each run changes
        once). At most `limit` due runs are continued per call.
        """
        return timers.tick(self.runtime, container, limit)

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
        worker = Worker(self.runtime, spec, concurrency, stop or threading.Event(), container)
        return worker.run(idle_timeout, poll)

    def _queue(self, name: str) -> Queue:
        found = self.queues.get(name)
        if found is None:
            raise UnknownQueue(name, sorted(self.queues))
        return found

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
        signal = Signal(step, "success", payload)
        return continuations.signal(self.runtime, transaction_id, signal, container)

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
        type_name = type_name_of(error) if isinstance(error, BaseException) else "StepFailed"
        signal = Signal(step, "failure", self.codec.dumps([type_name, str(error)]))
        return continuations.signal(self.runtime, transaction_id, signal, container)

    def recover(self, *, container: Container | None = None, limit: int = 100) -> RecoveryReport:
        """Finish every run whose owner's lease expired and whose workflow this engine holds.

        The in-flight step is re-invoked with the same idempotency key, or compensation resumes
        where it stopped. Runs of unknown workflows, or with checkpoints of steps the workflow
        no longer has, are reported in `skipped` and left alone.

        Returns:
            The results of the recovered runs (never re-raising their failures).
        """
        return continuations.recover(self.runtime, container, limit)

    def cancel(self, transaction_id: str, *, container: Container | None = None) -> RunResult[Any]:
        """Compensate a `done` or `waiting` run; returns the reverted (or failed) result.

        Raises:
            RunNotFound: no such run.
            TransactionInProgress: a live engine is executing it.
        """
        return continuations.cancel(self.runtime, transaction_id, container)

    def close(self) -> None:
        """Stop renewing leases and close the store."""
        self.runtime.close()

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
        return f"<Engine {self.owner!r} workflows={sorted(self.runtime.workflows)}>"
