"""flowkit.testing finds planted rollback bugs, and leaves correct workflows alone (spec §8)."""

from __future__ import annotations

import itertools
import threading
from typing import Any

import pytest
from attrs import frozen
from hypothesis import given, settings

from flowkit import (
    DefinitionError,
    Engine,
    MemoryStore,
    Registry,
    RetryPolicy,
    StepContext,
    TransactionState,
    WorkflowResponse,
    step,
    workflow,
)
from flowkit.testing import (
    Crash,
    ExplorationError,
    FailurePlan,
    StepFailure,
    Trial,
    explore_rollbacks,
    failure_plans,
)
from flowkit.testing.faults import CompensationFailure

_ids = itertools.count()


@frozen
class Order:
    """One order: a SKU to reserve and an amount to charge."""

    sku: str
    amount: int


class Shop:
    """An in-memory inventory and payment ledger, shared by every run of a test."""

    def __init__(self) -> None:
        self.stock: dict[str, int] = {}
        self.reserved: dict[str, int] = {}
        self.charges: list[tuple[str, int]] = []
        self.seen_keys: set[str] = set()
        self.lock = threading.Lock()

    def add(self, sku: str, count: int) -> None:
        """Put `count` items of `sku` on the shelf."""
        self.stock[sku] = count
        self.reserved[sku] = 0


def make_order(shop: Shop) -> Order:
    """A fresh SKU with stock, and an order for one of it."""
    sku = f"sku-{next(_ids)}"
    shop.add(sku, 5)
    return Order(sku, 10)


def build(*, forget_stock: bool, idempotent_charge: bool) -> Any:
    """The shop workflow, with or without its two planted bugs."""

    @step("reserve", retry=RetryPolicy(max_retries=1))
    def reserve(order: Order, ctx: StepContext) -> str:
        shop = ctx.resolve(Shop)
        with shop.lock:
            if ctx.idempotency_key not in shop.seen_keys:  # a recovered run may call it again
                shop.seen_keys.add(ctx.idempotency_key)
                shop.stock[order.sku] -= 1
                shop.reserved[order.sku] += 1
        return order.sku

    @reserve.compensate
    def unreserve(sku: str | None, ctx: StepContext) -> None:
        shop = ctx.resolve(Shop)
        if sku is None or ctx.idempotency_key in shop.seen_keys:
            return
        with shop.lock:
            shop.seen_keys.add(ctx.idempotency_key)
            shop.reserved[sku] -= 1
            if not forget_stock:  # the planted bug forgets to put the item back
                shop.stock[sku] += 1

    @step("charge")
    def charge(order: Order, ctx: StepContext) -> int:
        shop = ctx.resolve(Shop)
        with shop.lock:
            if idempotent_charge and ctx.idempotency_key in shop.seen_keys:
                return order.amount
            shop.seen_keys.add(ctx.idempotency_key)
            shop.charges.append((ctx.transaction_id, order.amount))
        return order.amount

    @charge.compensate
    def refund(amount: int | None, ctx: StepContext) -> None:
        shop = ctx.resolve(Shop)
        with shop.lock:
            shop.charges = [c for c in shop.charges if c[0] != ctx.transaction_id]

    @step("ship")
    def ship(order: Order, ctx: StepContext) -> str:
        return f"shipped {order.sku}"

    @workflow("shop")
    def shop_flow(order: Any) -> WorkflowResponse[Any]:
        reserve(order)
        charge(order)
        return WorkflowResponse(ship(order))

    return shop_flow


def shop_invariants(shop: Shop, orders: list[Order]) -> Any:
    """A check: after a revert nothing is held or charged; after success, exactly one charge."""

    def check(result: Any, trial: Trial) -> None:
        order = orders[-1]
        charges = [c for c in shop.charges if c[0] == trial.transaction_id]
        if result.status is TransactionState.REVERTED:
            assert shop.stock[order.sku] == 5, "stock not restored"
            assert shop.reserved[order.sku] == 0, "reservation left behind"
            assert charges == [], "charged after a revert"
        if result.status is TransactionState.DONE:
            assert len(charges) == 1, f"charged {len(charges)} times"
            assert shop.stock[order.sku] == 4

    return check


def explore(flow: Any, **options: Any) -> None:
    """Explore `flow` on a fresh shop with the shop invariants."""
    shop = Shop()
    registry = Registry()
    registry.register_value(Shop, shop)
    orders: list[Order] = []

    def make_input() -> Order:
        orders.append(make_order(shop))
        return orders[-1]

    # derandomized: the default budget of 100 plans either finds the bug or it does not,
    # the same way on every run
    explore_rollbacks(
        flow,
        make_input,
        shop_invariants(shop, orders),
        container=registry,
        derandomize=True,
        **options,
    )


