"""A payment application for the e2e tests of custom and public workflows: the module, carts,
durable engines on one test database, and the payment tables' row counts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import sqlalchemy as sa
from attrs import define

from flowkit import Engine, Registry, RunResult, Workflow
from flowkit.sqlalchemy import SqlStore
from payment import Payment, PaymentModule, PaymentSession, register
from payment.adapters.tables import metadata as payment_tables
from payment.cart import CartService
from payment.testing import InMemoryCartService, authorized_payment, payment_module


@define
class Shop:
    """One test's application: the module, carts, and durable engines on one database."""

    url: str
    module: PaymentModule
    carts: InMemoryCartService
    registry: Registry
    engines: list[Engine] = attrs.field(factory=list)

    def run(self, flow: Workflow[Any, Any], inp: Any, tx: str) -> RunResult[Any]:
        """Run `flow` durably on a fresh engine (as another process would)."""
        engine = Engine(SqlStore(self.url), [flow], container=self.registry)
        self.engines.append(engine)
        return engine.run(flow, inp, transaction_id=tx)

    def rows(self) -> dict[str, int]:
        """The row count of every payment table."""
        engine = sa.create_engine(self.url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                return {
                    table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).one()[0]
                    for table in payment_tables.sorted_tables
                }
        finally:
            engine.dispose()

    def collection(self) -> str:
        """A new usd collection of 120.00."""
        return self.module.create_payment_collection("usd", "120.00").id

    def session(self, collection_id: str | None = None) -> PaymentSession:
        """A new test-gateway session (approves) for the whole of a collection."""
        collection_id = collection_id or self.collection()
        return self.module.create_payment_session(
            collection_id, "pp_test", "usd", "120.00", data={"scenario": "approve"}
        )

    def captured(self) -> Payment:
        """An authorized payment of 100.00, all of it captured."""
        return self.module.capture_payment(authorized_payment(self.module, "100").id)


@contextmanager
def open_shop(database_url: str) -> Iterator[Shop]:
    """A `Shop` on `database_url` (flowkit's and payment's tables created), closed after."""
    store = SqlStore(database_url)
    store.create_all()
    store.close()
    with payment_module(database_url) as module:
        carts = InMemoryCartService()
        registry = Registry()
        register(registry, module)
        registry.register_value(CartService, carts)
        built = Shop(database_url, module, carts, registry)
        try:
            yield built
        finally:
            for engine in built.engines:
                engine.close()
            registry.close()
