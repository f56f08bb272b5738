"""The composition root: one database, one `flowkit.Registry`, one engine, one webhook worker.

`Storefront` wires flowkit's `SqlStore`, the payment module and the checkout example's carts on
the database of the settings, registers every service the routes and steps resolve in ONE
registry, and owns the thread that works the webhook queue. Requests open scopes of that
registry (see `examples.storefront_api.dependencies`); nothing here is global.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from contextlib import ExitStack
from types import TracebackType
from typing import Any, Self

import structlog

import flowkit
from examples.checkout import CheckoutDatabase, SqlCartService
from flowkit import Engine, Workflow
from flowkit.sqlalchemy import SqlStore
from payment import CartService, PaymentProvider, make_payment_module, register
from payment.workflows import (
    capture_payment_workflow,
    create_payment_collection_for_cart_workflow,
    create_payment_sessions_workflow,
    refund_payment_workflow,
)

from .carts import CheckoutCarts
from .context import RequestContext, RequestLog, background_context, request_log
from .settings import WEBHOOK_QUEUE, Settings
from .workflows import cancel_payment_workflow, checkout_workflow, webhook_workflow

__all__ = ["WORKFLOWS", "Storefront"]

WORKFLOWS: tuple[Workflow[Any, Any], ...] = (
    cancel_payment_workflow,
    capture_payment_workflow,
    checkout_workflow,
    create_payment_collection_for_cart_workflow,
    create_payment_sessions_workflow,
    refund_payment_workflow,
    webhook_workflow,
)
"""Every workflow the routes run (the engine recovers runs of these only)."""


class Storefront:
    """Everything the API needs, built once per app; `close()` (or `with`) releases it.

    Args:
        settings: The database and the API's options.
        providers: The payment providers (default: the system provider and a `TestProvider`).

    Attributes:
        settings: As given.
        module: The payment module.
        database: The checkout example's carts, orders and stock.
        carts: Reads a cart's checkout state.
        registry: The one registry: `Settings`, `PaymentModule`, `CartService`,
            `CheckoutDatabase`, `CheckoutCarts` and `Engine` as values, `RequestLog` scoped,
            `RequestContext` per request (a transient background one otherwise).
        engine: The durable engine every route runs its workflow with.
    """

    def __init__(
        self, settings: Settings, *, providers: Iterable[PaymentProvider] | None = None
    ) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        with ExitStack() as stack:
            store = SqlStore(settings.database_url)
            stack.callback(store.close)
            store.create_all()
            url = settings.database_url
            self.module = stack.enter_context(make_payment_module(url, providers=providers))
            self.database = CheckoutDatabase(url)
            stack.callback(self.database.close)
            self.database.create_schema()
            self.carts = CheckoutCarts(self.database)
            self.registry = self._registry()
            stack.callback(self.registry.close)
            self.engine = Engine(store, WORKFLOWS, container=self.registry, queues=[WEBHOOK_QUEUE])
            stack.callback(self.engine.close)
            self.registry.register_value(Engine, self.engine)
            self._resources = stack.pop_all()

    def _registry(self) -> flowkit.Registry:
        registry = flowkit.Registry()
        registry.register_value(Settings, self.settings)
        register(registry, self.module)
        registry.register_value(CartService, SqlCartService(self.database))
        registry.register_value(CheckoutDatabase, self.database)
        registry.register_value(CheckoutCarts, self.carts)
        registry.register_factory(RequestContext, background_context, lifetime="transient")
        registry.register_factory(RequestLog, request_log, lifetime="scoped")
        return registry

    def start_worker(self) -> None:
        """Work the webhook queue in a daemon thread until `close()` (no-op when running)."""
        if self._worker is not None:
            return
        self._worker = threading.Thread(target=self._work, name="storefront-webhooks", daemon=True)
        self._worker.start()

    def _work(self) -> None:
        try:
            self.engine.work(
                WEBHOOK_QUEUE,
                stop=self._stop,
                container=self.registry,
                poll=self.settings.worker_poll,
            )
        except Exception:  # the thread's end is the only place left to say it
            structlog.get_logger("storefront").exception("webhook_worker_crashed")

    def close(self) -> None:
        """Stop the worker (its runs finish their step), then release every connection."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        self._resources.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
