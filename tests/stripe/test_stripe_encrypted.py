"""The Stripe accept-payment flow with cards and encryption on: no PAN, CVC or client secret
in any flowkit table, log line or error text (issue 24), as an attacker would grep for them."""

from __future__ import annotations

import io
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import stripe
import structlog
from stripe_support import (
    API_KEY,
    CARD_3DS,
    SECRETS,
    WEBHOOK_SECRET,
    RecordingClient,
    authenticate,
    card,
)

import flowkit.logging
from flowkit import Encryption, Engine, Registry, TransactionState
from flowkit.sqlalchemy import SqlStore
from payment import InvalidData, register
from payment.cart import CartService
from payment.providers.stripe import StripeProvider
from payment.testing import InMemoryCartService, payment_module
from payment.workflows import capture_payment_workflow

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # the examples live beside the packages, not inside one
    sys.path.insert(0, ROOT)

from examples.accept_payment import accept_payment_workflow  # noqa: E402

KEYS = Encryption({"k1": b"k" * 32}, "k1")


def flowkit_rows(path: Path) -> str:
    """Every column of every flowkit table, as text."""
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if r[0].startswith("flowkit_")
        ]
        return "\n".join(repr(row) for t in tables for row in conn.execute(f'SELECT * FROM "{t}"'))


def test_stripe_flow_with_cards_leaves_no_card_data_or_client_secret(
    sqlite_url: str, localstripe: str, stripe_client: stripe.StripeClient, http: RecordingClient
) -> None:
    """3-D Secure flow on localstripe with encryption: the flowkit tables, the whole database
    file, the log lines and the errors hold no PAN, no CVC field and no client secret."""
    path = Path(sqlite_url.removeprefix("sqlite:///"))
    store = SqlStore(sqlite_url)
    store.create_all()
    store.close()
    out = io.StringIO()
    flowkit.logging.configure(dev=False, level="DEBUG", stream=out)
    provider = StripeProvider(
        api_key=API_KEY, webhook_secret=WEBHOOK_SECRET, api_base=localstripe, http_client=http
    )
    errors: list[str] = []
    with payment_module(sqlite_url, providers=[provider]) as module:
        carts = InMemoryCartService()
        carts.add_cart("cart_enc", Decimal("50.00"), "usd")
        registry = Registry()
        register(registry, module)
        registry.register_value(CartService, carts)
        workflows: list[Any] = [accept_payment_workflow, capture_payment_workflow]
        with pytest.raises(InvalidData, match="never card numbers") as refused:
            module.create_payment_session(
                "pay_col_x", "pp_stripe", "usd", "1", data={"n": CARD_3DS}
            )
        errors.append(str(refused.value))
        with Engine(SqlStore(sqlite_url), workflows, container=registry, encryption=KEYS) as first:
            request = {
                "cart_id": "cart_enc",
                "provider_id": "pp_stripe",
                "data": {"payment_method": card(stripe_client, CARD_3DS)},
            }
            waiting = first.run(accept_payment_workflow, request, transaction_id="tx-enc")
        assert waiting.status is TransactionState.WAITING
        session = module.retrieve_payment_collection_for_cart("cart_enc").sessions[-1]
        client_secret = str(module.retrieve_session_secrets(session.id)["client_secret"])
        assert (
            authenticate(localstripe, str(session.data["id"]), client_secret, success=True) == 200
        )
        with Engine(SqlStore(sqlite_url), workflows, container=registry, encryption=KEYS) as second:
            done = second.set_step_success("tx-enc", "await-payment-action", {"completed": "3ds"})
            assert done.status is TransactionState.DONE
            captured = second.run(capture_payment_workflow, {"payment_id": done.result.id})
            assert captured.status is TransactionState.DONE
            errors += [e.message for r in (waiting, done, captured) for e in r.errors]
            assert "client_secret" not in repr(done.result)
    structlog.reset_defaults()
    tables = flowkit_rows(path)
    raw = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    logs = out.getvalue()
    assert "tx-enc" in tables  # the rows are there, their values are not readable
    for text in (tables, logs, *errors):
        assert client_secret not in text
        assert "_secret_" not in text
        assert CARD_3DS not in text
        assert '"cvc"' not in text
        assert not [s for s in SECRETS if s in text]
    assert CARD_3DS.encode() not in raw
    assert b'"cvc"' not in raw
