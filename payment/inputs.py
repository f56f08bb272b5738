"""The inputs and outputs of the payment steps and workflows (attrs classes, storable).

Every workflow and every public step also accepts a mapping with the same keys; `as_input` (one
conversion for all of them) converts it and refuses unknown or missing keys, and values of
another type, with `InvalidData`. `accepts_input` applies it to a step function.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from attrs import field, frozen

from payment._convert import accepts_input, as_input
from payment._core import aware_instant
from payment.domain import Payment
from payment.domain.cards import refuse_card_numbers
from payment.exceptions import InvalidData

__all__ = [
    "AuthorizationAttempt",
    "AuthorizePaymentSessionInput",
    "CancelPaymentCollectionInput",
    "CapturePaymentInput",
    "CreatePaymentCollectionForCartInput",
    "CreatePaymentSessionsInput",
    "MarkPaymentCollectionAsPaidInput",
    "RefundOutcome",
    "RefundPaymentInput",
    "ReleaseExpiredAuthorizationsInput",
    "SessionSpec",
    "accepts_input",
    "as_input",
    "check_seconds",
]


def _json(value: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict(value or {})


def _data(value: Mapping[str, Any] | None) -> dict[str, Any]:
    refuse_card_numbers(value, "data")
    return dict(value or {})


def _context(value: Mapping[str, Any] | None) -> dict[str, Any]:
    refuse_card_numbers(value, "context")
    return dict(value or {})


def _instant(value: datetime) -> datetime:
    return aware_instant(value, "authorized_before")


def check_seconds(value: object, field: str) -> int | float:
    """`value` if it is a duration in seconds as the payment inputs take one: a finite int or
    float greater than 0.

    Args:
        value: The duration.
        field: The input field it came from, named in the error.

    Raises:
        InvalidData: a bool, another type, NaN, an infinity, zero or a negative number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidData(field, f"expected seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidData(field, "expected a finite number of seconds > 0")
    return value


def _action_timeout(value: int | float | None) -> int | float | None:
    return None if value is None else check_seconds(value, "action_timeout")


@frozen
class CreatePaymentCollectionForCartInput:
    """Input of `create_payment_collection_for_cart_workflow`."""

    cart_id: str


@frozen
class CreatePaymentSessionsInput:
    """Input of `create_payment_sessions_workflow`: the provider and what it should see.

    `currency_code` is the currency the caller means to pay in (default: the collection's);
    another currency than the collection's is refused with `InvalidCurrency`.
    """

    payment_collection_id: str
    provider_id: str
    data: dict[str, Any] = field(factory=dict, converter=_data)
    context: dict[str, Any] = field(factory=dict, converter=_context)
    currency_code: str | None = None


@frozen
class AuthorizePaymentSessionInput:
    """Input of `authorize_payment_session_step`: the session id and extra provider context."""

    id: str
    context: dict[str, Any] = field(factory=dict, converter=_context)


@frozen
class CapturePaymentInput:
    """Input of `capture_payment_workflow` (amount None: everything left)."""

    payment_id: str
    amount: Decimal | int | str | None = None
    captured_by: str | None = None


@frozen
class RefundPaymentInput:
    """Input of `refund_payment_workflow` (amount None: everything captured and not refunded)."""

    payment_id: str
    amount: Decimal | int | str | None = None
    reason_id: str | None = None
    note: str | None = None


@frozen
class CancelPaymentCollectionInput:
    """Input of `cancel_payment_collection_workflow`."""

    payment_collection_id: str


@frozen
class MarkPaymentCollectionAsPaidInput:
    """Input of `mark_payment_collection_as_paid_workflow`."""

    payment_collection_id: str
    captured_by: str | None = None


@frozen
class SessionSpec:
    """What it takes to create a session again (compensation of a deletion)."""

    payment_collection_id: str
    provider_id: str
    currency_code: str
    amount: Decimal
    data: dict[str, Any] = field(factory=dict, converter=_data)
    context: dict[str, Any] = field(factory=dict, converter=_context)


@frozen
class AuthorizationAttempt:
    """The first authorization of a session in an accept-payment flow.

    Attributes:
        session_id: The session.
        payment: The payment when the provider authorized at once.
        waiting_for: `"customer"` (3-D Secure and the like: `action` says what to do) or
            `"provider"` (an answer comes by webhook); None when authorized.
        action: What the customer must do (the provider's next action).
        action_timeout: How long `await_payment_action_step` waits, in seconds from when the
            run parks, before the wait expires and the run is reverted (None: no deadline).

    Raises:
        InvalidData: an `action_timeout` that is not a finite number of seconds > 0.
    """

    session_id: str
    payment: Payment | None = None
    waiting_for: str | None = None
    action: dict[str, Any] = field(factory=dict, converter=_json)
    action_timeout: int | float | None = field(default=None, converter=_action_timeout)


@frozen
class ReleaseExpiredAuthorizationsInput:
    """Input of `release_expired_authorizations_workflow`.

    Attributes:
        authorized_before: Release what was authorized strictly before this instant (aware;
            stored in UTC).

    Raises:
        InvalidData: a naive datetime, or not a datetime.
    """

    authorized_before: datetime = field(converter=_instant)


@frozen
class RefundOutcome:
    """One item of `refund_payments_workflow`'s result.

    Attributes:
        payment_id: The payment.
        payment: The payment after the refund (None when it failed).
        error_type: The error's class name when it failed.
        error: The error's message when it failed.
    """

    payment_id: str
    payment: Payment | None = None
    error_type: str | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        """True when the refund was made."""
        return self.error is None
