"""`PaymentModule`: the payment service, one per application, built by `payment.bootstrap`.

Method names mirror Medusa's Payment Module in snake_case. Every method returns immutable
domain snapshots (a collection with its sessions and payments, a payment with its captures and
refunds), never live database objects. Methods that move money or create records accept an
idempotency key that reaches the provider unchanged on every retry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from attrs import frozen

from payment._collections import CollectionMethods
from payment._core import check_key, list_arg
from payment._payments import PaymentMethods
from payment._sessions import SessionMethods
from payment.domain import AccountHolder, PaymentProviderInfo, RefundReason
from payment.exceptions import InvalidData, NotFound
from payment.providers.base import (
    AccountHolderInput,
    PaymentProvider,
    ProviderContext,
    ProviderCustomer,
    SupportsAccountHolders,
    Webhook,
    WebhookAction,
)
from payment.repository import DuplicateKey, PaymentRepository

__all__ = ["NewRefundReason", "PaymentModule"]


@frozen
class NewRefundReason:
    """One item of `PaymentModule.create_refund_reasons` (a mapping with these keys works).

    Attributes:
        label: Shown to people, e.g. "Customer return".
        code: Unique, stable, e.g. ``"return"``; creating an existing code returns it.
        description: Longer text.
    """

    label: str
    code: str
    description: str | None = None


def _as_reason(item: NewRefundReason | Mapping[str, Any]) -> NewRefundReason:
    try:
        reason = item if isinstance(item, NewRefundReason) else NewRefundReason(**item)
    except TypeError:
        raise InvalidData("reasons", "an item has unexpected or missing keys") from None
    if not all(isinstance(v, str) and v for v in (reason.label, reason.code)):
        raise InvalidData("reasons", "label and code must be non-empty strings")
    if reason.description is not None and not isinstance(reason.description, str):
        raise InvalidData("reasons", "description must be a string")
    return reason


class PaymentModule(CollectionMethods, SessionMethods, PaymentMethods):
    """The payment service (see the module doc and spec §3).

    Build it with `payment.bootstrap.make_payment_module`; close it with `close()` or use it as
    a context manager. Thread-safe: each method opens its own transactions.

    Args:
        store: The storage (`payment.adapters.sqlalchemy.SqlPaymentStore`).
        providers: The payment providers, by their ``pp_...`` ids.
        ids: Makes record ids (optional).
        clock: The current time, timezone-aware (optional).
    """

    def provider(self, provider_id: str) -> PaymentProvider:
        """Return a registered, enabled provider.

        Raises:
            ProviderNotFound: not registered.
            ProviderDisabled: registered but disabled.
        """
        with self._store.read() as repo:
            return self._enabled(repo, provider_id)

    def list_payment_providers(
        self, *, is_enabled: bool | None = None
    ) -> list[PaymentProviderInfo]:
        """The registered providers, by id, optionally only the enabled or disabled ones."""
        with self._store.read() as repo:
            states = {state.id: state.is_enabled for state in repo.provider_states()}
        infos = [PaymentProviderInfo(pid, states.get(pid, True)) for pid in sorted(self._providers)]
        return [info for info in infos if is_enabled is None or info.is_enabled is is_enabled]

    def enable_provider(self, provider_id: str) -> PaymentProviderInfo:
        """Let a provider take new sessions and authorizations again.

        Raises:
            ProviderNotFound: not registered.
        """
        return self._set_enabled(provider_id, True)

    def disable_provider(self, provider_id: str) -> PaymentProviderInfo:
        """Stop a provider from taking new sessions and authorizations.

        Payments it already holds can still be captured, refunded and canceled.

        Raises:
            ProviderNotFound: not registered.
        """
        return self._set_enabled(provider_id, False)

    def _set_enabled(self, provider_id: str, is_enabled: bool) -> PaymentProviderInfo:
        self._registered(provider_id)
        with self._store.write() as repo:
            repo.set_provider_enabled(provider_id, is_enabled)
        return PaymentProviderInfo(provider_id, is_enabled)

    def create_account_holder(
        self,
        provider_id: str,
        customer_id: str,
        email: str | None,
        data: Mapping[str, Any] | None = None,
    ) -> AccountHolder:
        """Return the customer's holder at the provider, creating it there only when missing.

        The provider call's idempotency key is the customer id. Providers without account
        holders get a local holder with no external id.

        Raises:
            ProviderNotFound, ProviderDisabled: the provider.
            InvalidData: a malformed customer id or data.
            ProviderError: the provider failed (nothing is stored).
        """
        check_key(customer_id, "customer_id")
        with self._store.read() as repo:
            found = repo.find_account_holder(provider_id, customer_id)
            if found is not None:
                return found
            provider = self._enabled(repo, provider_id)
        holder = self._new_holder(provider, customer_id, email, data)
        try:
            with self._store.write() as repo:
                repo.add_account_holder(holder)
            return holder
        except DuplicateKey:  # a concurrent call created it first: same provider key, same holder
            return self.retrieve_account_holder(provider_id, customer_id)

    def _new_holder(
        self,
        provider: PaymentProvider,
        customer_id: str,
        email: str | None,
        data: Mapping[str, Any] | None,
    ) -> AccountHolder:
        holder_id, now = self._ids.new("AccountHolder"), self._clock()
        if not isinstance(provider, SupportsAccountHolders):
            return AccountHolder(holder_id, provider.id, customer_id, email, now, data=data)
        record = AccountHolderInput(
            ProviderCustomer(customer_id, email), ProviderContext(customer_id), data
        )
        output = self._call(provider.id, provider.create_account_holder, record)
        return AccountHolder(
            holder_id, provider.id, customer_id, email, now, output.external_id, output.data
        )

    def retrieve_account_holder(self, provider_id: str, customer_id: str) -> AccountHolder:
        """Return the customer's holder at the provider.

        Raises:
            NotFound: there is none.
        """
        with self._store.read() as repo:
            found = repo.find_account_holder(provider_id, customer_id)
        if found is None:
            raise NotFound("AccountHolder", f"{provider_id}:{customer_id}")
        return found

    def create_refund_reasons(
        self, reasons: Sequence[NewRefundReason | Mapping[str, Any]]
    ) -> list[RefundReason]:
        """Create refund reasons; a code that exists returns the existing reason unchanged.

        Returns:
            The reasons, in the order given.

        Raises:
            InvalidData: a malformed item (nothing is created).
        """
        wanted = [_as_reason(item) for item in list_arg(reasons, "reasons")]
        try:
            with self._store.write() as repo:
                return self._insert_reasons(repo, wanted)
        except DuplicateKey:  # a concurrent call created some of them: read them back
            with self._store.write() as repo:
                return self._insert_reasons(repo, wanted)

    def _insert_reasons(
        self, repo: PaymentRepository, wanted: list[NewRefundReason]
    ) -> list[RefundReason]:
        by_code = {r.code: r for r in repo.list_refund_reasons(codes=[w.code for w in wanted])}
        new = []
        for item in wanted:
            if item.code not in by_code:
                reason = RefundReason(
                    self._ids.new("RefundReason"), item.label, item.code, self._clock(),
                    item.description,
                )  # fmt: skip
                by_code[item.code] = reason
                new.append(reason)
        repo.add_refund_reasons(new)
        return [by_code[item.code] for item in wanted]

    def list_refund_reasons(self) -> list[RefundReason]:
        """Every refund reason, oldest first."""
        with self._store.read() as repo:
            return repo.list_refund_reasons()

    def get_webhook_action_and_data(
        self, provider_id: str, raw_body: bytes | str, headers: Mapping[str, str]
    ) -> WebhookAction:
        """Verify a webhook's signature, then return what it means (nothing is changed).

        Works for disabled providers too: money they hold still moves.

        Args:
            provider_id: The provider the webhook's URL names.
            raw_body: The body exactly as received (bytes; text is UTF-8 encoded).
            headers: The request headers (any case).

        Raises:
            ProviderNotFound: not registered.
            InvalidData: headers that are not a mapping, or a body that is neither bytes nor text.
            WebhookSignatureError: missing, malformed, wrong or stale signature.
        """
        provider = self._registered(provider_id)
        if not isinstance(headers, Mapping):
            raise InvalidData("headers", "expected a mapping of header names to values")
        if not isinstance(raw_body, (str, bytes, bytearray, memoryview)):
            raise InvalidData("raw_body", "expected the body as bytes or text")
        body = raw_body.encode() if isinstance(raw_body, str) else bytes(raw_body)
        webhook = Webhook(body, headers)
        return self._call(provider_id, provider.get_webhook_action_and_data, webhook)

    def close(self) -> None:
        """Release every database connection."""
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
