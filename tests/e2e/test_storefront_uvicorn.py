"""The storefront API behind a real uvicorn server on 127.0.0.1, webhooks over real HTTP.

The server runs in a thread of the test process (so the test gateway that signs the webhooks
is the one the payment module talks to), on a free port, and is stopped after the test.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from storefront_support import Harness, finished, storefront_harness

from flowkit import TransactionState
from payment import ProviderStatus


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
    """Over real HTTP, a checkout waiting for the provider is finished by its signed webhook;
    delivered twice at once and once more later, it completes the cart once."""
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
        "claim-cart": 1, "begin-authorization": 1, "note-payment-action": 1,
        "await-payment-action": 1, "authorize-payment-session": 1, "create-order": 1,
        "reserve-inventory": 1,
    }  # fmt: skip
    assert shop.snapshot().orders == 1
    assert shop.storefront.database.stock_level("tee") == 98
    ledger = shop.gateway.ledger(session_id)
    assert (ledger.status, ledger.authorized) == (ProviderStatus.AUTHORIZED, ledger.amount)
    runs = shop.storefront.engine.list(workflow="payment-webhook", decode=False)
    assert [r.status for r in runs] == [TransactionState.DONE]
