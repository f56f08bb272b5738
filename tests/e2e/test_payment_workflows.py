"""The payment workflows end to end through durable engines, on SQLite and PostgreSQL (spec §5).

Runs go through `flowkit.Engine` on an `SqlStore` over the test database (the one the payment
module uses too). A failure is injected into one step of one run with `PlanFaults`; the test
then compares a snapshot of the payment state (collections, sessions, payments and the test
gateway's ledger) taken before the run with one taken after it: a reverted run must leave
exactly what it found.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from attrs import define, field, frozen

from flowkit import (
    Engine,
    Registry,
    RunResult,
    SimulatedCrash,
    StepState,
    TransactionState,
    Workflow,
)
from flowkit.sqlalchemy import SqlStore
from flowkit.testing import Crash, FailurePlan, PlanFaults, StepFailure
from payment import (
    CaptureExceedsAuthorized,
    CartNotEligible,
    CollectionStatus,
    InvalidCurrency,
    InvalidData,
    NotFound,
    Payment,
    PaymentAction,
    PaymentActionRequired,
    PaymentCanceled,
    PaymentCollection,
    PaymentModule,
    PaymentNotAuthorized,
    PaymentSession,
    ProviderStatus,
    RefundExceedsCaptured,
    SessionStatus,
    TestProvider,
    WebhookAction,
    register,
)
from payment.cart import CartService
from payment.inputs import (
    CapturePaymentInput,
    CreatePaymentCollectionForCartInput,
    CreatePaymentSessionsInput,
    RefundOutcome,
    RefundPaymentInput,
)
from payment.steps import REFUNDED_ON_FAILURE
from payment.testing import (
    InMemoryCartService,
    authorized_payment,
    get_test_provider,
    payment_module,
)
from payment.workflows import (
    cancel_payment_collection_workflow,
    capture_payment_workflow,
    create_payment_collection_for_cart_workflow,
    create_payment_sessions_workflow,
    mark_payment_collection_as_paid_workflow,
    process_payment_workflow,
    refund_payment_workflow,
    refund_payments_workflow,
)

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # the examples live beside the packages, not inside one
    sys.path.insert(0, ROOT)

from examples.accept_payment import accept_payment_workflow  # noqa: E402

WORKFLOWS: list[Workflow[Any, Any]] = [
    accept_payment_workflow,
    cancel_payment_collection_workflow,
    capture_payment_workflow,
    create_payment_collection_for_cart_workflow,
    create_payment_sessions_workflow,
    mark_payment_collection_as_paid_workflow,
    process_payment_workflow,
    refund_payment_workflow,
    refund_payments_workflow,
]
AWAIT = "await-payment-action"


# --- the application under test -------------------------------------------------------------


@define
class App:
    """One test's application: the payment module, carts, and engines on one database."""

    url: str
    module: PaymentModule
    carts: InMemoryCartService
    registry: Registry
    engines: list[Engine] = field(factory=list)

    @property
    def gateway(self) -> TestProvider:
        """The test gateway the module talks to."""
        return get_test_provider(self.module)

    def engine(self) -> Engine:
        """A fresh engine (as another process would have) on the test database."""
        engine = Engine(SqlStore(self.url), WORKFLOWS, container=self.registry)
        self.engines.append(engine)
        return engine

    def run(
        self, workflow: Workflow[Any, Any], inp: Any, *, tx: str, fail: str | None = None
    ) -> RunResult[Any]:
        """Run `workflow` on a fresh engine; `fail` names a step that fails for good."""
        engine = self.engine()
        if fail is not None:
            engine.faults[tx] = failing(fail)
        return engine.run(workflow, inp, transaction_id=tx, throw_on_error=False)

    def signal(self, tx: str, output: Any, *, fail: str | None = None) -> RunResult[Any]:
        """Finish the waiting step of run `tx` from another engine (`fail`: as in `run`)."""
        engine = self.engine()
        if fail is not None:
            engine.faults[tx] = failing(fail)
        return engine.set_step_success(tx, AWAIT, output)

    def close(self) -> None:
        """Close every engine (and its store)."""
        for engine in self.engines:
            engine.close()
        self.registry.close()


@pytest.fixture
def app(database_url: str) -> Iterator[App]:
    """The payment module, an in-memory cart service and durable engines on one database."""
    store = SqlStore(database_url)
    store.create_all()
    store.close()
    with payment_module(database_url) as module:
        carts = InMemoryCartService()
        registry = Registry()
        register(registry, module)
        registry.register_value(CartService, carts)
        built = App(database_url, module, carts, registry)
        try:
            yield built
        finally:
            built.close()


def failing(step: str) -> PlanFaults:
    """Faults that make `step` ("child/step" when nested) fail on every attempt."""
    return PlanFaults(FailurePlan(failures=(StepFailure(step, attempts=99),)))


# --- snapshots of the payment state ----------------------------------------------------------


