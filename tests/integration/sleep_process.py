"""A process that starts a sleeping run, says so, and then stays alive until it is killed.

Usage: python sleep_process.py DB_URL TX START_ISO

It runs `time_app.nap` under a `ManualClock` at START_ISO: the run parks in its sleep, the
process prints `parked` and blocks, so the test can SIGKILL it while the run sleeps.
"""

from __future__ import annotations

import os
import sys
import threading
from datetime import datetime

sys.path.insert(0, os.path.dirname(__file__))

from time_app import ALL, nap

from flowkit import Engine, TransactionState
from flowkit.sqlalchemy import SqlStore
from flowkit.testing import ManualClock


def main(argv: list[str]) -> int:
    """Start the run, report it parked, then wait forever."""
    url, tx, start = argv[:3]
    engine = Engine(SqlStore(url), ALL, clock=ManualClock(datetime.fromisoformat(start)))
    result = engine.run(nap, "killed-nap", transaction_id=tx)
    print("parked" if result.status is TransactionState.WAITING else result.status, flush=True)
    threading.Event().wait()  # a live process holding its engine: killed from outside
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
