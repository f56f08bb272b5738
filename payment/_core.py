"""What every part of `PaymentModule` shares: the store, the providers, ids, the clock.

Provider calls go through `ModuleCore._call`, which is only ever used outside a transaction:
a provider can be slow, and a row lock held across a network call would stall every other
operation on the collection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from payment._secrets import secret_fields
from payment.domain import Payment, PaymentCollection, PaymentSession
from payment.exceptions import (
    InvalidData,
    NotFound,
    PaymentError,
    ProviderDisabled,
    ProviderError,
    ProviderNotFound,
)
from payment.ids import IdFactory
from payment.providers.base import (
    PaymentProvider,
    ProviderContext,
    ProviderCustomer,
    ProviderInput,
    authorization_window,
)
from payment.repository import PaymentRepository, PaymentStore

__all__ = ["MAX_KEY_LENGTH", "ModuleCore", "aware_instant", "check_key"]

R = TypeVar("R")
T = TypeVar("T")

MAX_KEY_LENGTH = 255
"""The longest idempotency key (and cart id) the schema stores."""


def check_key(value: str | None, field: str = "idempotency_key") -> str | None:
    """Return `value` if it is None or a non-empty string of at most `MAX_KEY_LENGTH`.

    Raises:
        InvalidData: anything else.
    """
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_KEY_LENGTH:
        raise InvalidData(field, f"must be a non-empty string of at most {MAX_KEY_LENGTH} chars")
    return value


def aware_instant(value: object, field: str) -> datetime:
    """`value` as an aware instant in UTC.

    Raises:
        InvalidData: not a datetime, or a naive one (whose local time would it be?).
    """
    if not isinstance(value, datetime):
        raise InvalidData(field, f"expected a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidData(field, "has no time zone: give an aware datetime (tzinfo=UTC)")
    return value.astimezone(UTC)


E = TypeVar("E", bound=Enum)


def enum_filter(kind: type[E], value: E | str | None, field: str = "status") -> E | None:
    """A list filter's enum value (None: no filter).

    Raises:
        InvalidData: a value that is not one of `kind`'s, naming the allowed ones.
    """
    if value is None or isinstance(value, kind):
        return value
    try:
        return kind(value)
    except (ValueError, TypeError):
        allowed = [member.value for member in kind]
        raise InvalidData(field, f"expected one of {allowed}") from None


def list_arg(value: Any, field: str) -> list[Any]:
    """A list argument's items (a list or a tuple; not a string or a mapping).

    Raises:
        InvalidData: anything else.
    """
    if isinstance(value, (list, tuple)):
        return list(value)
    raise InvalidData(field, f"expected a list, not {type(value).__name__}")


def id_list(value: Any, field: str) -> list[str]:
    """One id or a list of ids, deduplicated and sorted (locks are taken in id order).

    Raises:
        InvalidData: an id that is not a string, or a value that is neither.
    """
    ids = [value] if isinstance(value, str) else list_arg(value, field)
    if not all(isinstance(i, str) for i in ids):
        raise InvalidData(field, "expected ids as strings")
    return sorted(set(ids))


def _providers_by_id(providers: Iterable[PaymentProvider]) -> dict[str, PaymentProvider]:
    by_id: dict[str, PaymentProvider] = {}
    for provider in providers:
        if not provider.id.startswith("pp_"):
            raise ValueError(f"provider id {provider.id!r} must start with 'pp_'")
        if provider.id in by_id:
            raise ValueError(f"two providers share the id {provider.id!r}")
        by_id[provider.id] = provider
    return by_id


def _customer(context: Mapping[str, Any]) -> ProviderCustomer | None:
    customer = context.get("customer")
    if not isinstance(customer, Mapping) or not isinstance(customer.get("id"), str):
        return None
    email = customer.get("email")
    return ProviderCustomer(customer["id"], email if isinstance(email, str) else None)


class ModuleCore:
    """The state and helpers `PaymentModule`'s parts share.

    Args:
        store: Opens the transactions.
        providers: The registered providers (ids ``pp_...``, unique).
        ids: Makes record ids (a fresh `IdFactory` by default).
        clock: The current time, timezone-aware (UTC now by default).

    Raises:
        ValueError: a provider id does not start with ``pp_`` or is registered twice, or a
            provider's ``authorization_window`` is neither None nor a positive `timedelta`.
    """

    def __init__(
        self,
        store: PaymentStore,
        providers: Iterable[PaymentProvider],
        *,
        ids: IdFactory | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._store = store
        self._providers = _providers_by_id(providers)
        self._secret_fields = secret_fields(self._providers.values())
        self._windows: dict[str, timedelta | None] = {
            pid: authorization_window(provider) for pid, provider in self._providers.items()
        }
        self._ids = ids or IdFactory()
        self._clock = clock or (lambda: datetime.now(UTC))

    def _session_lock(self, session_id: str) -> AbstractContextManager[None]:
        """The lock every caller of one session, in any process, takes around its provider call."""
        return self._store.hold_lock(f"session:{session_id}")

    def _registered(self, provider_id: str) -> PaymentProvider:
        if not isinstance(provider_id, str):
            raise InvalidData("provider_id", f"expected a string, not {type(provider_id).__name__}")
        try:
            return self._providers[provider_id]
        except KeyError:
            raise ProviderNotFound(provider_id) from None

    def _enabled(self, repo: PaymentRepository, provider_id: str) -> PaymentProvider:
        provider = self._registered(provider_id)
        if repo.provider_enabled(provider_id) is False:
            raise ProviderDisabled(provider_id)
        return provider

    def _call(self, provider_id: str, method: Callable[[R], T], record: R) -> T:
        """Call a provider method; anything but a `PaymentError` becomes a `ProviderError`."""
        try:
            return method(record)
        except PaymentError:
            raise
        except Exception as error:  # a provider bug must not escape as an unknown type
            raise ProviderError(
                provider_id, "unexpected_error", retryable=False, message=type(error).__name__
            ) from error

    def _collection_of(
        self,
        repo: PaymentRepository,
        *,
        session_id: str | None = None,
        payment_id: str | None = None,
        lock: bool = False,
    ) -> PaymentCollection:
        """Load the aggregate holding a session or payment (locked when `lock`).

        Raises:
            NotFound: no such session or payment.
        """
        found = repo.load_collection_of(session_id=session_id, payment_id=payment_id, lock=lock)
        if found is None:
            entity = ("PaymentSession", session_id) if session_id else ("Payment", payment_id)
            raise NotFound(entity[0], str(entity[1]))
        return found

    def _locked(self, repo: PaymentRepository, collection_id: str) -> PaymentCollection:
        """Load and lock a collection that was seen a moment ago (it may have been deleted)."""
        found = repo.load_collection(collection_id, lock=True)
        if found is None:
            raise NotFound("PaymentCollection", collection_id)
        return found

    def _context(
        self,
        repo: PaymentRepository,
        session: PaymentSession,
        idempotency_key: str,
        extra: Mapping[str, Any] | None = None,
    ) -> ProviderContext:
        """The provider context of a call about `session` (customer and holder from its context)."""
        context = {**session.context, **extra} if extra else session.context
        holder_id = context.get("account_holder_id")
        holder = repo.get_account_holder(holder_id) if isinstance(holder_id, str) else None
        return ProviderContext(idempotency_key, session.id, _customer(context), holder, context)

    def _session_input(
        self,
        repo: PaymentRepository,
        session: PaymentSession,
        idempotency_key: str,
        extra: Mapping[str, Any] | None = None,
    ) -> ProviderInput:
        """The input of a provider call about a session that has no payment yet."""
        context = self._context(repo, session, idempotency_key, extra)
        return ProviderInput(session.data, context, session.amount, session.currency_code)

    def _payment_input(
        self,
        repo: PaymentRepository,
        collection: PaymentCollection,
        payment: Payment,
        idempotency_key: str,
        amount: Decimal | None = None,
    ) -> ProviderInput:
        """The input of a provider call about a payment (`amount` defaults to the payment's)."""
        session = collection.session(payment.payment_session_id)
        context = self._context(repo, session, idempotency_key)
        value = payment.amount if amount is None else amount
        return ProviderInput(payment.data, context, value, payment.currency_code)

    def _send(self, method: str, calls: Iterable[tuple[str, ProviderInput]]) -> None:
        """Call `method` of each provider in turn (outside any transaction)."""
        for provider_id, record in calls:
            provider = self._registered(provider_id)
            self._call(provider_id, getattr(provider, method), record)