def test_correct_workflow_passes_every_plan() -> None:
    """A workflow whose compensations and steps are right satisfies its invariants throughout."""
    explore(build(forget_stock=False, idempotent_charge=True))


def test_compensation_that_forgets_an_effect_is_found() -> None:
    """A compensation that forgets to restore stock is found, shrunk to one failing step."""
    with pytest.raises(AssertionError, match="stock not restored") as caught:
        explore(build(forget_stock=True, idempotent_charge=True))
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "under this plan: step `charge` fails on attempt 1" in notes


def test_step_not_idempotent_under_recovery_is_found() -> None:
    """A charge that ignores its idempotency key is caught charging twice after a crash."""
    with pytest.raises(AssertionError, match="charged 2 times") as caught:
        explore(build(forget_stock=False, idempotent_charge=False))
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "crash before the checkpoint of `charge`" in notes


def test_check_receives_the_trial_and_crashes_are_recovered() -> None:
    """Crashed trials are recovered by a fresh engine, which is what the trial names."""
    shop = Shop()
    registry = Registry()
    registry.register_value(Shop, shop)
    trials: list[Trial] = []

    def check(result: Any, trial: Trial) -> None:
        trials.append(trial)
        assert result.status.is_finished

    explore_rollbacks(
        build(forget_stock=False, idempotent_charge=True),
        lambda: make_order(shop),
        check,
        container=registry,
        max_examples=60,
    )
    crashed = [t for t in trials if t.crashed]
    assert crashed, "no plan with a crash was drawn"
    assert all(t.plan.crash is not None for t in crashed)


def test_plans_repr_is_python_and_describe_is_english() -> None:
    """A plan's repr evaluates back to itself; describe() names every step involved."""
    plan = FailurePlan(
        (StepFailure("capture", 1),),
        (CompensationFailure("authorize", 1),),
        Crash("create-collection", "invoke", "after"),
    )
    from flowkit import InjectedFailure  # noqa: F401 - the repr names it

    assert eval(repr(plan)) == plan
    assert plan.describe() == (
        "step `capture` fails on attempt 1; compensation of `authorize` fails once; "
        "crash after the checkpoint of `create-collection`"
    )


@settings(max_examples=60, deadline=None, database=None)
@given(failure_plans(build(forget_stock=False, idempotent_charge=True), max_faults=2))
def test_plans_stay_within_the_graph(plan: FailurePlan) -> None:
    """Generated plans only name the workflow's steps and respect max_faults and retries."""
    names = {"reserve", "charge", "ship"}
    assert plan.fault_count <= 2
    assert {f.step for f in plan.failures} <= names
    assert all(1 <= f.attempts <= (2 if f.step == "reserve" else 1) for f in plan.failures)
    assert {c.step for c in plan.compensation_failures} <= {"reserve", "charge"}
    assert plan.crash is None or plan.crash.step in names


def test_bad_uses_are_clear_errors() -> None:
    """A non-assertion check error, an empty workflow, a reused engine: clear errors."""
    flow = build(forget_stock=False, idempotent_charge=True)
    shop = Shop()
    registry = Registry()
    registry.register_value(Shop, shop)

    def broken(result: Any) -> None:
        raise KeyError("typo in the check")

    with pytest.raises(ExplorationError, match="KeyError"):
        explore_rollbacks(flow, lambda: make_order(shop), broken, container=registry)

    @workflow("empty")
    def empty(x: Any) -> Any:
        return x

    with pytest.raises(DefinitionError, match="no steps"):
        explore_rollbacks(empty, lambda: 1, lambda r: None)

    one = Engine(MemoryStore(), [flow], container=registry)
    with pytest.raises(ExplorationError, match="new Engine"):
        explore_rollbacks(
            flow, lambda: make_order(shop), lambda r: None, engine_factory=lambda: one
        )


def test_flowkit_engine_fixture_runs_on_memory_and_sqlite(
    flowkit_engine: Engine, flowkit_registry: Registry
) -> None:
    """The plugin's flowkit_engine fixture gives a working, recording engine on both stores."""
    shop = Shop()
    flowkit_registry.register_value(Shop, shop)
    result = flowkit_engine.run(build(forget_stock=False, idempotent_charge=True), make_order(shop))
    assert result.status is TransactionState.DONE
    record = flowkit_engine.get(result.transaction_id)
    assert record is not None
    assert list(record.steps) == ["reserve", "charge", "ship"]
