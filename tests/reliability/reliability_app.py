"""A process running accept-payment flows until it is killed, and the checks run afterwards.

Everything it needs survives a SIGKILL: runs and payments in one SQLite file, carts in the same
file, and a gateway (`DurableGateway`) whose idempotency log lives in a second SQLite file, as a
real gateway's would live on its own servers.

    python reliability_app.py DIR work     # recover, finish open flows, start new ones forever
    python reliability_app.py DIR finish   # recover and finish every open flow, then exit
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import flowkit
from flowkit import Engine, TransactionState
from flowkit.sqlalchemy import SqlStore
from payment import ProviderStatus, SystemProvider, make_payment_module, register
from payment.cart import Cart, CartService
from payment.exceptions import CartNotEligible
from payment.providers import ProviderInput, ProviderOutput
from payment.service import PaymentModule

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))

from accept_payment import accept_payment_workflow  # noqa: E402

from payment.workflows import capture_payment_workflow, refund_payment_workflow  # noqa: E402

TOTAL = Decimal("100.00")
CAPTURE = Decimal("60.00")
REFUND = Decimal("15.00")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


class DurableGateway(SystemProvider):
    """A test gateway (`pp_durable`) that approves everything and logs every operation durably
    (retrieval, status and webhooks are the system provider's).

    A repeated idempotency key replays the first answer and moves no money, as a real
    gateway does; the log (`ops`) is what the checks read.
    """

    id = "pp_durable"

    def __init__(self, path: Path) -> None:
        self._conn = _connect(path)
        self._lock = threading.Lock()
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS ops (key TEXT PRIMARY KEY, method TEXT NOT NULL, "
            "session_id TEXT, amount TEXT, status TEXT NOT NULL)"
        )

    def _op(self, method: str, payment: ProviderInput, status: ProviderStatus) -> ProviderOutput:
        key = f"{method}:{payment.context.idempotency_key}"
        amount = None if payment.amount is None else str(payment.amount)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                "INSERT OR IGNORE INTO ops VALUES (?, ?, ?, ?, ?)",
                (key, method, payment.context.session_id, amount, status.value),
            )
            self._conn.execute("COMMIT")
        return ProviderOutput(status, payment.data)

    def initiate_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Create the payment (logged)."""
        return self._op("initiate", payment, ProviderStatus.PENDING)

    def update_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Accept a change."""
        return ProviderOutput(ProviderStatus.PENDING, payment.data)

    def delete_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Discard (logged)."""
        return self._op("delete", payment, ProviderStatus.CANCELED)

    def authorize_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Authorize (logged)."""
        return self._op("authorize", payment, ProviderStatus.AUTHORIZED)

    def capture_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Capture `payment.amount` (logged: this is money moving)."""
        return self._op("capture", payment, ProviderStatus.CAPTURED)

    def refund_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Refund `payment.amount` (logged: money moving back)."""
        return self._op("refund", payment, ProviderStatus.CAPTURED)

    def cancel_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Void (logged)."""
        return self._op("cancel", payment, ProviderStatus.CANCELED)

    def operations(self) -> list[tuple[str, str, str | None, str | None]]:
        """(key, method, session_id, amount) of every operation applied."""
        rows = self._conn.execute("SELECT key, method, session_id, amount FROM ops").fetchall()
        return [tuple(r) for r in rows]  # type: ignore[misc]


class SqlCarts:
    """Carts in the shared database file (they must outlive the process too)."""

    def __init__(self, path: Path) -> None:
        self._conn = _connect(path)
        self._lock = threading.Lock()
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS rel_carts "
            "(id TEXT PRIMARY KEY, total TEXT NOT NULL, settled INTEGER NOT NULL DEFAULT 0)"
        )

    def create(self) -> str:
        """A new cart, committed."""
        cart_id = f"cart_{os.urandom(6).hex()}"
        with self._lock:
            self._conn.execute(
                "INSERT INTO rel_carts (id, total) VALUES (?, ?)", (cart_id, str(TOTAL))
            )
        return cart_id

    def ids(self, *, open_only: bool = False) -> list[str]:
        """Every cart (or those whose flow is not settled yet), oldest first."""
        where = " WHERE settled = 0" if open_only else ""
        with self._lock:
            found = self._conn.execute(f"SELECT id FROM rel_carts{where} ORDER BY rowid")
            return [r[0] for r in found]

    def settle(self, cart_id: str) -> None:
        """Note that the cart's flow is over (its runs are finished, whatever the outcome)."""
        with self._lock:
            self._conn.execute("UPDATE rel_carts SET settled = 1 WHERE id = ?", (cart_id,))

    def retrieve_cart(self, cart_id: str) -> Cart:
        """The cart (never completed here)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT total FROM rel_carts WHERE id = ?", (cart_id,)
            ).fetchone()
        if row is None:
            raise CartNotEligible(cart_id, f"Cart {cart_id} does not exist")
        return Cart(cart_id, Decimal(row[0]), "usd")


class App:
    """The composition root of one worker process."""

    def __init__(self, directory: Path) -> None:
        url = f"sqlite:///{directory / 'app.db'}"
        store = SqlStore(url)
        store.create_all()
        self.gateway = DurableGateway(directory / "gateway.db")
        self.module: PaymentModule = make_payment_module(
            url, providers=[SystemProvider(), self.gateway]
        )
        self.carts = SqlCarts(directory / "app.db")
        registry = flowkit.Registry()
        register(registry, self.module)
        registry.register_value(CartService, self.carts)
        flows = [accept_payment_workflow, capture_payment_workflow, refund_payment_workflow]
        self.engine = Engine(store, flows, container=registry)

    def finish_flow(self, cart_id: str) -> None:
        """Take one cart through accept → capture → refund (each run idempotent by its id)."""
        request = {"cart_id": cart_id, "provider_id": "pp_durable"}
        accepted = self.engine.run(
            accept_payment_workflow,
            request,
            transaction_id=f"accept-{cart_id}",
            throw_on_error=False,
        )
        if accepted.status is TransactionState.DONE:
            payment_id = accepted.result.id
            capture = {"payment_id": payment_id, "amount": CAPTURE}
            self.engine.run(capture_payment_workflow, capture, transaction_id=f"capture-{cart_id}")
            refund = {"payment_id": payment_id, "amount": REFUND}
            self.engine.run(refund_payment_workflow, refund, transaction_id=f"refund-{cart_id}")
        if accepted.status.is_finished:
            self.carts.settle(cart_id)

    def catch_up(self) -> int:
        """Recover abandoned runs, then finish every cart's flow; returns how many carts."""
        self.engine.recover()
        carts = self.carts.ids(open_only=True)  # the others are settled: nothing to finish
        for cart_id in carts:
            self.finish_flow(cart_id)
        return len(carts)


