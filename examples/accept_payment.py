"""The accept-payment flow, end to end, on an embedded SQLite file: the main job.

A cart gets a payment collection and a test-gateway session; authorizing it asks for 3-D
Secure, so the durable run parks on `await-payment-action` (this process could exit here).
The customer completes the challenge, a fresh engine (standing in for another process)
signals the step, and the run authorizes. Then part of the payment is captured and part of
that refunded. Every step is printed live from the engine's event stream, and a summary of
the collection at the end.

    python examples/accept_payment.py [--database sqlite:///flowkit-demo.db]

Re-running it adds fresh carts to the same file; `flowkit runs list` shows every run.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

import flowkit
from flowkit import Engine, Event, Ref, WorkflowResponse, transform, when, workflow
from flowkit.sqlalchemy import SqlStore
from payment import PaymentCollection, make_payment_module, register
from payment.cart import CartService
from payment.inputs import AuthorizePaymentSessionInput, CreatePaymentSessionsInput
from payment.steps import (
    authorize_payment_session_step,
    await_payment_action_step,
    begin_authorization_step,
)
from payment.testing import InMemoryCartService, get_test_provider
from payment.workflows import (
    capture_payment_workflow,
    create_payment_collection_for_cart_workflow,
    create_payment_sessions_workflow,
    refund_payment_workflow,
)

DEFAULT_DATABASE = "sqlite:///flowkit-demo.db"


def _session_input(value: Any) -> CreatePaymentSessionsInput:
    request, collection = value
    return CreatePaymentSessionsInput(
        collection.id, request.get("provider_id", "pp_test"), request.get("data") or {}
    )


@workflow("accept-payment")
def accept_payment_workflow(request: Ref[dict[str, Any]]) -> WorkflowResponse[Any]:
    """Collection for the cart → session → authorize, waiting durably for 3-D Secure.

    Input: `{"cart_id": ..., "provider_id": "pp_test", "data": {...}}`. Returns the `Payment`.
    A later failure cancels (or refunds) the payment, deletes the session and the collection.
    """
    collection = create_payment_collection_for_cart_workflow.as_step(
        {"cart_id": request["cart_id"]}, "collection"
    )
    session = create_payment_sessions_workflow.as_step(
        transform((request, collection), _session_input), "session"
    )
    authorize = transform(session, lambda s: AuthorizePaymentSessionInput(s.id))
    attempt = begin_authorization_step(authorize)
    when(attempt, lambda a: a.waiting_for is not None).then(
        lambda: await_payment_action_step(attempt)
    )
    return WorkflowResponse(authorize_payment_session_step(authorize))


class LivePrinter:
    """Prints step events as they happen (an engine subscriber)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started: dict[tuple[str, str | None], float] = {}

    def __call__(self, event: Event) -> None:
        """Print one event (only the ones a reader cares about)."""
        key = (event.transaction_id, event.step)
        if event.name in ("step_started", "run_started"):
            self.started[key] = time.perf_counter()
            return
        label = {
            "step_succeeded": "[green]done[/]",
            "step_waiting": "[yellow]waiting[/]",
            "step_skipped": "[dim]skipped[/]",
            "step_failed": "[red]failed[/]",
            "step_compensated": "[magenta]compensated[/]",
            "run_finished": f"[bold]run {event.data.get('status')}[/]",
        }.get(event.name)
        if label is None:
            return
        started = self.started.pop(key, None)
        took = "" if started is None else f"{(time.perf_counter() - started) * 1000:7.1f} ms"
        step = event.step or f"{event.workflow} {event.transaction_id[:22]}"
        self.console.print(f"  {step:<44} {label:<24} {took}")


class Demo:
    """The demo's composition root: one database file, one engine per 'process'."""

    def __init__(
        self, database_url: str, console: Console, encryption: flowkit.Encryption | None = None
    ) -> None:
        self.database_url = database_url
        self.console = console
        self.encryption = encryption
        self.store = SqlStore(database_url)
        self.store.create_all()
        self.module = make_payment_module(database_url)
        self.carts = InMemoryCartService()
        self.registry = flowkit.Registry()
        register(self.registry, self.module)
        self.registry.register_value(CartService, self.carts)
        self.workflows = [
            accept_payment_workflow,
            capture_payment_workflow,
            refund_payment_workflow,
        ]

    def engine(self) -> Engine:
        """A new engine on the same database, printing its events."""
        engine = Engine(
            SqlStore(self.database_url),
            self.workflows,
            container=self.registry,
            encryption=self.encryption,
        )
        engine.subscribe(LivePrinter(self.console))
        return engine

    def close(self) -> None:
        """Release the database connections."""
        self.module.close()
        self.store.close()


