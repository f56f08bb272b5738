"""The storefront API's flows in-process over httpx: checkout, 3-D Secure, webhooks, admin.

Each test builds the app through its composition root (`Storefront`, `create_app`) on a fresh
database, with the test gateway as provider, and talks to it over HTTP only (the gateway stands
in for the customer's bank: 3-D Secure is completed and webhooks are signed there).
"""

from __future__ import annotations

import importlib
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from storefront_support import (
    ADMIN_KEY,
    POSTER,
    Harness,
    finished,
    gateway_providers,
    storefront_harness,
)
from structlog.testing import capture_logs

from examples.storefront_api import Settings, create_app
from flowkit import StepState, TransactionState
from payment import ProviderInput, ProviderOutput, SessionStatus, TestProvider
from payment.steps import REFUNDED_ON_FAILURE


@pytest.fixture
def shop(sqlite_url: str) -> Iterator[Harness]:
    """A storefront on a fresh SQLite file, its webhook worker running."""
    with storefront_harness(sqlite_url) as harness:
        yield harness


def assert_nothing_twice(shop: Harness) -> Counter[str]:
    """Every money-moving idempotency key reached the gateway once; returns calls per method."""
    moves = shop.money_moves()
    assert len(moves) == len(set(moves)), moves
    return Counter(method for method, _ in moves)


def test_checkout_capture_refund_and_timeline(database_url: str) -> None:
    """A cart is paid, completed, captured in part and refunded in part through the API."""
    with storefront_harness(database_url) as shop:
        cart_id = shop.new_cart()
        created = shop.client.post("/store/payment-collections", json={"cart_id": cart_id})
        again = shop.client.post("/store/payment-collections", json={"cart_id": cart_id})
        assert (created.status_code, again.status_code) == (201, 200)
        assert created.json()["id"] == again.json()["id"]
        assert created.json()["amount"] == "50.00"
        shop.session(cart_id, created.json()["id"], scenario="approve")

        completed = shop.complete(cart_id)
        assert completed.status_code == 200, completed.text
        order = completed.json()["order"]
        assert order["total"] == "50.00"
        assert shop.complete(cart_id).json()["order"] == order  # asked twice: one order

        payment = f"/admin/payments/{order['payment_id']}"
        captured = shop.admin("POST", f"{payment}/capture", json={"amount": "30"})
        assert captured.status_code == 200, captured.text
        assert captured.json()["payment"]["captured_amount"] == "30.00"
        refunded = shop.admin("POST", f"{payment}/refund", json={"amount": "10.00", "note": "size"})
        assert refunded.status_code == 200, refunded.text
        assert refunded.json()["payment"]["refunded_amount"] == "10.00"

        timeline = shop.admin("GET", f"/admin/workflows/runs/{completed.json()['transaction_id']}")
        assert timeline.status_code == 200
        steps = [s["name"] for s in timeline.json()["steps"] if s["started_at"] is not None]
        assert steps == [
            "claim-cart", "begin-authorization", "authorize-payment-session",
            "create-order", "reserve-inventory",
        ]  # fmt: skip
        assert timeline.json()["status"] == "done"
        assert assert_nothing_twice(shop) == {"authorize_payment": 1, "capture_payment": 1,
                                              "refund_payment": 1}  # fmt: skip


def test_three_d_secure_answers_402_then_the_customer_continues(shop: Harness) -> None:
    """3-D Secure parks the run with a 402 and its action; the next call finishes it."""
    cart_id, session_id = shop.paying_cart("requires_more")
    first = shop.complete(cart_id)
    assert first.status_code == 402
    body = first.json()
    assert body["code"] == "payment_action_required"
    assert body["session_id"] == session_id
    assert body["action"] == {
        "type": "three_d_secure",
        "url": f"https://test.invalid/3ds/{session_id}",
    }
    held = shop.storefront.carts.state(cart_id).checkout_run
    assert held is not None
    assert shop.run(held).status is TransactionState.WAITING
    assert shop.run(held).steps["await-payment-action"].state is StepState.WAITING

    shop.gateway.complete_action(session_id)
    second = shop.complete(cart_id)
    assert second.status_code == 200, second.text
    assert second.json()["transaction_id"] == held
    assert shop.run(held).status is TransactionState.DONE


