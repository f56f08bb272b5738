"""The SQL store under the module: storage formats, aggregate loads, connections, writers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import sqlalchemy as sa

import payment.adapters.connections as connections
import payment.adapters.engine as engine_module
from payment import (
    CaptureExceedsAuthorized,
    CollectionStatus,
    PaymentModule,
    RefundExceedsCaptured,
    SessionStatus,
)
from payment.adapters import tables as t
from payment.adapters.engine import create_payment_engine
from payment.adapters.schema import upgrade_schema
from payment.domain import thaw_json
from payment.testing import authorized_payment, payment_module

WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


@pytest.fixture
def module(database_url: str) -> Iterator[PaymentModule]:
    """A payment module on a fresh database."""
    with payment_module(database_url) as built:
        yield built


def _insert_with_sqlalchemy(database_url: str) -> None:
    """A collection with one session, written through SQLAlchemy's own types."""
    engine = create_payment_engine(database_url)
    try:
        upgrade_schema(engine)
        with engine.begin() as connection:
            connection.execute(
                t.collections.insert().values(
                    id="pay_col_sa", currency_code="usd", amount=Decimal("12.50"),
                    authorized_amount=Decimal("0.00"), captured_amount=Decimal("0.00"),
                    refunded_amount=Decimal("0.00"), status="awaiting", created_at=WHEN,
                    metadata={"k": [1, {"a": None}]},
                )
            )  # fmt: skip
            connection.execute(
                t.sessions.insert().values(
                    id="payses_sa", payment_collection_id="pay_col_sa", provider_id="pp_test",
                    currency_code="usd", amount=Decimal("12.50"), status="pending",
                    data={"scenario": "approve"}, context={}, authorize_attempts=0,
                    initiated_at=WHEN, created_at=WHEN,
                )
            )  # fmt: skip
    finally:
        engine.dispose()


def test_rows_written_by_sqlalchemy_read_back_the_same(database_url: str) -> None:
    """Rows stored through SQLAlchemy's types load with the same values (formats agree)."""
    _insert_with_sqlalchemy(database_url)
    with payment_module(database_url) as module:
        collection = module.retrieve_payment_collection("pay_col_sa")
        assert (collection.amount, collection.created_at) == (Decimal("12.50"), WHEN)
        assert thaw_json(collection.metadata) == {"k": [1, {"a": None}]}
        assert collection.metadata["k"] == (1, {"a": None})  # arrays come back as tuples
        assert collection.status is CollectionStatus.AWAITING
        session = collection.sessions[0]
        assert session.initiated_at == WHEN
        assert dict(session.data) == {"scenario": "approve"}
        payment = module.authorize_payment_session(session.id)
        assert payment is not None
        assert payment.amount == Decimal("12.50")


def test_rows_written_by_the_module_read_back_through_sqlalchemy(module: PaymentModule) -> None:
    """What the module stores, SQLAlchemy's types read as the same values."""
    payment = authorized_payment(module, "87.957975")
    captured = module.capture_payment(payment.id, "10.10", captured_by="user_1")
    engine = module._store.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        row = connection.execute(sa.select(t.captures)).one()
        session = connection.execute(sa.select(t.sessions)).one()
    assert (row.amount, row.state, row.created_by) == (Decimal("10.10"), "succeeded", "user_1")
    assert row.created_at == captured.captures[0].created_at
    assert row.created_at.tzinfo is not None
    assert session.data == {"id": f"tp_{session.id}", "scenario": "approve"}
    assert session.status == SessionStatus.AUTHORIZED.value


def test_an_aggregate_loads_every_row_it_holds(module: PaymentModule) -> None:
    """A collection with several sessions, payments, captures and refunds loads them all,
    each relation in id order, equal to what the separate list reads return."""
    collection = module.create_payment_collection("usd", "100")
    payments = []
    for amount in ("30", "20", "10"):
        session = module.create_payment_session(collection.id, "pp_test", "usd", amount)
        payment = module.authorize_payment_session(session.id)
        assert payment is not None
        payments.append(payment)
    module.create_payment_session(
        collection.id, "pp_test", "usd", "5", data={"scenario": "decline"}
    )
    module.capture_payment(payments[0].id, "12")
    module.capture_payment(payments[0].id, "8")
    module.refund_payment(payments[0].id, "5", note="partial")
    module.capture_payment(payments[1].id)
    loaded = module.retrieve_payment_collection(collection.id)
    assert loaded.sessions == tuple(module.list_payment_sessions(collection_id=collection.id))
    assert loaded.payments == tuple(module.list_payments(collection_id=collection.id))
    assert [len(p.captures) for p in loaded.payments] == [2, 1, 0]
    assert [c.amount for c in loaded.payments[0].captures] == [Decimal("12.00"), Decimal("8.00")]
    assert loaded.payments[0].refunds[0].note == "partial"
    assert loaded.captured_amount == Decimal("40.00")


def test_failed_transactions_leave_their_connections_usable(module: PaymentModule) -> None:
    """Errors raised inside read and write transactions roll back and the next calls work."""
    payment = module.capture_payment(authorized_payment(module, "50").id, "20")
    for _ in range(12):  # more failures than connections kept
        with pytest.raises(CaptureExceedsAuthorized):
            module.capture_payment(payment.id, "40")
        with pytest.raises(RefundExceedsCaptured):
            module.refund_payment(payment.id, "30")
    assert module.capture_payment(payment.id, "30").captured_amount == Decimal("50.00")
    assert module.retrieve_payment(payment.id).refunded_amount == Decimal("0.00")


@pytest.mark.postgres
def test_dropped_postgres_connections_are_replaced(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections the server dropped while idle are pinged, discarded and replaced."""
    monkeypatch.setattr(connections, "PING_AFTER_IDLE_SECONDS", 0.0)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    with payment_module(postgres_url) as module:
        payment = authorized_payment(module, "10")
        database = postgres_url.rsplit("/", 1)[1]
        admin = create_payment_engine(postgres_url)
        try:
            with admin.connect() as connection:
                connection.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": database},
                )
        finally:
            admin.dispose()
        assert module.capture_payment(payment.id).captured_amount == Decimal("10.00")


def test_close_gives_every_connection_back(database_url: str) -> None:
    """After close, no connection is left checked out of the pool."""
    module = payment_module(database_url).__enter__()
    pool = module._store.engine.pool  # type: ignore[attr-defined]
    payment = authorized_payment(module, "10")
    module.capture_payment(payment.id)
    module.close()
    assert pool.checkedout() == 0


def test_writers_in_many_threads_all_commit(database_url: str) -> None:
    """Eight threads running the accept-payment flow on their own collections all finish."""
    errors: list[BaseException] = []
    with payment_module(database_url) as module:

        def flow(worker: int) -> None:
            try:
                for i in range(5):
                    key = f"w{worker}-{i}"
                    collection = module.create_payment_collection(
                        "usd", "20", idempotency_key=f"{key}:col"
                    )
                    session = module.create_payment_session(
                        collection.id, "pp_test", "usd", "20", idempotency_key=f"{key}:ses"
                    )
                    payment = module.authorize_payment_session(session.id)
                    assert payment is not None
                    module.capture_payment(payment.id, idempotency_key=f"{key}:cap")
            except BaseException as error:  # reported below
                errors.append(error)

        threads = [threading.Thread(target=flow, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        done = module.list_payment_collections(status=CollectionStatus.COMPLETED)
        assert len(done) == 40
