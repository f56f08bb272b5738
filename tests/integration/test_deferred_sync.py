"""Shared and deferred fsyncs of a SQLite file: payment writes, checkpoints, the WAL flusher."""

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
from flowkit.sqlalchemy.sqlite import WalFlusher, wal_flusher
from flowkit.syncscope import deferred_sync
from payment import PaymentModule
from payment.adapters.engine import create_payment_engine
from payment.adapters.schema import upgrade_schema
from payment.adapters.sqlalchemy import SqlPaymentStore
from payment.providers import SystemProvider


@step("create-collection")
def create_collection(amount: str, ctx: StepContext) -> str:
    """Writes one payment collection through the module."""
    return ctx.resolve(PaymentModule).create_payment_collection("usd", amount).id


@workflow("deferred-sync")
def collect(amount: str) -> Any:
    """One module write in one durable step."""
    return create_collection(amount)


class Shop:
    """A payment module on a SQLite file, and durable engines on stores beside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.module = PaymentModule(
            SqlPaymentStore(_engine(f"sqlite:///{path}")), [SystemProvider()]
        )
        self.flusher: WalFlusher = wal_flusher(str(path))

    def engine(self, store: SqlStore) -> Engine:
        """A durable engine on `store` whose steps resolve this module."""
        registry = flowkit.Registry()
        registry.register_value(PaymentModule, self.module)
        return Engine(store, [collect], container=registry)

    def fsyncs_of(self, action: Callable[[], object]) -> int:
        """How many fsyncs of the module's file `action` cost."""
        before = self.flusher.fsyncs
        action()
        return self.flusher.fsyncs - before


def _engine(url: str) -> sa.Engine:
    engine = create_payment_engine(url)
    upgrade_schema(engine)
    return engine


def _store(path: Path, **options: Any) -> SqlStore:
    store = SqlStore(f"sqlite:///{path}", **options)
    store.create_all()
    return store


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    """The module on ``shop.db``."""
    built = Shop(tmp_path / "shop.db")
    yield built
    built.module.close()


def test_a_write_outside_any_run_is_fsynced_before_it_returns(shop: Shop) -> None:
    """A module write outside a run costs one fsync of its own, after its commit."""
    assert shop.fsyncs_of(lambda: shop.module.create_payment_collection("usd", "2.00")) == 1


def test_module_writes_commit_without_sqlites_own_fsync(shop: Shop) -> None:
    """The module's write connections run synchronous=NORMAL: the flusher syncs instead."""
    shop.module.create_payment_collection("usd", "2.00")
    with shop.module._store._connection(write=True) as connection:
        assert connection.execute("PRAGMA synchronous").fetchone() == (1,)


def test_a_module_write_in_a_durable_step_adds_no_fsync(shop: Shop) -> None:
    """Each checkpoint commit is fsynced; it also covers the module's write in the step."""
    with _store(shop.path) as store, shop.engine(store) as engine:
        engine.run(collect, "1.00")  # warm: the first run creates connections
        commits_before = store.group_stats[0]
        deferred = shop.fsyncs_of(lambda: engine.run(collect, "12.50"))
        assert deferred == store.group_stats[0] - commits_before  # one per checkpoint commit
        store.sync_scope = lambda: None  # type: ignore[method-assign]
        with shop.engine(store) as plain:
            own = shop.fsyncs_of(lambda: plain.run(collect, "12.50"))
    assert own == deferred + 1
    collections = shop.module.list_payment_collections()
    assert sorted(c.amount for c in collections) == [
        Decimal("1.00"),
        Decimal("12.50"),
        Decimal("12.50"),
    ]


def test_a_store_on_another_file_defers_nothing(shop: Shop, tmp_path: Path) -> None:
    """Runs checkpointed in another file cannot cover the module's writes: each syncs itself."""
    with _store(tmp_path / "runs.db") as store, shop.engine(store) as engine:
        assert shop.fsyncs_of(lambda: engine.run(collect, "3.00")) == 1


def test_a_store_that_does_not_fsync_offers_no_scope(shop: Shop) -> None:
    """A store on synchronous=NORMAL (or in memory) opens no scope; module writes sync alone."""
    assert SqlStore("sqlite://").sync_scope() is None
    with _store(shop.path, synchronous="NORMAL") as store:
        assert store.sync_scope() is None
        with shop.engine(store) as engine:
            assert shop.fsyncs_of(lambda: engine.run(collect, "4.00")) == 1


def test_a_write_after_the_last_checkpoint_is_synced_before_run_returns(shop: Shop) -> None:
    """A module write from a run_finished subscriber is fsynced before `run` returns."""
    seen: list[bool] = []

    def on_finish(event: Event) -> None:
        if event.name == "run_finished":
            shop.module.create_payment_collection("usd", "5.00")
            seen.append(deferred_sync(shop.flusher.database) is not None)

    with _store(shop.path) as store, shop.engine(store) as engine:
        engine.run(collect, "1.00")  # warm
        quiet = shop.fsyncs_of(lambda: engine.run(collect, "6.00"))
        engine.subscribe(on_finish)
        noisy = shop.fsyncs_of(lambda: engine.run(collect, "6.00"))
    assert seen == [True]  # the subscriber's write was deferred to the scope...
    assert noisy == quiet + 1  # ...which synced it at the end of the drive
