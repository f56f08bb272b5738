"""What the Stripe tests share: a localstripe server, a webhook inbox, a recording HTTP client.

localstripe (a stateful fake of the Stripe API) runs in a subprocess bound to 127.0.0.1 on a
free port, with its state kept in memory (its default pickles every write to a file shared by
every localstripe on the machine). It simulates 3-D Secure with the card numbers it knows
(4000002500003155 needs authentication), a decline with 4000000000000341, and its private
``POST /v1/payment_intents/{id}/_authenticate`` endpoint stands in for the customer's challenge.
It delivers signed webhooks to endpoints registered with ``POST /_config/webhooks/{name}``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import stripe
from attrs import define, field, frozen

API_KEY = "sk_test_flowkitLocalstripe0000000000"
WEBHOOK_SECRET = "whsec_flowkitLocalstripe000000000000"
SECRETS = (API_KEY, WEBHOOK_SECRET)

CARD_3DS = "4000002500003155"  # authentication required, then approved
CARD_3DS_DECLINED = "4000008260003178"  # authentication required, then declined
CARD_DECLINED = "4000000000000341"  # declined when charged

_LAUNCH = """
import sys
from aiohttp import web
from localstripe import resources, server

resources.Store.dump_to_disk = lambda self: None  # state in memory: no shared pickle file
web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def free_port() -> int:
    """A TCP port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"localstripe exited: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("localstripe did not start listening within 20 s")


@contextmanager
def localstripe_server(log: Path) -> Iterator[str]:
    """Run localstripe on 127.0.0.1 (a free port) until the block ends; yields its base URL."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_listening(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def post_to_localstripe(url: str, fields: dict[str, Any], *, as_json: bool = False) -> int:
    """POST form (or JSON) fields with the test key; returns the HTTP status."""
    body = json.dumps(fields) if as_json else urllib.parse.urlencode(fields)
    request = urllib.request.Request(url, data=body.encode(), method="POST")
    request.add_header("Authorization", f"Bearer {API_KEY}")
    kind = "application/json" if as_json else "application/x-www-form-urlencoded"
    request.add_header("Content-Type", kind)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def authenticate(base_url: str, intent_id: str, client_secret: str, *, success: bool) -> int:
    """The customer passes (or fails) localstripe's 3-D Secure challenge; returns the status."""
    url = f"{base_url}/v1/payment_intents/{intent_id}/_authenticate"
    fields = {"client_secret": client_secret, "success": "true" if success else "false"}
    return post_to_localstripe(url, fields)


def card(client: stripe.StripeClient, number: str) -> str:
    """A card PaymentMethod at localstripe (raw numbers: only a fake server takes them)."""
    params: Any = {
        "type": "card",
        "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
    }
    return str(client.v1.payment_methods.create(params).id)


# --- the HTTP boundary --------------------------------------------------------------------------


@frozen
class SentRequest:
    """One HTTP request the SDK handed to its HTTP client."""

    method: str
    url: str
    headers: dict[str, str]
    body: str | None

    @property
    def path(self) -> str:
        """The URL's path, e.g. ``/v1/payment_intents``."""
        return urllib.parse.urlsplit(self.url).path

    @property
    def fields(self) -> dict[str, str]:
        """The form-encoded body as ``{"metadata[session_id]": ..., ...}``."""
        return dict(urllib.parse.parse_qsl(self.body or ""))

    @property
    def idempotency_key(self) -> str | None:
        """The ``Idempotency-Key`` header, if sent."""
        return self.headers.get("Idempotency-Key")


