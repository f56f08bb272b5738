"""The payment collection: the aggregate whose methods hold the rules across its sessions and
payments, and recompute its amounts and status after every change."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from attrs import evolve, field, frozen

from payment.domain._json import EMPTY_JSON, FrozenJson, freeze_metadata
from payment.domain.cards import refuse_card_numbers
from payment.domain.records import (
    ZERO,
    Capture,
    CollectionStatus,
    OperationState,
    Payment,
    PaymentSession,
    ProviderStatus,
    SessionStatus,
    _amount_for,
    find,
)
from payment.exceptions import (
    InvalidAmount,
    InvalidCurrency,
    PaymentAlreadyAuthorized,
    PaymentCanceled,
)
from payment.money import normalize_currency, quantized, to_amount

__all__ = ["PaymentCollection"]

_VOIDABLE = frozenset(
    {SessionStatus.PENDING, SessionStatus.REQUIRES_MORE, SessionStatus.PENDING_AUTHORIZATION}
)


def _replaced(items: tuple[Any, ...], new: Any) -> tuple[Any, ...]:
    return tuple(new if item.id == new.id else item for item in items)


def _payment_for(
    session: PaymentSession, payment_id: str, data: Mapping[str, Any], now: datetime
) -> Payment:
    return Payment(
        payment_id,
        session.payment_collection_id,
        session.id,
        session.provider_id,
        session.currency_code,
        session.amount,
        now,
        data=data,
    )


@frozen
class PaymentCollection:
    """What a cart (or an order change) must pay, with the sessions and payments that pay it.

    `authorized_amount`, `captured_amount`, `refunded_amount` and `status` are recomputed from
    the payments by every rule; they are stored so that lists and filters need no joins.
    """

    id: str
    currency_code: str
    amount: Decimal
    created_at: datetime
    status: CollectionStatus = field(default=CollectionStatus.NOT_PAID, converter=CollectionStatus)
    authorized_amount: Decimal = ZERO
    captured_amount: Decimal = ZERO
    refunded_amount: Decimal = ZERO
    completed_at: datetime | None = None
    canceled_at: datetime | None = None
    metadata: FrozenJson = field(default=EMPTY_JSON, converter=freeze_metadata)
    cart_id: str | None = None
    idempotency_key: str | None = None
    sessions: tuple[PaymentSession, ...] = ()
    payments: tuple[Payment, ...] = ()

    @classmethod
    def create(
        cls,
        *,
        collection_id: str,
        currency_code: object,
        amount: object,
        now: datetime,
        metadata: Mapping[str, Any] | None = None,
        cart_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> PaymentCollection:
        """Validate and build a new, empty collection.

        Raises:
            InvalidCurrency: the currency is not valid.
            InvalidAmount: the amount is malformed, zero or negative.
            InvalidData: the metadata is not a JSON object.
        """
        currency = normalize_currency(currency_code)
        value = to_amount(amount, currency)
        return cls(
            collection_id,
            currency,
            value,
            now,
            metadata=metadata,
            cart_id=cart_id,
            idempotency_key=idempotency_key,
        )._recomputed()

    def session(self, session_id: str) -> PaymentSession:
        """Return one of its sessions (`NotFound` when it has none with that id)."""
        session: PaymentSession = find(self.sessions, "PaymentSession", session_id)
        return session

    def payment(self, payment_id: str) -> Payment:
        """Return one of its payments (`NotFound` when it has none with that id)."""
        payment: Payment = find(self.payments, "Payment", payment_id)
        return payment

    def payment_of(self, session_id: str) -> Payment | None:
        """The payment the session's authorization created, if any."""
        return next((p for p in self.payments if p.payment_session_id == session_id), None)

    def session_with_key(self, idempotency_key: str | None) -> PaymentSession | None:
        """The session an earlier create with this idempotency key made, if any."""
        if idempotency_key is None:
            return None
        return next((s for s in self.sessions if s.idempotency_key == idempotency_key), None)

    def ensure_open(self) -> None:
        """Raise `PaymentCanceled` when the collection is canceled."""
        if self.canceled_at is not None:
            raise PaymentCanceled(payment_collection_id=self.id)

    def updated(
        self,
        *,
        amount: object = None,
        currency_code: object = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> PaymentCollection:
        """Change the amount, currency or metadata (None keeps a value).

        Raises:
            PaymentCanceled: the collection is canceled.
            InvalidCurrency: invalid, or a change while the collection has sessions.
            InvalidAmount: malformed, not positive, or below what is already authorized.
        """
        self.ensure_open()
        currency = self.currency_code
        if currency_code is not None:
            currency = normalize_currency(currency_code)
            if currency != self.currency_code and self.sessions:
                raise InvalidCurrency(
                    currency,
                    f"Payment collection {self.id} has sessions in {self.currency_code}",
                    expected=self.currency_code,
                )
        value = _amount_for(self.id, self.amount if amount is None else amount, currency)
        assert value is not None
        if value < self.authorized_amount:
            raise InvalidAmount(
                f"Amount {value} is below the {self.authorized_amount} already authorized",
                amount=value,
                entity_id=self.id,
            )
        new_metadata = self.metadata if metadata is None else metadata
        return self._with(currency_code=currency, amount=value, metadata=new_metadata)

    def _check_currency(self, currency_code: object) -> None:
        currency = normalize_currency(currency_code)
        if currency != self.currency_code:
            raise InvalidCurrency(
                currency,
                f"Currency {currency} does not match payment collection {self.id} "
                f"({self.currency_code})",
                expected=self.currency_code,
            )

    def _session_amount(self, amount: object) -> Decimal:
        value = _amount_for(self.id, amount, self.currency_code)
        assert value is not None
        left = self.amount - self.authorized_amount
        if value > left:
            raise InvalidAmount(
                f"Session amount {value} exceeds the {left} left to pay on collection {self.id}",
                amount=value,
                entity_id=self.id,
            )
        return value

    def add_session(
        self,
        *,
        session_id: str,
        provider_id: str,
        currency_code: object,
        amount: object,
        now: datetime,
        data: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[PaymentCollection, PaymentSession]:
        """Add a session, not yet initiated at its provider.

        Raises:
            PaymentCanceled: the collection is canceled.
            InvalidCurrency: not the collection's currency.
            InvalidAmount: malformed, not positive, or more than amount - authorized.
            InvalidData: data or context is not a JSON object, or holds a card number.
        """
        self.ensure_open()
        self._check_currency(currency_code)
        refuse_card_numbers(data, "data")
        refuse_card_numbers(context, "context")
        session = PaymentSession(
            session_id,
            self.id,
            provider_id,
            self.currency_code,
            self._session_amount(amount),
            now,
            data=data,
            context=context,
            idempotency_key=idempotency_key,
        )
        return self._with(sessions=(*self.sessions, session)), session

    def initiated_session(
        self, session_id: str, data: Mapping[str, Any], now: datetime
    ) -> PaymentCollection:
        """Store the provider's answer to `initiate_payment` on the session."""
        session = evolve(self.session(session_id), data=data, initiated_at=now)
        return evolve(self, sessions=_replaced(self.sessions, session))

    def _ensure_no_live_payment(self, session_id: str) -> None:
        payment = self.payment_of(session_id)
        if payment is not None and payment.canceled_at is None:
            raise PaymentAlreadyAuthorized(session_id, payment.id)

    def updated_session(
        self,
        session_id: str,
        *,
        amount: object = None,
        currency_code: object = None,
        data: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> tuple[PaymentCollection, PaymentSession]:
        """Change a session that holds no live authorization (None keeps a value).

        Raises:
            NotFound: the collection has no such session.
            PaymentCanceled: the collection is canceled.
            PaymentAlreadyAuthorized: the session has a live payment.
            InvalidCurrency: not the collection's currency.
            InvalidAmount: malformed, not positive, or more than amount - authorized.
            InvalidData: data or context holds a card number.
        """
        self.ensure_open()
        refuse_card_numbers(data, "data")
        refuse_card_numbers(context, "context")
        session = self.session(session_id)
        self._ensure_no_live_payment(session_id)
        if currency_code is not None:
            self._check_currency(currency_code)
        session = evolve(
            session,
            amount=session.amount if amount is None else self._session_amount(amount),
            data=session.data if data is None else data,
            context=session.context if context is None else context,
        )
        return evolve(self, sessions=_replaced(self.sessions, session)), session

    def without_session(self, session_id: str) -> PaymentCollection:
        """Remove a session (and its canceled payment, if any).

        Raises:
            PaymentAlreadyAuthorized: the session has a live payment.
        """
        self._ensure_no_live_payment(session_id)
        return self._with(
            sessions=tuple(s for s in self.sessions if s.id != session_id),
            payments=tuple(p for p in self.payments if p.payment_session_id != session_id),
        )

    def authorized_payment(self, session_id: str) -> Payment | None:
        """The payment an earlier authorization of the session made, or None.

        Raises:
            NotFound: no such session.
            PaymentCanceled: the collection or that payment is canceled.
        """
        self.session(session_id)
        self.ensure_open()
        payment = self.payment_of(session_id)
        if payment is not None and payment.canceled_at is not None:
            raise PaymentCanceled(payment_id=payment.id)
        return payment

    def record_authorization(
        self,
        session_id: str,
        status: ProviderStatus,
        data: Mapping[str, Any],
        *,
        attempt_key: str,
        payment_id: str,
        capture_id: str,
        now: datetime,
        captured_amount: Decimal | None = None,
    ) -> tuple[PaymentCollection, Payment | None]:
        """Save a provider's answer to `authorize_payment` on the session.

        `authorized` adds a Payment; `captured` adds a Payment with a succeeded Capture (keyed
        by the authorize call's key) of what the provider says it captured (all of it when
        it does not say). When a concurrent call already made the payment, the aggregate is
        returned unchanged with that payment.

        Returns:
            The new aggregate and the payment, or None when the answer authorized nothing.
        """
        existing = self.payment_of(session_id)
        if existing is not None:
            return self, existing
        session = self.session(session_id)
        authorized = status in (ProviderStatus.AUTHORIZED, ProviderStatus.CAPTURED)
        session = evolve(
            session,
            status=SessionStatus.AUTHORIZED if authorized else SessionStatus(status.value),
            data=data,
            authorize_attempts=session.authorize_attempts + 1,
            authorized_at=now if authorized else None,
            payment_id=payment_id if authorized else None,
        )
        if not authorized:
            return self._with(sessions=_replaced(self.sessions, session)), None
        payment = _payment_for(session, payment_id, data, now)
        if status is ProviderStatus.CAPTURED:
            amount = _captured(captured_amount, session.amount, self.currency_code)
            done = OperationState.SUCCEEDED
            capture = Capture(capture_id, payment_id, amount, done, attempt_key, now)
            full = now if amount >= session.amount else None
            payment = evolve(payment, captures=(capture,), captured_at=full)
        sessions = _replaced(self.sessions, session)
        return self._with(sessions=sessions, payments=(*self.payments, payment)), payment

    def with_payment(self, payment: Payment) -> PaymentCollection:
        """Replace one of its payments by a changed copy and recompute."""
        return self._with(payments=_replaced(self.payments, payment))

    def with_payment_canceled(self, payment_id: str, now: datetime) -> PaymentCollection:
        """Mark a payment canceled (its authorization voided) and its session canceled."""
        payment = self.payment(payment_id).canceled(now)
        session = evolve(self.session(payment.payment_session_id), status=SessionStatus.CANCELED)
        return evolve(self, sessions=_replaced(self.sessions, session)).with_payment(payment)

    def live_payments(self) -> tuple[Payment, ...]:
        """Payments whose authorization is not canceled."""
        return tuple(p for p in self.payments if p.canceled_at is None)

    def voidable_sessions(self) -> tuple[PaymentSession, ...]:
        """Sessions without a payment that the provider could still authorize."""
        return tuple(s for s in self.sessions if s.payment_id is None and s.status in _VOIDABLE)

    def voidable_payments(self) -> tuple[Payment, ...]:
        """Live payments whose authorization can be voided (those without captures)."""
        return tuple(p for p in self.live_payments() if not p.captures)

    def ensure_cancelable(self) -> None:
        """Raise `PaymentAlreadyCaptured` when a payment holds captured money.

        A payment refunded in full holds nothing: it does not stand in the way (canceling
        frees the cart, for example after a checkout that failed past an auto-capture).
        """
        for payment in self.live_payments():
            if not payment.refunded_in_full:
                payment.ensure_cancelable()

    def canceled(self, now: datetime) -> PaymentCollection:
        """Cancel the collection, its payments and its sessions (keeps the first cancel time)."""
        if self.canceled_at is not None:
            return self
        return self._with(
            canceled_at=now,
            sessions=tuple(evolve(s, status=SessionStatus.CANCELED) for s in self.sessions),
            payments=tuple(p if p.captures else p.canceled(now) for p in self.payments),
        )

    def completed(self, now: datetime) -> PaymentCollection:
        """Mark the collection completed (keeps the first time); `PaymentCanceled` if canceled."""
        self.ensure_open()
        return self if self.completed_at is not None else evolve(self, completed_at=now)

    def ensure_deletable(self) -> None:
        """Refuse to delete a collection that still holds money at a provider.

        Raises:
            PaymentAlreadyCaptured: a live payment has captures.
            PaymentAlreadyAuthorized: a live payment holds an authorization.
        """
        live = self.live_payments()
        if live:
            live[0].ensure_cancelable()
            raise PaymentAlreadyAuthorized(live[0].payment_session_id, live[0].id)

    def _recomputed(self) -> PaymentCollection:
        return self._with()

    def _with(self, **changes: Any) -> PaymentCollection:
        """A copy with `changes`, its amounts and status recomputed (one new object)."""
        payments: tuple[Payment, ...] = changes.get("payments", self.payments)
        currency = changes.get("currency_code", self.currency_code)
        authorized = sum((p.amount for p in payments if p.canceled_at is None), ZERO)
        captured = sum((p.captured_amount for p in payments), ZERO)
        refunded = sum((p.refunded_amount for p in payments), ZERO)
        status = _status(
            changes.get("canceled_at", self.canceled_at),
            changes.get("amount", self.amount),
            changes.get("sessions", self.sessions),
            authorized,
            captured,
        )
        return evolve(
            self,
            **changes,
            authorized_amount=quantized(authorized, currency),
            captured_amount=quantized(captured, currency),
            refunded_amount=quantized(refunded, currency),
            status=status,
        )


def _captured(reported: Decimal | None, authorized: Decimal, currency_code: str) -> Decimal:
    """What an authorization answered `captured` captured: the provider's figure, within the
    authorized amount."""
    if reported is None:
        return authorized
    return min(to_amount(reported, currency_code), authorized)


def _status(
    canceled_at: datetime | None,
    amount: Decimal,
    sessions: tuple[PaymentSession, ...],
    authorized: Decimal,
    captured: Decimal,
) -> CollectionStatus:
    """Spec §2: canceled; else by what is captured; else by what is authorized; else by the
    sessions (all in error: failed; any: awaiting; none: not paid)."""
    if canceled_at is not None:
        return CollectionStatus.CANCELED
    if captured > 0:
        full = captured >= amount
        return CollectionStatus.COMPLETED if full else CollectionStatus.PARTIALLY_CAPTURED
    if authorized > 0:
        full = authorized >= amount
        return CollectionStatus.AUTHORIZED if full else CollectionStatus.PARTIALLY_AUTHORIZED
    if sessions and all(s.status is SessionStatus.ERROR for s in sessions):
        return CollectionStatus.FAILED
    return CollectionStatus.AWAITING if sessions else CollectionStatus.NOT_PAID
