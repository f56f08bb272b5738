"""The payment-session methods of `PaymentModule`, authorization included.

Each method that asks a provider works in phases: a transaction that checks and writes what
must exist before the call, the provider call with no transaction open, then a transaction that
stores the answer. A failed provider call leaves no local row behind.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from payment._core import ModuleCore, check_key, enum_filter
from payment._secrets import without_secrets
from payment.domain import (
    Payment,
    PaymentCollection,
    PaymentSession,
    ProviderStatus,
    SessionStatus,
    thaw_json,
)
from payment.domain.cards import refuse_card_numbers
from payment.exceptions import (
    InvalidData,
    NotFound,
    PaymentActionRequired,
    PaymentError,
    PaymentNotAuthorized,
)
from payment.money import AmountInput
from payment.providers.base import PaymentProvider, ProviderInput, ProviderOutput

__all__ = ["SessionMethods"]


def _update_key(session: PaymentSession) -> str:
    """The same update sent twice gets the same key; a different update a new one."""
    content = [str(session.amount), session.currency_code, thaw_json(session.data)]
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return f"{session.id}:update:{digest[:16]}"


def _outcome(session_id: str, output: ProviderOutput, payment: Payment | None) -> Payment | None:
    if payment is not None:
        return payment
    if output.status is ProviderStatus.PENDING_AUTHORIZATION:
        return None
    if output.status is ProviderStatus.REQUIRES_MORE:
        raise PaymentActionRequired(session_id, output.action)
    raise PaymentNotAuthorized(session_id, output.status.value)


T = TypeVar("T")


class SessionMethods(ModuleCore):
    """Create, authorize, change, read and delete payment sessions."""

    def create_payment_session(
        self,
        collection_id: str,
        provider_id: str,
        currency_code: str,
        amount: AmountInput,
        data: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> PaymentSession:
        """Create a session and initiate it at the provider (key: the session id).

        The session row is written before the provider call so that a retry with the same
        idempotency key reaches the provider with the same session id; a provider failure
        removes it again.

        Args:
            collection_id: The collection to pay.
            provider_id: A registered, enabled provider.
            currency_code: Must be the collection's currency.
            amount: At most the collection's amount minus what is authorized.
            data: Sent to the provider (e.g. ``{"scenario": "decline"}`` for the test gateway).
            context: Customer (``{"customer": {"id", "email"}}``), ``account_holder_id``, and
                anything else the provider should see.
            idempotency_key: A repeated call with this key returns the first session.

        Returns:
            The session with the provider's data.

        Raises:
            NotFound: unknown collection. ProviderNotFound, ProviderDisabled: the provider.
            PaymentCanceled: the collection is canceled.
            InvalidCurrency, InvalidAmount, InvalidData: refused arguments.
            ProviderError: the provider gave no usable answer (no session is left behind).
        """
        refuse_card_numbers(data, "data")  # before anything is read or written
        refuse_card_numbers(context, "context")
        key = check_key(idempotency_key)
        with self._store.write() as repo:
            before = self._locked(repo, collection_id)
            provider = self._enabled(repo, provider_id)
            session = before.session_with_key(key)
            if session is None:
                after, session = before.add_session(
                    session_id=self._ids.new("PaymentSession"), provider_id=provider_id,
                    currency_code=currency_code, amount=amount, now=self._clock(),
                    data=data, context=context, idempotency_key=key,
                )  # fmt: skip
                repo.save_collection(before, after)
            if session.initiated_at is not None:
                return session
            record = self._session_input(repo, session, session.id)
        return self._initiate(provider, session, record)

    def _initiate(
        self, provider: PaymentProvider, session: PaymentSession, record: ProviderInput
    ) -> PaymentSession:
        try:
            output = self._call(provider.id, provider.initiate_payment, record)
        except PaymentError:
            self._forget_uninitiated(session)
            raise
        with self._store.write() as repo:
            before = self._locked(repo, session.payment_collection_id)
            after = before.initiated_session(session.id, output.data, self._clock())
            repo.save_collection(before, after)
            return after.session(session.id)

    def _forget_uninitiated(self, session: PaymentSession) -> None:
        with self._store.write() as repo:
            before = repo.load_collection(session.payment_collection_id, lock=True)
            if before is None:
                return
            current = next((s for s in before.sessions if s.id == session.id), None)
            if current is not None and current.initiated_at is None:
                repo.save_collection(before, before.without_session(session.id))

    def update_payment_session(
        self,
        session_id: str,
        *,
        amount: AmountInput | None = None,
        currency_code: str | None = None,
        data: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> PaymentSession:
        """Change a session that is not authorized, at the provider first (None keeps a value).

        Returns:
            The session with the provider's new data.

        Raises:
            NotFound: unknown session. ProviderDisabled: its provider is disabled.
            PaymentCanceled: the collection is canceled.
            PaymentAlreadyAuthorized: the session holds a live authorization.
            InvalidCurrency, InvalidAmount, InvalidData: refused values.
            ProviderError: the provider refused (nothing is changed).
        """
        refuse_card_numbers(data, "data")  # before anything is read or sent
        refuse_card_numbers(context, "context")
        changes: dict[str, Any] = {"amount": amount, "currency_code": currency_code}
        with self._store.read() as repo:
            collection = self._collection_of(repo, session_id=session_id)
            _, draft = collection.updated_session(session_id, data=data, context=context, **changes)
            provider = self._enabled(repo, draft.provider_id)
            record = self._session_input(repo, draft, _update_key(draft))
        output = self._call(provider.id, provider.update_payment, record)
        with self._store.write() as repo:
            before = self._locked(repo, collection.id)
            after, session = before.updated_session(
                session_id, data=output.data, context=context, **changes
            )
            repo.save_collection(before, after)
            return session

    def delete_payment_session(self, session_id: str) -> None:
        """Delete a session, discarding it at the provider; unknown ids are skipped.

        Raises:
            PaymentAlreadyAuthorized: the session holds a live authorization (cancel it first).
            ProviderError: the provider refused (nothing is deleted).
        """
        with self._store.read() as repo:
            try:
                collection = self._collection_of(repo, session_id=session_id)
            except NotFound:
                return
            collection.without_session(session_id)  # checks it may go
            session = collection.session(session_id)
            record = self._session_input(repo, session, f"{session_id}:delete")
        if session.payment_id is None and session.status is not SessionStatus.CANCELED:
            self._send("delete_payment", [(session.provider_id, record)])
        with self._store.write() as repo:
            before = repo.load_collection(collection.id, lock=True)
            if before is not None and any(s.id == session_id for s in before.sessions):
                repo.save_collection(before, before.without_session(session_id))

    def retrieve_payment_session(self, session_id: str) -> PaymentSession:
        """Return a session.

        Raises:
            NotFound: unknown id.
        """
        found = self.list_payment_sessions(ids=[session_id])
        if not found:
            raise NotFound("PaymentSession", session_id)
        return found[0]

    def list_payment_sessions(
        self,
        *,
        ids: Sequence[str] | None = None,
        collection_id: str | None = None,
        provider_id: str | None = None,
        status: SessionStatus | str | None = None,
    ) -> list[PaymentSession]:
        """Sessions matching every given filter, oldest first."""
        wanted = enum_filter(SessionStatus, status)
        with self._store.read() as repo:
            return repo.list_sessions(
                ids=ids, collection_id=collection_id, provider_id=provider_id, status=wanted
            )

    def retrieve_session_secrets(self, session_id: str) -> dict[str, Any]:
        """The fields of a session's provider data that are kept out of workflow outputs.

        The payment steps return sessions, collections and payments without them (a durable
        engine stores step outputs); a storefront that needs one, e.g. Stripe's
        ``client_secret`` for Stripe.js, reads it here, from the session itself.

        Args:
            session_id: The session.

        Returns:
            ``client_secret`` and every field its provider declares in `secret_fields`,
            those the session's data holds.

        Raises:
            NotFound: unknown session.
        """
        data = self.retrieve_payment_session(session_id).data
        return {k: v for k, v in data.items() if k in self._secret_fields}

    def without_secrets(self, value: T) -> T:
        """`value` (records, or lists of them) without the fields `retrieve_session_secrets`
        gives, in every ``data`` and ``action`` object (what the payment steps return).

        Args:
            value: A session, collection, payment, attempt or refund outcome.

        Returns:
            A copy without secret fields (the value itself when it held none).
        """
        return without_secrets(value, self._secret_fields)

    def authorize_payment_session(
        self, session_id: str, context: Mapping[str, Any] | None = None
    ) -> Payment | None:
        """Authorize a session at its provider and record the outcome.

        Idempotent: a session that has a payment returns it without calling the provider.
        Concurrent callers of one session, in this process or another on the same database,
        take turns (`PaymentStore.hold_lock`): the second one finds the first one's payment
        and never reaches the provider. The provider's answer is saved as the session's status
        first. The call's idempotency key is ``{session_id}:authorize:{n}``, n counting the
        attempts that got an answer: a retry after no answer reuses the key; a new attempt
        (after ``requires_more``) gets a new one.

        Args:
            session_id: The session.
            context: Merged over the session's context for this call (e.g. the customer's IP).

        Returns:
            The payment (with a succeeded capture when the provider answered ``captured``), or
            None when the provider answered ``pending_authorization`` (a webhook follows).

        Raises:
            NotFound: unknown session. ProviderDisabled: its provider is disabled.
            PaymentCanceled: the collection or the session's payment is canceled.
            PaymentActionRequired: the customer must act first (``requires_more``).
            PaymentNotAuthorized: declined (``error``), ``pending`` or ``canceled``.
            ProviderError: no usable answer (nothing is recorded; retry with the same key).
            InvalidData: the context holds a card number.
        """
        if not isinstance(session_id, str):
            raise InvalidData("session_id", f"expected a string, not {type(session_id).__name__}")
        refuse_card_numbers(context, "context")
        with self._session_lock(session_id):  # concurrent callers: one provider call
            return self._authorize(session_id, context)

    def _authorize(self, session_id: str, context: Mapping[str, Any] | None) -> Payment | None:
        with self._store.read() as repo:
            collection = self._collection_of(repo, session_id=session_id)
            existing = collection.authorized_payment(session_id)
            if existing is not None:
                return existing
            session = collection.session(session_id)
            provider = self._enabled(repo, session.provider_id)
            key = session.authorize_key
            record = self._session_input(repo, session, key, context)
        output = self._call(provider.id, provider.authorize_payment, record)
        payment = self._record_authorization(collection, session_id, key, output)
        return _outcome(session_id, output, payment)

    def _record_authorization(
        self, collection: PaymentCollection, session_id: str, key: str, output: ProviderOutput
    ) -> Payment | None:
        with self._store.write() as repo:
            before = self._locked(repo, collection.id)
            after, payment = before.record_authorization(
                session_id, output.status, output.data, attempt_key=key,
                payment_id=self._ids.new("Payment"), capture_id=self._ids.new("Capture"),
                now=self._clock(), captured_amount=output.captured_amount,
            )  # fmt: skip
            repo.save_collection(before, after)
            return payment
