"""Queued runs and workers (issue 8): in process on every store, and as real processes on PG."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scale_app import done, executions, prepare, scale_job
from sqlalchemy import create_engine, func, select

import flowkit
from flowkit import (
    DefinitionError,
    Engine,
    MemoryStore,
    StepContext,
    TransactionConflict,
    TransactionState,
    UnknownQueue,
    WorkflowResponse,
    step,
    workflow,
)
from flowkit.sqlalchemy import SqlStore
from flowkit.worker import Queue

HERE = Path(__file__).parent


class Gauge:
    """Counts runs executing at once (the most seen)."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        """One more running."""
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        """One fewer."""
        with self.lock:
            self.now -= 1


@step("gauged")
def gauged(job: Any, ctx: StepContext) -> str:
    """Holds a slot for a moment, counting concurrent runs."""
    gauge = ctx.resolve(Gauge)
    gauge.enter()
    time.sleep(0.02)
    gauge.leave()
    return "ok"


@workflow("gauged-job")
def gauged_job(job: Any) -> WorkflowResponse[Any]:
    """One gauged step."""
    return WorkflowResponse(gauged(job))


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A store on memory or a SQLite file."""
    if request.param == "memory":
        yield MemoryStore()
        return
    sql = SqlStore(f"sqlite:///{tmp_path / 'q.db'}")
    sql.create_all()
    yield sql
    sql.close()


def gauge_engine(store: Any, gauge: Gauge, **options: Any) -> Engine:
    """An engine running gauged jobs."""
    registry = flowkit.Registry()
    registry.register_value(Gauge, gauge)
    return Engine(store, [gauged_job], container=registry, **options)


def test_enqueue_is_idempotent_and_checks_queue_and_input(store: Any) -> None:
    """enqueue stores a queued run once per id; unknown queues and other inputs are refused."""
    engine = gauge_engine(store, Gauge())
    tx = engine.enqueue(gauged_job, {"n": 1}, transaction_id="job-1")
    assert engine.enqueue(gauged_job, {"n": 1}, transaction_id="job-1") == tx
    assert engine.get(tx).status is TransactionState.QUEUED  # type: ignore[union-attr]
    with pytest.raises(TransactionConflict):
        engine.enqueue(gauged_job, {"n": 2}, transaction_id="job-1")
    with pytest.raises(UnknownQueue, match="nope"):
        engine.enqueue(gauged_job, {"n": 1}, queue="nope")
    with pytest.raises(UnknownQueue):
        engine.work("nope", idle_timeout=0)
    with pytest.raises(DefinitionError):
        Queue("bad:name")


def test_work_drains_the_queue_within_the_queue_limit(store: Any) -> None:
    """A worker runs every queued run once, never more at once than the queue allows."""
    gauge = Gauge()
    engine = gauge_engine(store, gauge, queues=[Queue("default", concurrency=2)])
    ids = [engine.enqueue(gauged_job, {"n": i}) for i in range(12)]
    report = engine.work(concurrency=4, idle_timeout=0.3, poll=(0.01, 0.05))
    assert report.claimed == 12
    assert report.finished == {"done": 12}
    assert gauge.most <= 2
    assert all(engine.get(tx).status is TransactionState.DONE for tx in ids)  # type: ignore[union-attr]


def test_runs_of_unknown_workflows_stay_queued_and_are_reported(store: Any) -> None:
    """A worker leaves runs of workflows it does not hold queued, and reports them."""
    other = gauge_engine(store, Gauge())

    @workflow("someone-elses")
    def someone_elses(x: Any) -> Any:
        return gauged(x)

    other.register(someone_elses)
    tx = other.enqueue(someone_elses, {"n": 1})
    report = gauge_engine(store, Gauge()).work(idle_timeout=0.1, poll=(0.01, 0.02))
    assert report.claimed == 0
    assert report.not_handled == {"someone-elses": 1}
    assert other.get(tx).status is TransactionState.QUEUED  # type: ignore[union-attr]


def test_stop_releases_running_runs_between_steps(store: Any) -> None:
    """Stopping a worker finishes the current step, gives the run back, and another ends it."""
    stop = threading.Event()
    gauge = Gauge()
    seen: list[str] = []

    @step("slow-1")
    def slow_1(x: Any, ctx: StepContext) -> str:
        seen.append("slow-1")
        stop.set()  # the shutdown arrives while this step runs
        time.sleep(0.05)
        return "a"

    @step("slow-2")
    def slow_2(x: Any, ctx: StepContext) -> str:
        seen.append("slow-2")
        return "b"

    @workflow("two-slow")
    def two_slow(x: Any) -> Any:
        slow_1(x)
        return slow_2(x)

    engine = gauge_engine(store, gauge)
    tx = engine.enqueue(two_slow, {"n": 1})
    report = engine.work(stop=stop, poll=(0.01, 0.02))
    assert report.released == 1
    record = engine.get(tx)
    assert record is not None
    assert record.status is TransactionState.INVOKING
    assert record.owner is None
    assert list(record.steps) == ["slow-1"]
    later = gauge_engine(store, gauge)
    later.register(two_slow)
    assert later.work(idle_timeout=0.1, poll=(0.01, 0.02)).recovered == 1
    assert later.get(tx).status is TransactionState.DONE  # type: ignore[union-attr]
    assert seen == ["slow-1", "slow-2"]