def session_view(app: App, session: PaymentSession) -> tuple[Any, ...]:
    """A session as a customer would see it (ids aside: compensation may re-create sessions)."""
    at_gateway = None
    if session.provider_id == "pp_test":
        entry = app.gateway.ledger(session.id)
        at_gateway = (entry.status, entry.authorized, entry.captured, entry.refunded)
    return (
        session.provider_id,
        session.status,
        session.amount,
        session.currency_code,
        session.data.get("scenario"),
        dict(session.context),
        at_gateway,
    )


def payment_view(payment: Payment) -> tuple[Any, ...]:
    """A payment's money: authorized, captured, refunded, canceled."""
    return (
        payment.provider_id,
        payment.amount,
        payment.captured_amount,
        payment.refunded_amount,
        payment.canceled_at is not None,
    )


def collection_view(app: App, collection: PaymentCollection) -> dict[str, Any]:
    """A collection, its sessions and its payments, comparable before and after a run."""
    return {
        "status": collection.status,
        "money": (
            collection.currency_code,
            collection.amount,
            collection.authorized_amount,
            collection.captured_amount,
            collection.refunded_amount,
        ),
        "cart_id": collection.cart_id,
        "canceled": collection.canceled_at is not None,
        "completed": collection.completed_at is not None,
        "sessions": sorted(map(repr, (session_view(app, s) for s in collection.sessions))),
        "payments": sorted(map(repr, map(payment_view, collection.payments))),
    }


@frozen
class Scope:
    """What a run may touch: a cart's collection and some collections by id."""

    cart_id: str | None = None
    collection_ids: tuple[str, ...] = ()


def snapshot(app: App, scope: Scope) -> dict[str, Any]:
    """The payment state in `scope` and the gateway's money."""
    state: dict[str, Any] = {"gateway": app.gateway.money()}
    if scope.cart_id is not None:
        try:
            found = app.module.retrieve_payment_collection_for_cart(scope.cart_id)
        except NotFound:
            state["cart"] = None
        else:
            state["cart"] = collection_view(app, found)
    for collection_id in scope.collection_ids:
        state[collection_id] = collection_view(
            app, app.module.retrieve_payment_collection(collection_id)
        )
    return state


# --- builders ----------------------------------------------------------------------------------


def new_cart(app: App, cart_id: str = "cart_1", total: str = "120.00") -> str:
    """An open cart in usd."""
    return app.carts.add_cart(cart_id, total, "usd").id


def captured_payment(app: App, amount: str = "100", captured: str = "100") -> Payment:
    """An authorized payment of `amount` with `captured` of it captured."""
    payment = authorized_payment(app.module, amount)
    return app.module.capture_payment(payment.id, captured)


def pending_session(app: App, collection_id: str, scenario: str = "approve") -> PaymentSession:
    """A test-gateway session for what the collection still needs."""
    collection = app.module.retrieve_payment_collection(collection_id)
    amount = collection.amount - collection.authorized_amount
    data = {"scenario": scenario}
    return app.module.create_payment_session(collection_id, "pp_test", "usd", amount, data=data)


def cart_session(app: App, cart_id: str) -> PaymentSession:
    """The latest session of the cart's collection."""
    return app.module.retrieve_payment_collection_for_cart(cart_id).sessions[-1]


def webhook(app: App, action: str, session_id: str, amount: str | None = None) -> WebhookAction:
    """A webhook from the test gateway, verified and parsed by the module."""
    value = None if amount is None else Decimal(amount)
    hook = app.gateway.make_webhook(action, session_id=session_id, amount=value)
    return app.module.get_webhook_action_and_data("pp_test", hook.raw_body, hook.headers)


# --- success ---------------------------------------------------------------------------------


def test_collection_for_cart_is_created_and_linked(app: App) -> None:
    """The cart gets a not-paid collection for its exact total and currency, linked to it."""
    cart_id = new_cart(app, total="87.957975")
    result = app.run(create_payment_collection_for_cart_workflow, {"cart_id": cart_id}, tx="c1")
    collection = result.result
    assert result.status is TransactionState.DONE
    assert isinstance(collection, PaymentCollection)
    assert (collection.amount, collection.currency_code) == (Decimal("87.96"), "usd")
    assert (collection.status, collection.cart_id) == (CollectionStatus.NOT_PAID, cart_id)
    assert app.module.retrieve_payment_collection_for_cart(cart_id).id == collection.id


def test_collection_workflow_takes_its_input_class(app: App) -> None:
    """The attrs input works as the mapping does, and the stored run reads back equal."""
    cart_id = new_cart(app)
    inp = CreatePaymentCollectionForCartInput(cart_id)
    result = app.run(create_payment_collection_for_cart_workflow, inp, tx="c2")
    assert result.result.amount == Decimal("120.00")
    record = app.engine().get("c2")
    assert record is not None
    assert (record.input, record.output) == (inp, result.result)


