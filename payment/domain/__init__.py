"""The payment domain: immutable records, their statuses, and the rules that keep money right.

Pure Python: no SQLAlchemy, no flowkit. A `PaymentCollection` is the aggregate: it holds its
sessions and payments (each payment its captures and refunds), and every rule is a method that
returns a new aggregate with its amounts and status recomputed. The service loads an aggregate
under a lock, applies a rule, and stores the difference.

Money invariants every aggregate keeps (the rules raise before they would break one):
captured + pending captures ≤ authorized; refunded + pending refunds ≤ captured; no capture on a
canceled payment; no cancel of a payment with a capture.
"""

from payment.domain._json import FrozenJson, freeze_json, thaw_json
from payment.domain.collection import PaymentCollection
from payment.domain.records import (
    AccountHolder,
    Capture,
    CollectionStatus,
    OperationState,
    Payment,
    PaymentProviderInfo,
    PaymentSession,
    ProviderStatus,
    Refund,
    RefundReason,
    SessionStatus,
)

__all__ = [
    "AccountHolder",
    "Capture",
    "CollectionStatus",
    "FrozenJson",
    "OperationState",
    "Payment",
    "PaymentCollection",
    "PaymentProviderInfo",
    "PaymentSession",
    "ProviderStatus",
    "Refund",
    "RefundReason",
    "SessionStatus",
    "freeze_json",
    "thaw_json",
]
