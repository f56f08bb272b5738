"""The domain's records and statuses, and the money rules of a single payment."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from attrs import evolve, field, frozen

from payment.domain._json import (
    EMPTY_JSON,
    FrozenJson,
    freeze_context,
    freeze_data,
)
from payment.exceptions import (
    CaptureExceedsAuthorized,
    InvalidAmount,
    NotFound,
    PaymentAlreadyCaptured,
    PaymentCanceled,
    RefundExceedsCaptured,
)
from payment.money import to_amount

__all__ = [
    "ZERO",
    "AccountHolder",
    "Capture",
    "CollectionStatus",
    "OperationState",
    "Payment",
    "PaymentProviderInfo",
    "PaymentSession",
    "ProviderStatus",
    "Refund",
    "RefundReason",
    "SessionStatus",
    "find",
]

ZERO = Decimal(0)


class SessionStatus(StrEnum):
    """Where a payment session stands with its provider."""

    PENDING = "pending"
    REQUIRES_MORE = "requires_more"
    PENDING_AUTHORIZATION = "pending_authorization"
    AUTHORIZED = "authorized"
    ERROR = "error"
    CANCELED = "canceled"


class CollectionStatus(StrEnum):
    """A payment collection's status, recomputed after every authorize, capture, refund, cancel."""

    NOT_PAID = "not_paid"
    AWAITING = "awaiting"
    AUTHORIZED = "authorized"
    PARTIALLY_AUTHORIZED = "partially_authorized"
    CANCELED = "canceled"
    FAILED = "failed"
    COMPLETED = "completed"
    PARTIALLY_CAPTURED = "partially_captured"