def test_sessions_workflow_replaces_unauthorized_sessions(app: App) -> None:
    """A new session for what is left; older sessions without authorization are deleted,
    at the gateway too, and authorized ones are kept."""
    collection = app.module.create_payment_collection("usd", "100")
    paid = app.module.create_payment_session(collection.id, "pp_test", "usd", "40")
    payment = app.module.authorize_payment_session(paid.id)
    old = pending_session(app, collection.id)
    inp = {
        "payment_collection_id": collection.id,
        "provider_id": "pp_test",
        "data": {"scenario": "requires_more"},
        "context": {"customer": {"id": "cus_1", "email": "a@example.com"}},
    }
    result = app.run(create_payment_sessions_workflow, inp, tx="s1")
    new = result.result
    assert isinstance(new, PaymentSession)
    assert (new.amount, new.currency_code, new.status) == (
        Decimal("60.00"),
        "usd",
        SessionStatus.PENDING,
    )
    assert new.data["scenario"] == "requires_more"
    assert new.context["customer"] == {"id": "cus_1", "email": "a@example.com"}
    after = app.module.retrieve_payment_collection(collection.id)
    assert [s.id for s in after.sessions] == [paid.id, new.id]
    assert app.gateway.ledger(old.id).status is ProviderStatus.CANCELED
    assert payment is not None
    assert after.payments == (app.module.retrieve_payment(payment.id),)
    assert result.steps["delete-old-payment-sessions"].state is StepState.DONE


def test_canceling_a_sessions_run_recreates_the_deleted_sessions(app: App) -> None:
    """Compensating a finished sessions run deletes the new session and re-creates the deleted
    ones from the same provider, amount and data (new ids, new gateway payments)."""
    collection = app.module.create_payment_collection("usd", "100")
    pending_session(app, collection.id, "decline")
    inp = CreatePaymentSessionsInput(collection.id, "pp_test", {"scenario": "approve"})
    before = snapshot(app, Scope(collection_ids=(collection.id,)))
    done = app.run(create_payment_sessions_workflow, inp, tx="s2")
    assert len(app.module.retrieve_payment_collection(collection.id).sessions) == 1
    reverted = app.engine().cancel("s2")
    assert reverted.status is TransactionState.REVERTED
    after = app.module.retrieve_payment_collection(collection.id)
    assert [s.id for s in after.sessions] != [done.result.id]
    assert snapshot(app, Scope(collection_ids=(collection.id,))) == before


def test_capture_workflow_captures_part_then_the_rest(app: App) -> None:
    """A partial capture moves exactly that amount at the gateway; `amount=None` the rest."""
    payment = authorized_payment(app.module, "100")
    part = app.run(capture_payment_workflow, {"payment_id": payment.id, "amount": "40"}, tx="k1")
    assert part.result.captured_amount == Decimal("40.00")
    assert part.result.captured_at is None
    inp = CapturePaymentInput(payment.id, captured_by="user_1")
    rest = app.run(capture_payment_workflow, inp, tx="k2").result
    assert [c.amount for c in rest.captures] == [Decimal("40.00"), Decimal("60.00")]
    assert rest.captures[-1].created_by == "user_1"
    assert rest.captured_at is not None
    assert app.gateway.ledger(payment.payment_session_id).captured == Decimal("100.00")
    collection = app.module.retrieve_payment_collection(payment.payment_collection_id)
    assert (collection.status, collection.captured_amount) == (
        CollectionStatus.COMPLETED,
        Decimal("100.00"),
    )


def test_refund_workflow_refunds_part_with_its_note(app: App) -> None:
    """A refund moves its amount back at the gateway and keeps its note."""
    payment = captured_payment(app)
    inp = {"payment_id": payment.id, "amount": "30", "note": "returned an item"}
    refunded = app.run(refund_payment_workflow, inp, tx="r1").result
    assert refunded.refunded_amount == Decimal("30.00")
    assert refunded.refunds[-1].note == "returned an item"
    assert app.gateway.ledger(payment.payment_session_id).refunded == Decimal("30.00")
    collection = app.module.retrieve_payment_collection(payment.payment_collection_id)
    assert (collection.status, collection.refunded_amount) == (
        CollectionStatus.COMPLETED,
        Decimal("30.00"),
    )


def test_refund_payments_reports_each_failure_and_refunds_the_rest(app: App) -> None:
    """One outcome per payment: refused items carry the error, the others are refunded."""
    first = captured_payment(app, "50", "50")
    second = captured_payment(app, "80", "20")
    items = [
        RefundPaymentInput(first.id, "50"),
        {"payment_id": second.id, "amount": "20.01"},
        {"payment_id": "pay_missing"},
    ]
    result = app.run(refund_payments_workflow, items, tx="rr1")
    outcomes = result.result
    assert result.status is TransactionState.DONE
    assert [o.succeeded for o in outcomes] == [True, False, False]
    assert isinstance(outcomes[0], RefundOutcome)
    assert outcomes[0].payment.refunded_amount == Decimal("50.00")
    assert [o.error_type for o in outcomes] == [None, "RefundExceedsCaptured", "NotFound"]
    assert app.module.retrieve_payment(second.id).refunds == ()
    assert app.gateway.ledger(second.payment_session_id).refunded == 0


