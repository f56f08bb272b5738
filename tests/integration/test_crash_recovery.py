"""Real crashes: a subprocess dies at a chosen point; recover() finishes the run (spec §6)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from durable_app import ALL, Ledger, ledger_registry

from flowkit import Engine, TransactionState
from flowkit.sqlalchemy import SqlStore

WORKER = Path(__file__).with_name("crash_worker.py")

CASES = [
    # (kill point, failing step, final status, invocations expected per step)
    ("mid:invoke:second", None, "done", {"first": 1, "second": 2, "third": 1}),
    ("invoke:before:second", None, "done", {"first": 1, "second": 2, "third": 1}),
    ("invoke:after:second", None, "done", {"first": 1, "second": 1, "third": 1}),
    ("invoke:after:third", None, "done", {"first": 1, "second": 1, "third": 1}),
    ("mid:compensate:second", "third", "reverted", {"first": 1, "second": 1, "third": 1}),
    ("compensate:after:second", "third", "reverted", {"first": 1, "second": 1, "third": 1}),
]


@pytest.mark.parametrize(("kill", "fail_at", "status", "invocations"), CASES)
def test_killed_process_is_recovered_without_repeating_checkpointed_steps(
    database_url: str,
    tmp_path: Path,
    kill: str,
    fail_at: str | None,
    status: str,
    invocations: dict[str, int],
) -> None:
    """After a real kill, recover() ends the run and repeats only the step in flight."""
    setup = SqlStore(database_url)
    setup.create_all()
    setup.close()
    ledger_file = tmp_path / "ledger.txt"
    args = [sys.executable, str(WORKER), database_url, "tx-crash", str(ledger_file), kill]
    died = subprocess.run([*args, *([fail_at] if fail_at else [])], timeout=60, check=False)
    assert died.returncode == 137
    before = ledger_file.read_text().splitlines()

    store = SqlStore(database_url)
    store.expire_lease("tx-crash")  # the dead process's lease would expire on its own
    ledger = Ledger(str(ledger_file))
    engine = Engine(store, ALL, container=ledger_registry(ledger))
    report = engine.recover()
    engine.close()

    # a crash after the last checkpoint leaves nothing to do: that checkpoint also ended the run
    finished_already = kill == "invoke:after:third"
    assert [r.status.value for r in report] == ([] if finished_already else [status])
    lines = ledger_file.read_text().splitlines()
    counts = {
        name: sum(1 for line in lines if line.startswith(f"invoke {name} ")) for name in invocations
    }
    assert counts == invocations
    compensations = [line.split()[1] for line in lines if line.startswith("compensate ")]
    if status == "reverted":
        # every compensation exactly once, in reverse; the one killed mid-way is re-run
        assert compensations[-3:] == ["third", "second", "first"] or compensations == [
            "third",
            "second",
            "second",
            "first",
        ]
        assert compensations.count("third") == 1
        assert compensations.count("first") == 1
    assert len(lines) >= len(before)
    stored = SqlStore(database_url)
    record = Engine(stored).get("tx-crash")
    assert record is not None
    assert record.status is TransactionState(status)
    stored.close()