def run_demo(
    database_url: str, console: Console, encryption: flowkit.Encryption | None = None
) -> PaymentCollection:
    """The whole flow (with `encryption`, every stored run value encrypted); returns the
    collection as it ends."""
    demo = Demo(database_url, console, encryption)
    try:
        return _walk_through(demo, console)
    finally:
        demo.close()


def _walk_through(demo: Demo, console: Console) -> PaymentCollection:
    suffix = secrets.token_hex(4)
    cart = demo.carts.add_cart(f"cart_{suffix}", Decimal("120.00"), "usd")
    tx = f"accept-{cart.id}"
    console.print(f"[bold]Cart {cart.id}[/]: {cart.total} {cart.currency_code.upper()}\n")

    console.print("[bold]1. accept-payment[/] (the test gateway asks for 3-D Secure)")
    first = demo.engine()
    request = {"cart_id": cart.id, "data": {"scenario": "requires_more"}}
    waiting = first.run(accept_payment_workflow, request, transaction_id=tx)
    first.close()
    console.print(
        f"  -> the run is [yellow]{waiting.status.value}[/], parked at await-payment-action; "
        "this process could exit now"
    )

    collection = demo.module.retrieve_payment_collection_for_cart(cart.id)
    session = collection.sessions[-1]
    console.print("\n[bold]2. The customer completes 3-D Secure[/]; another engine resumes the run")
    get_test_provider(demo.module).complete_action(session.id)
    second = demo.engine()
    done = second.set_step_success(tx, "await-payment-action", {"completed": "3ds"})
    payment = done.result
    console.print(f"  -> payment {payment.id} authorized for {payment.amount}\n")

    console.print("[bold]3. Capture 80.00, then refund 30.00[/]")
    second.run(capture_payment_workflow, {"payment_id": payment.id, "amount": "80.00"})
    second.run(
        refund_payment_workflow,
        {"payment_id": payment.id, "amount": "30.00", "note": "customer returned an item"},
    )
    second.close()
    console.print(f"\nSee the run: [bold]flowkit runs show {tx}[/]\n")
    return demo.module.retrieve_payment_collection(collection.id)


def summary(collection: PaymentCollection) -> Table:
    """The collection, its sessions and payments, as a table."""
    table = Table(title=f"Payment collection {collection.id}")
    for name in ("record", "id", "status"):
        table.add_column(name, no_wrap=True)
    table.add_column("amount", justify="right", no_wrap=True)
    table.add_column("detail")
    currency = collection.currency_code.upper()
    table.add_row(
        "collection",
        collection.id,
        collection.status.value,
        f"{collection.amount} {currency}",
        f"authorized {collection.authorized_amount}, captured {collection.captured_amount}, "
        f"refunded {collection.refunded_amount}",
    )
    for session in collection.sessions:
        row = ("  session", session.id, session.status.value, str(session.amount))
        table.add_row(*row, session.provider_id)
    for payment in collection.payments:
        state = "canceled" if payment.canceled_at else "authorized"
        table.add_row("  payment", payment.id, state, str(payment.amount), "")
        for capture in payment.captures:
            row = ("    capture", capture.id, capture.state.value, str(capture.amount))
            table.add_row(*row, "")
        for refund in payment.refunds:
            row = ("    refund", refund.id, refund.state.value, str(refund.amount))
            table.add_row(*row, refund.note or "")
    return table


def main(argv: list[str] | None = None) -> int:
    """Run the demo and print the summary."""
    parser = argparse.ArgumentParser(description="The accept-payment flow, end to end.")
    parser.add_argument("--database", default=DEFAULT_DATABASE, help="a SQLAlchemy URL")
    parser.add_argument("--key-file", help="encrypt stored run values with these keys (JSON)")
    args = parser.parse_args(argv)
    console = Console(highlight=False, width=132)
    started = time.perf_counter()
    keys = flowkit.Encryption.from_key_file(args.key_file) if args.key_file else None
    collection = run_demo(args.database, console, keys)
    console.print(summary(collection))
    console.print(f"\nfinished in {time.perf_counter() - started:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