class RecordingClient(stripe.RequestsClient):
    """The SDK's requests-based client that records every request, and can drop some.

    `fail_next(n)` makes the next n requests fail with a retryable connection error before
    anything is sent (the request is recorded, the server never sees it).
    """

    def __init__(self) -> None:
        super().__init__(timeout=15)
        self.sent: list[SentRequest] = []
        self._failures = 0
        self._failing_path = ""
        self._lock = threading.Lock()

    def fail_next(self, count: int, path_ending: str = "") -> None:
        """Drop the next `count` requests (whose path ends with `path_ending`)."""
        self._failures, self._failing_path = count, path_ending

    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Any, post_data: Any = None
    ) -> tuple[bytes, int, Any]:
        """Record the request, then drop it or send it."""
        sent = SentRequest(method, url, dict(headers or {}), post_data)
        with self._lock:
            self.sent.append(sent)
            drop = self._failures > 0 and sent.path.endswith(self._failing_path)
            self._failures -= int(drop)
        if drop:
            raise stripe.APIConnectionError("injected: connection reset", should_retry=True)
        return super().request(method, url, headers, post_data)

    def posts(self, path_ending: str = "") -> list[SentRequest]:
        """The POST requests so far (whose path ends with `path_ending`)."""
        return [r for r in self.sent if r.method == "post" and r.path.endswith(path_ending)]


class CannedClient(stripe.HTTPClient):
    """An HTTP client that records requests and answers each with the same JSON object."""

    name = "canned"

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__()
        self.sent: list[SentRequest] = []
        self._answer = json.dumps(answer)

    def request(  # type: ignore[override]
        self, method: str, url: str, headers: Any, post_data: Any = None
    ) -> tuple[str, int, dict[str, str]]:
        """Record the request; answer 200 with the canned object."""
        self.sent.append(SentRequest(method, url, dict(headers or {}), post_data))
        return self._answer, 200, {}

    def close(self) -> None:
        """Nothing to release."""


# --- webhooks -----------------------------------------------------------------------------------


@frozen
class Delivery:
    """A webhook request localstripe delivered: its raw body and headers."""

    body: bytes
    headers: dict[str, str]

    @property
    def event(self) -> dict[str, Any]:
        """The parsed body (for finding a delivery; tests verify before they trust it)."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@define
class WebhookInbox:
    """A local HTTP endpoint that keeps every POST it receives."""

    server: ThreadingHTTPServer
    deliveries: list[Delivery] = field(factory=list)
    arrived: threading.Condition = field(factory=threading.Condition)

    @property
    def url(self) -> str:
        """Where to deliver webhooks."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/webhooks/stripe"

    def receive(self, delivery: Delivery) -> None:
        """Keep a delivery and wake the waiters."""
        with self.arrived:
            self.deliveries.append(delivery)
            self.arrived.notify_all()

    def wait_for(self, matches: Callable[[Delivery], bool], timeout: float = 15) -> Delivery:
        """The first delivery that `matches`, waiting up to `timeout` seconds for it."""
        with self.arrived:
            found = self.arrived.wait_for(
                lambda: next((d for d in self.deliveries if matches(d)), None), timeout
            )
        if found is None:
            raise AssertionError(f"no matching webhook within {timeout} s")
        return found


def _handler(inbox_ref: list[WebhookInbox]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            """Keep the delivery, answer 200."""
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            inbox_ref[0].receive(Delivery(body, dict(self.headers.items())))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: no access log on stderr."""

    return Handler


@contextmanager
def webhook_inbox() -> Iterator[WebhookInbox]:
    """An inbox listening on 127.0.0.1 (a free port) until the block ends."""
    ref: list[WebhookInbox] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ref))
    ref.append(WebhookInbox(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ref[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def register_webhook(base_url: str, inbox: WebhookInbox, events: list[str]) -> None:
    """Have localstripe sign and deliver `events` to the inbox (its own config API)."""
    fields = {"url": inbox.url, "secret": WEBHOOK_SECRET, "events": events}
    status = post_to_localstripe(f"{base_url}/_config/webhooks/flowkit", fields, as_json=True)
    assert status == 200, status


def event_about(kind: str, intent_id: str) -> Callable[[Delivery], bool]:
    """Matches a delivery of event `kind` about PaymentIntent `intent_id`."""

    def matches(delivery: Delivery) -> bool:
        event = delivery.event
        return bool(event.get("type") == kind and event["data"]["object"]["id"] == intent_id)

    return matches
