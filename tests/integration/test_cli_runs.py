"""`flowkit runs list`, `runs show` and `purge` against a SQLite file written by real runs."""

from __future__ import annotations

import json
import sys
import textwrap
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cli_app import DONE, REVERTED, WAITING, assert_one_line_error, create_schema, populate
from click.testing import CliRunner, Result

from flowkit import Engine
from flowkit.cli import cli
from flowkit.sqlalchemy import SqlStore


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL with a done, a reverted and a waiting run (shared: tests only read it)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'runs.db'}"
    populate(url)
    return url


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run `flowkit ARGS` in-process."""
    return CliRunner().invoke(cli, list(args), env=env)


def read_json(result: Result) -> Any:
    """The command's stdout as JSON, after checking it succeeded."""
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- runs list ------------------------------------------------------------------------------


def test_list_shows_every_run_newest_first(db: str) -> None:
    """The table lists each run with its workflow and status, newest first."""
    result = invoke("runs", "list", "--database-url", db)
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [row[:3] for row in rows] == [
        [WAITING, "approval", "waiting"],
        [REVERTED, "checkout", "reverted"],
        [DONE, "checkout", "done"],
    ]
    assert "charge: CardDeclined: o-2 declined [do_not_honor] :x:" in result.stdout


def test_list_filters_by_status_and_workflow(db: str) -> None:
    """`--status` and `--workflow` narrow the list."""
    reverted = read_json(
        invoke("runs", "list", "--status", "reverted", "--json", "--database-url", db)
    )
    approvals = read_json(
        invoke("runs", "list", "--workflow", "approval", "--json", "--database-url", db)
    )
    assert [r["transaction_id"] for r in reverted] == [REVERTED]
    assert [r["transaction_id"] for r in approvals] == [WAITING]


def test_list_since_a_duration_and_a_datetime(db: str) -> None:
    """`--since 1h` keeps today's runs; a datetime in the future keeps none."""
    recent = read_json(invoke("runs", "list", "--since", "1h", "--json", "--database-url", db))
    future = invoke("runs", "list", "--since", "2999-01-01T00:00", "--database-url", db)
    assert len(recent) == 3
    assert future.exit_code == 0
    assert future.stdout.strip() == "no runs found"


def test_list_limit_says_there_may_be_more(db: str) -> None:
    """`--limit N` shows N runs and a hint when the limit was reached."""
    result = invoke("runs", "list", "--limit", "1", "--database-url", db)
    assert result.exit_code == 0
    assert WAITING in result.stdout
    assert DONE not in result.stdout
    assert "--limit for more" in result.stdout


def test_list_json_has_stable_keys_and_exact_values(db: str) -> None:
    """`--json` prints a list of objects: ISO 8601 datetimes, Decimal as a string, no steps."""
    runs = read_json(invoke("runs", "list", "--json", "--database-url", db))
    done = next(r for r in runs if r["transaction_id"] == DONE)
    assert list(done) == [
        "transaction_id",
        "workflow",
        "status",
        "version",
        "fingerprint",
        "created_at",
        "updated_at",
        "owner",
        "lease_expires_at",
        "queue",
        "wake_at",
        "start_at",
        "input",
        "output",
        "errors",
    ]
    assert done["version"] == 1
    assert len(done["fingerprint"]) == 64
    assert done["input"] == {"order_id": "o-1", "amount": "12.50", "fail_at": None}
    assert done["output"]["amount"] == "12.50"
    assert datetime.fromisoformat(done["created_at"]).tzinfo is not None


def test_database_url_defaults_to_the_demo_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without `--database-url`, `flowkit-demo.db` in the current directory is read."""
    populate(f"sqlite:///{tmp_path / 'flowkit-demo.db'}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLOWKIT_DATABASE_URL", raising=False)
    result = invoke("runs", "list", "--json")
    assert {r["transaction_id"] for r in read_json(result)} == {DONE, REVERTED, WAITING}


# --- runs show ------------------------------------------------------------------------------


def test_show_prints_a_timeline_with_compensations(db: str) -> None:
    """A reverted run shows each step's invoke state, attempts, error and compensation."""
    result = invoke("runs", "show", REVERTED, "--database-url", db)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["run", REVERTED, "checkout", "reverted"]
    assert 'input {"order_id": "o-2", "amount": "99.00", "fail_at": "charge"}' in lines
    reserve = next(line for line in lines if line.startswith("reserve"))
    charge = next(line for line in lines if line.startswith("charge"))
    assert reserve.split()[1:3] == ["done", "1"]
    assert "reverted" in reserve
    assert charge.split()[1:3] == ["failed", "2"]
    assert "CardDeclined: o-2 declined [do_not_honor] :x:" in charge
    message = "o-2 declined [do_not_honor] :x:"
    assert f"invoke error in charge: cli_app.CardDeclined: {message}" in lines


