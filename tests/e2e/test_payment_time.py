"""Payments in time (payment spec §7) through durable engines, on SQLite and PostgreSQL.

The release of expired authorizations (its workflow and its hourly schedule), and the deadline
of the accept-payment flow's 3-D Secure wait (`examples/accept_payment.py`, demo included).
The payment module and every engine of a test read one `ManualClock`: tests move it, none
sleeps.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from attrs import define, field

from flowkit import (
    Engine,
    InvalidTime,
    Ref,
    Registry,
    RunResult,
    Schedule,
    StepState,
    TransactionState,
    Workflow,
    WorkflowResponse,
    workflow,
)
from flowkit.sqlalchemy import SqlStore
from flowkit.testing import ManualClock
from payment import (
    InvalidData,
    NotFound,
    PaymentModule,
    ProviderError,
    ProviderStatus,
    SystemProvider,
    TestProvider,
    register,
    release_expired_authorizations_schedule,
)
from payment.cart import CartService
from payment.inputs import AuthorizationAttempt, ReleaseExpiredAuthorizationsInput
from payment.providers import ProviderInput, ProviderOutput
from payment.steps import await_payment_action_step
from payment.testing import InMemoryCartService, authorized_payment, payment_module
from payment.workflows import release_expired_authorizations_workflow

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:  # the examples live beside the packages, not inside one
    sys.path.insert(0, ROOT)

from examples.accept_payment import (  # noqa: E402
    DEFAULT_ACTION_TIMEOUT,
    accept_payment_workflow,
)
from examples.accept_payment import main as demo_main  # noqa: E402

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
RELEASE = "release-expired-authorizations"
WAITING = TransactionState.WAITING


class Gateway(TestProvider):
    """The test gateway, refusing to void the sessions listed in `refuse_cancel`."""

    def __init__(self) -> None:
        super().__init__()
        self.refuse_cancel: set[str] = set()

    def cancel_payment(
        self, payment: ProviderInput, *, method: str = "cancel_payment"
    ) -> ProviderOutput:
        """Refuse (not retryable) for a listed session, else void as the test gateway does."""
        if method == "cancel_payment" and payment.context.session_id in self.refuse_cancel:
            raise ProviderError(self.id, "gateway_refused", retryable=False, message="no")
        return super().cancel_payment(payment, method=method)


@define
class Shop:
    """One test's application: module, gateway, carts and engines on one database and clock."""

    url: str
    module: PaymentModule
    gateway: Gateway
    carts: InMemoryCartService
    registry: Registry
    clock: ManualClock
    engines: list[Engine] = field(factory=list)

    def engine(self, workflows: list[Workflow[Any, Any]], **options: Any) -> Engine:
        """A fresh engine on the test database and clock (as another process would have)."""
        engine = Engine(
            SqlStore(self.url), workflows, container=self.registry, clock=self.clock, **options
        )
        self.engines.append(engine)
        return engine

    def release(self, authorized_before: Any, tx: str) -> RunResult[Any]:
        """Run the release workflow durably with that instant."""
        engine = self.engine([release_expired_authorizations_workflow])
        return engine.run(
            release_expired_authorizations_workflow,
            {"authorized_before": authorized_before},
            transaction_id=tx,
            throw_on_error=False,
        )

    def authorized(self, provider_id: str = "pp_test") -> str:
        """A new authorized payment of 10.00, authorized now; returns its id."""
        return authorized_payment(self.module, "10", provider_id=provider_id).id

    def cancels(self) -> list[str | None]:
        """The idempotency keys of every cancel the gateway received, in order."""
        return [call.idempotency_key for call in self.gateway.calls_to("cancel_payment")]


@pytest.fixture
def shop(database_url: str) -> Iterator[Shop]:
    """The payment module (its clock a `ManualClock`), the gateway, carts and engines."""
    store = SqlStore(database_url)
    store.create_all()
    store.close()
    clock = ManualClock(START)
    gateway = Gateway()
    providers = [SystemProvider(), gateway]
    with payment_module(database_url, providers=providers, clock=clock.now) as module:
        carts = InMemoryCartService()
        registry = Registry()
        register(registry, module)
        registry.register_value(CartService, carts)
        built = Shop(database_url, module, gateway, carts, registry, clock)
        try:
            yield built
        finally:
            for engine in built.engines:
                engine.close()
            registry.close()


