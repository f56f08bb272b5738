"""Workflow versions (spec §11) on SQLite and PostgreSQL: runs continue on the definition they
started on, never on another graph; the issue's three deploy scenarios."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import versions_app as app
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text
from versions_app import (
    CALLS,
    vwf_inserted,
    vwf_removed,
    vwf_renamed,
    vwf_v1,
    vwf_v1_bugfix,
    vwf_v1_retrying,
)

from flowkit import (
    DefinitionError,
    Engine,
    IncompatibleRun,
    TransactionState,
    UnknownStep,
    UnknownWorkflow,
    Workflow,
    WorkflowResponse,
    workflow,
)
from flowkit.sqlalchemy import SqlStore
from flowkit.sqlalchemy.migrate import alembic_config, upgrade
from flowkit.sqlalchemy.tables import SCHEMA_REVISION
from flowkit.testing.faults import Crash, FailurePlan, PlanFaults

HERE = Path(__file__).parent


@pytest.fixture
def url(database_url: str) -> str:
    """A database with flowkit's tables; CALLS cleared."""
    store = SqlStore(database_url)
    store.create_all()
    store.close()
    CALLS.clear()
    return database_url


def engine(url: str, *workflows: Workflow[Any, Any]) -> Engine:
    """An engine on `url` holding `workflows`."""
    return Engine(SqlStore(url), workflows)


def park_v1(url: str, tx: str) -> None:
    """Start a run of version 1 that parks at its waiting step, in an engine that then exits."""
    with engine(url, vwf_v1) as old:
        assert old.run(vwf_v1, {"n": 1}, transaction_id=tx).status is TransactionState.WAITING
    CALLS.clear()


def snapshot(url: str, tx: str) -> Any:
    """Everything stored about a run: its row, its step rows and its inbox rows."""
    db = create_engine(url)
    with db.connect() as conn:
        run = conn.execute(text("SELECT * FROM flowkit_runs WHERE transaction_id = :t"), {"t": tx})
        found = [tuple(run.one())]
        for table in ("flowkit_steps", "flowkit_inbox"):
            rows = conn.execute(
                text(f"SELECT * FROM {table} WHERE transaction_id = :t"), {"t": tx}
            ).all()
            found.append(sorted(tuple(r) for r in rows))
    db.dispose()
    return found


# --- fingerprints and definitions -------------------------------------------------------------


def test_fingerprint_ignores_code_bodies_and_sees_the_graph() -> None:
    """A fixed step body keeps the fingerprint; a step added, renamed or removed, or an option
    that changes execution, gives another one."""
    assert vwf_v1_bugfix.fingerprint == vwf_v1.fingerprint
    others = {vwf_inserted, vwf_renamed, vwf_removed, vwf_v1_retrying}
    fingerprints = {w.fingerprint for w in others} | {vwf_v1.fingerprint}
    assert len(fingerprints) == 5
    assert all(len(fp) == 64 and int(fp, 16) >= 0 for fp in fingerprints)


