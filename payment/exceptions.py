"""Every error the payment module raises, in one tree.

```
PaymentError
├── NotFound (also LookupError)
│   └── ProviderNotFound
├── InvalidAmount (also ValueError)
├── InvalidCurrency (also ValueError)
├── InvalidData (also ValueError)
├── CartNotEligible (also ValueError)
├── PaymentNotAuthorized
│   └── PaymentActionRequired
├── PaymentCanceled
├── PaymentAlreadyAuthorized
├── PaymentAlreadyCaptured
├── CaptureExceedsAuthorized
├── RefundExceedsCaptured
├── ProviderDisabled
├── ProviderError
└── WebhookSignatureError
```

Each error carries the ids and amounts involved as attributes. Messages and attributes never hold
card numbers, provider secrets or raw webhook bodies: only ids, statuses, codes and amounts.
Errors survive `pickle` (a durable run may store the error that failed it).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = [
    "CaptureExceedsAuthorized",
    "CartNotEligible",
    "InvalidAmount",
    "InvalidCurrency",
    "InvalidData",
    "NotFound",
    "PaymentActionRequired",
    "PaymentAlreadyAuthorized",
    "PaymentAlreadyCaptured",
    "PaymentCanceled",
    "PaymentError",
    "PaymentNotAuthorized",
    "ProviderDisabled",
    "ProviderError",
    "ProviderNotFound",
    "RefundExceedsCaptured",
    "WebhookSignatureError",
]


def _restore(cls: type[PaymentError], args: tuple[Any, ...], state: dict[str, Any]) -> PaymentError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class PaymentError(Exception):
    """The root of every error the payment module raises.

    Args:
        message: A sentence for people; the attributes carry the same facts for programs.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class NotFound(PaymentError, LookupError):
    """No record of that kind has that id.

    Args:
        entity: The record kind, e.g. ``"Payment"``.
        entity_id: The id that was looked up.
    """

    def __init__(self, entity: str, entity_id: str) -> None:
        super().__init__(f"{entity} with id {entity_id!r} was not found")
        self.entity = entity
        self.entity_id = entity_id


class ProviderNotFound(NotFound):
    """No payment provider with that id is registered in this module.

    Args:
        provider_id: The unknown provider id, e.g. ``"pp_stripe"``.
    """

    def __init__(self, provider_id: str) -> None:
        super().__init__("PaymentProvider", provider_id)
        self.provider_id = provider_id


