"""Every payment workflow explored with `flowkit.testing.explore_rollbacks`, money as the check.

Each example runs one workflow on fresh entities under a generated failure plan (steps failing,
compensations failing, a crash before or after a checkpoint and a recovery by a fresh engine on
the same SQLite file). After every outcome the check proves:

- money: at the test gateway and in the module, 0 <= refunded <= captured <= authorized; the
  module's records of every payment equal the gateway's ledger (nothing charged, refunded or
  held twice, whatever was retried or recovered); an idempotency key always names one
  operation; a session the module deleted holds nothing at the gateway;
- a reverted run left the payment state exactly as it found it (no orphan session, collection
  or live authorization), except that money an auto-capture moved comes back as a refund kept
  with its history (the collection canceled, the cart free); a finished run left what the
  workflow promises; a run ends failed only when the plan made a compensation fail.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from attrs import define, field

from flowkit import (
    Engine,
    Ref,
    Registry,
    RunResult,
    SimulatedCrash,
    TransactionState,
    Workflow,
    WorkflowResponse,
    when,
    workflow,
)
from flowkit.sqlalchemy import SqlStore
from flowkit.testing import FailurePlan, PlanFaults, Trial, explore_rollbacks
from payment import (
    CollectionStatus,
    NotFound,
    OperationState,
    Payment,
    PaymentCollection,
    PaymentModule,
    ProviderInput,
    ProviderStatus,
    SessionStatus,
    TestProvider,
    register,
)
from payment.cart import CartService
from payment.inputs import AuthorizePaymentSessionInput
from payment.steps import (
    REFUNDED_ON_FAILURE,
    authorize_payment_session_step,
    await_payment_action_step,
    begin_authorization_step,
)
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

AWAIT = "await-payment-action"
ZERO = Decimal(0)
BUDGET = 40
"""Plans per exploration: derandomized, so CI explores the same plans every time."""


# --- the world the examples share --------------------------------------------------------------


@define
class Example:
    """One example's entities: the input, what it may touch, and the state before the run."""

    inp: Any
    cart_id: str | None = None
    collection_ids: tuple[str, ...] = ()
    scenario: str = "approve"
    before: dict[str, Any] = field(factory=dict)