def test_fingerprint_is_stable_across_processes() -> None:
    """Another interpreter computes the same digest (it is not built from hashes or ids)."""
    code = "import versions_app; print(versions_app.vwf_v1.fingerprint)"
    env = {**os.environ, "PYTHONPATH": str(HERE), "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == vwf_v1.fingerprint


@pytest.mark.parametrize("bad", [0, -1, True, "2", 1.5, None])
def test_a_version_that_is_not_a_positive_int_is_a_definition_error(bad: Any) -> None:
    """@workflow(version=...) takes positive ints only, naming the workflow."""
    with pytest.raises(DefinitionError, match=r"'bad-version'.*version must be a positive int"):

        @workflow("bad-version", version=bad)
        def bad_version(inp: Any) -> WorkflowResponse[Any]:
            return WorkflowResponse(app.a(inp))


def test_two_graphs_under_one_name_and_version_are_refused(url: str) -> None:
    """Registering another graph as the same name and version names both fingerprints."""
    store = SqlStore(url)
    with pytest.raises(DefinitionError) as caught:
        Engine(store, [vwf_v1, vwf_v1_retrying])
    store.close()
    assert vwf_v1.fingerprint in str(caught.value)
    assert vwf_v1_retrying.fingerprint in str(caught.value)
    assert "version=2" in str(caught.value)
    with engine(url, vwf_v1) as eng:
        with pytest.raises(DefinitionError, match="already holds version 1"):
            eng.run(vwf_v1_retrying, {"n": 1}, transaction_id="clash")
        assert eng.get("clash") is None


def test_new_runs_start_on_the_highest_version_or_the_one_given(url: str) -> None:
    """run() and enqueue() pick the highest version held unless version= names another; every
    run records its version and fingerprint."""
    with engine(url, vwf_v1, vwf_inserted) as eng:
        eng.run(vwf_v1, {"n": 1}, transaction_id="high")
        eng.run(vwf_v1, {"n": 1}, transaction_id="low", version=1)
        eng.enqueue(vwf_v1, {"n": 1}, transaction_id="queued-low", version=1)
        high, low, queued = (eng.get(tx) for tx in ("high", "low", "queued-low"))
        assert high is not None
        assert low is not None
        assert queued is not None
        assert (high.version, high.fingerprint) == (2, vwf_inserted.fingerprint)
        assert (low.version, low.fingerprint) == (1, vwf_v1.fingerprint)
        assert (queued.version, queued.fingerprint) == (1, vwf_v1.fingerprint)
        assert [r.version for r in eng.list(workflow="vwf", version=1)] == [1, 1]


@pytest.mark.parametrize(
    ("version", "error", "match"),
    [
        (3, UnknownWorkflow, r"holds versions \[1, 2\] of workflow 'vwf', not version 3"),
        (0, DefinitionError, "positive int"),
        ("1", DefinitionError, "positive int"),
    ],
)
def test_a_bad_or_unheld_version_stores_nothing(
    url: str, version: Any, error: type[Exception], match: str
) -> None:
    """version= that is not a positive int, or not held, is a typed error; nothing is stored."""
    with engine(url, vwf_v1, vwf_inserted) as eng:
        with pytest.raises(error, match=match):
            eng.run(vwf_v1, {"n": 1}, transaction_id="bad", version=version)
        with pytest.raises(error, match=match):
            eng.enqueue(vwf_v1, {"n": 1}, transaction_id="bad-q", version=version)
        assert eng.list() == []


# --- scenario 1: a step inserted after the wait -------------------------------------------------


def test_inserted_step_a_run_of_v1_finishes_on_v1_when_both_are_held(url: str) -> None:
    """The parked v1 run continues on v1 (the inserted step does not run); new runs take v2."""
    park_v1(url, "tx1")
    with engine(url, vwf_v1, vwf_inserted) as eng:
        done = eng.set_step_success("tx1", "wait", "ok")
        assert done.status is TransactionState.DONE
        assert done.result == {"answer": "ok", "last": "c-out"}
        assert CALLS == ["c"]
        record = eng.get("tx1")
        assert record is not None
        assert record.version == 1
        CALLS.clear()
        eng.run(vwf_v1, {"n": 2}, transaction_id="tx2")
        assert CALLS == ["a", "wait"]
        assert eng.set_step_success("tx2", "wait", "ok").status is TransactionState.DONE
        assert CALLS == ["a", "wait", "b2", "c"]


def test_inserted_step_v1_removed_too_early_refuses_and_changes_nothing(url: str) -> None:
    """An engine holding only v2: signals and cancel raise IncompatibleRun naming both sides,
    and nothing stored changes (a later engine holding v1 finishes the run)."""
    park_v1(url, "tx1")
    before = snapshot(url, "tx1")
    with engine(url, vwf_inserted) as eng:
        with pytest.raises(IncompatibleRun) as caught:
            eng.set_step_success("tx1", "wait", "ok")
        message = str(caught.value)
        assert "version 1" in message
        assert vwf_v1.fingerprint in message
        assert "version 2" in message
        assert vwf_inserted.fingerprint in message
        assert caught.value.transaction_id == "tx1"
        assert (caught.value.version, caught.value.fingerprint) == (1, vwf_v1.fingerprint)
        assert caught.value.held == ((2, vwf_inserted.fingerprint),)
        with pytest.raises(IncompatibleRun):
            eng.set_step_failure("tx1", "wait", "declined")
        with pytest.raises(IncompatibleRun):
            eng.cancel("tx1")
        assert [r.transaction_id for r in eng.incompatible()] == ["tx1"]
    assert snapshot(url, "tx1") == before
    assert CALLS == []
    with engine(url, vwf_v1, vwf_inserted) as eng:
        assert eng.incompatible() == []
        assert eng.set_step_success("tx1", "wait", "ok").status is TransactionState.DONE
        assert CALLS == ["c"]


# --- scenario 2: the waiting step renamed ------------------------------------------------------


def test_renamed_wait_the_old_name_finishes_v1_runs_the_new_name_is_unknown(url: str) -> None:
    """On a v1 run the new step name raises UnknownStep (a LookupError, not RunNotFound) and
    changes nothing; the old name finishes it on v1."""
    park_v1(url, "tx1")
    before = snapshot(url, "tx1")
    with engine(url, vwf_v1, vwf_renamed) as eng:
        with pytest.raises(UnknownStep, match=r"version 1 of workflow 'vwf'.*no step 'b-wait'"):
            eng.set_step_success("tx1", "b-wait", "ok")
        assert isinstance(UnknownStep("t", "s", "w", 1), LookupError)
        assert snapshot(url, "tx1") == before
        assert eng.set_step_success("tx1", "wait", "ok").status is TransactionState.DONE
        eng.run(vwf_v1, {"n": 2}, transaction_id="tx2")
        with pytest.raises(UnknownStep, match=r"version 2 of workflow 'vwf'.*no step 'wait'"):
            eng.set_step_success("tx2", "wait", "ok")
        assert eng.set_step_success("tx2", "b-wait", "ok").status is TransactionState.DONE


def test_renamed_wait_without_v1_is_incompatible_for_either_name(url: str) -> None:
    """Holding only the renamed v2, both names are refused with IncompatibleRun."""
    park_v1(url, "tx1")
    with engine(url, vwf_renamed) as eng:
        for name in ("wait", "b-wait"):
            with pytest.raises(IncompatibleRun, match="fingerprint"):
                eng.set_step_success("tx1", name, "ok")
        assert eng.get("tx1").status is TransactionState.WAITING  # type: ignore[union-attr]


# --- scenario 3: a step removed ----------------------------------------------------------------


def test_removed_step_v1_run_is_listed_then_finished_once_v1_is_back(url: str) -> None:
    """Holding only v2 the run is listed as incompatible; with v1 back it finishes, c included."""
    park_v1(url, "tx1")
    with engine(url, vwf_removed) as eng:
        with pytest.raises(IncompatibleRun):
            eng.set_step_success("tx1", "wait", "ok")
        assert [r.transaction_id for r in eng.incompatible(workflow="vwf")] == ["tx1"]
    with engine(url, vwf_v1, vwf_removed) as eng:
        done = eng.set_step_success("tx1", "wait", "ok")
        assert done.result == {"answer": "ok", "last": "c-out"}
        assert CALLS == ["c"]


# --- recovery and workers ----------------------------------------------------------------------


def crash_v1(url: str, tx: str) -> None:
    """A run of version 1 whose process dies right after step a (its lease then expired)."""
    dying = engine(url, vwf_v1)
    dying.faults[tx] = PlanFaults(FailurePlan(crash=Crash("a")))
    with pytest.raises(BaseException, match="simulated crash"):
        dying.run(vwf_v1, {"n": 1}, transaction_id=tx)
    dying.store.expire_lease(tx)
    dying.close()
    CALLS.clear()


def test_recover_reports_an_unheld_fingerprint_and_leaves_the_run_alone(url: str) -> None:
    """recover() without v1 skips the crashed v1 run as incompatible without claiming it; with
    v1 held it recovers it on v1."""
    crash_v1(url, "tx-crash")
    before = snapshot(url, "tx-crash")
    with engine(url, vwf_inserted) as eng:
        report = eng.recover()
        assert list(report) == []
        [skipped] = report.skipped
        assert skipped.transaction_id == "tx-crash"
        assert skipped.incompatible
        assert vwf_v1.fingerprint in skipped.reason
    assert snapshot(url, "tx-crash") == before
    with engine(url, vwf_v1, vwf_inserted) as eng:
        [result] = eng.recover()
        assert result.status is TransactionState.WAITING
        assert CALLS == ["wait"]


def test_worker_fleet_only_the_worker_holding_v1_continues_v1_runs(url: str) -> None:
    """One worker holds v1+v2, another only v2: the v2-only worker takes the v2 run and leaves
    the queued and the crashed v1 runs; the other continues both on v1."""
    with engine(url, vwf_v1, vwf_inserted) as eng:
        eng.enqueue(vwf_v1, {"n": 1}, transaction_id="q-v1", version=1)
        eng.enqueue(vwf_v1, {"n": 2}, transaction_id="q-v2")
    crash_v1(url, "crashed-v1")
    with engine(url, vwf_inserted) as only_v2:
        report = only_v2.work(idle_timeout=0.3, poll=(0.01, 0.05))
        assert report.claimed == 1
        assert report.recovered == 0
        assert report.not_handled == {"vwf": 1}
        assert report.incompatible == ["crashed-v1"]
        assert only_v2.get("q-v2").status is TransactionState.WAITING  # type: ignore[union-attr]
        assert only_v2.get("q-v1").status is TransactionState.QUEUED  # type: ignore[union-attr]
    with engine(url, vwf_v1, vwf_inserted) as both:
        report = both.work(idle_timeout=0.3, poll=(0.01, 0.05))
        assert (report.claimed, report.recovered, report.incompatible) == (1, 1, [])
        for tx in ("q-v1", "crashed-v1"):
            record = both.get(tx)
            assert record is not None
            assert record.status is TransactionState.WAITING
            assert record.version == 1
            assert both.set_step_success(tx, "wait", "ok").result["last"] == "c-out"
    assert "b2" not in CALLS  # the v1 runs never took v2's inserted step


# --- rows recorded before fingerprints -------------------------------------------------------


def test_a_run_recorded_before_fingerprints_continues_by_step_names(url: str) -> None:
    """A row without a fingerprint continues as before: on the highest version held, its
    checkpoints matched by step names."""
    park_v1(url, "legacy")
    db = create_engine(url)
    with db.begin() as conn:
        conn.execute(text("UPDATE flowkit_runs SET fingerprint = NULL"))
    db.dispose()
    with engine(url, vwf_inserted) as eng:
        record = eng.get("legacy")
        assert record is not None
        assert record.fingerprint is None
        assert eng.incompatible() == []
        assert eng.set_step_success("legacy", "wait", "ok").status is TransactionState.DONE
        assert CALLS == ["b2", "c"]


def test_migration_0003_gives_existing_rows_version_1_and_no_fingerprint(
    database_url: str,
) -> None:
    """A database at revision 0001 with a parked run migrates to 0003_versions: the row gets
    version 1 and no fingerprint, and continues by step names."""
    store = SqlStore(database_url)
    upgrade(store.engine, "0001")
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO flowkit_runs (transaction_id, workflow, status, input, errors, "
                "created_at, updated_at, recoveries) VALUES "
                "('old', 'vwf', 'waiting', '{\"n\": 1}', '[]', 1.0, 1.0, 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO flowkit_steps (transaction_id, step, action, status, attempt, "
                "output, compensate_input) VALUES "
                "('old', 'a', 'invoke', 'done', 1, '\"a-out\"', '\"a-out\"'), "
                "('old', 'wait', 'invoke', 'waiting', 1, '\"challenge\"', '\"hold\"')"
            )
        )
    store.upgrade()
    store.close()
    CALLS.clear()
    with engine(database_url, vwf_v1) as eng:
        record = eng.get("old")
        assert record is not None
        assert (record.version, record.fingerprint) == (1, None)
        done = eng.set_step_success("old", "wait", "ok")
        assert done.result == {"answer": "ok", "last": "c-out"}
        assert CALLS == ["c"]


def test_the_schema_revision_is_the_migrations_head() -> None:
    """SCHEMA_REVISION names the newest migration; 0003_versions follows 0001 (re-chained by a
    one-liner)."""
    scripts = ScriptDirectory.from_config(alembic_config())
    assert scripts.get_heads() == [SCHEMA_REVISION]
    migration = scripts.get_revision("0003_versions")
    assert migration is not None
    assert migration.down_revision == "0001"
    assert "no fingerprint" in (migration.module.__doc__ or "")