# --- releasing expired authorizations ----------------------------------------------------------


@define
class Payments:
    """The payments of `_a_week_of_payments`, by what the release must do with them."""

    stale: list[str]
    captured: str
    canceled: str
    offline: str
    newer: str


def _a_week_of_payments(shop: Shop) -> Payments:
    """Eight days of payments: two stale, one captured, one canceled, one offline (system
    provider), all old, then a newer one; the clock ends a week after the newer one's day."""
    stale = [shop.authorized(), shop.authorized()]
    captured = shop.authorized()
    shop.module.capture_payment(captured, "4")
    canceled = shop.authorized()
    shop.module.cancel_payment(canceled)
    offline = shop.authorized("pp_system_default")
    shop.clock.advance(timedelta(days=2))
    newer = shop.authorized()
    shop.clock.advance(WEEK)
    return Payments(stale, captured, canceled, offline, newer)


def test_release_cancels_only_the_stale_uncaptured_authorizations(shop: Shop) -> None:
    """Payments authorized before the instant with nothing captured are canceled in the module
    and voided at the gateway; captured, canceled, offline and newer ones are left alone."""
    made = _a_week_of_payments(shop)
    before_cancels = len(shop.cancels())
    result = shop.release(shop.clock.now() - WEEK, "release-1")
    assert result.status is TransactionState.DONE
    assert result.result == made.stale
    for payment_id in made.stale:
        payment = shop.module.retrieve_payment(payment_id)
        assert payment.canceled_at == shop.clock.now()
        assert shop.gateway.ledger(payment.payment_session_id).status is ProviderStatus.CANCELED
    untouched = [made.captured, made.offline, made.newer]
    assert all(shop.module.retrieve_payment(p).canceled_at is None for p in untouched)
    assert shop.module.retrieve_payment(made.captured).captured_amount == Decimal("4.00")
    assert len(shop.cancels()) == before_cancels + len(made.stale)


def test_release_again_releases_nothing_and_the_gateway_sees_one_cancel_per_payment(
    shop: Shop,
) -> None:
    """A second run (another transaction) returns no ids and calls no gateway; the same
    transaction id returns its stored result; each release had its own idempotency key."""
    made = _a_week_of_payments(shop)
    already = shop.cancels()
    instant = shop.clock.now() - WEEK
    first = shop.release(instant, "release-a")
    assert shop.release(instant, "release-b").result == []
    assert shop.release(instant, "release-a").result == first.result == made.stale
    keys = shop.cancels()[len(already) :]
    assert len(keys) == len(set(keys)) == len(made.stale)
    for payment_id, key in zip(made.stale, keys, strict=True):
        assert key is not None
        assert key.startswith(f"{payment_id}:cancel:{RELEASE}:release-a:")


def test_a_gateway_refusing_one_void_fails_the_run_after_releasing_the_others(
    shop: Shop,
) -> None:
    """The refused payment stays authorized, every other stale one is released, the run
    fails with the gateway's error, and the next run releases the rest once allowed."""
    made = _a_week_of_payments(shop)
    refused, kept = made.stale
    shop.gateway.refuse_cancel.add(shop.module.retrieve_payment(refused).payment_session_id)
    failed = shop.release(shop.clock.now() - WEEK, "release-refused")
    assert failed.status is TransactionState.REVERTED  # nothing to compensate: voids are final
    assert [e.type_name for e in failed.errors] == ["payment.exceptions.ProviderError"]
    assert shop.module.retrieve_payment(refused).canceled_at is None
    assert shop.module.retrieve_payment(kept).canceled_at is not None
    shop.gateway.refuse_cancel.clear()
    assert shop.release(shop.clock.now() - WEEK, "release-retry").result == [refused]


@pytest.mark.parametrize(
    "authorized_before",
    [datetime(2026, 3, 1, 12, 0), "2026-03-01T12:00:00+00:00", 1772366400, None],
    ids=["naive", "text", "number", "none"],
)
def test_a_bad_instant_is_invalid_data_and_releases_nothing(
    shop: Shop, authorized_before: Any
) -> None:
    """A timezone-naive (or non-datetime) `authorized_before` fails the run with a typed
    `InvalidData` naming the input class, before any payment is touched."""
    stale = shop.authorized()
    shop.clock.advance(WEEK * 2)
    engine = shop.engine([release_expired_authorizations_workflow])
    with pytest.raises(InvalidData, match="ReleaseExpiredAuthorizationsInput") as caught:
        engine.run(
            release_expired_authorizations_workflow,
            {"authorized_before": authorized_before},
            transaction_id="release-bad",
        )
    assert "authorized_before" in caught.value.reason
    assert shop.module.retrieve_payment(stale).canceled_at is None
    assert shop.cancels() == []


