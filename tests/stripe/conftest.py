"""Fixtures of the Stripe provider's tests: one localstripe server and one webhook inbox per
session, and per test a recording HTTP client, a provider on them and a payment module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe
from stripe_support import (
    API_KEY,
    WEBHOOK_SECRET,
    RecordingClient,
    WebhookInbox,
    localstripe_server,
    register_webhook,
    webhook_inbox,
)

from payment import PaymentModule
from payment.providers.stripe import StripeProvider
from payment.testing import payment_module

WEBHOOK_EVENTS = [
    "payment_intent.amount_capturable_updated",
    "payment_intent.canceled",
    "payment_intent.payment_failed",
    "payment_intent.requires_action",
    "payment_intent.succeeded",
]


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a localstripe server on 127.0.0.1, stopped when the session ends."""
    log = tmp_path_factory.mktemp("localstripe") / "server.log"
    with localstripe_server(log) as url:
        yield url


@pytest.fixture(scope="session")
def inbox(localstripe: str) -> Iterator[WebhookInbox]:
    """A local endpoint localstripe signs and delivers PaymentIntent events to."""
    with webhook_inbox() as found:
        register_webhook(localstripe, found, WEBHOOK_EVENTS)
        yield found


@pytest.fixture
def http() -> Iterator[RecordingClient]:
    """The provider's HTTP client: records every request the SDK sends."""
    client = RecordingClient()
    yield client
    client.close()


@pytest.fixture
def provider(localstripe: str, http: RecordingClient) -> StripeProvider:
    """A manual-capture Stripe provider on localstripe, with a webhook secret."""
    return StripeProvider(
        api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, api_base=localstripe, http_client=http
    )


@pytest.fixture
def stripe_client(localstripe: str) -> Iterator[stripe.StripeClient]:
    """A plain SDK client on localstripe, for what a storefront or Stripe itself would do."""
    http = stripe.RequestsClient(timeout=15)
    yield stripe.StripeClient(API_KEY, base_addresses={"api": localstripe}, http_client=http)
    http.close()


@pytest.fixture
def module(sqlite_url: str, provider: StripeProvider) -> Iterator[PaymentModule]:
    """A payment module on a SQLite file whose only provider is the Stripe one."""
    with payment_module(sqlite_url, providers=[provider]) as built:
        yield built