def test_customer_back_without_acting_gets_the_action_again(shop: Harness) -> None:
    """Coming back before passing 3-D Secure gets the action again, until it passes."""
    cart_id, session_id = shop.paying_cart("requires_more")
    assert shop.complete(cart_id).status_code == 402
    again = shop.complete(cart_id)
    assert again.status_code == 402
    assert again.json()["action"]["type"] == "three_d_secure"
    assert shop.storefront.carts.state(cart_id).checkout_run is None
    assert shop.complete(cart_id).status_code == 402  # a new run waits again
    shop.gateway.complete_action(session_id)
    assert shop.complete(cart_id).status_code == 200


def test_pending_authorization_finishes_from_the_webhook_once(shop: Harness) -> None:
    """A 202 checkout is finished by its webhook; delivered twice, it runs once."""
    cart_id, session_id = shop.paying_cart("pending_authorization")
    pending = shop.complete(cart_id)
    assert pending.status_code == 202
    assert pending.json() == {
        "status": "pending", "transaction_id": pending.json()["transaction_id"], "order": None
    }  # fmt: skip
    checkout_run = pending.json()["transaction_id"]

    hook = shop.gateway.make_webhook("authorized", session_id=session_id)
    answers = [shop.deliver(hook) for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 202]
    assert answers[0].json() == answers[1].json()
    webhook_run = answers[0].json()["transaction_id"]
    assert webhook_run == "webhook-pp_test-evt_test_1"

    shop.wait_for_run(webhook_run, finished)
    record = shop.wait_for_run(checkout_run, finished)
    assert record.status is TransactionState.DONE
    assert record.steps["create-order"].attempts == 1
    assert shop.complete(cart_id).json()["status"] == "completed"
    assert shop.snapshot().orders == 1
    assert assert_nothing_twice(shop)["authorize_payment"] == 2  # the first answer, the webhook's


def test_three_d_secure_can_be_finished_by_the_gateway_webhook(shop: Harness) -> None:
    """After 3-D Secure, the gateway's 'authorized' webhook finishes the waiting run."""
    cart_id, session_id = shop.paying_cart("requires_more")
    assert shop.complete(cart_id).status_code == 402
    held = shop.storefront.carts.state(cart_id).checkout_run
    assert held is not None
    shop.gateway.complete_action(session_id)
    hook = shop.gateway.make_webhook("authorized", session_id=session_id)
    assert shop.deliver(hook).status_code == 202
    assert shop.wait_for_run(held, finished).status is TransactionState.DONE
    assert shop.storefront.carts.state(cart_id).order is not None


def test_failed_webhook_reverts_the_waiting_checkout(shop: Harness) -> None:
    """A 'failed' webhook fails the waiting step: the checkout is reverted and the cart freed."""
    cart_id, session_id = shop.paying_cart("pending_authorization")
    held = shop.complete(cart_id).json()["transaction_id"]
    hook = shop.gateway.make_webhook("failed", session_id=session_id)
    assert shop.deliver(hook).status_code == 202
    assert shop.wait_for_run(held, finished).status is TransactionState.REVERTED
    state = shop.storefront.carts.state(cart_id)
    assert (state.checkout_run, state.order) == (None, None)


def test_out_of_stock_after_authorization_cancels_or_refunds(shop: Harness) -> None:
    """Out of stock after authorizing is 409; the payment is canceled or refunded."""
    for scenario, undone in (("approve", "canceled_at"), ("auto_capture", "refunds")):
        cart_id, session_id = shop.paying_cart(scenario, POSTER)
        answer = shop.complete(cart_id)
        assert answer.status_code == 409
        assert answer.json() == {
            "detail": "poster is out of stock: 1 requested, 0 available", "code": "out_of_stock"
        }  # fmt: skip
        (payment,) = shop.storefront.module.list_payments(session_id=session_id)
        if undone == "refunds":
            assert payment.refunds[-1].note == REFUNDED_ON_FAILURE
        else:
            assert payment.canceled_at is not None
        assert shop.storefront.carts.state(cart_id).order is None


