"""The SQL store's edges: URLs, schema versions, migrations, and values that cannot be stored."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from durable_app import Order, three_steps
from sqlalchemy import create_engine, inspect, text

from flowkit import (
    Engine,
    NotSerializable,
    SchemaMismatch,
    StepContext,
    StoreError,
    TransactionState,
    WorkflowResponse,
    step,
    workflow,
)
from flowkit.sqlalchemy import SqlStore
from flowkit.sqlalchemy.tables import VERSION_TABLE, metadata


def test_malformed_or_unknown_urls_are_store_errors(tmp_path: Path) -> None:
    """Bad URLs fail at construction with StoreError, and never show a password."""
    with pytest.raises(StoreError, match="cannot use database URL"):
        SqlStore("not a url")
    with pytest.raises(StoreError, match="cannot use database URL"):
        SqlStore("nosuchdb://x/y")
    with pytest.raises(StoreError, match="cannot open database") as caught:
        SqlStore("postgresql://someone:hunter2@127.0.0.1:1/nowhere")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(StoreError, match="cannot open database"):
        SqlStore(f"sqlite:///{tmp_path}/missing-dir/x.db")


def test_engine_refuses_a_database_without_schema(database_url: str) -> None:
    """An engine on an unmigrated database raises SchemaMismatch and writes nothing."""
    store = SqlStore(database_url)
    with pytest.raises(SchemaMismatch, match="no flowkit schema"):
        Engine(store)
    assert "flowkit_runs" not in inspect(store.engine).get_table_names()
    store.close()


def test_engine_refuses_another_schema_revision(database_url: str) -> None:
    """A schema stamped with another revision raises SchemaMismatch naming both."""
    store = SqlStore(database_url)
    store.create_all()
    with store.engine.begin() as conn:
        conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    fresh = SqlStore(database_url)
    with pytest.raises(SchemaMismatch, match="9999"):
        Engine(fresh)
    fresh.close()
    store.close()


def test_migrations_build_the_same_schema_as_create_all(database_url: str) -> None:
    """Running the shipped Alembic migrations yields exactly the tables of `create_all`."""
    store = SqlStore(database_url)
    store.upgrade()
    engine = create_engine(store.url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        diff = compare_metadata(context, metadata)
    engine.dispose()
    assert diff == []
    Engine(store).close()  # the stamped revision is accepted


def test_unstorable_input_is_refused_before_anything_is_written(database_url: str) -> None:
    """An input that cannot be stored raises NotSerializable and stores no run."""
    store = SqlStore(database_url)
    store.create_all()
    eng = Engine(store, [three_steps])
    with pytest.raises(NotSerializable, match="the run's input"):
        eng.run(three_steps, object(), transaction_id="bad-input")
    assert eng.get("bad-input") is None
    eng.close()


class Opaque:
    """A class the codec cannot store."""


@step("make-opaque")
def make_opaque(x: Any, ctx: StepContext) -> Opaque:
    """Returns a value that cannot be stored."""
    return Opaque()


compensated: list[Any] = []


@step("before-opaque")
def before_opaque(x: Any, ctx: StepContext) -> str:
    """A compensated step before the bad one."""
    return "fine"


@before_opaque.compensate
def _undo_before(value: Any, ctx: StepContext) -> None:
    compensated.append(value)


@workflow("opaque-wf")
def opaque_wf(x: Any) -> WorkflowResponse[Any]:
    """A step whose output cannot be stored, after a good one."""
    before_opaque(x)
    return WorkflowResponse(make_opaque(x))


def test_unstorable_output_fails_the_step_and_compensates(database_url: str) -> None:
    """A step returning an unstorable value fails with NotSerializable; the run reverts."""
    compensated.clear()
    store = SqlStore(database_url)
    store.create_all()
    eng = Engine(store, [opaque_wf])
    result = eng.run(opaque_wf, 1, transaction_id="opaque", throw_on_error=False)
    assert result.status is TransactionState.REVERTED
    assert result.errors[0].type_name == "flowkit.exceptions.NotSerializable"
    assert "make-opaque" in result.errors[0].message
    assert compensated == ["fine"]
    eng.close()


def test_sqlite_pragmas_are_set_explicitly(tmp_path: Path) -> None:
    """SQLite runs in WAL with the synchronous level asked for."""
    store = SqlStore(f"sqlite:///{tmp_path / 'p.db'}", synchronous="NORMAL")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    store.close()
    default = SqlStore(f"sqlite:///{tmp_path / 'q.db'}")
    with default.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    default.close()


def test_workflow_deadline_survives_a_restart(database_url: str) -> None:
    """A run resumed after its stored workflow deadline fails with WorkflowTimeout."""
    from flowkit.testing.faults import Crash, FailurePlan, PlanFaults

    timed = three_steps.__class__(
        "timed", three_steps.definition, timeout=0.2, hooks=three_steps.hooks
    )
    store = SqlStore(database_url)
    store.create_all()
    from durable_app import Ledger, ledger_registry

    ledger = Ledger()
    dying = Engine(store, [timed], container=ledger_registry(ledger))
    dying.faults["late"] = PlanFaults(FailurePlan(crash=Crash("first")))
    with pytest.raises(BaseException, match="simulated crash"):
        dying.run(timed, Order("t", Decimal("1")), transaction_id="late")
    import time

    time.sleep(0.3)
    store.expire_lease("late")
    result = Engine(SqlStore(database_url), [timed], container=ledger_registry(ledger)).recover()[0]
    assert result.status is TransactionState.REVERTED
    assert result.errors[0].type_name == "flowkit.exceptions.WorkflowTimeout"
    assert ledger.names("compensate") == ["first"]
    store.close()