def test_release_takes_its_attrs_input_and_refuses_unknown_keys(shop: Shop) -> None:
    """`ReleaseExpiredAuthorizationsInput` works like the mapping; an unknown key is refused
    with `InvalidData` naming the key."""
    stale = shop.authorized()
    shop.clock.advance(WEEK * 2)
    engine = shop.engine([release_expired_authorizations_workflow])
    typed = ReleaseExpiredAuthorizationsInput(shop.clock.now() - WEEK)
    assert engine.run(release_expired_authorizations_workflow, typed).result == [stale]
    with pytest.raises(InvalidData, match="unknown keys"):
        engine.run(
            release_expired_authorizations_workflow,
            {"authorized_before": shop.clock.now(), "limit": 5},
        )


# --- the hourly schedule -----------------------------------------------------------------------


def test_the_schedules_input_is_the_tick_minus_the_window() -> None:
    """At every tick the schedule's input says: release what is older than tick - window."""
    schedule = release_expired_authorizations_schedule(window=timedelta(days=3))
    tick = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)
    made = schedule.input_for(tick)
    assert made == ReleaseExpiredAuthorizationsInput(tick - timedelta(days=3))
    default = release_expired_authorizations_schedule()
    assert default.input_for(tick).authorized_before == tick - WEEK


def test_the_schedule_runs_the_release_workflow_hourly_by_default() -> None:
    """Defaults: every hour, on the default queue, named after the workflow, no catch-up;
    name and queue can be chosen."""
    schedule = release_expired_authorizations_schedule()
    assert isinstance(schedule, Schedule)
    assert schedule.workflow is release_expired_authorizations_workflow
    assert (schedule.every, schedule.cron, schedule.catch_up) == (timedelta(hours=1), None, False)
    assert (schedule.name, schedule.queue) == (RELEASE, "default")
    chosen = release_expired_authorizations_schedule(
        timedelta(minutes=15), name="release-eu", queue="payments"
    )
    assert (chosen.name, chosen.queue, chosen.every) == (
        "release-eu",
        "payments",
        timedelta(minutes=15),
    )


@pytest.mark.parametrize("window", [timedelta(0), -WEEK, 7, None])
def test_a_bad_window_is_invalid_data(window: Any) -> None:
    """A window that is not a positive timedelta is refused when the schedule is made."""
    with pytest.raises(InvalidData, match="window"):
        release_expired_authorizations_schedule(window=window)


def test_a_bad_interval_is_invalid_time() -> None:
    """An interval that is not positive is refused by `flowkit.Schedule`."""
    with pytest.raises(InvalidTime):
        release_expired_authorizations_schedule(every=timedelta(0))


def test_a_tick_of_the_schedule_releases_what_is_older_than_the_window(shop: Shop) -> None:
    """engine.tick() enqueues the tick's run with authorized_before = tick - window; a worker
    runs it and releases the payments older than that, not the newer ones."""
    old = shop.authorized()
    shop.clock.advance(timedelta(days=2))
    newer = shop.authorized()
    shop.clock.advance(WEEK - timedelta(days=1, minutes=30))  # old: 8 days 23:30 ago
    schedule = release_expired_authorizations_schedule()
    engine = shop.engine([release_expired_authorizations_workflow], schedules=[schedule])
    [tx] = engine.tick().scheduled
    tick = schedule.latest(shop.clock.now())
    assert tx == schedule.transaction_id(tick)
    record = engine.get(tx)
    assert record is not None
    assert record.input == ReleaseExpiredAuthorizationsInput(tick - WEEK)
    assert engine.work(idle_timeout=0).claimed == 1
    done = engine.get(tx)
    assert done is not None
    assert (done.status, done.output) == (TransactionState.DONE, [old])
    assert shop.module.retrieve_payment(newer).canceled_at is None
    assert engine.tick().scheduled == []  # the same tick: no second run


# --- the deadline of the 3-D Secure wait -------------------------------------------------------

ACCEPT_WORKFLOWS: list[Workflow[Any, Any]] = [accept_payment_workflow]
AWAIT = "await-payment-action"