class InvalidAmount(PaymentError, ValueError):
    """An amount is of the wrong type, not finite, out of range, or not allowed here.

    Args:
        message: What is wrong with it.
        amount: The amount once parsed, when it could be parsed.
        entity_id: The record the amount was meant for, when there is one.
    """

    def __init__(
        self, message: str, *, amount: Decimal | None = None, entity_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.amount = amount
        self.entity_id = entity_id


class InvalidCurrency(PaymentError, ValueError):
    """A currency code is unknown, not money (an ISO X-code), or not the one expected.

    Args:
        currency_code: The code that was given ("" when it was not a 3-letter string).
        message: Why it is refused.
        expected: The currency required here, when a specific one is.
    """

    def __init__(self, currency_code: str, message: str, *, expected: str | None = None) -> None:
        super().__init__(message)
        self.currency_code = currency_code
        self.expected = expected


class InvalidData(PaymentError, ValueError):
    """A data, context or metadata value cannot be stored (not a JSON object, or malformed).

    Args:
        field: The argument that is malformed, e.g. ``"data"``.
        reason: What is wrong with it (never its content).
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field} is malformed: {reason}")
        self.field = field
        self.reason = reason


class CartNotEligible(PaymentError, ValueError):
    """A cart cannot be paid (completed, or it already has a live payment collection).

    Args:
        cart_id: The cart.
        reason: The sentence shown to people, e.g. "Cart c_1 already has a payment collection".
    """

    def __init__(self, cart_id: str, reason: str) -> None:
        super().__init__(reason)
        self.cart_id = cart_id
        self.reason = reason


class PaymentNotAuthorized(PaymentError):
    """The provider did not authorize the session (declined, pending, or needs more).

    Args:
        session_id: The payment session.
        status: The session status the provider's answer set, e.g. ``"error"``.
        message: Overrides the default sentence.
    """

    def __init__(self, session_id: str, status: str, message: str | None = None) -> None:
        super().__init__(
            message or f"Payment session {session_id} was not authorized (status {status})"
        )
        self.session_id = session_id
        self.status = status


class PaymentActionRequired(PaymentNotAuthorized):
    """The customer must act (3-D Secure, a redirect) before the session can be authorized.

    Args:
        session_id: The payment session.
        action: What the provider asks for (e.g. a redirect URL), as the provider described it.
    """

    def __init__(self, session_id: str, action: Mapping[str, Any] | None = None) -> None:
        super().__init__(session_id, "requires_more", "More information is required for payment")
        self.action: dict[str, Any] = dict(action or {})


class PaymentCanceled(PaymentError):
    """The payment or its collection was canceled: it can no longer move money.

    Args:
        payment_id: The canceled payment, when the operation was on a payment.
        payment_collection_id: The canceled collection, when the operation was on a collection.
    """

    def __init__(
        self, *, payment_id: str | None = None, payment_collection_id: str | None = None
    ) -> None:
        what = (
            f"Payment {payment_id}" if payment_id else f"Payment collection {payment_collection_id}"
        )
        super().__init__(f"{what} is canceled")
        self.payment_id = payment_id
        self.payment_collection_id = payment_collection_id


class PaymentAlreadyAuthorized(PaymentError):
    """A session that holds a live authorization cannot be changed or deleted: cancel it first.

    Args:
        session_id: The session.
        payment_id: Its live payment.
    """

    def __init__(self, session_id: str, payment_id: str) -> None:
        super().__init__(
            f"Payment session {session_id} is authorized (payment {payment_id}): cancel the "
            "payment first"
        )
        self.session_id = session_id
        self.payment_id = payment_id


class PaymentAlreadyCaptured(PaymentError):
    """Money was captured (or a capture is in flight): cancel is refused, refund instead.

    Args:
        payment_id: The payment.
        captured_amount: What is captured or being captured.
    """

    def __init__(self, payment_id: str, captured_amount: Decimal) -> None:
        super().__init__(
            f"Payment {payment_id} has captures ({captured_amount}): refund it instead"
        )
        self.payment_id = payment_id
        self.captured_amount = captured_amount


class CaptureExceedsAuthorized(PaymentError):
    """A capture asks for more than the authorization has left.

    Args:
        payment_id: The payment.
        requested: The amount asked for.
        available: Authorized minus captured minus pending captures.
    """

    def __init__(self, payment_id: str, requested: Decimal, available: Decimal) -> None:
        super().__init__(
            f"Cannot capture {requested} on payment {payment_id}: {available} is left to capture"
        )
        self.payment_id = payment_id
        self.requested = requested
        self.available = available


class RefundExceedsCaptured(PaymentError):
    """A refund asks for more than was captured and not yet refunded.

    Args:
        payment_id: The payment.
        requested: The amount asked for (the rest, when no amount was given).
        available: Captured minus refunded minus pending refunds.
    """

    def __init__(self, payment_id: str, requested: Decimal, available: Decimal) -> None:
        super().__init__(
            f"Cannot refund {requested} on payment {payment_id}: {available} is left to refund"
        )
        self.payment_id = payment_id
        self.requested = requested
        self.available = available


class ProviderDisabled(PaymentError):
    """The provider is registered but disabled: it takes no new sessions or authorizations.

    Args:
        provider_id: The provider.
    """

    def __init__(self, provider_id: str) -> None:
        super().__init__(f"Payment provider {provider_id} is disabled")
        self.provider_id = provider_id


class ProviderError(PaymentError):
    """The provider gave no usable answer (network, timeout, bad request, refused operation).

    A decline is not a `ProviderError`: it is an answer (status ``error``).

    Args:
        provider_id: The provider.
        code: The provider's own error code, e.g. ``"timeout"``.
        retryable: Whether the same call (same idempotency key) may succeed later.
        message: A sentence without secrets.
    """

    def __init__(self, provider_id: str, code: str, *, retryable: bool, message: str = "") -> None:
        detail = f": {message}" if message else ""
        super().__init__(f"Payment provider {provider_id} failed with {code!r}{detail}")
        self.provider_id = provider_id
        self.code = code
        self.retryable = retryable


class WebhookSignatureError(PaymentError):
    """A webhook's signature is missing, malformed, wrong or stale: it was not processed.

    Args:
        provider_id: The provider the webhook claims to come from.
        reason: Which check failed (never the body or the secret).
    """

    def __init__(self, provider_id: str, reason: str) -> None:
        super().__init__(f"Webhook for {provider_id} rejected: {reason}")
        self.provider_id = provider_id
        self.reason = reason
