"""Deferred fsync: a payment write inside a durable step leaves its fsync to the checkpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import flowkit
from flowkit import Engine, StepContext, step, workflow
from flowkit.events import Event
from flowkit.sqlalchemy import SqlStore
from flowkit.sqlalchemy import sqlite as sqlite_module
from flowkit.sqlalchemy import store as store_module
from payment import PaymentModule
from payment.adapters.engine import create_payment_engine
from payment.adapters.schema import upgrade_schema
from payment.adapters.sqlalchemy import SqlPaymentStore
from payment.providers import SystemProvider

NORMAL = "NORMAL"
FULL = "FULL"


@step("create-collection")
def create_collection(amount: str, ctx: StepContext) -> str:
    """Writes one payment collection through the module."""
    return ctx.resolve(PaymentModule).create_payment_collection("usd", amount).id


@workflow("deferred-sync")
def collect(amount: str) -> Any:
    """One module write in one durable step."""
    return create_collection(amount)


class Traced:
    """A payment module on a SQLite file whose connections (pooled, and the file's shared
    writer connection) record every statement."""

    def __init__(self, path: Path) -> None:
        self.statements: list[str] = []
        self.shared = sqlite_module.shared_connection(str(path), 30.0)  # held for the test
        self.shared.connection(None).set_trace_callback(self.statements.append)
        engine = create_payment_engine(f"sqlite:///{path}")
        sa.event.listen(engine, "connect", self._trace)
        upgrade_schema(engine)
        self.module = PaymentModule(SqlPaymentStore(engine), [SystemProvider()])
        self.statements.clear()  # the schema and the providers' rows

    def _trace(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.set_trace_callback(self.statements.append)

    def commits(self, table_prefix: str = "payment_") -> list[str]:
        """The `synchronous` each transaction writing a `table_prefix` table committed with
        on the shared connection since the last call, in order."""
        mode, wrote, found = "FULL", False, []
        for statement in self.statements:
            if statement.startswith("PRAGMA synchronous="):
                mode = statement.removeprefix("PRAGMA synchronous=")
            elif statement.startswith(("INSERT", "UPDATE", "DELETE")):
                wrote = wrote or f" {table_prefix}" in statement
            elif statement.startswith("COMMIT"):
                if wrote:
                    found.append(mode)
                wrote = False
        self.statements.clear()
        return found

    def engine(self, store: SqlStore) -> Engine:
        """A durable engine on `store` whose steps resolve this module."""
        registry = flowkit.Registry()
        registry.register_value(PaymentModule, self.module)
        return Engine(store, [collect], container=registry)

    def close(self) -> None:
        """Close the module and let go of the shared connection."""
        self.module.close()
        self.shared.detach()


@pytest.fixture
def traced(tmp_path: Path) -> Iterator[Traced]:
    """The traced module on ``shop.db``."""
    built = Traced(tmp_path / "shop.db")
    yield built
    built.close()


@pytest.fixture
def flushes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every deferred-fsync flush a SQL store makes (the real fsync still runs)."""
    seen: list[str] = []
    real: Callable[[str], None] = store_module.sync_wal

    def spy(database: str) -> None:
        seen.append(database)
        real(database)

    monkeypatch.setattr(store_module, "sync_wal", spy)
    return seen


def _store(path: Path, **options: Any) -> SqlStore:
    store = SqlStore(f"sqlite:///{path}", **options)
    store.create_all()
    return store


def test_a_module_write_in_a_durable_step_commits_without_its_own_fsync(
    traced: Traced, tmp_path: Path, flushes: list[str]
) -> None:
    """Inside a step on the same file the write commits NORMAL; the checkpoint syncs for both."""
    with _store(tmp_path / "shop.db") as store, traced.engine(store) as engine:
        result = engine.run(collect, "12.50")
        assert traced.commits() == [NORMAL]
    assert flushes == []  # the step's checkpoint was the fsync
    assert traced.module.retrieve_payment_collection(result.result).amount == Decimal("12.50")


def test_checkpoints_through_the_shared_connection_keep_their_own_fsync(
    traced: Traced, tmp_path: Path
) -> None:
    """The module and the store write through one connection; each checkpoint still commits
    FULL after the module's write switched the connection to NORMAL."""
    with _store(tmp_path / "shop.db") as store, traced.engine(store) as engine:
        engine.run(collect, "7.00")
        seen = list(traced.statements)
        assert traced.commits() == [NORMAL]
        traced.statements[:] = seen
        checkpoints = traced.commits("flowkit_")
    assert len(checkpoints) >= 2  # the run row, the step, the finish: all on this connection
    assert set(checkpoints) == {FULL}


def test_a_write_outside_any_run_fsyncs_by_itself(traced: Traced, tmp_path: Path) -> None:
    """Outside a run the connection is set back to FULL before the next write."""
    with _store(tmp_path / "shop.db") as store, traced.engine(store) as engine:
        engine.run(collect, "1.00")
        traced.commits()
        traced.module.create_payment_collection("usd", "2.00")
        assert traced.commits() == [FULL]


def test_a_store_on_another_file_defers_nothing(traced: Traced, tmp_path: Path) -> None:
    """Runs checkpointed in another file cannot cover the module's writes: they stay FULL."""
    with _store(tmp_path / "runs.db") as store, traced.engine(store) as engine:
        engine.run(collect, "3.00")
    assert traced.commits() == [FULL]


def test_a_store_that_does_not_fsync_offers_no_scope(traced: Traced, tmp_path: Path) -> None:
    """A store on synchronous=NORMAL (or in memory) opens no scope; module writes stay FULL."""
    assert SqlStore("sqlite://").sync_scope() is None
    with _store(tmp_path / "shop.db", synchronous="NORMAL") as store:
        assert store.sync_scope() is None
        with traced.engine(store) as engine:
            engine.run(collect, "4.00")
    assert traced.commits() == [FULL]


def test_a_write_after_the_last_checkpoint_is_synced_before_run_returns(
    traced: Traced, tmp_path: Path, flushes: list[str]
) -> None:
    """A module write from a run_finished subscriber is fsynced before `run` returns."""

    def on_finish(event: Event) -> None:
        if event.name == "run_finished":
            traced.module.create_payment_collection("usd", "5.00")

    with _store(tmp_path / "shop.db") as store, traced.engine(store) as engine:
        engine.subscribe(on_finish)
        engine.run(collect, "6.00")
        assert flushes == [str(tmp_path / "shop.db")]
        assert traced.commits() == [NORMAL, NORMAL]


def test_sync_wal_syncs_the_log_and_skips_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync_wal` fdatasyncs ``<db>-wal`` when it exists and does nothing without one."""
    synced: list[int] = []
    real = sqlite_module._datasync
    monkeypatch.setattr(sqlite_module, "_datasync", lambda fd: (synced.append(fd), real(fd)))
    database = tmp_path / "shop.db"
    sqlite_module.sync_wal(str(database))  # no log yet: the database file holds everything
    assert synced == []
    (tmp_path / "shop.db-wal").write_bytes(b"frames")
    sqlite_module.sync_wal(str(database))
    assert len(synced) == 1