def _start_checkout(shop: Shop, cart_id: str, **request: Any) -> tuple[Engine, str]:
    """An accept-payment run for a new 45.00 cart whose gateway asks for 3-D Secure, parked."""
    shop.carts.add_cart(cart_id, "45.00", "usd")
    engine = shop.engine(ACCEPT_WORKFLOWS)
    tx = f"accept-{cart_id}"
    inp = {"cart_id": cart_id, "data": {"scenario": "requires_more"}, **request}
    assert engine.run(accept_payment_workflow, inp, transaction_id=tx).status is WAITING
    return engine, tx


def _session_of(shop: Shop, cart_id: str) -> str:
    return shop.module.retrieve_payment_collection_for_cart(cart_id).sessions[-1].id


def _cart_is_free(shop: Shop, cart_id: str) -> bool:
    try:
        shop.module.retrieve_payment_collection_for_cart(cart_id)
    except NotFound:
        return True
    return False


def test_an_abandoned_challenge_expires_on_tick_and_the_session_is_canceled_at_the_gateway(
    shop: Shop,
) -> None:
    """With action_timeout=60, a tick at 59 s changes nothing; at 60 s the wait times out, the
    run reverts, the session is canceled at the gateway and deleted, and the cart is free."""
    engine, tx = _start_checkout(shop, "cart_gone", action_timeout=60)
    session_id = _session_of(shop, "cart_gone")
    record = engine.get(tx)
    assert record is not None
    assert record.wake_at == shop.clock.now() + timedelta(seconds=60)
    shop.clock.advance(59)
    assert engine.tick().expired == []
    shop.clock.advance(1)
    assert shop.engine(ACCEPT_WORKFLOWS).tick().expired == [tx]  # any engine (process) may
    after = engine.get(tx)
    assert after is not None
    assert after.status is TransactionState.REVERTED
    assert after.steps[AWAIT].invoke_state is StepState.TIMEOUT
    assert [e.type_name for e in after.errors] == ["flowkit.exceptions.StepTimeout"]
    assert shop.gateway.ledger(session_id).status is ProviderStatus.CANCELED
    assert [c.input.context.session_id for c in shop.gateway.calls_to("delete_payment")] == [
        session_id
    ]
    assert shop.module.list_payment_sessions(ids=[session_id]) == []
    assert _cart_is_free(shop, "cart_gone")


def test_the_cart_of_an_expired_run_can_pay_again(shop: Shop) -> None:
    """After the expiry, a new accept-payment run for the same cart authorizes it."""
    engine, _ = _start_checkout(shop, "cart_again", action_timeout=30)
    shop.clock.advance(30)
    engine.tick()
    again = engine.run(
        accept_payment_workflow,
        {"cart_id": "cart_again", "data": {"scenario": "approve"}},
        transaction_id="accept-cart_again-2",
    )
    assert again.status is TransactionState.DONE
    assert again.result.amount == Decimal("45.00")


def test_the_default_deadline_is_fifteen_minutes(shop: Shop) -> None:
    """Without action_timeout the wait expires 900 s after the run parked, not before."""
    engine, tx = _start_checkout(shop, "cart_default")
    shop.clock.advance(DEFAULT_ACTION_TIMEOUT - 1)
    assert engine.tick().expired == []
    shop.clock.advance(1)
    assert engine.tick().expired == [tx]


def test_a_signal_after_the_deadline_gets_the_reverted_result(shop: Shop) -> None:
    """The customer completes 3-D Secure too late: the signal (no tick ran) times the step out
    and returns the reverted run; nothing is authorized and the session is canceled."""
    engine, tx = _start_checkout(shop, "cart_late", action_timeout=120)
    session_id = _session_of(shop, "cart_late")
    shop.gateway.complete_action(session_id)
    shop.clock.advance(121)
    late = shop.engine(ACCEPT_WORKFLOWS).set_step_success(tx, AWAIT, {"completed": "3ds"})
    assert late.status is TransactionState.REVERTED
    assert [e.type_name for e in late.errors] == ["flowkit.exceptions.StepTimeout"]
    assert len(shop.gateway.calls_to("authorize_payment")) == 1  # only the first, unanswered
    assert shop.gateway.ledger(session_id).status is ProviderStatus.CANCELED
    assert _cart_is_free(shop, "cart_late")
    assert engine.tick().expired == []  # nothing left to expire


