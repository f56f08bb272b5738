"""The commands that run workflow code (`recover`, `signal`, `cancel`) and `graph`, via `--app`."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from cli_app import (
    DONE,
    REVERTED,
    URL_ENV,
    WAITING,
    Order,
    assert_one_line_error,
    checkout,
    make_engine,
    populate,
)
from click.testing import CliRunner, Result

from flowkit import SimulatedCrash, TransactionState
from flowkit.cli import cli
from flowkit.testing.faults import Crash, FailurePlan, PlanFaults

APP = "cli_app:engine"


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A fresh database with a done, a reverted and a waiting run (tests change it)."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    populate(url)
    return url


def invoke(db: str, *args: str) -> Result:
    """Run `flowkit ARGS` in-process, the test app reading `db`."""
    return CliRunner().invoke(cli, list(args), env={URL_ENV: db})


def status_of(db: str, transaction_id: str) -> TransactionState:
    """The stored status of a run."""
    with make_engine(db) as eng:
        record = eng.get(transaction_id)
    assert record is not None
    return record.status


# --- graph ----------------------------------------------------------------------------------


def test_graph_prints_mermaid_by_default() -> None:
    """`graph MODULE:WORKFLOW` prints the workflow's Mermaid flowchart."""
    result = CliRunner().invoke(cli, ["graph", "cli_app:checkout"])
    assert result.exit_code == 0, result.output
    assert result.stdout == checkout.to_mermaid()
    assert result.stdout.startswith("flowchart TD")
    assert "charge (retries 1, compensated)" in result.stdout


def test_graph_prints_graphviz_dot() -> None:
    """`--format dot` prints Graphviz text."""
    result = CliRunner().invoke(cli, ["graph", "cli_app:approval", "--format", "dot"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith('digraph "approval" {')
    assert "waits for a signal" in result.stdout


# --- recover --------------------------------------------------------------------------------


def test_recover_finishes_a_run_whose_process_died(db: str) -> None:
    """A run abandoned mid-way (lease expired) is finished by `recover --app`."""
    with make_engine(db) as eng:
        eng.faults["ord_crash"] = PlanFaults(FailurePlan(crash=Crash("charge")))
        with pytest.raises(SimulatedCrash):
            eng.run(checkout, Order("o-9", Decimal("1")), transaction_id="ord_crash")
        eng.store.expire_lease("ord_crash")
    result = invoke(db, "recover", "--app", APP)
    assert result.exit_code == 0, result.output
    assert "run ord_crash (checkout) is now done" in result.stdout
    assert result.stdout.splitlines()[-1] == "recovered 1 run"
    assert status_of(db, "ord_crash") is TransactionState.DONE


def test_recover_with_nothing_to_do(db: str) -> None:
    """`recover` on a database without abandoned runs says so and exits 0."""
    result = invoke(db, "recover", "--app", APP)
    assert (result.exit_code, result.stdout) == (0, "recovered 0 runs\n")


# --- signal ---------------------------------------------------------------------------------


def test_signal_success_continues_the_run(db: str) -> None:
    """`signal --success --data JSON` hands the output to the waiting step; the run finishes."""
    result = invoke(
        db,
        "signal",
        WAITING,
        "wait-for-approval",
        "--success",
        "--data",
        '{"by": "ada"}',
        "--app",
        APP,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"run {WAITING} (approval) is now done"
    with make_engine(db) as eng:
        record = eng.get(WAITING)
    assert record is not None
    assert record.output == {"by": "ada"}


def test_signal_failure_compensates_the_run(db: str) -> None:
    """`signal --failure --data '"text"'` fails the step with that message; the run reverts."""
    result = invoke(
        db,
        "signal",
        WAITING,
        "wait-for-approval",
        "--failure",
        "--data",
        '"too dear"',
        "--app",
        APP,
    )
    assert result.exit_code == 0, result.output
    assert "is now reverted" in result.stdout
    with make_engine(db) as eng:
        record = eng.get(WAITING)
    assert record is not None
    assert [e.message for e in record.errors] == ["too dear"]


def test_signal_unknown_run_is_one_line(db: str) -> None:
    """A signal for an unknown transaction exits 1 with one line."""
    result = invoke(db, "signal", "ord_nope", "wait-for-approval", "--success", "--app", APP)
    assert_one_line_error(result, 1, "no run with transaction id 'ord_nope'")


def test_signal_for_a_step_that_does_not_wait_is_one_line(db: str) -> None:
    """A signal for a step that never waits exits 1 and says why."""
    result = invoke(db, "signal", DONE, "ship", "--success", "--app", APP)
    assert_one_line_error(result, 1, "not an async_completion step")


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_compensates_a_done_run(db: str) -> None:
    """`cancel` reverts a done run through the app's engine."""
    result = invoke(db, "cancel", DONE, "--app", APP)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"run {DONE} (checkout) is now reverted"
    assert status_of(db, DONE) is TransactionState.REVERTED


def test_cancel_of_a_reverted_run_changes_nothing(db: str) -> None:
    """Cancelling a run that already reverted reports it as it is."""
    result = invoke(db, "cancel", REVERTED, "--app", APP)
    assert (result.exit_code, "is now reverted" in result.stdout) == (0, True)


def test_cancel_unknown_run_is_one_line(db: str) -> None:
    """Cancelling an unknown transaction exits 1 with one line."""
    assert_one_line_error(invoke(db, "cancel", "ord_nope", "--app", APP), 1, "'ord_nope'")


# --- --app ----------------------------------------------------------------------------------


def test_app_comes_from_the_environment(db: str) -> None:
    """`FLOWKIT_APP` replaces `--app`."""
    result = CliRunner().invoke(cli, ["cancel", DONE], env={URL_ENV: db, "FLOWKIT_APP": APP})
    assert result.exit_code == 0, result.output


def test_app_may_be_an_engine_object(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `Engine` attribute is used as it is (and closed after the command)."""
    import cli_app

    monkeypatch.setattr(cli_app, "ready_engine", make_engine(db), raising=False)
    result = invoke(db, "cancel", DONE, "--app", "cli_app:ready_engine")
    assert result.exit_code == 0, result.output
    assert status_of(db, DONE) is TransactionState.REVERTED


def test_app_that_is_a_workflow_is_refused(db: str) -> None:
    """Pointing `--app` at a workflow explains that an Engine is needed."""
    result = invoke(db, "recover", "--app", "cli_app:checkout")
    assert_one_line_error(result, 2, "flowkit.workflow.Workflow", "not an Engine")


def test_app_factory_returning_something_else_is_refused(db: str) -> None:
    """A factory must return an Engine."""
    result = invoke(db, "recover", "--app", "cli_app:not_a_factory")
    assert_one_line_error(result, 2, "returned a builtins.int, not an Engine")


def test_app_factory_that_raises_is_one_line(db: str) -> None:
    """A factory's own exception is reported in one line, exit 1."""
    result = invoke(db, "recover", "--app", "cli_app:broken")
    assert_one_line_error(result, 1, "RuntimeError: no configuration found")


def test_app_on_a_database_without_schema_is_one_line(tmp_path: Path) -> None:
    """The app's store refusing its database is flowkit's one-line error."""
    (tmp_path / "empty.db").touch()
    result = invoke(f"sqlite:///{tmp_path / 'empty.db'}", "recover", "--app", APP)
    assert_one_line_error(result, 1, "no flowkit schema")
