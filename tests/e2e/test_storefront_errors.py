"""The storefront API's bad inputs and error mappings: the right 4xx, one line, nothing changed.

One storefront serves the whole module (each request is checked against a snapshot taken just
before it). Every answer must be JSON ``{"detail": <one line>, "code": ...}``: never a 500, a
traceback or a list of validation errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from attrs import evolve
from storefront_support import ADMIN, WEBHOOK_SECRET, Harness, Snapshot, storefront_harness

from payment.providers import signing

BIG = 64 * 1024


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One storefront for the module (no webhook worker: nothing here may be queued)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('errors') / 'shop.db'}"
    with storefront_harness(url, run_worker=False) as harness:
        yield harness


@pytest.fixture(scope="module")
def order(shop: Harness) -> dict[str, Any]:
    """A completed cart's order: its payment is authorized for 50.00, nothing captured."""
    return shop.paid_order()


def reason(answer: httpx.Response, status: int, code: str | None = None) -> str:
    """Check the answer's status and error shape; returns its one-line reason."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert isinstance(body, dict), body
    assert {"detail", "code"} <= set(body), body
    assert isinstance(body["detail"], str), body
    assert body["detail"].strip(), body
    assert "\n" not in body["detail"]
    assert "Traceback" not in answer.text
    if code is not None:
        assert body["code"] == code, body
    return str(body["detail"])


def unchanged(shop: Harness, before: Snapshot, *, runs: bool = True) -> None:
    """Nothing the storefront holds changed (`runs=False`: a reverted run may be recorded)."""
    after = shop.snapshot()
    if not runs:
        after, before = evolve(after, runs=()), evolve(before, runs=())
    assert after == before


# --- malformed requests: refused before any workflow runs --------------------------------

JSON_ROUTES = [
    "/store/payment-collections",
    "/store/payment-collections/pay_col_x/payment-sessions",
    "/admin/payments/pay_x/capture",
    "/admin/payments/pay_x/refund",
]


@pytest.mark.parametrize("url", JSON_ROUTES)
def test_malformed_json_is_400(shop: Harness, url: str) -> None:
    """A body that is not JSON answers 400 malformed_json and changes nothing."""
    before = shop.snapshot()
    answer = shop.client.post(
        url, content=b'{"cart_id": ', headers=ADMIN | {"content-type": "application/json"}
    )
    assert reason(answer, 400, "malformed_json").startswith("malformed JSON body")
    unchanged(shop, before)


@pytest.mark.parametrize(
    ("url", "body", "where"),
    [
        ("/store/payment-collections", {"cart_id": 5}, "body.cart_id"),
        ("/store/payment-collections", {}, "body.cart_id"),
        ("/store/payment-collections", [], "body"),
        ("/store/payment-collections", {"cart_id": "c", "extra": 1}, "body.extra"),
        ("/store/payment-collections", {"cart_id": "has:colon"}, "body.cart_id"),
        ("/store/payment-collections/pay_col_x/payment-sessions",
         {"cart_id": "c", "provider_id": "pp_test", "data": []}, "body.data"),
        ("/admin/payments/pay_x/capture", {"amount": "ten"}, "body.amount"),
        ("/admin/payments/pay_x/capture", {"amount": "NaN"}, "body.amount"),
        ("/admin/payments/pay_x/capture", {"amount": "1e400"}, "body.amount"),
        ("/admin/payments/pay_x/refund", {"note": 7}, "body.note"),
        ("/admin/payments/has:colon/cancel", None, "path.payment_id"),
    ],
)  # fmt: skip
def test_wrong_types_are_422(shop: Harness, url: str, body: Any, where: str) -> None:
    """A request that does not match its schema answers 422 naming the field, in one line."""
    before = shop.snapshot()
    answer = shop.client.post(url, json=body, headers=ADMIN)
    assert reason(answer, 422, "invalid_request").startswith(f"{where}: ")
    unchanged(shop, before)


def test_wrong_idempotency_key_is_422(shop: Harness, order: dict[str, Any]) -> None:
    """An Idempotency-Key with characters a transaction id cannot hold is refused."""
    before = shop.snapshot()
    url = f"/admin/payments/{order['payment_id']}/capture"
    answer = shop.admin("POST", url, headers={"Idempotency-Key": "a:b"})
    assert reason(answer, 422).startswith("header.idempotency-key: ")
    unchanged(shop, before)


# --- unknown ids -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body", "what"),
    [
        ("POST", "/store/payment-collections", {"cart_id": "cart_nope"}, "Cart"),
        ("POST", "/store/carts/cart_nope/complete", None, "Cart"),
        ("POST", "/store/payment-collections/pay_col_nope/payment-sessions",
         {"cart_id": "cart_nope", "provider_id": "pp_test"}, "PaymentCollection"),
        ("POST", "/admin/payments/pay_nope/capture", None, "Payment"),
        ("POST", "/admin/payments/pay_nope/refund", {"amount": "1"}, "Payment"),
        ("POST", "/admin/payments/pay_nope/cancel", None, "Payment"),
        ("GET", "/admin/workflows/runs/no-such-run", None, "run"),
        ("POST", "/hooks/payment/pp_nope", {}, "PaymentProvider"),
    ],
)  # fmt: skip
def test_unknown_ids_are_404(shop: Harness, method: str, url: str, body: Any, what: str) -> None:
    """An unknown cart, collection, payment, run or provider answers 404 and changes nothing."""
    before = shop.snapshot()
    answer = shop.admin(method, url, json=body)
    assert what in reason(answer, 404, "not_found")
    unchanged(shop, before)


def test_unknown_route_is_a_json_404(shop: Harness) -> None:
    """Even a path no route serves answers the same one-line JSON shape."""
    assert reason(shop.client.get("/store/nothing-here"), 404, "http_404") == "Not Found"


# --- the admin key -----------------------------------------------------------------------

ADMIN_ROUTES = [
    ("POST", "/admin/payments/{payment}/capture"),
    ("POST", "/admin/payments/{payment}/refund"),
    ("POST", "/admin/payments/{payment}/cancel"),
    ("GET", "/admin/workflows/runs/{run}"),
]


@pytest.mark.parametrize(("method", "template"), ADMIN_ROUTES)
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "missing X-Admin-Key header"),
        ({"X-Admin-Key": "wrong-key-of-some-length"}, "invalid admin API key"),
        ({"X-Admin-Key": ""}, "missing X-Admin-Key header"),
        ({"X-Admin-Key": "storefront-test-admin-ke"}, "invalid admin API key"),
    ],
)
def test_admin_routes_need_the_right_key(
    shop: Harness,
    order: dict[str, Any],
    method: str,
    template: str,
    headers: dict[str, str],
    expected: str,
) -> None:
    """Without the admin key, or with a wrong one, admin routes answer 401 and do nothing."""
    run = shop.storefront.carts.state(order["cart_id"]).checkout_run
    url = template.format(payment=order["payment_id"], run=run)
    before = shop.snapshot()
    answer = shop.client.request(method, url, headers=headers)
    assert reason(answer, 401, "unauthorized") == expected
    unchanged(shop, before)


# --- webhooks ----------------------------------------------------------------------------


def signed(body: bytes, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> dict[str, str]:
    """The test gateway's signature header for `body`."""
    stamp = int(time.time()) if at is None else at
    return {"flowkit-test-signature": signing.signature_header(secret, stamp, body)}


