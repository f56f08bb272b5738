"""What the service needs from storage: a `PaymentStore` of transactions over a repository.

A write transaction (`PaymentStore.write`) serializes with every other writer of the same
collection: `load_collection(..., lock=True)` (or `load_collection_of`) locks the collection's
row before it reads anything the collection holds (``SELECT ... FOR UPDATE`` on PostgreSQL; on
SQLite the whole write transaction holds the database's write lock from its ``BEGIN
IMMEDIATE``). Every writer takes that lock before it reads or writes any row of the aggregate,
so the one lock serializes them. Every record crosses this boundary as an immutable domain
snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from payment.domain import (
    AccountHolder,
    CollectionStatus,
    Payment,
    PaymentCollection,
    PaymentProviderInfo,
    PaymentSession,
    RefundReason,
    SessionStatus,
)

__all__ = ["DuplicateKey", "PaymentRepository", "PaymentStore"]


class DuplicateKey(Exception):
    """An insert hit a unique key (idempotency key, live cart, provider and customer).

    Raised by `PaymentStore.write` after its transaction was rolled back; the service then
    reads the record the other writer made.
    """


class PaymentRepository(Protocol):
    """Reads and writes of one transaction."""

    def load_collection(
        self, collection_id: str, *, lock: bool = False
    ) -> PaymentCollection | None:
        """The collection with its sessions and payments; `lock` holds it until commit."""

    def load_collection_of(
        self, *, session_id: str | None = None, payment_id: str | None = None, lock: bool = False
    ) -> PaymentCollection | None:
        """The collection holding a session (or else a payment), as `load_collection`."""

    def find_collection(
        self, *, idempotency_key: str | None = None, live_cart_id: str | None = None
    ) -> PaymentCollection | None:
        """The collection made with this key if one is given, else the cart's live collection."""

    def list_collections(
        self,
        *,
        ids: Sequence[str] | None = None,
        status: CollectionStatus | None = None,
        cart_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[PaymentCollection]:
        """Collections matching every given filter, oldest first."""

    def list_sessions(
        self,
        *,
        ids: Sequence[str] | None = None,
        collection_id: str | None = None,
        provider_id: str | None = None,
        status: SessionStatus | None = None,
    ) -> list[PaymentSession]:
        """Sessions matching every given filter, oldest first."""

    def list_payments(
        self,
        *,
        ids: Sequence[str] | None = None,
        collection_id: str | None = None,
        session_id: str | None = None,
        provider_id: str | None = None,
    ) -> list[Payment]:
        """Payments (with captures and refunds) matching every given filter, oldest first."""

    def list_uncaptured_authorizations(
        self,
        *,
        authorized_before: datetime,
        provider_ids: Sequence[str],
        limit: int,
        after_id: str | None = None,
    ) -> list[Payment]:
        """Payments not canceled and without any capture (not even a pending one), created
        (authorized) before `authorized_before` at one of `provider_ids`, in id order: at most
        `limit` of them, those whose id sorts after `after_id` when it is given."""

    def save_collection(
        self, before: PaymentCollection | None, after: PaymentCollection | None
    ) -> None:
        """Store the difference between two versions of an aggregate.

        `before` None inserts `after`; `after` None deletes `before` with everything in it.
        """

    def add_refund_reasons(self, reasons: Sequence[RefundReason]) -> None:
        """Insert refund reasons (`DuplicateKey` when a code exists)."""

    def list_refund_reasons(
        self, *, ids: Sequence[str] | None = None, codes: Sequence[str] | None = None
    ) -> list[RefundReason]:
        """Refund reasons matching the filters, oldest first."""

    def add_account_holder(self, holder: AccountHolder) -> None:
        """Insert an account holder (`DuplicateKey` when provider and customer exist)."""

    def find_account_holder(self, provider_id: str, customer_id: str) -> AccountHolder | None:
        """The holder of a customer at a provider."""

    def get_account_holder(self, holder_id: str) -> AccountHolder | None:
        """The holder with this id."""

    def provider_states(self) -> list[PaymentProviderInfo]:
        """Every provider whose enabled flag was ever set (others are enabled)."""

    def provider_enabled(self, provider_id: str) -> bool | None:
        """Whether a provider is enabled; None when its flag was never set (enabled)."""

    def set_provider_enabled(self, provider_id: str, is_enabled: bool) -> None:
        """Enable or disable a provider."""


class PaymentStore(Protocol):
    """Opens transactions; one store per module, closed with it."""

    def read(self) -> AbstractContextManager[PaymentRepository]:
        """A read-only transaction over a consistent snapshot."""

    def write(self) -> AbstractContextManager[PaymentRepository]:
        """A write transaction: commits when the block ends, rolls back on an exception.

        Raises:
            DuplicateKey: an insert hit a unique key (the transaction was rolled back).
        """

    def hold_lock(self, name: str) -> AbstractContextManager[None]:
        """Hold the lock `name` until the block ends.

        One holder at a time among every user of the same database, in this process or
        another; a holder that dies lets the next one in.
        """

    def close(self) -> None:
        """Release every connection."""
