"""Shared by the storefront API tests: the app in-process over httpx, carts, snapshots.

`AppClient` is a synchronous client over `httpx.ASGITransport` (the app's lifespan runs on a
blocking portal, as Starlette's test client does; that client is not used because, with plain
httpx installed, importing it emits a deprecation warning). App errors are not turned into
500 answers here: an unexpected exception fails the test that caused it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import anyio.from_thread
import httpx
import sqlalchemy as sa
from attrs import define, frozen

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # examples/ is run from the repository root, not installed
    sys.path.insert(0, ROOT)

from examples.checkout import LineItem  # noqa: E402
from examples.checkout.tables import inventory, orders  # noqa: E402
from examples.storefront_api import Settings, Storefront, create_app  # noqa: E402
from flowkit import RunRecord  # noqa: E402
from payment import (  # noqa: E402
    PaymentCollection,
    PaymentProvider,
    SystemProvider,
    TestProvider,
    Webhook,
)

ADMIN_KEY = "storefront-test-admin-key"
ADMIN = {"X-Admin-Key": ADMIN_KEY}
WEBHOOK_SECRET = "whsec_storefront_tests"
TEE = LineItem("tee", 2, Decimal("25.00"))
POSTER = LineItem("poster", 1, Decimal("40.00"))
MONEY_MOVES = frozenset(
    {"authorize_payment", "capture_payment", "refund_payment", "cancel_payment"}
)


def settings_for(database_url: str, **overrides: Any) -> Settings:
    """Test settings on `database_url` (a fast-polling worker)."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "admin_api_key": ADMIN_KEY,
        "worker_poll": (0.01, 0.05),
    }
    return Settings(**(values | overrides))


def gateway_providers(gateway: TestProvider | None = None) -> list[PaymentProvider]:
    """The system provider and a test gateway with a known webhook secret."""
    return [SystemProvider(), gateway or TestProvider(secret=WEBHOOK_SECRET)]


class AppClient:
    """A synchronous httpx client calling an ASGI app in-process, its lifespan started.

    Args:
        app: The ASGI app.
        base_url: The URL the requests claim to go to.
    """

    def __init__(self, app: Any, base_url: str = "http://storefront.test") -> None:
        self._stack = ExitStack()
        self._portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal())
        lifespan = app.router.lifespan_context(app)
        self._stack.enter_context(self._portal.wrap_async_context_manager(lifespan))
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)
        self._client = self._stack.enter_context(self._portal.wrap_async_context_manager(client))

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request and wait for the whole answer."""
        return self._portal.call(partial(self._client.request, method, url, **kwargs))

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        """POST `url`."""
        return self.request("POST", url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET `url`."""
        return self.request("GET", url, **kwargs)

    def close(self) -> None:
        """Close the client and shut the app's lifespan down."""
        self._stack.close()

    def __enter__(self) -> AppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@frozen
class Snapshot:
    """Everything a request could change: payment records, orders, stock, money moved, runs."""

    collections: tuple[PaymentCollection, ...]
    orders: int
    stock: tuple[tuple[str, int], ...]
    money_moves: int
    runs: tuple[tuple[str, str], ...]


