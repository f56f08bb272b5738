"""Migration 0004_time: a database parked at 0003_versions keeps its runs and gains time."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import inspect, text
from time_app import ALL, WAIT, hold_and_wait

from flowkit import Engine, TransactionState
from flowkit.sqlalchemy import SqlStore
from flowkit.sqlalchemy.migrate import upgrade
from flowkit.testing import ManualClock


def test_migration_0004_keeps_old_waits_without_deadline_and_new_ones_get_one(
    database_url: str,
) -> None:
    """A wait parked before 0004 has no deadline (no tick expires it); one parked after has."""
    store = SqlStore(database_url)
    upgrade(store.engine, "0003_versions")
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO flowkit_runs (transaction_id, workflow, status, input, errors, "
                "created_at, updated_at, recoveries, version) VALUES "
                "('old', 'hold-and-wait', 'waiting', '\"c\"', '[]', 1.0, 1.0, 0, 1)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO flowkit_steps (transaction_id, step, action, status, attempt, "
                "output, compensate_input) VALUES "
                "('old', 'hold', 'invoke', 'done', 1, '\"c\"', '\"hold-c\"'), "
                "('old', 'challenge', 'invoke', 'waiting', 1, '\"pending\"', '\"ch-c\"')"
            )
        )
    store.upgrade()
    columns = {c["name"] for c in inspect(store.engine).get_columns("flowkit_runs")}
    assert {"wake_at", "start_at"} <= columns
    store.close()

    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    with Engine(SqlStore(database_url), ALL, clock=clock) as engine:
        engine.run(hold_and_wait, "new", transaction_id="new")
        clock.advance(WAIT + 1)
        assert engine.tick().expired == ["new"]
        old = engine.get("old")
        assert old is not None
        assert old.status is TransactionState.WAITING
        assert old.wake_at is None
        done = engine.set_step_success("old", "challenge", "answered")
        assert done.status is TransactionState.DONE
        assert done.result == "answered"