def test_show_leaves_out_empty_columns(db: str) -> None:
    """A run without errors or compensations shows neither column (narrow terminals thank it)."""
    result = invoke("runs", "show", DONE, "--database-url", db)
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if line.startswith("step"))
    assert header.split() == ["step", "state", "attempts", "started", "duration"]
    assert (
        'output {"receipt": {"charged": "12.50"}, "parcel": "parcel-o-1", "amount": "12.50"}'
        in (result.stdout)
    )


def test_show_json_has_the_timeline(db: str) -> None:
    """`runs show --json` adds the steps: state, attempts, times, error, compensation."""
    run = read_json(invoke("runs", "show", REVERTED, "--json", "--database-url", db))
    steps = {s["step"]: s for s in run["steps"]}
    assert list(steps) == ["reserve", "charge"]
    charge = steps["charge"]
    assert (charge["state"], charge["attempts"]) == ("failed", 2)
    message = "o-2 declined [do_not_honor] :x:"
    assert charge["error"] == {"type": "cli_app.CardDeclined", "message": message}
    assert charge["compensation"]["state"] == "reverted"
    assert datetime.fromisoformat(charge["compensation"]["at"]) >= datetime.fromisoformat(
        charge["ended_at"]
    )
    assert steps["reserve"]["duration_seconds"] >= 0


def test_show_a_waiting_run(db: str) -> None:
    """A waiting run shows the step it waits on, without compensation."""
    run = read_json(invoke("runs", "show", WAITING, "--json", "--database-url", db))
    assert run["status"] == "waiting"
    assert [(s["step"], s["state"], s["compensation"]) for s in run["steps"]] == [
        ("reserve", "done", None),
        ("wait-for-approval", "waiting", None),
    ]


def test_show_unknown_transaction_is_one_line(db: str) -> None:
    """An unknown id exits 1 with one line naming it."""
    result = invoke("runs", "show", "ord_nope", "--database-url", db)
    assert_one_line_error(result, 1, "no run with transaction id 'ord_nope'")


def test_show_reads_the_url_from_the_environment(db: str) -> None:
    """`FLOWKIT_DATABASE_URL` replaces `--database-url`."""
    result = invoke("runs", "show", DONE, "--json", env={"FLOWKIT_DATABASE_URL": db})
    assert read_json(result)["status"] == "done"


def test_values_whose_classes_cannot_be_imported_are_shown_as_stored(tmp_path: Path) -> None:
    """Outside the project, inputs show as stored tagged JSON with a note, instead of failing."""
    module_dir = tmp_path / "gone"
    module_dir.mkdir()
    (module_dir / "vanishing_app.py").write_text(_VANISHING_APP)
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    create_schema(url)
    sys.path.insert(0, str(module_dir))
    try:
        from vanishing_app import Parcel, wf  # type: ignore[import-not-found]

        with Engine(SqlStore(url), [wf]) as eng:
            eng.run(wf, Parcel("p-1"), transaction_id="tx-gone")
    finally:
        sys.path.remove(str(module_dir))
        sys.modules.pop("vanishing_app", None)
    shown = invoke("runs", "show", "tx-gone", "--json", "--database-url", url)
    listed = invoke("runs", "list", "--json", "--database-url", url)
    tagged = {"$type": "vanishing_app:Parcel", "fields": {"ref": "p-1"}}
    assert read_json(shown)["input"] == tagged
    assert read_json(listed)[0]["input"] == tagged
    assert "No module named 'vanishing_app'" in shown.stderr
    assert "--app-dir" in listed.stderr


_VANISHING_APP = textwrap.dedent(
    '''
    """A workflow module that the test removes from the path after one run."""
    import flowkit
    from attrs import frozen

    @frozen
    class Parcel:
        ref: str

    @flowkit.step("send")
    def send(parcel, ctx):
        return parcel.ref

    @flowkit.workflow("vanishing")
    def wf(parcel):
        return flowkit.WorkflowResponse(send(parcel))
    '''
)


# --- purge ----------------------------------------------------------------------------------


def test_purge_deletes_finished_runs_only(tmp_path: Path) -> None:
    """`purge --older-than 0s` deletes done and reverted runs and keeps the waiting one."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    populate(url)
    kept = invoke("purge", "--database-url", url)
    purged = invoke("purge", "--older-than", "0s", "--database-url", url)
    left = read_json(invoke("runs", "list", "--json", "--database-url", url))
    assert kept.stdout.strip() == "purged 0 finished runs"
    assert purged.stdout.strip() == "purged 2 finished runs"
    assert [r["transaction_id"] for r in left] == [WAITING]
