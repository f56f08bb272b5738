"""The storefront API behind a real uvicorn server on 127.0.0.1, webhooks over real HTTP.

The server runs in a thread of the test process (so the test gateway that signs the webhooks
is the one the payment module talks to), on a free port, and is stopped after the test. The
second test has localstripe (started the way the Stripe provider's tests start it, with their
helpers in ``tests/stripe/stripe_support.py``) sign and deliver the webhooks itself, twice.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from storefront_support import Harness, finished, storefront_harness

from flowkit import TransactionState
from payment import ProviderStatus, SystemProvider, TestProvider

STRIPE_TESTS = str(Path(__file__).resolve().parents[1] / "stripe")


@contextmanager
def serving(app: object) -> Iterator[str]:
    """Serve `app` with uvicorn on a free port of 127.0.0.1; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", ws="none", lifespan="on")  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive()


def test_webhook_over_http_finishes_the_checkout_exactly_once(tmp_path: Path) -> None:
    """Over real HTTP, a webhook delivered three times finishes the checkout once."""
    with storefront_harness(f"sqlite:///{tmp_path / 'shop.db'}") as shop:
        with serving(shop.app) as base_url, httpx.Client(base_url=base_url, timeout=10) as http:
            cart_id, session_id, checkout_run = _pending_checkout(shop, http)
            hook = shop.gateway.make_webhook("authorized", session_id=session_id)

            def deliver() -> httpx.Response:
                return http.post("/hooks/payment/pp_test", content=hook.raw_body,
                                 headers=dict(hook.headers))  # fmt: skip

            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(lambda _: deliver(), range(2)))
            assert [a.status_code for a in answers] == [202, 202]
            webhook_run = answers[0].json()["transaction_id"]
            assert answers[1].json()["transaction_id"] == webhook_run

            record = shop.wait_for_run(checkout_run, finished)
            assert record.status is TransactionState.DONE
            assert deliver().status_code == 202  # a late redelivery changes nothing
            assert shop.wait_for_run(webhook_run, finished).status is TransactionState.DONE
            completed = http.post(f"/store/carts/{cart_id}/complete")

        assert completed.status_code == 200
        assert completed.json()["transaction_id"] == checkout_run
        _assert_once(shop, checkout_run, session_id)


def _pending_checkout(shop: Harness, http: httpx.Client) -> tuple[str, str, str]:
    """A cart whose checkout waits for the gateway's webhook, made over HTTP."""
    cart_id = shop.new_cart()
    collection = http.post("/store/payment-collections", json={"cart_id": cart_id})
    assert collection.status_code == 201, collection.text
    url = f"/store/payment-collections/{collection.json()['id']}/payment-sessions"
    body = {"cart_id": cart_id, "provider_id": "pp_test",
            "data": {"scenario": "pending_authorization"}}  # fmt: skip
    session = http.post(url, json=body)
    assert session.status_code == 201, session.text
    pending = http.post(f"/store/carts/{cart_id}/complete")
    assert pending.status_code == 202, pending.text
    return cart_id, session.json()["id"], pending.json()["transaction_id"]


def _assert_once(shop: Harness, checkout_run: str, session_id: str) -> None:
    """One order, every checkout step invoked once, the gateway holding one authorization."""
    record = shop.run(checkout_run)
    assert {name: step.attempts for name, step in record.steps.items() if step.attempts} == {
        "claim-cart": 1, "begin-authorization": 1, "await-payment-action": 1,
        "authorize-payment-session": 1, "create-order": 1, "reserve-inventory": 1,
    }  # fmt: skip
    assert shop.snapshot().orders == 1
    assert shop.storefront.database.stock_level("tee") == 98
    ledger = shop.gateway.ledger(session_id)
    assert (ledger.status, ledger.authorized) == (ProviderStatus.AUTHORIZED, ledger.amount)
    runs = shop.storefront.engine.list(workflow="payment-webhook", decode=False)
    assert [r.status for r in runs] == [TransactionState.DONE]


class CountingApp:
    """An ASGI wrapper that counts the requests per path (to see every webhook delivery)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count, then call the app."""
        if scope["type"] == "http":
            self.seen[scope["path"]] += 1
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A localstripe server of this module's own (its webhook endpoints are ours alone)."""
    pytest.importorskip("payment.providers.stripe")
    if STRIPE_TESTS not in sys.path:
        sys.path.insert(0, STRIPE_TESTS)
    from stripe_support import localstripe_server

    with localstripe_server(tmp_path_factory.mktemp("localstripe") / "server.log") as url:
        yield url


