"""The provider protocol: what the payment module asks a gateway, and the records it passes.

Every method takes one attrs record and returns one. A decline is an answer (`ProviderOutput`
with status ``error`` and the decline code in ``data``); a `ProviderError` means there was no
usable answer (network, timeout, bad request, refused operation) and says whether retrying the
same call, with the same idempotency key, can help. Amounts are `Decimal` in major units,
quantized to the currency (use `payment.money.to_minor_units` for gateways that want cents).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable

from attrs import field, frozen

from payment.domain import AccountHolder, FrozenJson, ProviderStatus
from payment.domain._json import EMPTY_JSON, freeze_context, freeze_data, freeze_json

__all__ = [
    "AccountHolderInput",
    "AccountHolderOutput",
    "PaymentAction",
    "PaymentProvider",
    "ProviderCall",
    "ProviderContext",
    "ProviderCustomer",
    "ProviderInput",
    "ProviderOutput",
    "ProviderStatus",
    "SupportsAccountHolders",
    "Webhook",
    "WebhookAction",
    "authorization_window",
]


def _freeze_action(value: object) -> FrozenJson | None:
    return None if value is None else freeze_json(value, "action")


def _headers(value: Mapping[str, str]) -> Mapping[str, str]:
    return {str(name).lower(): str(content) for name, content in value.items()}


@frozen
class ProviderCustomer:
    """The paying customer, as far as a provider needs to know them."""

    id: str
    email: str | None = None


@frozen
class ProviderContext:
    """Who and what a provider call is for.

    Attributes:
        idempotency_key: The same for every retry of one operation; a gateway must answer a
            repeated key with its first answer and move no money again.
        session_id: The payment session the call is about.
        customer: The customer, when the caller's context names one.
        account_holder: The customer's account holder at this provider, when known.
        extra: The rest of the caller's context (e.g. the customer's IP), as given.
    """

    idempotency_key: str
    session_id: str | None = None
    customer: ProviderCustomer | None = None
    account_holder: AccountHolder | None = None
    extra: FrozenJson = field(default=EMPTY_JSON, converter=freeze_context)


@frozen
class ProviderInput:
    """The input of every payment method of a provider.

    Attributes:
        data: The provider's own data for this payment (what it returned last time).
        context: Idempotency key, session, customer, account holder.
        amount: The amount of this operation (the capture or refund amount), if any.
        currency_code: Lower-case ISO 4217 code.
    """

    data: FrozenJson = field(converter=freeze_data)
    context: ProviderContext
    amount: Decimal | None = None
    currency_code: str | None = None


@frozen
class ProviderOutput:
    """A provider's answer.

    Attributes:
        status: Where the payment stands at the provider after the call.
        data: The provider's data to store and send back next time (never card numbers).
        action: What the customer must do, when the status is ``requires_more``.
        captured_amount: With status ``captured``, how much the provider holds captured for
            the payment (None: all of it), in major units.
    """

    status: ProviderStatus = field(converter=ProviderStatus)
    data: FrozenJson = field(default=EMPTY_JSON, converter=freeze_data)
    action: FrozenJson | None = field(default=None, converter=_freeze_action)
    captured_amount: Decimal | None = None


@frozen
class AccountHolderInput:
    """The input of `create_account_holder` (the idempotency key is the customer id)."""

    customer: ProviderCustomer
    context: ProviderContext
    data: FrozenJson = field(default=EMPTY_JSON, converter=freeze_data)


@frozen
class AccountHolderOutput:
    """A provider's record of a customer (e.g. a Stripe customer id as `external_id`)."""

    external_id: str
    data: FrozenJson = field(default=EMPTY_JSON, converter=freeze_data)


@frozen
class ProviderCall:
    """One call a provider received, as `TestProvider.calls` records it."""

    method: str
    idempotency_key: str | None
    input: object


@frozen
class Webhook:
    """A webhook request as it arrived: the raw body bytes and the headers (names lower-cased)."""

    raw_body: bytes
    headers: Mapping[str, str] = field(factory=dict, converter=_headers)


class PaymentAction(StrEnum):
    """What a verified webhook says happened."""

    AUTHORIZED = "authorized"
    CAPTURED = "captured"
    REFUNDED = "refunded"
    FAILED = "failed"
    PENDING = "pending"
    REQUIRES_MORE = "requires_more"
    CANCELED = "canceled"
    NOT_SUPPORTED = "not_supported"


@frozen
class WebhookAction:
    """The meaning of a verified webhook.

    Attributes:
        action: What happened.
        session_id: The payment session it is about, if any.
        amount: The amount it moved, if any.
        currency_code: The amount's currency, lower-case.
        event_id: The provider's event id, to process each event once.
    """

    action: PaymentAction = field(converter=PaymentAction)
    session_id: str | None = None
    amount: Decimal | None = None
    currency_code: str | None = None
    event_id: str | None = None


@runtime_checkable
class PaymentProvider(Protocol):
    """A payment gateway as the payment module sees it.

    `id` is ``pp_{name}`` (e.g. ``pp_stripe``). Each method may raise `ProviderError`; none
    may block on a lock the module holds (the module never calls one inside a transaction).

    Two attributes are optional (read with `getattr`, so older providers still fit):
    ``secret_fields``, the data keys kept out of workflow outputs, and
    ``authorization_window``, how long the provider holds an uncaptured authorization before
    it lapses (a positive `timedelta`; None, or no attribute: it never lapses). See
    `authorization_window`.
    """

    @property
    def id(self) -> str:
        """The provider id, ``pp_{name}``."""

    def initiate_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Create the provider's payment for a new session (key: the session id)."""

    def update_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Change the amount or data of a payment that is not authorized yet."""

    def delete_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Discard the provider's payment of a deleted session."""

    def authorize_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Ask for authorization; the status says the outcome (a decline is ``error``)."""

    def capture_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Capture `payment.amount` (partial captures are real) of an authorization."""

    def refund_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Refund `payment.amount` of what was captured."""

    def cancel_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Void an authorization (or an unauthorized payment) that has no capture."""

    def retrieve_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Return the provider's current view of the payment."""

    def get_payment_status(self, payment: ProviderInput) -> ProviderOutput:
        """Return the payment's current status at the provider."""

    def get_webhook_action_and_data(self, webhook: Webhook) -> WebhookAction:
        """Verify a webhook's signature, then parse it.

        Raises:
            WebhookSignatureError: missing, malformed, wrong or stale signature.
        """


@runtime_checkable
class SupportsAccountHolders(Protocol):
    """The optional account-holder part of a provider (customers saved at the gateway)."""

    def create_account_holder(self, holder: AccountHolderInput) -> AccountHolderOutput:
        """Create the customer at the provider (idempotent by the customer id key)."""


def authorization_window(provider: object) -> timedelta | None:
    """How long `provider` holds an uncaptured authorization before letting it lapse.

    Read from the provider's optional ``authorization_window`` attribute (Stripe: 7 days). The
    release of expired authorizations only ever touches payments at providers with a window.

    Args:
        provider: A payment provider.

    Returns:
        The window, or None when the provider's authorizations never lapse (or it says nothing).

    Raises:
        ValueError: the provider declares something that is neither None nor a positive
            `timedelta`.
    """
    window = getattr(provider, "authorization_window", None)
    if window is None:
        return None
    if not isinstance(window, timedelta) or window <= timedelta(0):
        name = getattr(provider, "id", type(provider).__name__)
        raise ValueError(
            f"provider {name!r}: authorization_window must be a positive timedelta or None, "
            f"not {window!r}"
        )
    return window