def test_cancel_collection_voids_authorizations(app: App) -> None:
    """Canceling a collection voids its payment at the gateway; the cart may then pay anew."""
    cart_id = new_cart(app)
    accepted = app.run(accept_payment_workflow, {"cart_id": cart_id}, tx="a0").result
    inp = {"payment_collection_id": accepted.payment_collection_id}
    canceled = app.run(cancel_payment_collection_workflow, inp, tx="x1").result
    assert (canceled.status, canceled.authorized_amount) == (CollectionStatus.CANCELED, 0)
    assert all(p.canceled_at is not None for p in canceled.payments)
    entry = app.gateway.ledger(accepted.payment_session_id)
    assert (entry.status, entry.authorized) == (ProviderStatus.CANCELED, 0)
    again = app.run(accept_payment_workflow, {"cart_id": cart_id}, tx="a1")
    assert again.result.payment_collection_id != accepted.payment_collection_id


def test_mark_as_paid_captures_what_is_left_with_the_system_provider(app: App) -> None:
    """A system-provider payment for the whole amount, authorized and captured by `captured_by`."""
    collection = app.module.create_payment_collection("usd", "75.50")
    inp = {"payment_collection_id": collection.id, "captured_by": "user_9"}
    paid = app.run(mark_payment_collection_as_paid_workflow, inp, tx="m1").result
    assert isinstance(paid, PaymentCollection)
    assert (paid.status, paid.captured_amount, paid.authorized_amount) == (
        CollectionStatus.COMPLETED,
        Decimal("75.50"),
        Decimal("75.50"),
    )
    (payment,) = paid.payments
    assert payment.provider_id == "pp_system_default"
    assert payment.captures[0].created_by == "user_9"


def test_accept_payment_authorizes_at_once_when_no_action_is_needed(app: App) -> None:
    """Without 3-D Secure the run authorizes the cart's total and skips the wait."""
    cart_id = new_cart(app)
    result = app.run(accept_payment_workflow, {"cart_id": cart_id}, tx="a2")
    payment = result.result
    assert result.status is TransactionState.DONE
    assert (payment.amount, payment.currency_code, payment.captures) == (
        Decimal("120.00"),
        "usd",
        (),
    )
    assert result.steps[AWAIT].state is StepState.SKIPPED
    collection = app.module.retrieve_payment_collection_for_cart(cart_id)
    assert (collection.status, collection.authorized_amount) == (
        CollectionStatus.AUTHORIZED,
        Decimal("120.00"),
    )
    assert len(app.gateway.calls_to("authorize_payment")) == 1


def test_accept_payment_waits_for_3ds_and_another_engine_finishes_it(app: App) -> None:
    """`requires_more` parks the run; after the customer's action a second engine's signal
    authorizes the session with a new gateway key."""
    cart_id = new_cart(app)
    request = {"cart_id": cart_id, "data": {"scenario": "requires_more"}}
    waiting = app.run(accept_payment_workflow, request, tx="a3")
    assert waiting.status is TransactionState.WAITING
    session = cart_session(app, cart_id)
    assert session.status is SessionStatus.REQUIRES_MORE
    app.gateway.complete_action(session.id)
    done = app.signal("a3", {"completed": "3ds"})
    assert done.status is TransactionState.DONE
    assert done.result.amount == Decimal("120.00")
    assert done.result.payment_session_id == session.id
    keys = [c.idempotency_key for c in app.gateway.calls_to("authorize_payment")]
    assert keys == [f"{session.id}:authorize:0", f"{session.id}:authorize:1"]
    assert app.module.retrieve_payment_session(session.id).status is SessionStatus.AUTHORIZED


def test_accept_payment_pending_authorization_is_finished_by_a_webhook(app: App) -> None:
    """A `pending_authorization` run waits; the webhook's process run authorizes, and the
    signalled run returns that same payment without asking the gateway again."""
    cart_id = new_cart(app)
    request = {"cart_id": cart_id, "data": {"scenario": "pending_authorization"}}
    assert app.run(accept_payment_workflow, request, tx="a4").status is TransactionState.WAITING
    session = cart_session(app, cart_id)
    action = webhook(app, "authorized", session.id)
    assert (action.action, action.amount) == (PaymentAction.AUTHORIZED, Decimal("120.00"))
    assert action.event_id is not None
    processed = app.run(process_payment_workflow, action, tx=action.event_id).result
    assert isinstance(processed, Payment)
    calls = len(app.gateway.calls)
    done = app.signal("a4", {"webhook": action.event_id})
    assert done.result == processed
    assert len(app.gateway.calls) == calls


