"""Random authorize/capture/refund/cancel sequences keep every money invariant (Hypothesis)."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

import hypothesis.strategies as st
from attrs import define, field
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from payment import (
    CaptureExceedsAuthorized,
    CollectionStatus,
    InvalidAmount,
    Payment,
    PaymentAlreadyCaptured,
    PaymentCanceled,
    PaymentModule,
    PaymentNotAuthorized,
    ProviderError,
    RefundExceedsCaptured,
    TestProvider,
)
from payment.testing import payment_module

TOTAL = Decimal("1000.00")
ZERO = Decimal("0.00")
CENT = Decimal("0.01")

keys = st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"]))


def amounts(left: Decimal) -> st.SearchStrategy[Decimal | None]:
    """None (everything left), amounts that fit, sub-cent amounts that must be rounded
    half-even, amounts over what is left, and zero or negative ones."""
    cents = max(int(left * 100), 1)
    return st.one_of(
        st.none(),
        st.integers(min_value=1, max_value=cents).map(lambda c: Decimal(c) / 100),
        st.integers(min_value=1, max_value=cents * 10 + 9).map(lambda c: Decimal(c) / 1000),
        st.integers(min_value=cents + 1, max_value=cents + 5000).map(lambda c: Decimal(c) / 100),
        st.sampled_from([Decimal(0), Decimal("-1.00"), Decimal("0.004")]),
    )


@define
class Expected:
    """What the model says one payment holds."""

    amount: Decimal
    captured: Decimal = ZERO
    refunded: Decimal = ZERO
    canceled: bool = False
    capture_keys: set[str] = field(factory=set)
    refund_keys: set[str] = field(factory=set)
    capture_failures: int = 0


def _quantized(amount: Decimal | None) -> Decimal | None:
    return None if amount is None else amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


class PaymentMachine(RuleBasedStateMachine):
    """Drives one collection of 1000.00 through random operations against a model."""

    def __init__(self, module: PaymentModule, gateway: TestProvider) -> None:
        super().__init__()
        self.module = module
        self.gateway = gateway
        self.collection_id = module.create_payment_collection("usd", TOTAL).id
        self.expected: dict[str, Expected] = {}
        self.sessions = 0

    def _live_authorized(self) -> Decimal:
        return sum((e.amount for e in self.expected.values() if not e.canceled), ZERO)

    @rule(
        cents=st.integers(min_value=1, max_value=40_000),
        scenario=st.sampled_from(["approve", "auto_capture", "decline", "capture_transient_error"]),
    )
    def authorize(self, cents: int, scenario: str) -> None:
        """Create a session and authorize it; too large a session is refused up front."""
        amount = Decimal(cents) / 100
        self.sessions += 1
        if amount > TOTAL - self._live_authorized():
            try:
                self.module.create_payment_session(self.collection_id, "pp_test", "usd", amount)
            except InvalidAmount:
                return
            raise AssertionError("a session larger than what is left was accepted")
        session = self.module.create_payment_session(
            self.collection_id, "pp_test", "usd", amount, data={"scenario": scenario}
        )
        if scenario == "decline":
            try:
                self.module.authorize_payment_session(session.id)
            except PaymentNotAuthorized:
                return
            raise AssertionError("a declined session was authorized")
        payment = self.module.authorize_payment_session(session.id)
        assert payment is not None
        expected = Expected(payment.amount)
        if scenario == "auto_capture":
            expected.captured = payment.amount
        if scenario == "capture_transient_error":
            expected.capture_failures = 1
        self.expected[payment.id] = expected

    def _pick(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.expected)))

    @precondition(lambda self: self.expected)
    @rule(data=st.data(), key=keys)
    def capture(self, data: st.DataObject, key: str | None) -> None:
        """Capture: the module answers exactly what the spec's check order says."""
        payment_id = self._pick(data)
        e = self.expected[payment_id]
        amount = data.draw(amounts(e.amount - e.captured))
        value = _quantized(amount)
        outcome = self._call(lambda: self.module.capture_payment(payment_id, amount, None, key))
        if e.canceled:
            assert isinstance(outcome, PaymentCanceled)
        elif value is not None and value <= 0:
            assert isinstance(outcome, InvalidAmount)
        elif key in e.capture_keys or e.captured >= e.amount:
            assert isinstance(outcome, Payment)
        elif (value or e.amount - e.captured) > e.amount - e.captured:
            assert isinstance(outcome, CaptureExceedsAuthorized)
        elif e.capture_failures:
            assert isinstance(outcome, ProviderError)
            e.capture_failures -= 1
        else:
            assert isinstance(outcome, Payment), outcome
            e.captured += value or e.amount - e.captured
            e.capture_keys.add(key) if key else None

    @precondition(lambda self: self.expected)
    @rule(data=st.data(), key=keys)
    def refund(self, data: st.DataObject, key: str | None) -> None:
        """Refund: never more than captured - refunded."""
        payment_id = self._pick(data)
        e = self.expected[payment_id]
        amount = data.draw(amounts(e.captured - e.refunded))
        value = _quantized(amount)
        left = e.captured - e.refunded
        outcome = self._call(
            lambda: self.module.refund_payment(payment_id, amount, idempotency_key=key)
        )
        if e.canceled:
            assert isinstance(outcome, PaymentCanceled)
        elif value is not None and value <= 0:
            assert isinstance(outcome, InvalidAmount)
        elif key in e.refund_keys:
            assert isinstance(outcome, Payment)
        elif (value or left) > left or left == 0:
            assert isinstance(outcome, RefundExceedsCaptured)
        else:
            assert isinstance(outcome, Payment), outcome
            e.refunded += value or left
            e.refund_keys.add(key) if key else None

    def _live(self) -> list[str]:
        return sorted(pid for pid, e in self.expected.items() if not e.canceled)

    @precondition(lambda self: self._live())
    @rule(data=st.data(), twice=st.booleans())
    def cancel(self, data: st.DataObject, twice: bool) -> None:
        """Cancel: refused once anything was captured; a second cancel changes nothing."""
        payment_id = data.draw(st.sampled_from(self._live()))
        e = self.expected[payment_id]
        outcome = self._call(lambda: self.module.cancel_payment(payment_id))
        if e.captured > 0:
            assert isinstance(outcome, PaymentAlreadyCaptured)
            return
        assert isinstance(outcome, Payment)
        e.canceled = True
        if twice:
            assert self.module.cancel_payment(payment_id) == outcome

    @staticmethod
    def _call(operation: object) -> object:
        try:
            return operation()  # type: ignore[operator]
        except Exception as error:
            return error

    @invariant()
    def money_adds_up(self) -> None:
        """Stored amounts equal the model and the gateway; limits and status hold."""
        collection = self.module.retrieve_payment_collection(self.collection_id)
        for payment in collection.payments:
            e = self.expected[payment.id]
            assert not [c for c in payment.captures if c.state != "succeeded"]
            assert not [r for r in payment.refunds if r.state != "succeeded"]
            assert (payment.captured_amount, payment.refunded_amount) == (e.captured, e.refunded)
            assert (payment.canceled_at is not None) == e.canceled
            assert payment.refunded_amount <= payment.captured_amount <= payment.amount
            ledger = self.gateway.ledger(payment.payment_session_id)
            assert (ledger.captured, ledger.refunded) == (e.captured, e.refunded)
        assert collection.authorized_amount == self._live_authorized()
        captured = sum((e.captured for e in self.expected.values()), ZERO)
        assert collection.captured_amount == captured
        assert collection.refunded_amount == sum((e.refunded for e in self.expected.values()), ZERO)
        assert collection.status is _expected_status(
            collection.sessions, captured, self._live_authorized()
        )


def _expected_status(sessions: object, captured: Decimal, authorized: Decimal) -> CollectionStatus:
    if captured > 0:
        return (
            CollectionStatus.COMPLETED if captured >= TOTAL else CollectionStatus.PARTIALLY_CAPTURED
        )
    if authorized > 0:
        full = authorized >= TOTAL
        return CollectionStatus.AUTHORIZED if full else CollectionStatus.PARTIALLY_AUTHORIZED
    statuses = {s.status for s in sessions}  # type: ignore[attr-defined]
    if statuses == {"error"}:
        return CollectionStatus.FAILED
    return CollectionStatus.AWAITING if statuses else CollectionStatus.NOT_PAID


def test_random_operations_keep_the_money_invariants(sqlite_url: str) -> None:
    """Any sequence of authorize/capture/refund/cancel with random amounts and keys keeps
    captured <= authorized, refunded <= captured, the gateway in step, and the status right."""
    gateway = TestProvider()
    with payment_module(sqlite_url, providers=[gateway]) as module:
        run_state_machine_as_test(
            lambda: PaymentMachine(module, gateway),
            settings=settings(
                max_examples=50,
                stateful_step_count=20,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