def main(argv: list[str]) -> int:
    """Work until killed, or finish everything and exit."""
    app = App(Path(argv[0]))
    app.catch_up()
    if argv[1] == "finish":
        return 0
    print("ready", flush=True)
    while True:
        app.finish_flow(app.carts.create())


def check(directory: Path) -> dict[str, Any]:
    """Every invariant after the last finish; returns counts (raises AssertionError)."""
    app = App(directory)
    open_runs = [
        r
        for s in ("invoking", "compensating", "waiting", "queued")
        for r in app.engine.list(status=s)
    ]
    assert open_runs == [], f"runs left unfinished: {[r.transaction_id for r in open_runs]}"
    carts = app.carts.ids()
    money = _check_money(app)
    for cart_id in carts:
        accepted = app.engine.get(f"accept-{cart_id}")
        assert accepted is not None, f"lost the flow of {cart_id}"
        if accepted.status is TransactionState.DONE:
            for stage in ("capture", "refund"):
                record = app.engine.get(f"{stage}-{cart_id}")
                assert record is not None, f"lost the {stage} of {cart_id}"
                assert record.status is TransactionState.DONE, (
                    f"{stage} of {cart_id}: {record.status}"
                )
    app.module.close()
    app.engine.close()
    return {"carts": len(carts), **money}


def _check_money(app: App) -> dict[str, int]:
    ops = app.gateway.operations()
    payments = app.module.list_payments(provider_id="pp_durable")
    by_session: dict[str, dict[str, Decimal]] = {}
    for _key, method, session_id, amount in ops:
        bucket = by_session.setdefault(session_id or "", {})
        bucket[method] = bucket.get(method, Decimal(0)) + Decimal(amount or 0)
        bucket[f"{method}_count"] = bucket.get(f"{method}_count", Decimal(0)) + 1
    for payment in payments:
        moved = by_session.get(payment.payment_session_id, {})
        assert moved.get("capture", Decimal(0)) == payment.captured_amount, (
            f"capture of {payment.id}"
        )
        refunded = moved.get("refund", Decimal(0))
        assert refunded == payment.refunded_amount, f"refund of {payment.id}"
        assert payment.captured_amount <= payment.amount
        assert payment.refunded_amount <= payment.captured_amount
        assert moved.get("authorize_count", Decimal(0)) <= 1, f"authorized twice: {payment.id}"
    live = [p for p in payments if p.canceled_at is None]
    return {"payments": len(payments), "live_payments": len(live), "gateway_operations": len(ops)}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