def event(session_id: str = "payses_x", event_id: str = "evt_forged") -> bytes:
    """An 'authorized' event body as the test gateway writes it."""
    fields = {"id": event_id, "type": "authorized", "session_id": session_id,
              "amount": "50.00", "currency_code": "usd"}  # fmt: skip
    return json.dumps(fields, sort_keys=True).encode()


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({}, "missing"),
        ({"flowkit-test-signature": "garbage"}, "malformed"),
        (signed(event(), secret="not-the-secret"), "does not match"),
        (signed(event(), at=int(time.time()) - 3600), "outside the tolerance"),
        (signed(b'{"id": "evt_other"}'), "does not match"),
    ],
)
def test_webhook_without_a_valid_signature_is_400(
    shop: Harness, headers: dict[str, str], why: str
) -> None:
    """A missing, malformed, wrong or stale signature (or a re-signed body) is 400."""
    before = shop.snapshot()
    answer = shop.client.post("/hooks/payment/pp_test", content=event(), headers=headers)
    assert why in reason(answer, 400, "invalid_signature")
    unchanged(shop, before)


def test_signed_webhook_that_is_not_an_event_is_400(shop: Harness) -> None:
    """A correctly signed body that is not a JSON event answers 400 invalid_data."""
    before = shop.snapshot()
    body = b"not json at all"
    answer = shop.client.post("/hooks/payment/pp_test", content=body, headers=signed(body))
    assert reason(answer, 400, "invalid_data") == "webhook is malformed: the body is not JSON"
    unchanged(shop, before)