def test_worker_refuses_an_unmigrated_database_and_unknown_queues(tmp_path: Path) -> None:
    """`flowkit worker` on a database without flowkit's schema, or for a queue the app does not
    serve, exits 1 with one line and no traceback."""
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    process = _worker(empty, "--idle-timeout", "0.1")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert b"no flowkit schema" in err
    assert b"Traceback" not in err
    ready = f"sqlite:///{tmp_path / 'ready.db'}"
    prepare(ready)
    process = _worker(ready, "--queue", "nope", "--idle-timeout", "0.1")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert (
        err.decode().strip()
        == "Error: unknown queue 'nope'; this engine serves ['default', 'slow']"
    )


# --- real worker processes on PostgreSQL --------------------------------------------------------


def _worker(url: str, *args: str, lease: str = "30") -> subprocess.Popen[bytes]:
    env = {**os.environ, "FLOWKIT_SCALE_URL": url, "FLOWKIT_SCALE_LEASE": lease}
    command = [sys.executable, "-m", "flowkit.cli", "--app-dir", str(HERE), "worker"]
    return subprocess.Popen(
        [*command, "--app", "scale_app:engine", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _counts(url: str) -> tuple[int, dict[tuple[str, str], int]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        recorded = conn.execute(select(func.count()).select_from(done)).scalar_one()
        rows = conn.execute(
            select(executions.c.tx, executions.c.step, func.count()).group_by(
                executions.c.tx, executions.c.step
            )
        ).all()
    engine.dispose()
    return int(recorded), {(tx, step_name): int(n) for tx, step_name, n in rows}


def _enqueue(url: str, count: int, sleep: float = 0.0) -> list[str]:
    os.environ["FLOWKIT_SCALE_URL"] = url
    from scale_app import engine as make_engine

    engine = make_engine()
    ids = [engine.enqueue(scale_job, {"i": i, "sleep": sleep}) for i in range(count)]
    engine.close()
    return ids


def _statuses(url: str) -> dict[str, int]:
    store = SqlStore(url)
    engine = Engine(store)
    counts: dict[str, int] = {}
    for status in TransactionState:
        found = engine.list(status=status, limit=100_000, decode=False)
        if found:
            counts[status.value] = len(found)
    engine.close()
    return counts


@pytest.mark.postgres
@pytest.mark.slow
def test_three_workers_drain_2000_runs_each_once(postgres_url: str) -> None:
    """Three worker processes drain 2,000 queued runs; every run and step executes once."""
    prepare(postgres_url)
    ids = _enqueue(postgres_url, 2000)
    workers = [_worker(postgres_url, "--concurrency", "4", "--idle-timeout", "2") for _ in range(3)]
    for process in workers:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err.decode()
    recorded, runs = _counts(postgres_url)
    assert recorded == 2000
    assert set(runs.values()) == {1}
    assert len(runs) == 2 * len(ids)
    assert _statuses(postgres_url) == {"done": 2000}


@pytest.mark.postgres
def test_killed_worker_runs_are_finished_by_another(postgres_url: str) -> None:
    """SIGKILL a worker mid-run: another worker takes its runs over once their lease expires."""
    prepare(postgres_url)
    _enqueue(postgres_url, 12, sleep=0.3)
    first = _worker(postgres_url, "--concurrency", "4", lease="1")
    deadline = time.monotonic() + 30
    while _counts(postgres_url)[0] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    second = _worker(postgres_url, "--concurrency", "4", "--idle-timeout", "3", lease="1")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 0, err.decode()
    recorded, runs = _counts(postgres_url)
    assert recorded == 12
    assert all(runs[(tx, "record")] == 1 for tx, _ in runs)  # committed with its checkpoint
    assert all(n <= 2 for n in runs.values())  # the step in flight may run again (same key)
    assert _statuses(postgres_url) == {"done": 12}


@pytest.mark.postgres
def test_sigterm_drains_cleanly(postgres_url: str) -> None:
    """SIGTERM: the worker ends its current steps, releases the runs and exits 0; no step that
    was checkpointed runs again when another worker finishes them."""
    prepare(postgres_url)
    _enqueue(postgres_url, 6, sleep=0.4)
    first = _worker(postgres_url, "--concurrency", "3")
    deadline = time.monotonic() + 30
    while _counts(postgres_url)[0] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err.decode()
    assert b"released" in err
    second = _worker(postgres_url, "--concurrency", "3", "--idle-timeout", "2")
    second.communicate(timeout=120)
    _, runs = _counts(postgres_url)
    assert set(runs.values()) == {1}
    assert _statuses(postgres_url) == {"done": 6}
