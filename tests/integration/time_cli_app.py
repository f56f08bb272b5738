"""An app for the CLI tests of time: an engine with schedules, on a fixed manual clock.

`flowkit schedules list --app time_cli_app:engine` loads it; the factory reads the database
URL from `FLOWKIT_TIME_CLI_URL`.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from time_app import ALL, nap

from flowkit import Engine, Schedule
from flowkit.sqlalchemy import SqlStore
from flowkit.testing import ManualClock

URL_ENV = "FLOWKIT_TIME_CLI_URL"
NOW = datetime(2026, 3, 1, 12, 20, tzinfo=UTC)
"""The instant the app's clock shows."""
SCHEDULES = [
    Schedule("hourly-nap", nap, every=timedelta(hours=1), input=1),
    Schedule("nightly-nap", nap, cron="30 3 * * *", input=2),
]


def engine() -> Engine:
    """The app's engine over `$FLOWKIT_TIME_CLI_URL`, its clock at `NOW`."""
    return Engine(SqlStore(os.environ[URL_ENV]), ALL, clock=ManualClock(NOW), schedules=SCHEDULES)