def test_declined_card_is_402_and_a_new_session_pays(shop: Harness) -> None:
    """A declined card answers 402; a new session for the same cart then completes it."""
    cart_id, _ = shop.paying_cart("decline")
    declined = shop.complete(cart_id)
    assert declined.status_code == 402
    assert declined.json()["code"] == "payment_not_authorized"
    collection = shop.collection(cart_id)
    shop.session(cart_id, collection["id"], scenario="approve")
    assert shop.complete(cart_id).status_code == 200


def test_capture_with_an_idempotency_key_moves_money_once(shop: Harness) -> None:
    """A capture repeated with its Idempotency-Key captures once; reused otherwise: 409."""
    payment = f"/admin/payments/{shop.paid_order()['payment_id']}/capture"
    key = {"Idempotency-Key": "capture-1"}
    first = shop.admin("POST", payment, json={"amount": "20"}, headers=key)
    second = shop.admin("POST", payment, json={"amount": "20"}, headers=key)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["transaction_id"] == second.json()["transaction_id"]
    assert second.json()["payment"]["captured_amount"] == "20.00"
    other = shop.admin("POST", payment, json={"amount": "25"}, headers=key)
    assert (other.status_code, other.json()["code"]) == (409, "transaction_conflict")
    assert assert_nothing_twice(shop)["capture_payment"] == 1


def test_a_failed_operation_repeated_with_its_key_answers_the_same(shop: Harness) -> None:
    """A failed capture repeated with its key answers the stored 409; nothing moves."""
    payment = f"/admin/payments/{shop.paid_order()['payment_id']}/capture"
    key = {"Idempotency-Key": "too-much"}
    answers = [shop.admin("POST", payment, json={"amount": "80"}, headers=key) for _ in range(2)]
    assert [(a.status_code, a.json()["code"]) for a in answers] == [
        (409, "capture_exceeds_authorized")
    ] * 2
    assert "capture_payment" not in assert_nothing_twice(shop)


def test_cancel_voids_the_payment_and_capture_is_then_refused(shop: Harness) -> None:
    """Cancel voids the authorization (twice is fine); capturing it afterwards is a 409."""
    payment = f"/admin/payments/{shop.paid_order()['payment_id']}"
    first = shop.admin("POST", f"{payment}/cancel")
    again = shop.admin("POST", f"{payment}/cancel")
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["payment"]["canceled_at"] is not None
    refused = shop.admin("POST", f"{payment}/capture")
    assert (refused.status_code, refused.json()["code"]) == (409, "payment_canceled")
    assert assert_nothing_twice(shop)["cancel_payment"] == 1


def test_request_scope_is_closed_after_each_request_seeing_its_error(shop: Harness) -> None:
    """Each request's scope is cleaned up after it, the cleanup seeing the route's error."""
    payment = f"/admin/payments/{shop.paid_order()['payment_id']}/capture"
    with capture_logs() as logs:
        assert shop.admin("POST", payment, json={"amount": "10"}).status_code == 200
        assert shop.admin("POST", payment, json={"amount": "999"}).status_code == 409
    finished_logs = [e for e in logs if e["event"] == "request_finished"]
    assert [e["outcome"] for e in finished_logs] == ["ok", "CaptureExceedsAuthorized"]
    assert [e["runs"][0][2] for e in finished_logs] == ["done", "reverted"]
    assert finished_logs[0]["route"] == "POST /admin/payments/{payment_id}/capture"
    assert finished_logs[0]["request_id"] != finished_logs[1]["request_id"]


