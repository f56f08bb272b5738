"""`flowkit runs list` and `runs show` name workflow versions; `--incompatible` lists the runs
the `--app` engine cannot continue (spec §11), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result
from versions_app import CALLS, URL_ENV, vwf_inserted, vwf_v1

from flowkit import Engine
from flowkit.cli import cli
from flowkit.sqlalchemy import SqlStore


@pytest.fixture
def url(database_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A database with a parked v1 run (tx1), a parked v2 run (tx2) and a finished v1 run."""
    store = SqlStore(database_url)
    store.create_all()
    with Engine(store, [vwf_v1, vwf_inserted]) as eng:
        eng.run(vwf_v1, {"n": 1}, transaction_id="tx1", version=1)
        eng.run(vwf_v1, {"n": 2}, transaction_id="tx2")
        eng.run(vwf_v1, {"n": 3}, transaction_id="tx3", version=1)
        eng.set_step_success("tx3", "wait", "ok")
    CALLS.clear()
    monkeypatch.setenv(URL_ENV, database_url)
    return database_url


def invoke(*args: str) -> Result:
    """Run `flowkit ARGS` in-process."""
    return CliRunner().invoke(cli, list(args))


def rows(result: Result) -> list[list[str]]:
    """The table's rows, split on whitespace, after checking the command succeeded."""
    assert result.exit_code == 0, result.output
    return [line.split() for line in result.stdout.splitlines()[1:]]


def test_list_shows_each_runs_version(url: str) -> None:
    """The table has a version column."""
    found = {row[0]: row[3] for row in rows(invoke("runs", "list", "--database-url", url))}
    assert found == {"tx1": "v1", "tx2": "v2", "tx3": "v1"}


def test_list_filters_by_version_for_the_deploy_recipe(url: str) -> None:
    """`--workflow vwf --version 1 --status waiting` lists what still needs version 1."""
    result = invoke(
        "runs", "list", "--workflow", "vwf", "--version", "1", "--status", "waiting",
        "--database-url", url,
    )  # fmt: skip
    assert [row[0] for row in rows(result)] == ["tx1"]


def test_incompatible_lists_what_the_app_engine_cannot_continue(url: str) -> None:
    """With only v2 registered the parked v1 run is listed (not the finished one); with both
    versions nothing is."""
    found = invoke("runs", "list", "--incompatible", "--app", "versions_app:engine_v2", "--json")
    assert found.exit_code == 0, found.output
    data: Any = json.loads(found.stdout)
    assert [(r["transaction_id"], r["version"]) for r in data] == [("tx1", 1)]
    assert data[0]["fingerprint"] == vwf_v1.fingerprint
    none = invoke("runs", "list", "--incompatible", "--app", "versions_app:engine_v1_v2")
    assert none.exit_code == 0, none.output
    assert none.stdout.strip() == "no runs found"


def test_incompatible_without_app_is_a_usage_error(url: str) -> None:
    """`--incompatible` needs the engine whose definitions count: exit code 2, one line."""
    result = invoke("runs", "list", "--incompatible", "--database-url", url)
    assert result.exit_code == 2
    assert "--incompatible needs --app" in result.output


def test_show_names_version_and_fingerprint(url: str) -> None:
    """`runs show` prints the version and fingerprint; `--json` carries both."""
    shown = invoke("runs", "show", "tx1", "--database-url", url)
    assert shown.exit_code == 0, shown.output
    assert f"version 1  fingerprint {vwf_v1.fingerprint}" in shown.stdout
    data = json.loads(invoke("runs", "show", "tx2", "--json", "--database-url", url).stdout)
    assert (data["version"], data["fingerprint"]) == (2, vwf_inserted.fingerprint)