def _stripe_storefront(tmp_path: Path, localstripe: str) -> Any:
    """A storefront whose customers pay with pp_stripe (on localstripe, captured at once)."""
    from stripe_support import API_KEY, WEBHOOK_SECRET

    from payment.providers.stripe import StripeProvider

    stripe_provider = StripeProvider(
        api_key=API_KEY,
        webhook_secret=WEBHOOK_SECRET,
        api_base=localstripe,
        capture_method="automatic",
    )
    providers = [SystemProvider(), TestProvider(), stripe_provider]
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    return storefront_harness(url, providers=providers, store_providers=("pp_stripe",))


def test_localstripe_webhooks_over_http_finish_the_checkout_once(
    tmp_path: Path, localstripe: str
) -> None:
    """localstripe's webhook, delivered twice to uvicorn, finishes a 3-D Secure checkout once."""
    from stripe_support import CARD_3DS, WEBHOOK_SECRET, authenticate, post_to_localstripe

    with _stripe_storefront(tmp_path, localstripe) as shop:
        counting = CountingApp(shop.app)
        with serving(counting) as base_url, httpx.Client(base_url=base_url, timeout=15) as http:
            hook = f"{base_url}/hooks/payment/pp_stripe"
            for name in ("storefront", "storefront-again"):  # two endpoints: two deliveries
                fields = {"url": hook, "secret": WEBHOOK_SECRET,
                          "events": ["payment_intent.succeeded"]}  # fmt: skip
                url = f"{localstripe}/_config/webhooks/{name}"
                assert post_to_localstripe(url, fields, as_json=True) == 200

            cart_id = shop.new_cart()
            collection = http.post("/store/payment-collections", json={"cart_id": cart_id})
            method = _card(localstripe, CARD_3DS)
            url = f"/store/payment-collections/{collection.json()['id']}/payment-sessions"
            body = {"cart_id": cart_id, "provider_id": "pp_stripe",
                    "data": {"payment_method": method}}  # fmt: skip
            session = http.post(url, json=body)
            assert session.status_code == 201, session.text
            challenge = http.post(f"/store/carts/{cart_id}/complete")
            assert challenge.status_code == 402, challenge.text
            assert challenge.json()["action"]["type"] == "stripe_next_action"
            checkout_run = shop.storefront.carts.state(cart_id).checkout_run
            assert checkout_run is not None

            data = shop.storefront.module.retrieve_payment_session(session.json()["id"]).data
            status = authenticate(localstripe, str(data["id"]), str(data["client_secret"]),
                                  success=True)  # fmt: skip
            assert status == 200
            record = shop.wait_for_run(checkout_run, finished, timeout=20)
            assert record.status is TransactionState.DONE
            _wait_for(lambda: counting.seen["/hooks/payment/pp_stripe"] == 2)
            completed = http.post(f"/store/carts/{cart_id}/complete")

        assert completed.status_code == 200
        assert completed.json()["transaction_id"] == checkout_run
        _assert_stripe_once(shop, checkout_run, cart_id)


def _card(localstripe: str, number: str) -> str:
    """A card PaymentMethod at localstripe (what Stripe.js makes in the customer's browser)."""
    import stripe
    from stripe_support import API_KEY, card

    client = stripe.StripeClient(API_KEY, base_addresses={"api": localstripe})
    return card(client, number)


def _wait_for(condition: Any, timeout: float = 10) -> None:
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        threading.Event().wait(0.02)
    raise AssertionError("condition not met in time")


def _assert_stripe_once(shop: Harness, checkout_run: str, cart_id: str) -> None:
    """One webhook run, every checkout step once, one order, the payment captured once."""
    webhook_runs = shop.storefront.engine.list(workflow="payment-webhook", decode=False)
    assert [r.status for r in webhook_runs] == [TransactionState.DONE]
    record = shop.run(checkout_run)
    attempts = {name: step.attempts for name, step in record.steps.items() if step.attempts}
    assert set(attempts.values()) == {1}
    assert shop.snapshot().orders == 1
    collection = shop.storefront.module.retrieve_payment_collection_for_cart(cart_id)
    (payment,) = collection.payments
    assert (payment.amount, payment.captured_amount) == (collection.amount, collection.amount)
    assert len(payment.captures) == 1