def test_captured_webhook_records_the_capture_once(app: App) -> None:
    """A `captured` webhook records the gateway's capture without calling it; the same event
    again (same transaction, or delivered under another id) changes nothing."""
    cart_id = new_cart(app)
    payment = app.run(accept_payment_workflow, {"cart_id": cart_id}, tx="a5").result
    action = webhook(app, "captured", payment.payment_session_id, "70")
    assert action.event_id is not None
    first = app.run(process_payment_workflow, action, tx=action.event_id)
    assert first.result.captured_amount == Decimal("70.00")
    calls = len(app.gateway.calls)
    again = app.run(process_payment_workflow, action, tx=action.event_id)
    as_mapping = {
        "action": "captured",
        "session_id": action.session_id,
        "amount": action.amount,
        "currency_code": action.currency_code,
        "event_id": action.event_id,
    }
    redelivered = app.run(process_payment_workflow, as_mapping, tx="redelivered")
    assert again.result == first.result
    assert redelivered.result == first.result
    assert len(app.gateway.calls) == calls
    assert app.gateway.calls_to("capture_payment") == []
    assert app.gateway.ledger(payment.payment_session_id).captured == Decimal("70.00")


def test_partial_capture_webhook_records_what_the_gateway_captured(app: App) -> None:
    """A `captured` webhook for part of a pending session's amount records that part only."""
    collection = app.module.create_payment_collection("usd", "100")
    session = pending_session(app, collection.id, "pending_authorization")
    app.module.authorize_payment_session(session.id)
    action = webhook(app, "captured", session.id, "40")
    payment = app.run(process_payment_workflow, action, tx="evt-partial").result
    assert app.gateway.ledger(session.id).captured == Decimal("40.00")
    assert payment.captured_amount == Decimal("40.00")


def test_webhook_after_the_customers_completion_changes_nothing(app: App) -> None:
    """The customer's own completion authorizes first; the late `authorized` webhook returns
    that payment and asks the gateway nothing."""
    cart_id = new_cart(app)
    request = {"cart_id": cart_id, "data": {"scenario": "requires_more"}}
    app.run(accept_payment_workflow, request, tx="a6")
    session = cart_session(app, cart_id)
    app.gateway.complete_action(session.id)
    payment = app.signal("a6", {"completed": "3ds"}).result
    action = webhook(app, "authorized", session.id)
    assert action.event_id is not None
    calls = len(app.gateway.calls)
    late = app.run(process_payment_workflow, action, tx=action.event_id)
    assert late.result == payment
    assert len(app.gateway.calls) == calls
    assert len(app.module.list_payments(session_id=session.id)) == 1


def test_webhook_before_the_customers_completion_changes_nothing(app: App) -> None:
    """The webhook authorizes first; the run the customer's completion signals returns the
    same payment, and the session has one payment only."""
    cart_id = new_cart(app)
    request = {"cart_id": cart_id, "data": {"scenario": "requires_more"}}
    app.run(accept_payment_workflow, request, tx="a7")
    session = cart_session(app, cart_id)
    app.gateway.complete_action(session.id)
    action = webhook(app, "authorized", session.id)
    assert action.event_id is not None
    processed = app.run(process_payment_workflow, action, tx=action.event_id).result
    done = app.signal("a7", {"completed": "3ds"})
    assert done.result == processed
    assert len(app.module.list_payments(session_id=session.id)) == 1
    entry = app.gateway.ledger(session.id)
    assert (entry.authorized, entry.captured) == (Decimal("120.00"), 0)


def test_webhook_actions_that_need_nothing_are_left_alone(app: App) -> None:
    """A `failed` event returns None and changes nothing in the module."""
    collection = app.module.create_payment_collection("usd", "10")
    session = pending_session(app, collection.id, "pending_authorization")
    scope = Scope(collection_ids=(collection.id,))
    action = webhook(app, "failed", session.id)
    before = snapshot(app, scope)
    result = app.run(process_payment_workflow, action, tx="evt-failed")
    assert (result.status, result.result) == (TransactionState.DONE, None)
    assert snapshot(app, scope) == before


# --- the failure path of every step ------------------------------------------------------------

Setup = Callable[[App], tuple[Any, Scope]]


def setup_cart(app: App) -> tuple[Any, Scope]:
    """An open cart."""
    cart_id = new_cart(app)
    return {"cart_id": cart_id}, Scope(cart_id=cart_id)


def setup_sessions(app: App) -> tuple[Any, Scope]:
    """A collection with an older pending session."""
    collection = app.module.create_payment_collection("usd", "100")
    pending_session(app, collection.id)
    inp = {"payment_collection_id": collection.id, "provider_id": "pp_test"}
    return inp, Scope(collection_ids=(collection.id,))


def setup_capture(app: App) -> tuple[Any, Scope]:
    """An authorized payment, partly captured."""
    payment = captured_payment(app, "100", "10")
    inp = {"payment_id": payment.id, "amount": "40"}
    return inp, Scope(collection_ids=(payment.payment_collection_id,))


