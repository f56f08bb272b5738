"""Time across real processes: a sleep survives a SIGKILL of the process that slept (§10)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from time_app import ALL, NAP

from flowkit import Engine, TransactionState
from flowkit.sqlalchemy import SqlStore
from flowkit.testing import ManualClock

SLEEPER = Path(__file__).with_name("sleep_process.py")
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with flowkit's schema (a SQLite file or a PostgreSQL database)."""
    if request.param == "sqlite":
        found = f"sqlite:///{tmp_path / 'sleep.db'}"
    else:
        found = str(request.getfixturevalue("postgres_url"))
    store = SqlStore(found)
    store.create_all()
    store.close()
    return found


def test_a_sleep_across_a_sigkill_of_the_sleeping_process_finishes(url: str) -> None:
    """The sleeping process is SIGKILLed; a new engine's tick after the nap finishes the run."""
    proc = subprocess.Popen(
        [sys.executable, str(SLEEPER), url, "nap-killed", START.isoformat()],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "parked"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    clock = ManualClock(START)
    with Engine(SqlStore(url), ALL, clock=clock) as engine:
        record = engine.get("nap-killed")
        assert record is not None
        assert record.status is TransactionState.WAITING
        assert record.owner is None  # the dead process held nothing
        assert engine.tick().woken == []
        clock.advance(NAP)
        assert engine.tick().woken == ["nap-killed"]
        done = engine.get("nap-killed")
        assert done is not None
        assert done.status is TransactionState.DONE
        assert done.output == "killed-nap"
