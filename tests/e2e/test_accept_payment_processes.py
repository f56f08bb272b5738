"""The 3-D Secure wait of accept-payment outlives its process (issue 5, item 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from flowkit import Engine, TransactionState
from flowkit.sqlalchemy import SqlStore

SCRIPT = Path(__file__).with_name("accept_process.py")


def _step(database_url: str, mode: str, cart_id: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), database_url, mode, cart_id],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_one_process_parks_the_run_and_another_finishes_it(database_url: str) -> None:
    """A process runs accept-payment to the 3-D Secure wait and exits; another resumes it."""
    parked = _step(database_url, "start", "cart_two_processes")
    assert parked == {"status": "waiting"}
    finished = _step(database_url, "finish", "cart_two_processes")
    assert finished["status"] == "done"
    assert finished["amount"] == "25.00"
    store = SqlStore(database_url)
    record = Engine(store).get("accept-cart_two_processes", decode=False)
    assert record is not None
    assert record.status is TransactionState.DONE
    assert record.steps["await-payment-action"].state.value == "done"
    assert record.steps["authorize-payment-session"].state.value == "done"
    store.close()
