"""The payment methods of `PaymentModule`: capture, refund, cancel, read.

Captures and refunds follow three steps so that no provider call happens under a row lock and
concurrent calls can never move more money than there is:

1. one transaction locks the collection and its payments, checks the amount against what is
   left (pending operations count as spent) and inserts the operation as ``pending``;
2. the provider is called with the amount and the operation's idempotency key;
3. one transaction marks it ``succeeded``, or deletes it when the provider refused.

A crash between 1 and 3 leaves the ``pending`` row: calling again with the same key sends the
same key to the provider (which replays its answer) and finishes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from payment._core import ModuleCore, aware_instant, check_key
from payment.domain import Payment
from payment.exceptions import InvalidData, NotFound, PaymentError
from payment.money import AmountInput
from payment.providers.base import ProviderOutput

__all__ = ["MAX_PAGE", "PaymentMethods"]

MAX_PAGE = 1000
"""The most payments `PaymentMethods.list_expired_authorizations` returns at once."""


def _page_size(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidData("limit", f"expected an int from 1 to {MAX_PAGE}")
    return limit


class PaymentMethods(ModuleCore):
    """Capture, refund, cancel and read payments."""

    def retrieve_payment(self, payment_id: str) -> Payment:
        """Return a payment with its captures and refunds.

        Raises:
            NotFound: unknown id.
        """
        found = self.list_payments(ids=[payment_id])
        if not found:
            raise NotFound("Payment", payment_id)
        return found[0]

    def list_payments(
        self,
        *,
        ids: Sequence[str] | None = None,
        collection_id: str | None = None,
        session_id: str | None = None,
        provider_id: str | None = None,
    ) -> list[Payment]:
        """Payments matching every given filter, oldest first."""
        with self._store.read() as repo:
            return repo.list_payments(
                ids=ids, collection_id=collection_id, session_id=session_id, provider_id=provider_id
            )

    def authorization_window(self, provider_id: str) -> timedelta | None:
        """How long the provider holds an uncaptured authorization (None: it never lapses).

        Raises:
            ProviderNotFound: not registered.
        """
        self._registered(provider_id)
        return self._windows[provider_id]

    def list_expired_authorizations(
        self,
        authorized_before: datetime,
        *,
        limit: int = 100,
        after_id: str | None = None,
    ) -> list[Payment]:
        """Authorizations that are due for release: payments authorized before an instant
        that hold money with nothing captured, at a provider whose authorizations lapse.

        A payment is listed when it is not canceled, has no capture (not even a pending one:
        a capture in flight is not stale), was authorized strictly before `authorized_before`,
        and its provider declares an `authorization_window` (the system provider's never
        lapse). Payments come in id order (ids sort by creation), a page at a time.

        Args:
            authorized_before: An aware instant (any time zone; compared in UTC).
            limit: At most this many payments, 1 to `MAX_PAGE`.
            after_id: Only payments whose id sorts after this one: the last id of the
                previous page (canceling a listed payment never moves the others).

        Returns:
            The payments, with their refunds (they have no captures).

        Raises:
            InvalidData: a naive or non-datetime instant, a bad limit, or an `after_id` that
                is not an id string.
        """
        before = aware_instant(authorized_before, "authorized_before")
        size = _page_size(limit)
        if after_id is not None:
            check_key(after_id, "after_id")
            if "\x00" in after_id:
                raise InvalidData("after_id", "contains a NUL character")
        lapsing = sorted(pid for pid, window in self._windows.items() if window is not None)
        with self._store.read() as repo:
            return repo.list_uncaptured_authorizations(
                authorized_before=before, provider_ids=lapsing, limit=size, after_id=after_id
            )

    def capture_payment(
        self,
        payment_id: str,
        amount: AmountInput | None = None,
        captured_by: str | None = None,
        idempotency_key: str | None = None,
        is_captured: bool = False,
    ) -> Payment:
        """Capture (part of) an authorization.

        Checks, in order: `NotFound`; canceled → `PaymentCanceled`; amount ≤ 0 →
        `InvalidAmount`; a capture with this key exists → the payment unchanged, no provider
        call (a pending one is finished); fully captured → the payment unchanged; more than
        authorized - captured - pending → `CaptureExceedsAuthorized`.

        Args:
            payment_id: The payment.
            amount: What to capture; None captures everything left.
            captured_by: Who asked (stored on the capture).
            idempotency_key: Identifies the capture (unique per payment); when None one is
                derived from the amount and the captures so far. The provider gets
                ``{payment_id}:capture:{key}``, e.g. ``pay_..:capture:10.00:0`` for a derived one.
            is_captured: The provider already moved the money (a webhook, its dashboard):
                record it without calling the provider.

        Returns:
            The payment after the capture.

        Raises:
            ProviderError: the provider refused or did not answer (the capture is removed).
        """
        key = check_key(idempotency_key)
        with self._store.write() as repo:
            before = self._collection_of(repo, payment_id=payment_id, lock=True)
            payment, capture = before.payment(payment_id).begin_capture(
                amount, idempotency_key=key, created_by=captured_by,
                capture_id=self._ids.new("Capture"), now=self._clock(),
            )  # fmt: skip
            if capture is None:
                return payment
            if is_captured:
                payment = payment.finish_capture(capture.id, None, self._clock())
            repo.save_collection(before, before.with_payment(payment))
            if is_captured:
                return payment
            record = self._payment_input(
                repo, before, payment, capture.provider_key, capture.amount
            )
        provider = self._registered(payment.provider_id)
        return self._settle(
            before.id,
            payment_id,
            lambda: self._call(provider.id, provider.capture_payment, record),
            lambda p, out: p.finish_capture(capture.id, out.data, self._clock()),
            lambda p: p.drop_capture(capture.id),
        )

    def refund_payment(
        self,
        payment_id: str,
        amount: AmountInput | None = None,
        reason_id: str | None = None,
        note: str | None = None,
        created_by: str | None = None,
        idempotency_key: str | None = None,
        is_refunded: bool = False,
    ) -> Payment:
        """Refund (part of) what was captured.

        Checks, in order: `NotFound` (payment, then refund reason); canceled →
        `PaymentCanceled`; amount ≤ 0 → `InvalidAmount`; a refund with this key exists → the
        payment unchanged (a pending one is finished); more than captured - refunded - pending
        (or nothing left when no amount is given) → `RefundExceedsCaptured`.

        Args:
            payment_id: The payment.
            amount: What to refund; None refunds everything captured and not refunded.
            reason_id: A `RefundReason` id.
            note: Free text stored on the refund.
            created_by: Who asked.
            idempotency_key: Identifies the refund (unique per payment); when None one is
                derived as for captures. The provider gets ``{payment_id}:refund:{key}``.
            is_refunded: The provider already returned the money: record it without a call.

        Returns:
            The payment after the refund.

        Raises:
            ProviderError: the provider refused or did not answer (the refund is removed).
        """
        key = check_key(idempotency_key)
        with self._store.write() as repo:
            before = self._collection_of(repo, payment_id=payment_id, lock=True)
            if reason_id is not None and not repo.list_refund_reasons(ids=[reason_id]):
                raise NotFound("RefundReason", reason_id)
            payment, refund = before.payment(payment_id).begin_refund(
                amount, idempotency_key=key, reason_id=reason_id, note=note,
                created_by=created_by, refund_id=self._ids.new("Refund"), now=self._clock(),
            )  # fmt: skip
            if refund is None:
                return payment
            if is_refunded:
                payment = payment.finish_refund(refund.id, None)
            repo.save_collection(before, before.with_payment(payment))
            if is_refunded:
                return payment
            record = self._payment_input(repo, before, payment, refund.provider_key, refund.amount)
        provider = self._registered(payment.provider_id)
        return self._settle(
            before.id,
            payment_id,
            lambda: self._call(provider.id, provider.refund_payment, record),
            lambda p, out: p.finish_refund(refund.id, out.data),
            lambda p: p.drop_refund(refund.id),
        )

    def _settle(
        self,
        collection_id: str,
        payment_id: str,
        call: Callable[[], ProviderOutput],
        finish: Callable[[Payment, ProviderOutput], Payment],
        drop: Callable[[Payment], Payment],
    ) -> Payment:
        """Steps 2 and 3: call the provider, then finish or drop the pending operation."""
        try:
            output = call()
        except PaymentError:
            self._change_payment(collection_id, payment_id, drop)
            raise
        return self._change_payment(collection_id, payment_id, lambda p: finish(p, output))

    def _change_payment(
        self, collection_id: str, payment_id: str, change: Callable[[Payment], Payment]
    ) -> Payment:
        with self._store.write() as repo:
            before = self._locked(repo, collection_id)
            payment = change(before.payment(payment_id))
            repo.save_collection(before, before.with_payment(payment))
            return payment

    def cancel_payment(self, payment_id: str, idempotency_key: str | None = None) -> Payment:
        """Void a payment's authorization at the provider, then mark it canceled.

        Canceling twice returns the canceled payment without calling the provider.

        Args:
            payment_id: The payment.
            idempotency_key: Identifies this cancel (e.g. a step's key): the provider gets
                ``{payment_id}:cancel:{key}``; without one it gets ``{payment_id}:cancel``.

        Returns:
            The canceled payment.

        Raises:
            NotFound: unknown id.
            InvalidData: a malformed idempotency key.
            PaymentAlreadyCaptured: the payment has a capture (refund instead).
            ProviderError: the provider refused (nothing is marked canceled).
        """
        key = check_key(idempotency_key)
        provider_key = f"{payment_id}:cancel" if key is None else f"{payment_id}:cancel:{key}"
        with self._store.read() as repo:
            collection = self._collection_of(repo, payment_id=payment_id)
            payment = collection.payment(payment_id)
            if payment.canceled_at is not None:
                return payment
            payment.ensure_cancelable()
            record = self._payment_input(repo, collection, payment, provider_key)
        self._send("cancel_payment", [(payment.provider_id, record)])
        # The provider voided it: a capture racing this cancel can no longer succeed there.
        with self._store.write() as repo:
            before = self._locked(repo, collection.id)
            after = before.with_payment_canceled(payment_id, self._clock())
            repo.save_collection(before, after)
            return after.payment(payment_id)