@define
class Harness:
    """One test's storefront: its composition root, its app, an in-process client."""

    storefront: Storefront
    app: Any
    client: AppClient

    @property
    def gateway(self) -> TestProvider:
        """The test gateway the payment module talks to."""
        provider = self.storefront.module.provider("pp_test")
        assert isinstance(provider, TestProvider)
        return provider

    def new_cart(self, *items: LineItem) -> str:
        """A usd cart with these lines (default: two tees, 50.00); returns its id."""
        cart = self.storefront.database.create_cart("usd", items or (TEE,))
        return cart.id

    def admin(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request with the admin key."""
        return self.client.request(method, url, headers=ADMIN | kwargs.pop("headers", {}), **kwargs)

    def collection(self, cart_id: str) -> dict[str, Any]:
        """POST /store/payment-collections for the cart; returns the collection."""
        answer = self.client.post("/store/payment-collections", json={"cart_id": cart_id})
        assert answer.status_code in (200, 201), answer.text
        return dict(answer.json())

    def session(self, cart_id: str, collection_id: str, **data: Any) -> dict[str, Any]:
        """POST a test-gateway session (``data`` goes to the gateway); returns the session."""
        body = {"cart_id": cart_id, "provider_id": "pp_test", "data": data}
        url = f"/store/payment-collections/{collection_id}/payment-sessions"
        answer = self.client.post(url, json=body)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def paying_cart(self, scenario: str = "approve", *items: LineItem) -> tuple[str, str]:
        """A cart with a collection and a session in that scenario: (cart id, session id)."""
        cart_id = self.new_cart(*items)
        collection = self.collection(cart_id)
        return cart_id, self.session(cart_id, collection["id"], scenario=scenario)["id"]

    def deliver(self, hook: Webhook) -> httpx.Response:
        """POST a gateway webhook to /hooks/payment/pp_test, body and headers as signed."""
        url = "/hooks/payment/pp_test"
        return self.client.post(url, content=hook.raw_body, headers=dict(hook.headers))

    def complete(self, cart_id: str) -> httpx.Response:
        """POST /store/carts/{id}/complete."""
        return self.client.post(f"/store/carts/{cart_id}/complete")

    def paid_order(self, scenario: str = "approve") -> dict[str, Any]:
        """A completed cart's order (a payment authorized for 50.00)."""
        cart_id, _ = self.paying_cart(scenario)
        answer = self.complete(cart_id)
        assert answer.status_code == 200, answer.text
        return dict(answer.json()["order"])

    def run(self, transaction_id: str) -> RunRecord:
        """The stored run."""
        record = self.storefront.engine.get(transaction_id)
        assert record is not None, transaction_id
        return record

    def wait_for_run(
        self, transaction_id: str, until: Callable[[RunRecord], bool], timeout: float = 10.0
    ) -> RunRecord:
        """Poll the stored run until `until` holds (the webhook worker runs in a thread)."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.storefront.engine.get(transaction_id)
            if record is not None and until(record):
                return record
            assert time.monotonic() < deadline, f"{transaction_id}: {record and record.status}"
            time.sleep(0.02)

    def money_moves(self) -> list[tuple[str, str | None]]:
        """(method, idempotency key) of every gateway call that moves or voids money."""
        calls = self.gateway.calls
        return [(c.method, c.idempotency_key) for c in calls if c.method in MONEY_MOVES]

    def snapshot(self) -> Snapshot:
        """What the storefront holds now."""
        engine = self.storefront.database.engine
        with engine.connect() as conn:
            order_count = conn.execute(sa.select(sa.func.count()).select_from(orders)).scalar()
            stock = conn.execute(sa.select(inventory).order_by(inventory.c.sku)).all()
        runs = self.storefront.engine.list(limit=10_000, decode=False)
        return Snapshot(
            tuple(self.storefront.module.list_payment_collections()),
            int(order_count or 0),
            tuple((row.sku, row.stocked_quantity) for row in stock),
            len(self.money_moves()),
            tuple(sorted((r.transaction_id, r.status.value) for r in runs)),
        )


def finished(record: RunRecord) -> bool:
    """True once the run is done, reverted or failed."""
    return record.status.is_finished


@contextmanager
def storefront_harness(
    database_url: str,
    *,
    providers: Iterable[PaymentProvider] | None = None,
    run_worker: bool = True,
    **overrides: Any,
) -> Iterator[Harness]:
    """A storefront on `database_url` (tees in stock, posters sold out) and its client."""
    settings = settings_for(database_url, **overrides)
    chosen = list(providers) if providers is not None else gateway_providers()
    with Storefront(settings, providers=chosen) as storefront:
        storefront.database.set_stock("tee", 100)
        storefront.database.set_stock("poster", 0)
        if run_worker:
            storefront.start_worker()
        app = create_app(settings, storefront=storefront)
        with AppClient(app) as client:
            yield Harness(storefront, app, client)