def setup_refund(app: App) -> tuple[Any, Scope]:
    """A captured payment, partly refunded."""
    payment = captured_payment(app)
    app.module.refund_payment(payment.id, "5")
    inp = {"payment_id": payment.id, "amount": "25"}
    return inp, Scope(collection_ids=(payment.payment_collection_id,))


def setup_refunds(app: App) -> tuple[Any, Scope]:
    """Two captured payments."""
    payments = [captured_payment(app, "30", "30"), captured_payment(app, "40", "20")]
    inp = [{"payment_id": p.id} for p in payments]
    return inp, Scope(collection_ids=tuple(p.payment_collection_id for p in payments))


def setup_cancel(app: App) -> tuple[Any, Scope]:
    """A collection with an authorized payment and a pending session."""
    payment = authorized_payment(app.module, "100")
    collection_id = payment.payment_collection_id
    app.module.update_payment_collections(collection_id, amount="150")
    pending_session(app, collection_id)
    return {"payment_collection_id": collection_id}, Scope(collection_ids=(collection_id,))


def setup_mark_paid(app: App) -> tuple[Any, Scope]:
    """A collection with a pending test-gateway session."""
    collection = app.module.create_payment_collection("usd", "60")
    pending_session(app, collection.id)
    inp = {"payment_collection_id": collection.id, "captured_by": "user_1"}
    return inp, Scope(collection_ids=(collection.id,))


def setup_webhook(app: App) -> tuple[Any, Scope]:
    """A `captured` webhook for a session that waited for one."""
    collection = app.module.create_payment_collection("usd", "80")
    session = pending_session(app, collection.id, "pending_authorization")
    app.module.authorize_payment_session(session.id)
    return webhook(app, "captured", session.id), Scope(collection_ids=(collection.id,))


def setup_accept(scenario: str) -> Setup:
    """An open cart and an accept-payment request with this gateway scenario."""

    def setup(app: App) -> tuple[Any, Scope]:
        cart_id = new_cart(app)
        return {"cart_id": cart_id, "data": {"scenario": scenario}}, Scope(cart_id=cart_id)

    return setup


@frozen
class Case:
    """A workflow, how to build its input, and one of its steps to fail."""

    workflow: Workflow[Any, Any]
    setup: Setup
    step: str
    scenario: str = ""

    @property
    def id(self) -> str:
        """The test id."""
        return f"{self.workflow.name}{self.scenario}:{self.step}"


ACCEPT_STEPS = [
    "collection/validate-cart",
    "collection/create-payment-collection",
    "session/create-payment-session",
    "session/delete-old-payment-sessions",
    "begin-authorization",
    "authorize-payment-session",
]
CASES = [
    *(
        Case(create_payment_collection_for_cart_workflow, setup_cart, step)
        for step in ("validate-cart", "create-payment-collection")
    ),
    *(
        Case(create_payment_sessions_workflow, setup_sessions, step)
        for step in ("create-payment-session", "delete-old-payment-sessions")
    ),
    Case(capture_payment_workflow, setup_capture, "capture-payment"),
    Case(refund_payment_workflow, setup_refund, "refund-payment"),
    Case(refund_payments_workflow, setup_refunds, "refund-payments"),
    Case(cancel_payment_collection_workflow, setup_cancel, "cancel-payment-collection"),
    *(
        Case(mark_payment_collection_as_paid_workflow, setup_mark_paid, step)
        for step in ("create-payment-session", "authorize-payment-session", "capture-payment")
    ),
    Case(process_payment_workflow, setup_webhook, "process-payment-webhook"),
    *(Case(accept_payment_workflow, setup_accept("approve"), s, "[approve]") for s in ACCEPT_STEPS),
    *(
        Case(accept_payment_workflow, setup_accept("requires_more"), s, "[3ds]")
        for s in (AWAIT, "authorize-payment-session")
    ),
    *(
        Case(accept_payment_workflow, setup_accept("pending_authorization"), s, "[pending]")
        for s in ("begin-authorization", AWAIT)
    ),
]


def run_to_the_end(app: App, case: Case, inp: Any) -> RunResult[Any]:
    """Run the case's workflow with its step failing; finish a 3-D Secure wait if it parks."""
    result = app.run(case.workflow, inp, tx="tx-fail", fail=case.step)
    if result.status is TransactionState.WAITING:
        session = cart_session(app, inp["cart_id"])
        app.gateway.complete_action(session.id)
        result = app.signal("tx-fail", {"completed": "3ds"}, fail=case.step)
    return result


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_failing_step_leaves_the_payment_state_as_it_was(app: App, case: Case) -> None:
    """When any step fails for good the run is reverted and the collections, sessions,
    payments and the gateway's money are exactly as before the run."""
    inp, scope = case.setup(app)
    before = snapshot(app, scope)
    result = run_to_the_end(app, case, inp)
    assert result.status is TransactionState.REVERTED, result.errors
    assert [(e.step, e.action) for e in result.errors] == [(case.step, "invoke")]
    assert result.steps[case.step].state in (StepState.FAILED, StepState.REVERTED)
    assert snapshot(app, scope) == before


