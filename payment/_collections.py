"""The payment-collection methods of `PaymentModule`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from attrs import frozen

from payment._core import ModuleCore, check_key, enum_filter, id_list
from payment.domain import CollectionStatus, PaymentCollection
from payment.exceptions import CartNotEligible, InvalidData, NotFound
from payment.money import AmountInput
from payment.repository import DuplicateKey, PaymentRepository

__all__ = ["CollectionMethods", "NewPaymentCollection"]


@frozen
class NewPaymentCollection:
    """One item of `PaymentModule.create_payment_collections` (a mapping with these keys works).

    Attributes:
        currency_code: ISO 4217, any case.
        amount: What the collection must collect (> 0).
        metadata: Free JSON for the caller.
        cart_id: The cart this collection pays; a cart has at most one live collection.
        idempotency_key: A repeated create with this key returns the first collection.
    """

    currency_code: str
    amount: AmountInput
    metadata: Mapping[str, Any] | None = None
    cart_id: str | None = None
    idempotency_key: str | None = None


def _as_new(item: NewPaymentCollection | Mapping[str, Any]) -> NewPaymentCollection:
    if isinstance(item, NewPaymentCollection):
        return item
    if not isinstance(item, Mapping):
        raise InvalidData("data", f"an item is a {type(item).__name__}, not a mapping")
    try:
        return NewPaymentCollection(**item)
    except TypeError:
        raise InvalidData("data", f"unexpected or missing keys: {sorted(item)}") from None


def _ids(collection_ids: str | Sequence[str]) -> list[str]:
    """One id or several, deduplicated and sorted (locks are always taken in id order)."""
    return id_list(collection_ids, "collection_ids")


def _cart_taken(cart_id: str) -> CartNotEligible:
    return CartNotEligible(cart_id, f"Cart {cart_id} already has a payment collection")


class CollectionMethods(ModuleCore):
    """Create, read, change, complete, cancel and delete payment collections."""

    def create_payment_collection(
        self,
        currency_code: str,
        amount: AmountInput,
        metadata: Mapping[str, Any] | None = None,
        cart_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> PaymentCollection:
        """Create a collection (the cart link is written in the same transaction).

        Args:
            currency_code: ISO 4217, any case.
            amount: What to collect (> 0), quantized to the currency.
            metadata: Free JSON for the caller.
            cart_id: The cart it pays; a cart never gets two collections that are not canceled.
            idempotency_key: A repeated call with this key returns the first collection.

        Returns:
            The new (or, for a repeated key, the existing) collection.

        Raises:
            InvalidCurrency, InvalidAmount, InvalidData: malformed arguments.
            CartNotEligible: the cart already has a live collection made with another key.
        """
        new = NewPaymentCollection(currency_code, amount, metadata, cart_id, idempotency_key)
        return self.create_payment_collections([new])[0]

    def create_payment_collections(
        self, data: Sequence[NewPaymentCollection | Mapping[str, Any]]
    ) -> list[PaymentCollection]:
        """Create several collections in one transaction (all or none).

        Args:
            data: `NewPaymentCollection` records or mappings with the same keys.

        Returns:
            The collections, in the order given.

        Raises:
            InvalidCurrency, InvalidAmount, InvalidData: a malformed item (nothing is created).
            CartNotEligible: a cart already has a live collection made with another key.
        """
        if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Sequence):
            raise InvalidData("data", "expected a list of NewPaymentCollection or mappings")
        drafts = [self._draft(_as_new(item)) for item in data]
        try:  # new keys and carts are the rule: insert, and let the unique keys catch the rest
            with self._store.write() as repo:
                for draft in drafts:
                    repo.save_collection(None, draft)
                return drafts
        except DuplicateKey:  # a repeated key, a taken cart, or a concurrent create's records
            with self._store.write() as repo:
                return [self._insert(repo, draft) for draft in drafts]

    def _draft(self, new: NewPaymentCollection) -> PaymentCollection:
        return PaymentCollection.create(
            collection_id=self._ids.new("PaymentCollection"),
            currency_code=new.currency_code,
            amount=new.amount,
            now=self._clock(),
            metadata=new.metadata,
            cart_id=check_key(new.cart_id, "cart_id"),
            idempotency_key=check_key(new.idempotency_key),
        )

    def _insert(self, repo: PaymentRepository, draft: PaymentCollection) -> PaymentCollection:
        if draft.idempotency_key is not None:
            found = repo.find_collection(idempotency_key=draft.idempotency_key)
            if found is not None:
                return found
        if draft.cart_id is not None and repo.find_collection(live_cart_id=draft.cart_id):
            raise _cart_taken(draft.cart_id)
        repo.save_collection(None, draft)
        return draft

    def update_payment_collections(
        self,
        collection_ids: str | Sequence[str],
        *,
        amount: AmountInput | None = None,
        currency_code: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[PaymentCollection]:
        """Change the amount, currency or metadata of collections (None keeps a value).

        Args:
            collection_ids: One id or several.
            amount: The new amount; never below what is already authorized.
            currency_code: The new currency; only while a collection has no session.
            metadata: Replaces the metadata.

        Returns:
            The updated collections, in id order.

        Raises:
            NotFound: an id is unknown (nothing is changed).
            PaymentCanceled: a collection is canceled.
            InvalidAmount, InvalidCurrency, InvalidData: refused values.
        """
        with self._store.write() as repo:
            updated = []
            for collection_id in _ids(collection_ids):
                before = self._locked(repo, collection_id)
                after = before.updated(
                    amount=amount, currency_code=currency_code, metadata=metadata
                )
                repo.save_collection(before, after)
                updated.append(after)
            return updated

    def retrieve_payment_collection(self, collection_id: str) -> PaymentCollection:
        """Return a collection with its sessions and payments.

        Raises:
            NotFound: unknown id.
        """
        with self._store.read() as repo:
            found = repo.load_collection(collection_id)
        if found is None:
            raise NotFound("PaymentCollection", collection_id)
        return found

    def retrieve_payment_collection_for_cart(self, cart_id: str) -> PaymentCollection:
        """Return the cart's collection that is not canceled.

        Raises:
            NotFound: the cart has none (``entity`` is ``"PaymentCollection for cart"``).
        """
        with self._store.read() as repo:
            found = repo.find_collection(live_cart_id=cart_id)
        if found is None:
            raise NotFound("PaymentCollection for cart", cart_id)
        return found

    def list_payment_collections(
        self,
        *,
        ids: Sequence[str] | None = None,
        status: CollectionStatus | str | None = None,
        cart_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[PaymentCollection]:
        """Collections matching every given filter, oldest first.

        Args:
            ids: Only these ids.
            status: Only this status.
            cart_id: Only the collections (canceled ones too) of this cart.
            limit: At most this many.
            offset: Skip this many first.
        """
        wanted = enum_filter(CollectionStatus, status)
        with self._store.read() as repo:
            return repo.list_collections(
                ids=ids, status=wanted, cart_id=cart_id, limit=limit, offset=offset
            )

    def complete_payment_collections(
        self, collection_ids: str | Sequence[str]
    ) -> list[PaymentCollection]:
        """Mark collections completed (``completed_at``; the first time is kept).

        Returns:
            The collections, in id order.

        Raises:
            NotFound: an id is unknown (nothing is changed).
            PaymentCanceled: a collection is canceled.
        """
        with self._store.write() as repo:
            done = []
            for collection_id in _ids(collection_ids):
                before = self._locked(repo, collection_id)
                after = before.completed(self._clock())
                repo.save_collection(before, after)
                done.append(after)
            return done

    def cancel_payment_collection(self, collection_id: str) -> PaymentCollection:
        """Cancel a collection: void its authorizations and open sessions at the providers.

        Canceling twice returns the canceled collection. The cart may then get a new one.

        Returns:
            The canceled collection.

        Raises:
            NotFound: unknown id.
            PaymentAlreadyCaptured: a payment has a capture (refund it instead).
            ProviderError: a provider refused to void (nothing is marked canceled).
        """
        collection = self.retrieve_payment_collection(collection_id)
        if collection.canceled_at is not None:
            return collection
        collection.ensure_cancelable()
        self._void_at_providers(collection)
        with self._store.write() as repo:
            before = self._locked(repo, collection_id)
            after = before.canceled(self._clock())
            repo.save_collection(before, after)
            return after

    def _void_at_providers(self, collection: PaymentCollection) -> None:
        with self._store.read() as repo:
            calls = [
                (p.provider_id, self._payment_input(repo, collection, p, f"{p.id}:cancel"))
                for p in collection.voidable_payments()
            ]
            calls += [
                (s.provider_id, self._session_input(repo, s, f"{s.id}:cancel"))
                for s in collection.voidable_sessions()
            ]
        self._send("cancel_payment", calls)

    def delete_payment_collections(self, collection_ids: str | Sequence[str]) -> None:
        """Delete collections with their sessions (discarded at the providers too).

        Unknown ids are skipped, so a compensation may delete twice.

        Raises:
            PaymentAlreadyAuthorized: a collection holds a live authorization (cancel first).
            PaymentAlreadyCaptured: a collection holds captured money (refund first).
        """
        ids = _ids(collection_ids)
        with self._store.read() as repo:
            found = [c for c in map(repo.load_collection, ids) if c is not None]
            for collection in found:
                collection.ensure_deletable()
            calls = [
                (s.provider_id, self._session_input(repo, s, f"{s.id}:delete"))
                for collection in found
                for s in collection.voidable_sessions()
            ]
        self._send("delete_payment", calls)
        with self._store.write() as repo:
            for collection_id in ids:
                before = repo.load_collection(collection_id, lock=True)
                if before is not None:
                    before.ensure_deletable()
                    repo.save_collection(before, None)
