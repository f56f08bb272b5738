"""Real races on one payment: threads on SQLite, separate connections on PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from payment import (
    CaptureExceedsAuthorized,
    PaymentModule,
    ProviderInput,
    ProviderOutput,
    RefundExceedsCaptured,
    TestProvider,
)
from payment.adapters.engine import create_payment_engine
from payment.adapters.schema import upgrade_schema
from payment.adapters.sqlalchemy import SqlPaymentStore
from payment.repository import PaymentRepository
from payment.testing import authorized_payment, payment_module


class SlowGateway:
    """A TestProvider whose captures and refunds take a while, to widen every race window."""

    def __init__(self, inner: TestProvider, delay: float = 0.05) -> None:
        self.inner = inner
        self.id = inner.id
        self.delay = delay
        self.during_call: Callable[[], None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _slow(self) -> None:
        time.sleep(self.delay)
        if self.during_call is not None:
            self.during_call()

    def capture_payment(self, payment: ProviderInput) -> ProviderOutput:
        self._slow()
        return self.inner.capture_payment(payment)

    def refund_payment(self, payment: ProviderInput) -> ProviderOutput:
        self._slow()
        return self.inner.refund_payment(payment)


def _race(*calls: Callable[[], object]) -> list[object]:
    """Run the calls in threads released together; return each result or exception."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int, call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            results[index] = call()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


class SlowLockedReads:
    """A repository that dawdles after every locked load: without real locks, two writers
    would both read the same amounts and both write (the classic lost update)."""

    def __init__(self, repo: PaymentRepository) -> None:
        self._repo = repo

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repo, name)

    def load_collection(self, collection_id: str, *, lock: bool = False) -> Any:
        found = self._repo.load_collection(collection_id, lock=lock)
        if lock:
            time.sleep(0.05)
        return found

    def load_collection_of(self, *, lock: bool = False, **holder: str | None) -> Any:
        found = self._repo.load_collection_of(lock=lock, **holder)
        if lock:
            time.sleep(0.05)
        return found


class SlowLockStore:
    """A store whose write transactions use `SlowLockedReads`."""

    def __init__(self, store: SqlPaymentStore) -> None:
        self._store = store

    @contextmanager
    def write(self) -> Iterator[Any]:
        with self._store.write() as repo:
            yield SlowLockedReads(repo)

    def read(self) -> Any:
        return self._store.read()

    def hold_lock(self, name: str) -> Any:
        return self._store.hold_lock(name)

    def close(self) -> None:
        self._store.close()


@contextmanager
def _module(database_url: str, gateway: TestProvider) -> Iterator[PaymentModule]:
    """A module whose writers and gateway are both slow, so every race window is wide open."""
    engine = create_payment_engine(database_url)
    upgrade_schema(engine)
    module = PaymentModule(SlowLockStore(SqlPaymentStore(engine)), [SlowGateway(gateway)])
    try:
        yield module
    finally:
        module.close()


def test_concurrent_captures_never_exceed_the_authorization(database_url: str) -> None:
    """300 + 300 captured at once against 500 authorized: exactly one wins, locally and at
    the gateway."""
    gateway = TestProvider()
    with _module(database_url, gateway) as module:
        payment = authorized_payment(module, "500")
        results = _race(
            lambda: module.capture_payment(payment.id, "300"),
            lambda: module.capture_payment(payment.id, "300"),
        )
        assert sum(isinstance(r, CaptureExceedsAuthorized) for r in results) == 1
        captured = module.retrieve_payment(payment.id).captured_amount
        assert captured == Decimal("300.00")
        assert gateway.ledger(payment.payment_session_id).captured == Decimal("300.00")
        collection = module.retrieve_payment_collection(payment.payment_collection_id)
        assert collection.captured_amount == Decimal("300.00")


def test_concurrent_refunds_never_exceed_the_capture(database_url: str) -> None:
    """300 + 300 refunded at once against 500 captured: exactly one wins."""
    gateway = TestProvider()
    with _module(database_url, gateway) as module:
        payment = module.capture_payment(authorized_payment(module, "500").id)
        results = _race(
            lambda: module.refund_payment(payment.id, "300"),
            lambda: module.refund_payment(payment.id, "300"),
        )
        assert sum(isinstance(r, RefundExceedsCaptured) for r in results) == 1
        assert module.retrieve_payment(payment.id).refunded_amount == Decimal("300.00")
        assert gateway.ledger(payment.payment_session_id).refunded == Decimal("300.00")


def test_many_small_captures_stop_exactly_at_the_authorization(database_url: str) -> None:
    """Eight threads capturing 100 each against 500: five captures happen, the others are
    refused (or, once fully captured, get the payment back unchanged)."""
    gateway = TestProvider()
    with _module(database_url, gateway) as module:
        payment = authorized_payment(module, "500")
        results = _race(*[lambda: module.capture_payment(payment.id, "100")] * 8)
        errors = [r for r in results if isinstance(r, Exception)]
        assert all(isinstance(error, CaptureExceedsAuthorized) for error in errors)
        final = module.retrieve_payment(payment.id)
        assert (final.captured_amount, len(final.captures)) == (Decimal("500.00"), 5)
        assert gateway.ledger(payment.payment_session_id).captured == Decimal("500.00")
        assert len(gateway.calls_to("capture_payment")) == 5


def test_no_lock_is_held_while_the_provider_is_called(database_url: str) -> None:
    """While the gateway handles a capture, another write on the same collection completes."""
    gateway = TestProvider()
    slow = SlowGateway(gateway)
    with payment_module(database_url, providers=[slow]) as module:
        payment = authorized_payment(module, "500")
        finished: list[bool] = []

        def write_elsewhere() -> None:
            writer = threading.Thread(
                target=lambda: finished.append(
                    bool(
                        module.update_payment_collections(
                            payment.payment_collection_id, metadata={"x": 1}
                        )
                    )
                )
            )
            writer.start()
            writer.join(timeout=10)

        slow.during_call = write_elsewhere
        module.capture_payment(payment.id, "10")
        assert finished == [True]


def test_racing_same_key_captures_move_money_once(database_url: str) -> None:
    """Two callers retrying one capture key at once capture once, locally and at the gateway."""
    gateway = TestProvider()
    with _module(database_url, gateway) as module:
        for round_number in range(3):
            payment = authorized_payment(module, "100")
            key = f"step-{round_number}"
            results = _race(
                lambda p=payment, k=key: module.capture_payment(p.id, "60", idempotency_key=k),
                lambda p=payment, k=key: module.capture_payment(p.id, "60", idempotency_key=k),
            )
            assert not [r for r in results if isinstance(r, Exception)]
            final = module.retrieve_payment(payment.id)
            assert final.captured_amount == Decimal("60.00")
            assert gateway.ledger(payment.payment_session_id).captured == Decimal("60.00")
