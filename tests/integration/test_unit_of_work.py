"""ctx.session: a step's database writes commit with its checkpoint, or not at all (spec §6)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from flowkit import (
    Engine,
    RetryPolicy,
    StepContext,
    TransactionState,
    WorkflowResponse,
    step,
    workflow,
)
from flowkit.sqlalchemy import SqlStore
from flowkit.testing.faults import Crash, FailurePlan, PlanFaults

app_metadata = MetaData()
entries = Table(
    "app_entries",
    app_metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run", String(64), nullable=False),
    Column("step", String(64), nullable=False),
)

attempts_seen: dict[str, int] = {}


def _write(ctx: StepContext) -> None:
    ctx.session.execute(insert(entries).values(run=ctx.transaction_id, step=ctx.step_name))


@step("write-then-flaky", retry=RetryPolicy(max_retries=2))
def write_then_flaky(mode: str, ctx: StepContext) -> str:
    """Writes a row; fails after writing on its first attempt when asked to."""
    _write(ctx)
    attempts_seen[ctx.transaction_id] = ctx.attempt
    if mode == "flaky" and ctx.attempt == 1:
        raise ConnectionError("lost the provider after writing")
    return mode


@step("write-then-fail")
def write_then_fail(mode: str, ctx: StepContext) -> str:
    """Writes a row, then fails when asked to."""
    _write(ctx)
    if mode == "fail":
        raise RuntimeError("failed after writing")
    return mode


@write_then_fail.compensate
def _undo_write(mode: Any, ctx: StepContext) -> None:
    ctx.session.execute(insert(entries).values(run=ctx.transaction_id, step="undo"))


@workflow("uow")
def uow(mode: Any) -> WorkflowResponse[Any]:
    """Two writing steps."""
    first = write_then_flaky(mode)
    return WorkflowResponse(write_then_fail(first))


@pytest.fixture
def store(database_url: str) -> Iterator[SqlStore]:
    """A SQL store with flowkit's and the app's tables."""
    store = SqlStore(database_url)
    store.create_all()
    with store.engine.begin() as conn:
        app_metadata.create_all(conn)
    yield store
    store.close()


def rows(store: SqlStore, tx: str) -> list[str]:
    """The steps that left a row for run `tx`, in order."""
    with store.engine.connect() as conn:
        found = conn.execute(
            select(entries.c.step).where(entries.c.run == tx).order_by(entries.c.id)
        )
        return [r[0] for r in found]


def test_writes_commit_with_the_checkpoint(store: SqlStore) -> None:
    """A successful run leaves one row per step, and its checkpoints."""
    result = Engine(store, [uow]).run(uow, "ok", transaction_id="u1")
    assert result.status is TransactionState.DONE
    assert rows(store, "u1") == ["write-then-flaky", "write-then-fail"]


def test_failed_attempt_leaves_no_writes(store: SqlStore) -> None:
    """An attempt that fails after writing is rolled back; the retry's writes stay."""
    result = Engine(store, [uow]).run(uow, "flaky", transaction_id="u2")
    assert result.succeeded
    assert attempts_seen["u2"] == 2
    assert rows(store, "u2") == ["write-then-flaky", "write-then-fail"]


def test_failed_step_rolls_back_and_compensation_writes(store: SqlStore) -> None:
    """A failing step leaves none of its writes; its compensation's writes commit."""
    result = Engine(store, [uow]).run(uow, "fail", transaction_id="u3", throw_on_error=False)
    assert result.status is TransactionState.REVERTED
    assert rows(store, "u3") == ["write-then-flaky", "undo"]


def test_crash_before_checkpoint_rolls_back_then_recovery_writes_once(store: SqlStore) -> None:
    """A crash between a step's writes and its checkpoint loses both; recovery writes once."""
    dying = Engine(store, [uow])
    dying.faults["u4"] = PlanFaults(FailurePlan(crash=Crash("write-then-fail", "invoke", "before")))
    with pytest.raises(BaseException, match="simulated crash"):
        dying.run(uow, "ok", transaction_id="u4")
    assert rows(store, "u4") == ["write-then-flaky"]
    store.expire_lease("u4")
    assert Engine(store, [uow]).recover()[0].succeeded
    assert rows(store, "u4") == ["write-then-flaky", "write-then-fail"]


def test_async_steps_and_in_memory_runs_get_no_session() -> None:
    """ctx.session is refused with a clear error outside a durable SQL run."""
    seen: list[str] = []

    @step("peek")
    def peek(x: Any, ctx: StepContext) -> None:
        try:
            ctx.session  # noqa: B018 - the property access is the point
        except RuntimeError as exc:
            seen.append(str(exc))

    @workflow("peek-wf")
    def peek_wf(x: Any) -> Any:
        return peek(x)

    peek_wf.run(1)
    assert "no database unit of work" in seen[0]


@step("write-slowly", timeout=0.05)
def write_slowly(mode: str, ctx: StepContext) -> str:
    """Writes a row, then returns after its timeout."""
    _write(ctx)
    time.sleep(0.1)
    return mode


@step("write-twice-same-id")
def write_twice_same_id(mode: str, ctx: StepContext) -> str:
    """Writes two rows with one primary key: the database refuses the second."""
    ctx.session.execute(insert(entries).values(id=10_000, run=ctx.transaction_id, step="a"))
    ctx.session.execute(insert(entries).values(id=10_000, run=ctx.transaction_id, step="b"))
    return mode


@workflow("uow-timeout")
def uow_timeout(mode: Any) -> WorkflowResponse[Any]:
    """A first writing step, then one that runs past its timeout."""
    first = write_then_flaky(mode)
    return WorkflowResponse(write_slowly(first))


@workflow("uow-conflict")
def uow_conflict(mode: Any) -> WorkflowResponse[Any]:
    """A step whose writes violate a primary key."""
    return WorkflowResponse(write_twice_same_id(mode))


def test_timed_out_step_leaves_no_writes(store: SqlStore) -> None:
    """A sync step that returns after its timeout is failed and its writes rolled back."""
    result = Engine(store, [uow_timeout]).run(
        uow_timeout, "ok", transaction_id="u5", throw_on_error=False
    )
    assert result.status is TransactionState.REVERTED
    assert result.errors[0].type_name == "flowkit.exceptions.StepTimeout"
    assert rows(store, "u5") == ["write-then-flaky"]


def test_refused_writes_fail_the_step_not_the_engine(store: SqlStore) -> None:
    """Writes the database refuses fail their step (typed error); nothing of them is kept."""
    result = Engine(store, [uow_conflict]).run(
        uow_conflict, "ok", transaction_id="u6", throw_on_error=False
    )
    assert result.status is TransactionState.REVERTED
    assert "IntegrityError" in result.errors[0].type_name
    assert rows(store, "u6") == []