class GatedGateway(TestProvider):
    """A test gateway whose authorizations wait until the test opens the gate."""

    __test__ = False

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.gate = threading.Event()

    def authorize_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Wait for the gate, then authorize as the scenario says."""
        self.entered.set()
        assert self.gate.wait(10)
        return super().authorize_payment(payment)


def test_completing_a_cart_being_completed_is_409(sqlite_url: str) -> None:
    """Completing a cart another request is completing is 409; one order is placed."""
    gateway = GatedGateway()
    with storefront_harness(sqlite_url, providers=gateway_providers(gateway)) as shop:
        cart_id, _ = shop.paying_cart("approve")
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(shop.complete, cart_id)
            assert gateway.entered.wait(10)
            second = shop.complete(cart_id)
            gateway.gate.set()
            assert first.result().status_code == 200
        assert (second.status_code, second.json()["code"]) == (409, "run_in_progress")
        assert shop.snapshot().orders == 1


def test_store_answers_hide_provider_data(shop: Harness) -> None:
    """Store answers hide provider data; a collection is reached only through its cart."""
    cart_id = shop.new_cart()
    collection = shop.collection(cart_id)
    session = shop.session(cart_id, collection["id"], scenario="approve", secret="s3cr3t")
    assert set(session) == {"id", "payment_collection_id", "provider_id", "currency_code",
                            "amount", "status"}  # fmt: skip
    assert "data" not in shop.collection(cart_id)["sessions"][0]
    other_cart = shop.new_cart()
    url = f"/store/payment-collections/{collection['id']}/payment-sessions"
    stranger = shop.client.post(url, json={"cart_id": other_cart, "provider_id": "pp_test"})
    assert (stranger.status_code, stranger.json()["code"]) == (404, "not_found")
    system = shop.client.post(url, json={"cart_id": cart_id, "provider_id": "pp_system_default"})
    assert system.status_code == 404  # the system provider authorizes anything: admins only
    sessions = shop.storefront.module.retrieve_payment_collection(collection["id"]).sessions
    assert [s.status for s in sessions] == [SessionStatus.PENDING]


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`main.app` is built from STOREFRONT_* variables; no admin key refuses to start."""
    env = {
        "STOREFRONT_ADMIN_API_KEY": ADMIN_KEY,
        "STOREFRONT_MAX_BODY_BYTES": "1024",
        "STOREFRONT_STORE_PROVIDERS": "pp_test, pp_stripe",
        "STOREFRONT_RUN_WORKER": "0",
    }
    settings = Settings.from_env(env)
    assert (settings.max_body_bytes, settings.run_worker) == (1024, False)
    assert settings.store_providers == ("pp_test", "pp_stripe")
    with pytest.raises(ValueError, match="STOREFRONT_ADMIN_API_KEY"):
        Settings.from_env({})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    main: Any = importlib.import_module("examples.storefront_api.main")
    paths = main.app.openapi()["paths"]
    assert {"/store/carts/{cart_id}/complete", "/hooks/payment/{provider_id}"} <= set(paths)
    assert create_app(settings).title == main.app.title


def test_stripe_is_configured_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With STRIPE_API_KEY set customers pay with pp_stripe, else with pp_test."""
    pytest.importorskip("payment.providers.stripe")
    monkeypatch.setenv("STOREFRONT_ADMIN_API_KEY", ADMIN_KEY)
    main: Any = importlib.import_module("examples.storefront_api.main")
    env = {
        "STOREFRONT_ADMIN_API_KEY": ADMIN_KEY,
        "STRIPE_API_KEY": "sk_test_storefront0000",
        "STRIPE_WEBHOOK_SECRET": "whsec_storefront",
        "STRIPE_API_BASE": "http://127.0.0.1:9",
    }
    assert [p.id for p in main.providers_from_env(env)] == ["pp_system_default", "pp_stripe"]
    assert Settings.from_env(env).store_providers == ("pp_stripe",)
    assert [p.id for p in main.providers_from_env({})] == ["pp_system_default", "pp_test"]