def test_unsupported_event_is_acknowledged_without_a_run(shop: Harness) -> None:
    """A signed event of a kind the module does not act on is acknowledged, nothing queued."""
    before = shop.snapshot()
    body = json.dumps({"id": "evt_x", "type": "customer.created"}).encode()
    answer = shop.client.post("/hooks/payment/pp_test", content=body, headers=signed(body))
    assert answer.status_code == 202
    assert answer.json() == {"received": True, "action": "not_supported", "transaction_id": None}
    unchanged(shop, before)


# --- body size -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/store/payment-collections", "/hooks/payment/pp_test", "/admin/payments/p/refund"]
)
def test_oversized_body_is_413(shop: Harness, url: str) -> None:
    """A body over 64 KiB is 413 before any route reads it, declared or chunked."""
    before = shop.snapshot()
    big = json.dumps({"cart_id": "c", "pad": "x" * BIG}).encode()

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    declared = shop.client.post(url, content=big, headers=ADMIN)
    streamed = shop.client.post(url, content=chunks(), headers=ADMIN)
    for answer in (declared, streamed):
        assert reason(answer, 413, "body_too_large") == "request body larger than 65536 bytes"
    unchanged(shop, before)


def test_body_at_the_limit_is_read(shop: Harness) -> None:
    """A body of exactly the limit gets through to the route."""
    padding = BIG - len(json.dumps({"cart_id": "cart_nope", "p": ""}).encode())
    body = json.dumps({"cart_id": "cart_nope", "p": "x" * padding}).encode()
    assert len(body) == BIG
    answer = shop.client.post("/store/payment-collections", content=body,
                              headers={"content-type": "application/json"})  # fmt: skip
    reason(answer, 422, "invalid_request")  # the route's model refused the extra field


# --- payment errors, each mapped -----------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "body", "status", "code"),
    [
        ("capture", {"amount": "-5"}, 400, "invalid_amount"),
        ("capture", {"amount": "0"}, 400, "invalid_amount"),
        ("capture", {"amount": "50.01"}, 409, "capture_exceeds_authorized"),
        ("refund", {"amount": "0.001"}, 400, "invalid_amount"),
        ("refund", {"amount": "1"}, 409, "refund_exceeds_captured"),
        ("refund", None, 409, "refund_exceeds_captured"),
    ],
)
def test_payment_operation_errors(
    shop: Harness, order: dict[str, Any], route: str, body: Any, status: int, code: str
) -> None:
    """Refused amounts are 400, too much is 409, and the payment is unchanged."""
    before = shop.snapshot()
    answer = shop.admin("POST", f"/admin/payments/{order['payment_id']}/{route}", json=body)
    reason(answer, status, code)
    unchanged(shop, before, runs=False)


