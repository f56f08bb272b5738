"""The CLI shows time: `runs show` prints deadlines and wake-ups, `schedules list` next ticks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from time_app import hold_and_wait, nap
from time_cli_app import URL_ENV, engine

from flowkit.cli import cli
from flowkit.sqlalchemy import SqlStore

APP = "time_cli_app:engine"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite database with flowkit's schema, which the test app's engine reads."""
    url = f"sqlite:///{tmp_path / 'time.db'}"
    store = SqlStore(url)
    store.create_all()
    store.close()
    monkeypatch.setenv(URL_ENV, url)
    return url


def invoke(db: str, *args: str) -> Result:
    """Run `flowkit ARGS` in-process against `db`."""
    return CliRunner().invoke(cli, list(args), env={URL_ENV: db})


def test_runs_show_prints_the_deadline_of_a_waiting_step(db: str) -> None:
    """A wait with a deadline shows `wakes at` and the step's deadline column."""
    with engine() as eng:
        eng.run(hold_and_wait, "x", transaction_id="wait-1")
    shown = invoke(db, "runs", "show", "wait-1", "--database-url", db)
    assert shown.exit_code == 0, shown.output
    assert "wakes at 2026-03-01 12:35:00 (UTC)" in shown.output
    assert "deadline (UTC)" in shown.output
    as_json = json.loads(
        invoke(db, "runs", "show", "wait-1", "--database-url", db, "--json").output
    )
    assert as_json["wake_at"] == "2026-03-01T12:35:00+00:00"
    challenge = next(s for s in as_json["steps"] if s["step"] == "challenge")
    assert challenge["due_at"] == "2026-03-01T12:35:00+00:00"


def test_runs_show_prints_when_a_sleeping_run_wakes(db: str) -> None:
    """A sleeping run shows the instant its sleep ends."""
    with engine() as eng:
        eng.run(nap, "y", transaction_id="nap-1")
    shown = invoke(db, "runs", "show", "nap-1", "--database-url", db)
    assert shown.exit_code == 0, shown.output
    assert "wakes at 2026-03-01 13:20:00 (UTC)" in shown.output


def test_schedules_list_shows_next_ticks_and_last_runs(db: str) -> None:
    """`schedules list --app` gives each schedule's next tick and its latest run."""
    with engine() as eng:
        fired = eng.tick().scheduled
    assert fired == ["hourly-nap@20260301T120000Z", "nightly-nap@20260301T033000Z"]
    listed = invoke(db, "schedules", "list", "--app", APP, "--json")
    assert listed.exit_code == 0, listed.output
    rows = {row["schedule"]: row for row in json.loads(listed.output)}
    assert rows["hourly-nap"]["next_tick"] == "2026-03-01T13:00:00+00:00"
    assert rows["hourly-nap"]["last_run"] == "hourly-nap@20260301T120000Z"
    assert rows["hourly-nap"]["last_status"] == "queued"
    assert rows["nightly-nap"]["when"] == "30 3 * * *"
    assert rows["nightly-nap"]["next_tick"] == "2026-03-02T03:30:00+00:00"
    table = invoke(db, "schedules", "list", "--app", APP)
    assert table.exit_code == 0, table.output
    assert "hourly-nap" in table.output
    assert "2026-03-01 13:00:00" in table.output