def test_failing_read_after_mark_as_paid_keeps_the_payment(app: App) -> None:
    """If only reading the paid collection back fails, the money stays recorded as paid: the
    run is done (partially completed), nothing is refunded, and the error is reported."""
    inp, scope = setup_mark_paid(app)
    result = app.run(
        mark_payment_collection_as_paid_workflow, inp, tx="m2", fail="retrieve-payment-collection"
    )
    assert (result.status, result.is_partially_completed) == (TransactionState.DONE, True)
    assert [e.step for e in result.errors] == ["retrieve-payment-collection"]
    (collection_id,) = scope.collection_ids
    collection = app.module.retrieve_payment_collection(collection_id)
    assert (collection.status, collection.captured_amount, collection.refunded_amount) == (
        CollectionStatus.COMPLETED,
        Decimal("60.00"),
        0,
    )


def test_auto_captured_payment_is_refunded_when_a_later_step_fails(app: App) -> None:
    """An auto-captured payment is refunded in full ("Refunded due to cart completion
    failure") when the final authorize step fails, so the gateway charges nothing."""
    inp, _ = setup_accept("auto_capture")(app)
    result = app.run(accept_payment_workflow, inp, tx="a8", fail="authorize-payment-session")
    assert result.status.is_finished
    assert app.gateway.money() == (0, 0)
    (refund,) = app.gateway.calls_to("refund_payment")
    assert refund.input.amount == Decimal("120.00")  # type: ignore[attr-defined]
    (payment,) = app.module.list_payments()
    assert [(r.amount, r.note) for r in payment.refunds] == [
        (Decimal("120.00"), REFUNDED_ON_FAILURE)
    ]


@pytest.mark.parametrize("scenario", ["approve", "auto_capture"])
def test_crash_while_undoing_the_payment_is_recovered_once(app: App, scenario: str) -> None:
    """A process dying after it voided or refunded the payment, before that compensation's
    checkpoint, is recovered by a fresh engine that voids or refunds nothing twice."""
    inp, scope = setup_accept(scenario)(app)
    before = snapshot(app, scope)
    engine = app.engine()
    engine.faults["a11"] = PlanFaults(
        FailurePlan(
            failures=(StepFailure("authorize-payment-session", attempts=99),),
            crash=Crash("begin-authorization", "compensate", "before"),
        )
    )
    with pytest.raises(SimulatedCrash):
        engine.run(accept_payment_workflow, inp, transaction_id="a11")
    fresh = app.engine()
    fresh.store.expire_lease("a11")
    (result,) = fresh.recover()
    assert app.gateway.money() == (0, 0)
    undo = "cancel_payment" if scenario == "approve" else "refund_payment"
    assert len({c.idempotency_key for c in app.gateway.calls_to(undo)}) == 1
    assert result.status is TransactionState.REVERTED
    if scenario == "approve":
        assert snapshot(app, scope) == before
    else:  # the refund is kept once, with its history; the cart is free again
        (payment,) = app.module.list_payments()
        assert [r.amount for r in payment.refunds] == [Decimal("120.00")]
        assert snapshot(app, scope)["cart"] is None


def test_auto_captured_revert_releases_the_cart(app: App) -> None:
    """After the refund of an auto-capture the run is reverted and the cart has no live
    collection, so the customer can pay it again."""
    inp, scope = setup_accept("auto_capture")(app)
    result = app.run(accept_payment_workflow, inp, tx="a8", fail="authorize-payment-session")
    assert result.status is TransactionState.REVERTED, result.errors
    assert snapshot(app, scope)["cart"] is None


@pytest.mark.parametrize("give_up", ["set_step_failure", "cancel"])
def test_customer_giving_up_reverts_the_waiting_run(app: App, give_up: str) -> None:
    """`set_step_failure` on the 3-D Secure wait, or `cancel`, compensates everything: no
    collection for the cart, the gateway session voided."""
    inp, scope = setup_accept("requires_more")(app)
    before = snapshot(app, scope)
    assert app.run(accept_payment_workflow, inp, tx="a9").status is TransactionState.WAITING
    session = cart_session(app, inp["cart_id"])
    engine = app.engine()
    if give_up == "cancel":
        result = engine.cancel("a9")
    else:
        result = engine.set_step_failure("a9", AWAIT, "the customer closed the 3-D Secure page")
    assert result.status is TransactionState.REVERTED
    assert snapshot(app, scope) == before
    assert app.gateway.ledger(session.id).status is ProviderStatus.CANCELED


# --- bad input -----------------------------------------------------------------------------------