@define
class World:
    """The payment module, carts and engines on one SQLite file, shared by every example."""

    url: str
    module: PaymentModule
    carts: InMemoryCartService
    registry: Registry
    examples: list[Example] = field(factory=list)
    outcomes: list[tuple[TransactionState, bool, str]] = field(factory=list)
    extra_engines: list[Engine] = field(factory=list)
    ids: Iterator[int] = field(factory=itertools.count)

    @property
    def gateway(self) -> TestProvider:
        """The test gateway."""
        return get_test_provider(self.module)

    def engine_factory(self, workflow: Workflow[Any, Any]) -> Callable[[], Engine]:
        """Fresh engines on the shared file, as fresh processes would have."""
        return lambda: Engine(SqlStore(self.url), [workflow], container=self.registry)

    def new_id(self, prefix: str) -> str:
        """A unique id for a new cart or transaction."""
        return f"{prefix}_{next(self.ids)}"

    def add(self, example: Example) -> Any:
        """Remember the example with a snapshot of its state; return its input."""
        example.before = snapshot(self, example)
        self.examples.append(example)
        return example.inp


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A fresh world (the runs' store schema is created once, on the same file)."""
    url = f"sqlite:///{tmp_path / 'payments.db'}"
    store = SqlStore(url)
    store.create_all()
    store.close()
    with payment_module(url) as module:
        carts = InMemoryCartService()
        registry = Registry()
        register(registry, module)
        registry.register_value(CartService, carts)
        built = World(url, module, carts, registry)
        try:
            yield built
        finally:
            for engine in built.extra_engines:
                engine.close()
            registry.close()


# --- snapshots ------------------------------------------------------------------------------------


def collection_view(world: World, collection: PaymentCollection) -> dict[str, Any]:
    """A collection with its sessions (and their gateway ledgers) and payments, ids aside:
    compensation may re-create sessions under new ids."""
    sessions = []
    for s in collection.sessions:
        entry = world.gateway.ledger(s.id) if s.provider_id == "pp_test" else None
        ledger = None if entry is None else (entry.status, entry.authorized, entry.captured)
        sessions.append(repr((s.provider_id, s.status, s.amount, s.data.get("scenario"), ledger)))
    payments = [
        repr((p.amount, p.captured_amount, p.refunded_amount, p.canceled_at is not None))
        for p in collection.payments
    ]
    return {
        "status": collection.status,
        "amounts": (
            collection.amount,
            collection.authorized_amount,
            collection.captured_amount,
            collection.refunded_amount,
        ),
        "canceled": collection.canceled_at is not None,
        "sessions": sorted(sessions),
        "payments": sorted(payments),
    }


def snapshot(world: World, example: Example) -> dict[str, Any]:
    """What the example may touch, and the gateway's money."""
    state: dict[str, Any] = {"gateway": world.gateway.money()}
    if example.cart_id is not None:
        every = world.module.list_payment_collections(cart_id=example.cart_id)
        state["cart collections"] = len(every)
        try:
            found = world.module.retrieve_payment_collection_for_cart(example.cart_id)
        except NotFound:
            state["cart"] = None
        else:
            state["cart"] = collection_view(world, found)
    for collection_id in example.collection_ids:
        found = world.module.retrieve_payment_collection(collection_id)
        state[collection_id] = collection_view(world, found)
    return state


# --- the invariants -------------------------------------------------------------------------------


def assert_money_invariants(world: World) -> None:
    """Money is never negative, never moved twice, and the module agrees with the gateway."""
    sessions: dict[str, Payment | None] = {}
    for collection in world.module.list_payment_collections():
        for payment in collection.payments:
            assert_payment_consistent(payment)
        for session in collection.sessions:
            sessions[session.id] = collection.payment_of(session.id)
    for session_id in world.gateway.session_ids():
        entry = world.gateway.ledger(session_id)
        assert ZERO <= entry.refunded <= entry.captured <= entry.authorized, entry
        if session_id not in sessions:
            assert (entry.status, entry.authorized) == (ProviderStatus.CANCELED, 0), (
                f"deleted session {session_id} still holds money at the gateway: {entry}"
            )
            continue
        payment = sessions[session_id]
        if payment is None:
            continue
        authorized = ZERO if payment.canceled_at is not None else payment.amount
        assert (entry.authorized, entry.captured, entry.refunded) == (
            authorized,
            payment.captured_amount,
            payment.refunded_amount,
        ), f"the gateway and the module disagree on {payment.id}: {entry} vs {payment}"
    assert_keys_name_one_operation(world.gateway)


def assert_payment_consistent(payment: Payment) -> None:
    """0 <= refunded <= captured <= authorized, positive operations, one per key, none pending."""
    assert ZERO <= payment.refunded_amount <= payment.captured_amount <= payment.amount, payment
    operations = [*payment.captures, *payment.refunds]
    assert all(op.amount > 0 for op in operations), payment
    assert all(op.state is OperationState.SUCCEEDED for op in operations), payment
    for kind in (payment.captures, payment.refunds):
        keys = [op.idempotency_key for op in kind]
        assert len(keys) == len(set(keys)), f"a key used twice on {payment.id}: {keys}"
    if payment.canceled_at is not None:
        assert payment.captures == (), f"canceled payment {payment.id} has captures"


def assert_keys_name_one_operation(gateway: TestProvider) -> None:
    """Every repeated idempotency key carried the same session and amount (a replay)."""
    seen: dict[tuple[str, str], tuple[Any, ...]] = {}
    for call in gateway.calls:
        if call.idempotency_key is None or not isinstance(call.input, ProviderInput):
            continue
        what = (call.input.context.session_id, call.input.amount)
        first = seen.setdefault((call.method, call.idempotency_key), what)
        assert first == what, f"key {call.idempotency_key} named two operations: {first}, {what}"


def assert_unchanged(world: World, example: Example) -> None:
    """The example's state is exactly as it was before its run."""
    assert snapshot(world, example) == example.before, "a reverted run left changes"


def assert_outcome(
    world: World, result: RunResult[Any], trial: Trial, expect: Expect, reverted: Reverted
) -> None:
    """A reverted run undid its work; a done run did its job; failed only with a reason."""
    example = world.examples[-1]
    if result.status is TransactionState.REVERTED:
        if refunded_back(world, example):
            assert_refunded_auto_capture(world, example)
        else:
            reverted(world, example)
    elif result.status is TransactionState.DONE:
        expect(world, example, result)
    else:
        assert result.status is TransactionState.FAILED, result
        assert trial.plan.compensation_failures, f"failed without a failing compensation: {result}"


def refunded_back(world: World, example: Example) -> bool:
    """True when the example's run captured money (an auto-capture) that its revert refunded."""
    if example.cart_id is None:
        return False
    every = world.module.list_payment_collections(cart_id=example.cart_id)
    payments = [p for c in every for p in c.payments]
    return any(p.refunded_in_full for p in payments)


def assert_refunded_auto_capture(world: World, example: Example) -> None:
    """A revert past an auto-capture refunds it in full and keeps that history: the collection
    is canceled (not deleted), the cart free for a new one, and the gateway's money back."""
    assert example.scenario == "auto_capture", example
    assert snapshot(world, example)["cart"] is None, "the cart still has a live collection"
    every = world.module.list_payment_collections(cart_id=example.cart_id)
    assert all(c.canceled_at is not None for c in every), every
    # held (authorized, not captured) and charged (captured, not refunded) are back where they were
    assert world.gateway.money() == example.before["gateway"], "money not returned"


Expect = Callable[[World, Example, RunResult[Any]], None]
Reverted = Callable[[World, Example], None]
Finish = Callable[[World, RunResult[Any], Trial], RunResult[Any]]


def explore(
    world: World,
    workflow: Workflow[Any, Any],
    make: Callable[[], Any],
    expect: Expect,
    finish: Finish | None = None,
    reverted: Reverted = assert_unchanged,
    budget: int = BUDGET,
) -> None:
    """Explore `workflow` on inputs from `make` with the invariants above (`finish` takes a
    waiting run to its end; `reverted` checks what a reverted run left)."""

    def check(result: RunResult[Any], trial: Trial) -> None:
        assert_money_invariants(world)
        if result.status is TransactionState.WAITING and finish is not None:
            result = finish(world, result, trial)
            assert_money_invariants(world)
        assert_outcome(world, result, trial, expect, reverted)
        world.outcomes.append((result.status, trial.crashed, world.examples[-1].scenario))

    explore_rollbacks(
        workflow,
        make,
        check,
        engine_factory=world.engine_factory(workflow),
        container=world.registry,
        max_examples=budget,
        derandomize=True,
    )
    statuses = {status for status, _, _ in world.outcomes}
    assert TransactionState.REVERTED in statuses, "no plan reverted the run"
    assert any(crashed for _, crashed, _ in world.outcomes), "no plan crashed the run"


def finish_wait(world: World, result: RunResult[Any], trial: Trial) -> RunResult[Any]:
    """The customer completes 3-D Secure, or the gateway's webhook is processed, and the
    waiting run is signalled under what is left of the plan (a crash there is recovered)."""
    example = world.examples[-1]
    assert example.cart_id is not None
    session = world.module.retrieve_payment_collection_for_cart(example.cart_id).sessions[-1]
    engine, tx = trial.engine, trial.transaction_id
    if example.scenario == "requires_more":
        world.gateway.complete_action(session.id)
    else:
        hook = world.gateway.make_webhook("authorized", session_id=session.id)
        action = world.module.get_webhook_action_and_data("pp_test", hook.raw_body, hook.headers)
        engine.register(process_payment_workflow)
        engine.run(process_payment_workflow, action, container=world.registry)
    plan = trial.plan
    crash = None if trial.crashed else plan.crash
    engine.faults[tx] = PlanFaults(FailurePlan(plan.failures, plan.compensation_failures, crash))
    try:
        return engine.set_step_success(tx, AWAIT, {"completed": True}, container=world.registry)
    except SimulatedCrash:
        return recover(world, tx)
    finally:
        engine.faults.pop(tx, None)


def recover(world: World, tx: str) -> RunResult[Any]:
    """Finish a crashed run on a fresh engine."""
    fresh = world.engine_factory(accept_payment_workflow)()
    world.extra_engines.append(fresh)
    fresh.store.expire_lease(tx)
    for result in fresh.recover(container=world.registry):
        if result.transaction_id == tx:
            return result
    found = fresh.result(tx)
    assert found is not None
    return found


# --- the workflows --------------------------------------------------------------------------------


def test_collection_for_cart_rollbacks(world: World) -> None:
    """A cart ends with exactly one collection for its total, or none after a revert."""

    def make() -> Any:
        cart_id = world.new_id("cart")
        world.carts.add_cart(cart_id, "50", "usd")
        return world.add(Example({"cart_id": cart_id}, cart_id=cart_id))

    def expect(world: World, example: Example, result: RunResult[Any]) -> None:
        assert example.cart_id is not None
        (collection,) = world.module.list_payment_collections(cart_id=example.cart_id)
        assert result.result.id == collection.id
        assert (collection.amount, collection.status, collection.sessions) == (
            Decimal("50.00"),
            CollectionStatus.NOT_PAID,
            (),
        )

    explore(world, create_payment_collection_for_cart_workflow, make, expect)


def new_collection(world: World, amount: str = "100", scenario: str = "approve") -> str:
    """A collection with one pending test-gateway session for all of it."""
    collection = world.module.create_payment_collection("usd", amount)
    data = {"scenario": scenario}
    world.module.create_payment_session(collection.id, "pp_test", "usd", amount, data=data)
    return collection.id


def test_payment_sessions_rollbacks(world: World) -> None:
    """The collection ends with the new session alone, or with its old sessions again."""

    def make() -> Any:
        collection_id = new_collection(world)
        inp = {"payment_collection_id": collection_id, "provider_id": "pp_test"}
        return world.add(Example(inp, collection_ids=(collection_id,)))

    def expect(world: World, example: Example, result: RunResult[Any]) -> None:
        collection = world.module.retrieve_payment_collection(example.collection_ids[0])
        (session,) = collection.sessions
        assert session.id == result.result.id
        assert (session.status, session.amount) == (SessionStatus.PENDING, Decimal("100.00"))

    explore(world, create_payment_sessions_workflow, make, expect)


def payment_example(world: World, payment: Payment, inp: Any) -> Any:
    """Remember an example about one payment."""
    return world.add(Example(inp, collection_ids=(payment.payment_collection_id,)))


def test_capture_rollbacks(world: World) -> None:
    """A capture moves its amount exactly once, or nothing."""

    def make() -> Any:
        payment = authorized_payment(world.module, "100")
        return payment_example(world, payment, {"payment_id": payment.id, "amount": "30"})

    def expect(world: World, example: Example, result: RunResult[Any]) -> None:
        payment = world.module.retrieve_payment(result.result.id)
        assert [c.amount for c in payment.captures] == [Decimal("30.00")]

    explore(world, capture_payment_workflow, make, expect)


def captured(world: World, amount: str = "100") -> Payment:
    """A payment captured in full."""
    payment = authorized_payment(world.module, amount)
    return world.module.capture_payment(payment.id)


def test_refund_rollbacks(world: World) -> None:
    """A refund moves its amount back exactly once, or nothing."""

    def make() -> Any:
        payment = captured(world)
        return payment_example(world, payment, {"payment_id": payment.id, "amount": "30"})

    def expect(world: World, example: Example, result: RunResult[Any]) -> None:
        payment = world.module.retrieve_payment(result.result.id)
        assert [r.amount for r in payment.refunds] == [Decimal("30.00")]

    explore(world, refund_payment_workflow, make, expect)


def test_refund_payments_rollbacks(world: World) -> None:
    """Each payment is refunded once or reported; a refused item moves nothing."""

    def make() -> Any:
        first, second = captured(world, "50"), captured(world, "40")
        inp = [{"payment_id": first.id}, {"payment_id": second.id, "amount": "40.01"}]
        ids = (first.payment_collection_id, second.payment_collection_id)
        return world.add(Example(inp, collection_ids=ids))

    def expect(world: World, example: Example, result: RunResult[Any]) -> None:
        assert [o.error_type for o in result.result] == [None, "RefundExceedsCaptured"]
        first, second = (world.module.retrieve_payment(o.payment_id) for o in result.result)
        assert (first.refunded_amount, second.refunded_amount) == (Decimal("50.00"), 0)

    explore(world, refund_payments_workflow, make, expect)


def test_cancel_collection_rollbacks(world: World) -> None:
    """A canceled collection holds nothing at the gateway; otherwise nothing changed."""

    def make() -> Any:
        payment = authorized_payment(world.module, "100")
        collection_id = payment.payment_collection_id
        world.module.update_payment_collections(collection_id, amount="150")
        data = {"scenario": "approve"}
        world.module.create_payment_session(collection_id, "pp_test", "usd", "50", data=data)
        return payment_example(world, payment, {"payment_collection_id": collection_id})

    def expect(world: World, example: Example, result: RunResult[Any]) -> None:
        collection = world.module.retrieve_payment_collection(example.collection_ids[0])
        assert (collection.status, collection.authorized_amount) == (CollectionStatus.CANCELED, 0)
        for session in collection.sessions:
            assert world.gateway.ledger(session.id).status is ProviderStatus.CANCELED

    explore(world, cancel_payment_collection_workflow, make, expect)


def test_mark_as_paid_rollbacks(world: World) -> None:
    """The collection ends paid once by the system provider, or as it was."""

    def make() -> Any:
        collection_id = new_collection(world, "60")
        inp = {"payment_collection_id": collection_id, "captured_by": "user_1"}
        return world.add(Example(inp, collection_ids=(collection_id,)))

    def expect(world: World, example: Example, result: RunResult[Any]) -> None:
        collection = world.module.retrieve_payment_collection(example.collection_ids[0])
        (payment,) = collection.payments
        assert (payment.provider_id, payment.captured_amount) == (
            "pp_system_default",
            Decimal("60.00"),
        )
        assert collection.status is CollectionStatus.COMPLETED
        assert result.result in (None, collection)

    explore(world, mark_payment_collection_as_paid_workflow, make, expect)


def test_process_payment_rollbacks(world: World) -> None:
    """A webhook makes one payment (captured once for a `captured` event), or nothing."""
    actions = itertools.cycle(["authorized", "captured"])

    def make() -> Any:
        collection_id = new_collection(world, "80", "pending_authorization")
        session = world.module.retrieve_payment_collection(collection_id).sessions[0]
        world.module.authorize_payment_session(session.id)
        action = next(actions)
        hook = world.gateway.make_webhook(action, session_id=session.id)
        inp = world.module.get_webhook_action_and_data("pp_test", hook.raw_body, hook.headers)
        return world.add(Example(inp, collection_ids=(collection_id,), scenario=action))

    def expect(world: World, example: Example, result: RunResult[Any]) -> None:
        collection = world.module.retrieve_payment_collection(example.collection_ids[0])
        (payment,) = collection.payments
        assert payment == result.result
        captured = Decimal("80.00") if example.scenario == "captured" else 0
        assert (payment.amount, payment.captured_amount) == (Decimal("80.00"), captured)

    explore(world, process_payment_workflow, make, expect)


@pytest.mark.parametrize(
    "scenario", ["approve", "requires_more", "pending_authorization", "auto_capture", "decline"]
)
def test_accept_payment_rollbacks(world: World, scenario: str) -> None:
    """The cart ends with one authorized (or auto-captured) payment of its total, or with no
    collection at all; waits are finished by the customer or a webhook."""

    def make() -> Any:
        cart_id = world.new_id("cart")
        world.carts.add_cart(cart_id, "120", "usd")
        inp = {"cart_id": cart_id, "data": {"scenario": scenario}}
        return world.add(Example(inp, cart_id=cart_id, scenario=scenario))

    def expect(world: World, example: Example, result: RunResult[Any]) -> None:
        assert scenario != "decline", "a declined card was accepted"
        assert example.cart_id is not None
        (collection,) = world.module.list_payment_collections(cart_id=example.cart_id)
        (payment,) = collection.payments
        assert payment == result.result
        captured = Decimal("120.00") if scenario == "auto_capture" else 0
        assert (payment.amount, payment.captured_amount) == (Decimal("120.00"), captured)

    explore(world, accept_payment_workflow, make, expect, finish=finish_wait)


@workflow("authorize-session")
def authorize_session_workflow(inp: Ref[AuthorizePaymentSessionInput]) -> WorkflowResponse[Any]:
    """accept-payment's authorization tail alone, on a session that exists: the explorer
    reaches its last step (and the compensations that void or refund) far more often."""
    attempt = begin_authorization_step(inp)
    when(attempt, lambda a: a.waiting_for is not None).then(
        lambda: await_payment_action_step(attempt)
    )
    return WorkflowResponse(authorize_payment_session_step(inp))


@pytest.mark.parametrize("scenario", ["approve", "auto_capture"])
def test_authorization_rollbacks(world: World, scenario: str) -> None:
    """An authorization is kept once, or voided; an auto-capture is kept once, or refunded in
    full exactly once (note "Refunded due to cart completion failure")."""

    def make() -> Any:
        collection_id = new_collection(world, "90", scenario)
        session = world.module.retrieve_payment_collection(collection_id).sessions[0]
        inp = AuthorizePaymentSessionInput(session.id)
        return world.add(Example(inp, collection_ids=(collection_id,), scenario=scenario))

    def expect(world: World, example: Example, result: RunResult[Any]) -> None:
        (payment,) = world.module.list_payments(session_id=example.inp.id)
        assert (payment, payment.canceled_at, payment.refunds) == (result.result, None, ())
        captured = Decimal("90.00") if scenario == "auto_capture" else 0
        assert payment.captured_amount == captured

    def undone(world: World, example: Example) -> None:
        assert world.gateway.money() == example.before["gateway"]
        for payment in world.module.list_payments(session_id=example.inp.id):
            if scenario == "approve":
                assert payment.canceled_at is not None, payment
            else:
                (refund,) = payment.refunds
                assert (refund.amount, refund.note) == (Decimal("90.00"), REFUNDED_ON_FAILURE)

    explore(world, authorize_session_workflow, make, expect, reverted=undone, budget=3 * BUDGET)
