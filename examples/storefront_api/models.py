"""The API's request and response bodies (pydantic), and their builders from domain records.

Amounts travel as decimal strings ("120.00"): exact, in major units, quantized to the currency.
Responses leave out what a customer must not see: provider ``data`` (it may hold a gateway's
client secret), session ``context``, idempotency keys and metadata.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from examples.checkout import Order
from flowkit import RunRecord, StepError, StepRecord
from payment import Capture, Payment, PaymentCollection, PaymentSession, Refund, to_amount

__all__ = [
    "ActionRequiredBody",
    "CaptureOut",
    "CaptureRequest",
    "CheckoutOut",
    "CollectionOut",
    "CreateCollectionRequest",
    "CreateSessionRequest",
    "ErrorBody",
    "Id",
    "OrderOut",
    "PaymentOperationOut",
    "PaymentOut",
    "RefundOut",
    "RefundRequest",
    "RunErrorOut",
    "RunOut",
    "SessionOut",
    "StepOut",
    "WebhookAck",
    "collection_out",
    "order_out",
    "payment_out",
    "run_out",
    "session_out",
]

ID_PATTERN = r"^[A-Za-z0-9_-]+$"
Id = Annotated[str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)]
"""A record id: letters, digits, ``_`` and ``-`` (never ``:``, which flowkit ids refuse)."""
Amount = Annotated[Decimal, Field(max_digits=18, allow_inf_nan=False)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateCollectionRequest(_Request):
    """Give a cart its payment collection."""

    cart_id: Id


class CreateSessionRequest(_Request):
    """Start paying a collection with a provider.

    `cart_id` must be the collection's cart: a collection is reachable only through its cart.
    `data` goes to the provider (the test gateway reads ``scenario`` from it).
    `currency_code`, when given, must be the collection's (else 400).
    """

    cart_id: Id
    provider_id: Id
    data: dict[str, JsonValue] = Field(default_factory=dict)
    currency_code: Annotated[str, Field(min_length=1, max_length=8)] | None = None


class CaptureRequest(_Request):
    """Capture part of a payment (no amount: all that is left)."""

    amount: Amount | None = None


class RefundRequest(_Request):
    """Refund part of a payment (no amount: all that was captured and not refunded)."""

    amount: Amount | None = None
    reason_id: Id | None = None
    note: Annotated[str, Field(max_length=500)] | None = None


class ErrorBody(BaseModel):
    """Every error: a one-line reason and a stable code."""

    detail: str
    code: str


class ActionRequiredBody(ErrorBody):
    """402: the customer must act (3-D Secure) before the payment can be authorized."""

    session_id: str
    action: dict[str, JsonValue]


class SessionOut(BaseModel):
    """A payment session, as a customer may see it."""

    id: str
    payment_collection_id: str
    provider_id: str
    currency_code: str
    amount: str
    status: str


class CollectionOut(BaseModel):
    """A cart's payment collection and its sessions."""

    id: str
    cart_id: str | None
    currency_code: str
    amount: str
    authorized_amount: str
    captured_amount: str
    refunded_amount: str
    status: str
    sessions: list[SessionOut]


class OrderOut(BaseModel):
    """The order a completed checkout placed."""

    id: str
    cart_id: str
    payment_id: str
    total: str
    currency_code: str
    created_at: datetime


class CheckoutOut(BaseModel):
    """A checkout: completed (with its order) or pending (the provider answers by webhook)."""

    status: Literal["completed", "pending"]
    transaction_id: str | None
    order: OrderOut | None


class CaptureOut(BaseModel):
    """One capture of a payment."""

    id: str
    amount: str
    state: str
    created_at: datetime


class RefundOut(BaseModel):
    """One refund of a payment."""

    id: str
    amount: str
    state: str
    note: str | None
    created_at: datetime


class PaymentOut(BaseModel):
    """A payment with its captures and refunds (no provider data)."""

    id: str
    payment_collection_id: str
    payment_session_id: str
    provider_id: str
    currency_code: str
    amount: str
    captured_amount: str
    refunded_amount: str
    captured_at: datetime | None
    canceled_at: datetime | None
    captures: list[CaptureOut]
    refunds: list[RefundOut]


class PaymentOperationOut(BaseModel):
    """The payment after an admin operation, and the run that did it."""

    payment: PaymentOut
    transaction_id: str


class WebhookAck(BaseModel):
    """A verified webhook, queued for processing (or needing none)."""

    received: bool = True
    action: str
    transaction_id: str | None