class OperationState(StrEnum):
    """A capture's or refund's state: `pending` while the provider is asked, then `succeeded`."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"


class ProviderStatus(StrEnum):
    """What a provider answers about a payment (a session status, plus `captured`)."""

    PENDING = "pending"
    REQUIRES_MORE = "requires_more"
    PENDING_AUTHORIZATION = "pending_authorization"
    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    ERROR = "error"
    CANCELED = "canceled"


@frozen
class Capture:
    """Money taken from an authorization; `pending` while the provider call is in flight.

    `idempotency_key` is unique per payment; the provider, whose keys span the whole account,
    gets `provider_key`, which adds the payment id and the operation.
    """

    id: str
    payment_id: str
    amount: Decimal
    state: OperationState = field(converter=OperationState)
    idempotency_key: str
    created_at: datetime
    created_by: str | None = None

    @property
    def provider_key(self) -> str:
        """``{payment_id}:capture:{idempotency_key}``: the same for every retry."""
        return f"{self.payment_id}:capture:{self.idempotency_key}"


@frozen
class Refund:
    """Money given back from what was captured; `pending` while the provider call is in flight.

    As for `Capture`, the provider gets `provider_key`, unique across payments.
    """

    id: str
    payment_id: str
    amount: Decimal
    state: OperationState = field(converter=OperationState)
    idempotency_key: str
    created_at: datetime
    refund_reason_id: str | None = None
    note: str | None = None
    created_by: str | None = None

    @property
    def provider_key(self) -> str:
        """``{payment_id}:refund:{idempotency_key}``: the same for every retry."""
        return f"{self.payment_id}:refund:{self.idempotency_key}"


@frozen
class RefundReason:
    """Why money was refunded (``code`` is unique, e.g. ``"return"``)."""

    id: str
    label: str
    code: str
    created_at: datetime
    description: str | None = None


@frozen
class AccountHolder:
    """A customer as a provider knows them (one per provider and customer)."""

    id: str
    provider_id: str
    customer_id: str
    email: str | None
    created_at: datetime
    external_id: str | None = None
    data: FrozenJson = field(default=EMPTY_JSON, converter=freeze_data)


@frozen
class PaymentProviderInfo:
    """A registered provider and whether it takes new sessions."""

    id: str
    is_enabled: bool


class _Movement(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def state(self) -> OperationState: ...
    @property
    def idempotency_key(self) -> str: ...


M = TypeVar("M", Capture, Refund)


def _total(items: Iterable[_Movement], state: OperationState) -> Decimal:
    return sum((item.amount for item in items if item.state is state), ZERO)


def _by_key(items: tuple[M, ...], key: str | None) -> M | None:
    return next((item for item in items if item.idempotency_key == key), None)


def _derive_key(amount: Decimal, items: tuple[M, ...]) -> str:
    """``{amount}:{n}``, n = operations recorded so far: stable when a call is retried after a
    failure (the failed row is gone, so n is the same), new once the previous one is recorded.
    Its provider key reads ``{payment_id}:capture:{amount}:{n}``."""
    used = {item.idempotency_key for item in items}
    n = len(items)
    while f"{amount}:{n}" in used:
        n += 1
    return f"{amount}:{n}"


def _succeeded(items: tuple[M, ...], item_id: str) -> tuple[M, ...]:
    done = OperationState.SUCCEEDED
    return tuple(evolve(i, state=done) if i.id == item_id else i for i in items)


def _amount_for(entity_id: str, value: object, currency_code: str) -> Decimal | None:
    if value is None:
        return None
    try:
        return to_amount(value, currency_code)
    except InvalidAmount as error:
        raise InvalidAmount(error.message, amount=error.amount, entity_id=entity_id) from None


@frozen
class Payment:
    """An authorization held at a provider, with its captures and refunds."""

    id: str
    payment_collection_id: str
    payment_session_id: str
    provider_id: str
    currency_code: str
    amount: Decimal
    created_at: datetime
    data: FrozenJson = field(default=EMPTY_JSON, converter=freeze_data)
    captured_at: datetime | None = None
    canceled_at: datetime | None = None
    captures: tuple[Capture, ...] = ()
    refunds: tuple[Refund, ...] = ()

    @property
    def captured_amount(self) -> Decimal:
        """The sum of succeeded captures."""
        return _total(self.captures, OperationState.SUCCEEDED)

    @property
    def pending_capture_amount(self) -> Decimal:
        """The sum of captures still waiting for the provider."""
        return _total(self.captures, OperationState.PENDING)

    @property
    def capturable_amount(self) -> Decimal:
        """Authorized - captured - pending captures (zero once canceled)."""
        if self.canceled_at is not None:
            return ZERO
        return self.amount - self.captured_amount - self.pending_capture_amount

    @property
    def refunded_amount(self) -> Decimal:
        """The sum of succeeded refunds."""
        return _total(self.refunds, OperationState.SUCCEEDED)

    @property
    def pending_refund_amount(self) -> Decimal:
        """The sum of refunds still waiting for the provider."""
        return _total(self.refunds, OperationState.PENDING)

    @property
    def refundable_amount(self) -> Decimal:
        """Captured - refunded - pending refunds."""
        return self.captured_amount - self.refunded_amount - self.pending_refund_amount

    def begin_capture(
        self,
        amount: object,
        *,
        idempotency_key: str | None,
        created_by: str | None,
        capture_id: str,
        now: datetime,
    ) -> tuple[Payment, Capture | None]:
        """Check a capture and add it as `pending` (spec §3 order).

        Args:
            amount: What to capture, or None for everything left.
            idempotency_key: Identifies the operation; derived from it when None.
            created_by: Who asked (a user id), stored on the capture.
            capture_id: The id of the capture, if one is created.
            now: The creation time.

        Returns:
            The payment and the capture the provider must be asked for: a new or crashed
            pending one, or None when there is nothing to do (a replayed key, fully captured).

        Raises:
            PaymentCanceled: the payment is canceled.
            InvalidAmount: the amount is malformed, zero or negative.
            CaptureExceedsAuthorized: more than authorized - captured - pending.
        """
        if self.canceled_at is not None:
            raise PaymentCanceled(payment_id=self.id)
        requested = _amount_for(self.id, amount, self.currency_code)
        previous = _by_key(self.captures, idempotency_key)
        if previous is not None:
            return self, previous if previous.state is OperationState.PENDING else None
        if self.captured_amount >= self.amount:
            return self, None
        available = self.capturable_amount
        value = available if requested is None else requested
        if value > available or value == ZERO:
            raise CaptureExceedsAuthorized(self.id, value, available)
        key = idempotency_key or _derive_key(value, self.captures)
        capture = Capture(capture_id, self.id, value, OperationState.PENDING, key, now, created_by)
        return evolve(self, captures=(*self.captures, capture)), capture

    def finish_capture(
        self, capture_id: str, data: Mapping[str, Any] | None, now: datetime
    ) -> Payment:
        """Mark a pending capture `succeeded` (a no-op when it already is or is gone).

        Args:
            capture_id: The capture the provider confirmed.
            data: The provider's new payment data, or None to keep the current data.
            now: When it was confirmed; becomes `captured_at` once fully captured.
        """
        captures = _succeeded(self.captures, capture_id)
        captured_at = self.captured_at
        if captured_at is None and _total(captures, OperationState.SUCCEEDED) >= self.amount:
            captured_at = now
        data = self.data if data is None else data
        return evolve(self, captures=captures, data=data, captured_at=captured_at)

    def drop_capture(self, capture_id: str) -> Payment:
        """Remove a capture the provider refused (only while it is still pending)."""
        pending = OperationState.PENDING
        kept = tuple(c for c in self.captures if c.id != capture_id or c.state is not pending)
        return evolve(self, captures=kept)

    def begin_refund(
        self,
        amount: object,
        *,
        idempotency_key: str | None,
        reason_id: str | None,
        note: str | None,
        created_by: str | None,
        refund_id: str,
        now: datetime,
    ) -> tuple[Payment, Refund | None]:
        """Check a refund and add it as `pending` (the same order as `begin_capture`).

        Args:
            amount: What to refund, or None for everything captured and not refunded.
            idempotency_key: Identifies the operation; derived from it when None.
            reason_id: A `RefundReason` id (checked by the caller).
            note: Free text stored on the refund.
            created_by: Who asked.
            refund_id: The id of the refund, if one is created.
            now: The creation time.

        Returns:
            The payment and the refund the provider must be asked for, or None for a replay.

        Raises:
            PaymentCanceled: the payment is canceled.
            InvalidAmount: the amount is malformed, zero or negative.
            RefundExceedsCaptured: more than captured - refunded - pending, or nothing is left.
        """
        if self.canceled_at is not None:
            raise PaymentCanceled(payment_id=self.id)
        requested = _amount_for(self.id, amount, self.currency_code)
        previous = _by_key(self.refunds, idempotency_key)
        if previous is not None:
            return self, previous if previous.state is OperationState.PENDING else None
        available = self.refundable_amount
        value = available if requested is None else requested
        if value > available or value == ZERO:
            raise RefundExceedsCaptured(self.id, value, available)
        key = idempotency_key or _derive_key(value, self.refunds)
        refund = Refund(
            refund_id, self.id, value, OperationState.PENDING, key, now, reason_id, note, created_by
        )
        return evolve(self, refunds=(*self.refunds, refund)), refund

    def finish_refund(self, refund_id: str, data: Mapping[str, Any] | None) -> Payment:
        """Mark a pending refund `succeeded` (a no-op when it already is or is gone)."""
        refunds = _succeeded(self.refunds, refund_id)
        return evolve(self, refunds=refunds, data=self.data if data is None else data)

    def drop_refund(self, refund_id: str) -> Payment:
        """Remove a refund the provider refused (only while it is still pending)."""
        pending = OperationState.PENDING
        kept = tuple(r for r in self.refunds if r.id != refund_id or r.state is not pending)
        return evolve(self, refunds=kept)

    @property
    def refunded_in_full(self) -> bool:
        """True when money was captured and all of it went back (nothing pending either)."""
        settled = not self.pending_capture_amount and not self.pending_refund_amount
        return self.captured_amount > 0 and self.refunded_amount >= self.captured_amount and settled

    def ensure_cancelable(self) -> None:
        """Raise `PaymentAlreadyCaptured` when a capture exists, even a pending one."""
        if self.captures:
            raise PaymentAlreadyCaptured(
                self.id, self.captured_amount + self.pending_capture_amount
            )

    def canceled(self, now: datetime) -> Payment:
        """The payment with its authorization voided (keeps the first cancel time)."""
        return self if self.canceled_at is not None else evolve(self, canceled_at=now)


@frozen
class PaymentSession:
    """One attempt to pay (part of) a collection through one provider.

    `payment_id` is the payment its authorization created, if any. `initiated_at` is None
    while the provider has not yet answered `initiate_payment` for it.
    """

    id: str
    payment_collection_id: str
    provider_id: str
    currency_code: str
    amount: Decimal
    created_at: datetime
    status: SessionStatus = field(default=SessionStatus.PENDING, converter=SessionStatus)
    data: FrozenJson = field(default=EMPTY_JSON, converter=freeze_data)
    context: FrozenJson = field(default=EMPTY_JSON, converter=freeze_context)
    authorized_at: datetime | None = None
    authorize_attempts: int = 0
    initiated_at: datetime | None = None
    idempotency_key: str | None = None
    payment_id: str | None = None

    @property
    def authorize_key(self) -> str:
        """``{session_id}:authorize:{n}``, n = attempts that got an answer (a retry keeps it)."""
        return f"{self.id}:authorize:{self.authorize_attempts}"


def find(items: Iterable[Any], entity: str, entity_id: str) -> Any:
    """Return the item of `items` with that id.

    Raises:
        NotFound: none has it.
    """
    for item in items:
        if item.id == entity_id:
            return item
    raise NotFound(entity, entity_id)
