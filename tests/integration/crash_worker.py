"""A process that runs one durable workflow and dies for real at a chosen point.

Usage: python crash_worker.py DB_URL TX LEDGER_FILE KILL [FAIL_AT]

KILL is `mid:<action>:<step>` (die inside the step's function, after it recorded its effect)
or `<action>:<point>:<step>` (die before/after that checkpoint), e.g. `invoke:after:second`.
"""

from __future__ import annotations

import os
import sys
from decimal import Decimal
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

from durable_app import ALL, Ledger, Order, three_steps

import flowkit
from flowkit.sqlalchemy import SqlStore
from flowkit.testing.faults import Crash, FailurePlan, PlanFaults

KILLED = 137


class DyingLedger(Ledger):
    """A ledger that kills the process right after recording one chosen call."""

    def __init__(self, path: str, action: str, name: str) -> None:
        super().__init__(path)
        self.kill = (action, name)

    def record(self, action: str, name: str, key: str) -> None:
        """Record durably, then die if this is the chosen call."""
        super().record(action, name, key)
        if (action, name) == self.kill:
            os._exit(KILLED)


def main(argv: list[str]) -> int:
    """Run the workflow once; the process is expected to die on the way."""
    url, tx, ledger_path, kill = argv[:4]
    fail_at = argv[4] if len(argv) > 4 else None
    first, second, target = kill.split(":", 2)
    mid = first == "mid"
    ledger: Any = DyingLedger(ledger_path, second, target) if mid else Ledger(ledger_path)
    registry = flowkit.Registry()
    registry.register_value(Ledger, ledger)
    engine = flowkit.Engine(SqlStore(url), ALL, container=registry)
    if not mid:
        crash = Crash(target, first, second)  # type: ignore[arg-type]
        engine.faults[tx] = PlanFaults(FailurePlan(crash=crash), on_crash=lambda: os._exit(KILLED))
    engine.run(three_steps, Order(tx, Decimal("9.99"), fail_at), transaction_id=tx)
    return 0  # not reached when the kill point is on the path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