class StepOut(BaseModel):
    """One step of a run's timeline."""

    name: str
    state: str
    invoke_state: str | None
    attempts: int
    started_at: datetime | None
    ended_at: datetime | None
    compensated_at: datetime | None
    duration_ms: float | None


class RunErrorOut(BaseModel):
    """An error a run met (type name and message only)."""

    step: str
    action: str
    type: str
    message: str


class RunOut(BaseModel):
    """A durable run and its timeline (inputs and outputs left out: they may hold provider
    data)."""

    transaction_id: str
    workflow: str
    status: str
    created_at: datetime
    updated_at: datetime
    steps: list[StepOut]
    errors: list[RunErrorOut]


def _money(amount: Decimal, currency_code: str) -> str:
    """The amount with the currency's digits (a sum of nothing is "0.00", not "0")."""
    return str(to_amount(amount, currency_code, positive=False))


def session_out(session: PaymentSession) -> SessionOut:
    """A session without its provider data and context."""
    return SessionOut(
        id=session.id,
        payment_collection_id=session.payment_collection_id,
        provider_id=session.provider_id,
        currency_code=session.currency_code,
        amount=_money(session.amount, session.currency_code),
        status=session.status.value,
    )


def collection_out(collection: PaymentCollection) -> CollectionOut:
    """A collection and its sessions, without metadata or payments' provider data."""
    return CollectionOut(
        id=collection.id,
        cart_id=collection.cart_id,
        currency_code=collection.currency_code,
        amount=_money(collection.amount, collection.currency_code),
        authorized_amount=_money(collection.authorized_amount, collection.currency_code),
        captured_amount=_money(collection.captured_amount, collection.currency_code),
        refunded_amount=_money(collection.refunded_amount, collection.currency_code),
        status=collection.status.value,
        sessions=[session_out(s) for s in collection.sessions],
    )


def order_out(order: Order) -> OrderOut:
    """An order."""
    return OrderOut(
        id=order.id,
        cart_id=order.cart_id,
        payment_id=order.payment_id,
        total=_money(order.total, order.currency_code),
        currency_code=order.currency_code,
        created_at=order.created_at,
    )


def _capture(capture: Capture, currency_code: str) -> CaptureOut:
    return CaptureOut(
        id=capture.id,
        amount=_money(capture.amount, currency_code),
        state=capture.state.value,
        created_at=capture.created_at,
    )


def _refund(refund: Refund, currency_code: str) -> RefundOut:
    return RefundOut(
        id=refund.id,
        amount=_money(refund.amount, currency_code),
        state=refund.state.value,
        note=refund.note,
        created_at=refund.created_at,
    )


def payment_out(payment: Payment) -> PaymentOut:
    """A payment without its provider data."""
    return PaymentOut(
        id=payment.id,
        payment_collection_id=payment.payment_collection_id,
        payment_session_id=payment.payment_session_id,
        provider_id=payment.provider_id,
        currency_code=payment.currency_code,
        amount=_money(payment.amount, payment.currency_code),
        captured_amount=_money(payment.captured_amount, payment.currency_code),
        refunded_amount=_money(payment.refunded_amount, payment.currency_code),
        captured_at=payment.captured_at,
        canceled_at=payment.canceled_at,
        captures=[_capture(c, payment.currency_code) for c in payment.captures],
        refunds=[_refund(r, payment.currency_code) for r in payment.refunds],
    )


def _step(record: StepRecord) -> StepOut:
    duration = record.duration
    return StepOut(
        name=record.name,
        state=record.state.value,
        invoke_state=None if record.invoke_state is None else record.invoke_state.value,
        attempts=record.attempts,
        started_at=record.started_at,
        ended_at=record.ended_at,
        compensated_at=record.compensated_at,
        duration_ms=None if duration is None else round(duration * 1000, 3),
    )


def _error(error: StepError) -> RunErrorOut:
    return RunErrorOut(
        step=error.step,
        action=error.action,
        type=error.type_name.rsplit(".", 1)[-1],
        message=error.message,
    )


def _started(record: StepRecord) -> tuple[bool, datetime]:
    started = record.started_at
    return (started is None, started or datetime.max)


def run_out(record: RunRecord) -> RunOut:
    """A run's timeline: its steps in the order they started (never-started ones last)."""
    steps = sorted(record.steps.values(), key=_started)
    return RunOut(
        transaction_id=record.transaction_id,
        workflow=record.workflow,
        status=record.status.value,
        created_at=record.created_at,
        updated_at=record.updated_at,
        steps=[_step(s) for s in steps],
        errors=[_error(e) for e in record.errors],
    )