def test_completed_cart_is_refused(app: App) -> None:
    """A completed cart raises CartNotEligible and gets no collection."""
    cart_id = new_cart(app)
    app.carts.complete_cart(cart_id)
    for workflow, tx in (
        (create_payment_collection_for_cart_workflow, "b1"),
        (accept_payment_workflow, "b2"),
    ):
        with pytest.raises(CartNotEligible, match="already completed"):
            app.engine().run(workflow, {"cart_id": cart_id}, transaction_id=tx)
        assert snapshot(app, Scope(cart_id=cart_id)) == {
            "gateway": (0, 0),
            "cart": None,
        }


def test_cart_with_a_collection_is_refused(app: App) -> None:
    """A cart that has a collection raises CartNotEligible; its collection is unchanged."""
    cart_id = new_cart(app)
    app.run(create_payment_collection_for_cart_workflow, {"cart_id": cart_id}, tx="b3")
    scope = Scope(cart_id=cart_id)
    before = snapshot(app, scope)
    for workflow, tx in (
        (create_payment_collection_for_cart_workflow, "b4"),
        (accept_payment_workflow, "b5"),
    ):
        with pytest.raises(CartNotEligible, match="already has a payment collection"):
            app.engine().run(workflow, {"cart_id": cart_id}, transaction_id=tx)
    assert snapshot(app, scope) == before


def test_session_in_another_currency_is_refused(app: App) -> None:
    """Asking for a session in another currency than the collection's raises InvalidCurrency
    and leaves the collection's sessions as they were."""
    inp, scope = setup_sessions(app)
    before = snapshot(app, scope)
    with pytest.raises(InvalidCurrency):
        app.engine().run(create_payment_sessions_workflow, {**inp, "currency_code": "eur"})
    assert snapshot(app, scope) == before


def test_capture_of_a_canceled_payment_is_refused(app: App) -> None:
    """Capturing a canceled payment raises PaymentCanceled and moves nothing."""
    payment = app.module.cancel_payment(authorized_payment(app.module, "10").id)
    scope = Scope(collection_ids=(payment.payment_collection_id,))
    before = snapshot(app, scope)
    with pytest.raises(PaymentCanceled):
        app.engine().run(capture_payment_workflow, {"payment_id": payment.id})
    assert snapshot(app, scope) == before
    assert app.gateway.calls_to("capture_payment") == []


def test_capture_beyond_the_authorization_is_refused(app: App) -> None:
    """Capturing more than is left raises CaptureExceedsAuthorized and moves nothing."""
    inp, scope = setup_capture(app)
    before = snapshot(app, scope)
    with pytest.raises(CaptureExceedsAuthorized):
        app.engine().run(capture_payment_workflow, {**inp, "amount": "90.01"})
    assert snapshot(app, scope) == before


def test_refund_beyond_the_capture_is_refused(app: App) -> None:
    """Refunding more than captured and not refunded raises RefundExceedsCaptured."""
    inp, scope = setup_refund(app)
    before = snapshot(app, scope)
    with pytest.raises(RefundExceedsCaptured):
        app.engine().run(refund_payment_workflow, {**inp, "amount": "95.01"})
    assert snapshot(app, scope) == before
    assert len(app.gateway.calls_to("refund_payment")) == 1


def test_declined_card_reverts_accept_payment(app: App) -> None:
    """A decline raises PaymentNotAuthorized and leaves no collection for the cart."""
    inp, scope = setup_accept("decline")(app)
    before = snapshot(app, scope)
    with pytest.raises(PaymentNotAuthorized) as caught:
        app.engine().run(accept_payment_workflow, inp, transaction_id="b6")
    assert caught.value.status == "error"
    assert snapshot(app, scope) == before


def test_3ds_not_completed_reverts_after_the_signal(app: App) -> None:
    """A signal without the customer's action fails the last authorize with
    PaymentActionRequired, and the run is reverted."""
    inp, scope = setup_accept("requires_more")(app)
    before = snapshot(app, scope)
    app.run(accept_payment_workflow, inp, tx="b7")
    result = app.signal("b7", {"completed": "nothing"})
    assert result.status is TransactionState.REVERTED
    assert isinstance(result.errors[0].exception, PaymentActionRequired)
    assert snapshot(app, scope) == before


@pytest.mark.parametrize(
    ("workflow", "inp"),
    [
        (create_payment_collection_for_cart_workflow, {"cart": "cart_1"}),
        (create_payment_sessions_workflow, {"payment_collection_id": "x", "amount": "1"}),
        (capture_payment_workflow, ["pay_1"]),
        (refund_payments_workflow, [{"payment": "pay_1"}]),
    ],
    ids=["unknown-key", "sessions-extra-key", "not-a-mapping", "refund-item"],
)
def test_malformed_inputs_raise_invalid_data(
    app: App, workflow: Workflow[Any, Any], inp: Any
) -> None:
    """A mapping with unknown or missing keys, or no mapping at all, raises InvalidData."""
    with pytest.raises(InvalidData):
        app.engine().run(workflow, inp)
    assert app.gateway.money() == (0, 0)
