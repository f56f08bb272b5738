"""The accept-payment flow, end to end, on an embedded SQLite file: the main job.

A cart gets a payment collection and a test-gateway session; authorizing it asks for 3-D
Secure, so the durable run parks on `await-payment-action` (this process could exit here).
The customer completes the challenge, a fresh engine (standing in for another process)
signals the step, and the run authorizes. Then part of the payment is captured and part of
that refunded. Last, another customer abandons their challenge: the wait's deadline
(`action_timeout`, 15 minutes) passes on a `ManualClock`, `engine.tick()` expires it, and the
run compensates, canceling the session at the gateway. Every step is printed live from the
engine's event stream, and a summary of the collection at the end.

    python examples/accept_payment.py [--database sqlite:///flowkit-demo.db]

Re-running it adds fresh carts to the same file; `flowkit runs list` shows every run.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from attrs import evolve, field, frozen
from rich.console import Console
from rich.table import Table

import flowkit
from flowkit import Engine, Event, Ref, WorkflowResponse, transform, when, workflow
from flowkit.clock import ManualClock  # not flowkit.testing: that needs the dev extras
from flowkit.sqlalchemy import SqlStore
from payment import NotFound, PaymentCollection, make_payment_module, register
from payment.cart import CartService
from payment.inputs import (
    AuthorizationAttempt,
    AuthorizePaymentSessionInput,
    CreatePaymentSessionsInput,
    as_input,
    check_seconds,
)
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
DEFAULT_ACTION_TIMEOUT = 900
"""Seconds the customer has to finish 3-D Secure before the run gives up (15 minutes)."""


def _action_timeout(value: int | float) -> int | float:
    return check_seconds(value, "action_timeout")


@frozen
class AcceptPaymentRequest:
    """The input of `accept_payment_workflow` (a mapping with these keys works the same).

    Attributes:
        cart_id: The cart to pay.
        provider_id: The payment provider of the session.
        data: The session's provider data (e.g. ``{"scenario": "requires_more"}``).
        action_timeout: Seconds the wait for the customer's action (or the provider's
            webhook) may last once the run parks; then the run is reverted.

    Raises:
        InvalidData: an `action_timeout` that is not a finite number of seconds > 0.
    """

    cart_id: str
    provider_id: str = "pp_test"
    data: dict[str, Any] = field(factory=dict)
    action_timeout: int | float = field(default=DEFAULT_ACTION_TIMEOUT, converter=_action_timeout)


def _request(value: Any) -> AcceptPaymentRequest:
    return as_input(value, AcceptPaymentRequest)


def _session_input(value: Any) -> CreatePaymentSessionsInput:
    request, collection = value
    return CreatePaymentSessionsInput(collection.id, request.provider_id, request.data)


def _with_deadline(
    value: tuple[AuthorizationAttempt, AcceptPaymentRequest],
) -> AuthorizationAttempt:
    attempt, request = value
    return evolve(attempt, action_timeout=request.action_timeout)


@workflow("accept-payment")
def accept_payment_workflow(request: Ref[AcceptPaymentRequest]) -> WorkflowResponse[Any]:
    """Collection for the cart → session → authorize, waiting durably for 3-D Secure.

    Input: `{"cart_id": ..., "provider_id": "pp_test", "data": {...}, "action_timeout": 900}`
    (all but `cart_id` optional; unknown keys and a bad `action_timeout` are `InvalidData`
    before anything is written). Returns the `Payment`. A later failure cancels (or refunds)
    the payment, deletes the session and the collection. The wait expires `action_timeout`
    seconds after the run parks (on `engine.tick()`): the run is reverted likewise, the
    session discarded at the gateway, and the cart can start over.
    """
    checked = transform(request, _request)
    collection = create_payment_collection_for_cart_workflow.as_step(
        transform(checked, lambda r: {"cart_id": r.cart_id}), "collection"
    )
    session = create_payment_sessions_workflow.as_step(
        transform((checked, collection), _session_input), "session"
    )
    authorize = transform(session, lambda s: AuthorizePaymentSessionInput(s.id))
    attempt = begin_authorization_step(authorize)
    when(attempt, lambda a: a.waiting_for is not None).then(
        lambda: await_payment_action_step(transform((attempt, checked), _with_deadline))
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
            "step_expired": "[red]expired[/]",
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

    def engine(self, clock: ManualClock | None = None) -> Engine:
        """A new engine on the same database, printing its events (`clock`: its time)."""
        engine = Engine(
            SqlStore(self.database_url),
            self.workflows,
            container=self.registry,
            encryption=self.encryption,
            clock=clock,
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
        collection = _walk_through(demo, console)
        _abandon_a_challenge(demo, console)
        return collection
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


def _abandon_a_challenge(demo: Demo, console: Console) -> str:
    """A second customer never finishes 3-D Secure: the wait expires and the run reverts.

    Time is a `ManualClock` here so that the demo need not wait 15 minutes: the clock moves
    past the deadline, then `engine.tick()` (what workers call in their loop) expires the
    wait. Returns the canceled session's id.
    """
    cart = demo.carts.add_cart(f"cart_{secrets.token_hex(4)}", Decimal("45.00"), "usd")
    tx = f"accept-{cart.id}"
    console.print(f"[bold]4. Cart {cart.id}: the customer abandons 3-D Secure[/]")
    clock = ManualClock(datetime.now(UTC))
    engine = demo.engine(clock)
    request = {"cart_id": cart.id, "data": {"scenario": "requires_more"}}
    engine.run(accept_payment_workflow, request, transaction_id=tx)
    session = demo.module.retrieve_payment_collection_for_cart(cart.id).sessions[-1]
    minutes = DEFAULT_ACTION_TIMEOUT // 60
    clock.advance(DEFAULT_ACTION_TIMEOUT + 1)
    console.print(f"  -> {minutes} minutes pass (on a ManualClock), then engine.tick()")
    expired = engine.tick().expired
    engine.close()
    status = get_test_provider(demo.module).ledger(session.id).status
    left = "none" if _has_no_collection(demo, cart.id) else "still there"
    console.print(f"  -> the deadline passed: run {', '.join(expired)} reverted")
    console.print(
        f"  -> session {session.id} [magenta]{status.value}[/] at the gateway; "
        f"the cart's collection: {left}, so the cart can start over\n"
    )
    return session.id


def _has_no_collection(demo: Demo, cart_id: str) -> bool:
    try:
        demo.module.retrieve_payment_collection_for_cart(cart_id)
    except NotFound:
        return True
    return False


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