def test_cancel_after_a_capture_is_409(shop: Harness) -> None:
    """A payment with a capture cannot be canceled (refund it instead): 409."""
    payment = f"/admin/payments/{shop.paid_order()['payment_id']}"
    assert shop.admin("POST", f"{payment}/capture", json={"amount": "5"}).status_code == 200
    before = shop.snapshot()
    detail = reason(shop.admin("POST", f"{payment}/cancel"), 409, "payment_already_captured")
    assert detail.endswith("refund it instead")
    unchanged(shop, before, runs=False)


def test_session_currency_and_data_errors_are_400(shop: Harness) -> None:
    """A session in another currency, or with data nested too deep, answers 400."""
    cart_id = shop.new_cart()
    url = f"/store/payment-collections/{shop.collection(cart_id)['id']}/payment-sessions"
    nested: dict[str, Any] = {}
    for _ in range(40):
        nested = {"n": nested}
    cases = [
        ({"currency_code": "eur"}, "invalid_currency"),
        ({"currency_code": "xyz"}, "invalid_currency"),
        ({"data": nested}, "invalid_data"),
    ]
    for extra, code in cases:
        before = shop.snapshot()
        body = {"cart_id": cart_id, "provider_id": "pp_test"} | extra
        reason(shop.client.post(url, json=body), 400, code)
        unchanged(shop, before, runs=False)


def test_cart_not_ready_for_checkout_is_409(shop: Harness) -> None:
    """Completing a cart without a collection, or without a session, answers 409."""
    cart_id = shop.new_cart()
    assert "has no payment collection" in reason(shop.complete(cart_id), 409, "cart_not_eligible")
    shop.collection(cart_id)
    detail = reason(shop.complete(cart_id), 409, "cart_not_eligible")
    assert "no payment session" in detail


def test_disabled_provider_is_409(shop: Harness) -> None:
    """A session with a disabled provider answers 409 provider_disabled."""
    cart_id = shop.new_cart()
    url = f"/store/payment-collections/{shop.collection(cart_id)['id']}/payment-sessions"
    shop.storefront.module.disable_provider("pp_test")
    try:
        answer = shop.client.post(url, json={"cart_id": cart_id, "provider_id": "pp_test"})
        assert reason(answer, 409, "provider_disabled") == "Payment provider pp_test is disabled"
    finally:
        shop.storefront.module.enable_provider("pp_test")


def test_provider_failures_are_502_or_503(shop: Harness) -> None:
    """A provider refusing is 502; one timing out is 503 with Retry-After."""
    cart_id = shop.new_cart()
    url = f"/store/payment-collections/{shop.collection(cart_id)['id']}/payment-sessions"
    refused = shop.client.post(url, json={"cart_id": cart_id, "provider_id": "pp_test",
                                          "data": {"scenario": "no-such-scenario"}})  # fmt: skip
    assert "unknown test scenario" in reason(refused, 502, "provider_error")
    cart_id, _ = shop.paying_cart("timeout")
    timed_out = shop.complete(cart_id)
    assert "'timeout'" in reason(timed_out, 503, "provider_error")
    assert timed_out.headers["retry-after"] == "1"
    assert shop.storefront.carts.state(cart_id).order is None


def test_error_table_is_in_the_docs() -> None:
    """The error module's docstring lists every status the handlers answer."""
    from examples.storefront_api import errors

    assert errors.__doc__ is not None
    for status in ("400", "401", "402", "404", "409", "413", "422", "502"):
        assert status in errors.__doc__


def test_openapi_lists_the_error_answers(shop: Harness) -> None:
    """Each route documents the errors it can answer, with the one-line error body."""
    paths = shop.client.get("/openapi.json").json()["paths"]
    capture = paths["/admin/payments/{payment_id}/capture"]["post"]["responses"]
    assert {"400", "401", "404", "409", "413", "422", "502", "503"} <= set(capture)
    complete = paths["/store/carts/{cart_id}/complete"]["post"]["responses"]
    assert complete["402"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ActionRequiredBody"
    )