def test_a_signal_before_the_deadline_authorizes_and_the_deadline_is_gone(shop: Shop) -> None:
    """Within action_timeout the customer's completion authorizes as before; a later tick
    finds nothing due."""
    engine, tx = _start_checkout(shop, "cart_quick", action_timeout=120)
    shop.gateway.complete_action(_session_of(shop, "cart_quick"))
    shop.clock.advance(119)
    done = engine.set_step_success(tx, AWAIT, {"completed": "3ds"})
    assert done.status is TransactionState.DONE
    shop.clock.advance(3600)
    assert engine.tick().expired == []


@pytest.mark.parametrize(
    "action_timeout",
    [-1, 0, math.nan, math.inf, "900", True, None],
    ids=["negative", "zero", "nan", "inf", "text", "bool", "none"],
)
def test_a_bad_action_timeout_is_invalid_data_and_writes_nothing(
    shop: Shop, action_timeout: Any
) -> None:
    """A negative, zero, NaN, infinite or non-number action_timeout is a typed InvalidData
    naming the field, raised before any collection or session is created."""
    shop.carts.add_cart("cart_bad", "45.00", "usd")
    engine = shop.engine(ACCEPT_WORKFLOWS)
    request = {"cart_id": "cart_bad", "action_timeout": action_timeout}
    with pytest.raises(InvalidData, match="action_timeout") as caught:
        engine.run(accept_payment_workflow, request, transaction_id="accept-cart_bad")
    assert "AcceptPaymentRequest" in str(caught.value)
    assert _cart_is_free(shop, "cart_bad")
    assert shop.gateway.calls == ()


def test_the_wait_takes_action_timeout_on_its_attempt_and_keeps_mapping_inputs(
    shop: Shop,
) -> None:
    """`await_payment_action_step` reads the deadline from `AuthorizationAttempt`; an attempt
    given as a mapping without it still parks (with no deadline), a bad one is InvalidData."""
    assert AuthorizationAttempt("s", action_timeout=1.5).action_timeout == 1.5
    assert AuthorizationAttempt("s").action_timeout is None
    with pytest.raises(InvalidData, match="action_timeout"):
        AuthorizationAttempt("s", action_timeout=-3)

    @workflow("just-wait")
    def just_wait(inp: Ref[Any]) -> WorkflowResponse[Any]:
        return WorkflowResponse(await_payment_action_step(inp))

    engine = shop.engine([just_wait])
    engine.run(just_wait, {"session_id": "s", "waiting_for": "customer"}, transaction_id="w1")
    engine.run(just_wait, {"session_id": "s", "action_timeout": 5}, transaction_id="w2")
    assert engine.get("w1").wake_at is None  # type: ignore[union-attr]
    shop.clock.advance(5)
    assert engine.tick().expired == ["w2"]


def test_the_demo_shows_an_abandoned_challenge_expiring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python examples/accept_payment.py` keeps its walk-through and ends with a challenge
    that expires on a ManualClock: the run reverts and the session is canceled."""
    assert demo_main(["--database", f"sqlite:///{tmp_path / 'demo.db'}"]) == 0
    out = capsys.readouterr().out
    for shown in (
        "1. accept-payment (the test gateway asks for 3-D Secure)",
        "parked at await-payment-action",
        "authorize-payment-session",
        "3. Capture 80.00, then refund 30.00",
        "the customer abandons 3-D Secure",
        "15 minutes pass (on a ManualClock), then engine.tick()",
    ):
        assert shown in out, shown
    assert re.search(r"the deadline passed: run accept-cart_\w+ reverted", out)
    assert re.search(r"session payses_\w+ canceled at the gateway", out)
    assert "the cart's collection: none" in out


def test_the_demo_runs_without_the_dev_extras(tmp_path: Path) -> None:
    """The quick start's first command installs no dev extras: the demo must run with
    Hypothesis (and so `flowkit.testing`) unimportable."""
    demo = Path(__file__).resolve().parents[2] / "examples" / "accept_payment.py"
    script = (
        "import runpy, sys\n"
        "sys.modules['hypothesis'] = None  # as if not installed\n"
        f"sys.argv = ['accept_payment.py', '--database', 'sqlite:///{tmp_path / 'demo.db'}']\n"
        f"runpy.run_path({str(demo)!r}, run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "the cart's collection: none" in done.stdout
