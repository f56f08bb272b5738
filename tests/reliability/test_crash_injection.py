"""SIGKILL a process running accept-payment flows at random moments; nothing is lost or doubled.

In CI a few kills run (`FLOWKIT_RELIABILITY_KILLS`, default 6); on demand:

    FLOWKIT_RELIABILITY_KILLS=1000 python -m pytest tests/reliability -m reliability -s
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

APP = Path(__file__).with_name("reliability_app.py")
sys.path.insert(0, str(APP.parent))

from reliability_app import check  # noqa: E402

KILLS = int(os.environ.get("FLOWKIT_RELIABILITY_KILLS", "6"))


def _start(directory: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), str(directory), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _expire_leases(directory: Path) -> None:
    """The killed process held leases; it is dead, so they are over (as time would make them)."""
    conn = sqlite3.connect(directory / "app.db", timeout=30)
    with conn:
        conn.execute(
            "UPDATE flowkit_runs SET lease_expires_at = 0 "
            "WHERE status IN ('invoking', 'compensating') AND owner IS NOT NULL"
        )
    conn.close()


def _kill_once(directory: Path, rng: random.Random) -> None:
    worker = _start(directory, "work")
    assert worker.stdout is not None
    ready = worker.stdout.readline()
    if ready.strip() != "ready":
        worker.wait(timeout=30)
        raise AssertionError(f"worker did not start: {ready!r} {worker.stderr.read()}")  # type: ignore[union-attr]
    time.sleep(rng.uniform(0.0, 0.4))
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    worker.stdout.close()
    worker.stderr.close()  # type: ignore[union-attr]
    assert worker.returncode == -signal.SIGKILL
    _expire_leases(directory)


@pytest.mark.reliability
@pytest.mark.timeout(120 + 15 * KILLS)  # the long on-demand run outlasts the suite's default
def test_flows_survive_random_sigkills(tmp_path: Path) -> None:
    """After SIGKILLs and a recovery: no run lost, no money moved twice, invariants hold."""
    rng = random.Random(int(os.environ.get("FLOWKIT_RELIABILITY_SEED", "7")))
    for _ in range(KILLS):
        _kill_once(tmp_path, rng)
    finisher = _start(tmp_path, "finish")
    _, err = finisher.communicate(timeout=300)
    assert finisher.returncode == 0, err
    report = check(tmp_path)
    print(f"\nreliability: survived {KILLS} SIGKILLs; {report}")
    assert report["carts"] > 0
