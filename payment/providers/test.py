"""A scriptable gateway for tests and demos, driven by the session's data like card test numbers.

``data={"scenario": NAME, "times": N}`` at session creation picks the behaviour:

- ``approve`` (default): authorize answers ``authorized``.
- ``decline``: authorize answers ``error`` with ``decline_code`` in the data.
- ``requires_more``: authorize answers ``requires_more`` (3-D Secure) until
  `TestProvider.complete_action` is called for the session.
- ``pending_authorization``: authorize answers ``pending_authorization`` until a webhook
  made by `TestProvider.make_webhook` moves the payment.
- ``auto_capture``: authorize answers ``captured``.
- ``authorize_transient_error`` / ``capture_transient_error``: that method's first N calls
  (default 1) for the session raise a retryable `ProviderError`.
- ``timeout``: authorize raises ``ProviderError(code="timeout", retryable=True)`` (forever, or
  the first N calls).

The provider keeps a ledger per session (authorized, captured, refunded) and refuses what a
gateway would (capturing more than authorized, refunding more than captured, voiding a capture).
`calls` records every call; a repeated idempotency key replays the first answer and moves no
money. Thread-safe.
"""

from __future__ import annotations

import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar, cast

from attrs import define, frozen

from payment.domain import ProviderStatus
from payment.exceptions import InvalidData, ProviderError
from payment.money import normalize_currency, to_amount
from payment.providers import signing
from payment.providers.base import (
    AccountHolderInput,
    AccountHolderOutput,
    PaymentAction,
    ProviderCall,
    ProviderInput,
    ProviderOutput,
    Webhook,
    WebhookAction,
)

__all__ = ["DEFAULT_AUTHORIZATION_WINDOW", "SCENARIOS", "LedgerEntry", "TestProvider"]

DEFAULT_AUTHORIZATION_WINDOW = timedelta(days=7)
"""`TestProvider`'s authorization window unless told otherwise: Stripe's, for card payments."""

SCENARIOS = frozenset(
    {
        "approve",
        "decline",
        "requires_more",
        "pending_authorization",
        "auto_capture",
        "authorize_transient_error",
        "capture_transient_error",
        "timeout",
    }
)
"""The scenario names `TestProvider` understands."""

_FAILING_METHOD = {
    "authorize_transient_error": ("authorize_payment", "temporarily_unavailable"),
    "capture_transient_error": ("capture_payment", "temporarily_unavailable"),
    "timeout": ("authorize_payment", "timeout"),
}
_STICKY = frozenset(
    {
        ProviderStatus.AUTHORIZED,
        ProviderStatus.CAPTURED,
        ProviderStatus.CANCELED,
        ProviderStatus.ERROR,
    }
)
_ANSWERS = {
    "approve": ProviderStatus.AUTHORIZED,
    "decline": ProviderStatus.ERROR,
    "pending_authorization": ProviderStatus.PENDING_AUTHORIZATION,
    "auto_capture": ProviderStatus.CAPTURED,
}
_ZERO = Decimal(0)
T = TypeVar("T")


@frozen
class LedgerEntry:
    """What the test gateway holds for one session."""

    status: ProviderStatus
    amount: Decimal
    currency_code: str
    authorized: Decimal
    captured: Decimal
    refunded: Decimal


@define
class _Ledger:
    scenario: str
    amount: Decimal
    currency_code: str
    failures_left: int | None
    status: ProviderStatus = ProviderStatus.PENDING
    authorized: Decimal = _ZERO
    captured: Decimal = _ZERO
    refunded: Decimal = _ZERO
    action_completed: bool = False


class TestProvider:
    """``pp_test``: an in-memory gateway scripted by the session's ``scenario`` (see module doc).

    Args:
        secret: The webhook signing secret (random by default).
        tolerance_seconds: How old (or early) a webhook's signed timestamp may be.
        clock: Seconds since the epoch, for the webhook timestamps.
        authorization_window: How long an uncaptured authorization holds before it lapses,
            as `payment.providers.authorization_window` reads it: 7 days by default, Stripe's
            window for card payments, so tests see what production would; None for a gateway
            whose authorizations never lapse.
    """

    __test__ = False  # not a pytest test class
    id = "pp_test"
    signature_header = "flowkit-test-signature"

    def __init__(
        self,
        *,
        secret: str | None = None,
        tolerance_seconds: float = 300,
        clock: Callable[[], float] = time.time,
        authorization_window: timedelta | None = DEFAULT_AUTHORIZATION_WINDOW,
    ) -> None:
        self.authorization_window = authorization_window
        self._secret = secret or secrets.token_hex(16)
        self._tolerance = tolerance_seconds
        self._clock = clock
        self._lock = threading.RLock()
        self._ledgers: dict[str, _Ledger] = {}
        self._completed_elsewhere: set[str] = set()
        self._answers: dict[tuple[str, str], object] = {}
        self._calls: list[ProviderCall] = []
        self._events = itertools.count(1)

    @property
    def calls(self) -> tuple[ProviderCall, ...]:
        """Every call received so far, in order (replays included)."""
        with self._lock:
            return tuple(self._calls)

    def calls_to(self, method: str) -> list[ProviderCall]:
        """The calls received by one method, e.g. ``"capture_payment"``."""
        return [call for call in self.calls if call.method == method]

    def ledger(self, session_id: str) -> LedgerEntry:
        """What the gateway holds for a session.

        Raises:
            KeyError: the gateway never saw that session.
        """
        with self._lock:
            entry = self._ledgers[session_id]
            return LedgerEntry(
                entry.status, entry.amount, entry.currency_code,
                entry.authorized, entry.captured, entry.refunded,
            )  # fmt: skip

    def session_ids(self) -> list[str]:
        """Every session the gateway holds, in the order it first saw them."""
        with self._lock:
            return list(self._ledgers)

    def money(self) -> tuple[Decimal, Decimal]:
        """``(held, charged)`` over every session: authorized and not yet captured, and
        captured and not refunded. ``(0, 0)`` after a run that gave every cent back."""
        with self._lock:
            entries = list(self._ledgers.values())
        held = sum((e.authorized - e.captured for e in entries), _ZERO)
        charged = sum((e.captured - e.refunded for e in entries), _ZERO)
        return held, charged

    def complete_action(self, session_id: str) -> None:
        """The customer passed 3-D Secure: the next authorize of a ``requires_more`` session
        (with a new idempotency key) answers ``authorized``.

        A session this instance has not seen yet (another process initiated it, as the other
        servers of a real gateway would have) is remembered until it shows up.
        """
        with self._lock:
            entry = self._ledgers.get(session_id)
            if entry is None:
                self._completed_elsewhere.add(session_id)
            else:
                entry.action_completed = True

    def _handle(self, method: str, key: str | None, record: object, answer: Callable[[], T]) -> T:
        with self._lock:
            self._calls.append(ProviderCall(method, key, record))
            if key is not None and (method, key) in self._answers:
                return cast(T, self._answers[(method, key)])
            result = answer()  # errors are not remembered: a retry may succeed
            if key is not None:
                self._answers[(method, key)] = result
            return result

    def _error(self, code: str, message: str = "", *, retryable: bool = False) -> ProviderError:
        return ProviderError(self.id, code, retryable=retryable, message=message)

    def _session_id(self, payment: ProviderInput) -> str:
        session_id = payment.context.session_id
        if session_id is None:
            raise self._error("invalid_request", "the context has no session id")
        return session_id

    def _new_ledger(self, payment: ProviderInput) -> _Ledger:
        scenario = payment.data.get("scenario", "approve")
        if scenario not in SCENARIOS:
            raise self._error("invalid_request", "unknown test scenario")
        times = payment.data.get("times", None if scenario == "timeout" else 1)
        if scenario not in _FAILING_METHOD:
            times = 0
        if times is not None and (isinstance(times, bool) or not isinstance(times, int)):
            raise self._error("invalid_request", "times must be an integer")
        amount = payment.amount if payment.amount is not None else _ZERO
        return _Ledger(str(scenario), amount, payment.currency_code or "usd", times)

    def _ledger_of(self, payment: ProviderInput) -> _Ledger:
        session_id = self._session_id(payment)
        if session_id not in self._ledgers:  # a session this instance never initiated
            ledger = self._ledgers[session_id] = self._new_ledger(payment)
            ledger.action_completed = session_id in self._completed_elsewhere
        return self._ledgers[session_id]

    def _output(self, entry: _Ledger, session_id: str, **extra: Any) -> ProviderOutput:
        data = {"id": f"tp_{session_id}", "scenario": entry.scenario, **extra}
        captured = entry.captured if entry.status is ProviderStatus.CAPTURED else None
        return ProviderOutput(entry.status, data, captured_amount=captured)

    def _maybe_fail(self, entry: _Ledger, method: str) -> None:
        failing = _FAILING_METHOD.get(entry.scenario)
        if failing is None or failing[0] != method or entry.failures_left == 0:
            return
        if entry.failures_left is not None:
            entry.failures_left -= 1
        raise self._error(failing[1], "injected by the test scenario", retryable=True)

    def initiate_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Open a ledger for the session (scenario from ``data``)."""

        def answer() -> ProviderOutput:
            session_id = self._session_id(payment)
            entry = self._ledgers.setdefault(session_id, self._new_ledger(payment))
            return self._output(entry, session_id)

        return self._run("initiate_payment", payment, answer)

    def _run(self, method: str, payment: ProviderInput, answer: Callable[[], T]) -> T:
        return self._handle(method, payment.context.idempotency_key, payment, answer)

    def update_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Change the ledger's amount and currency."""

        def answer() -> ProviderOutput:
            entry = self._ledger_of(payment)
            if payment.amount is not None:
                entry.amount = payment.amount
            entry.currency_code = payment.currency_code or entry.currency_code
            return self._output(entry, self._session_id(payment))

        return self._run("update_payment", payment, answer)

    def delete_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Mark the session's payment canceled at the gateway."""
        return self.cancel_payment(payment, method="delete_payment")

    def authorize_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Answer as the scenario says (see the module doc)."""

        def answer() -> ProviderOutput:
            entry = self._ledger_of(payment)
            self._maybe_fail(entry, "authorize_payment")
            if entry.status not in _STICKY:
                entry.status = self._scenario_answer(entry)
                if entry.status in (ProviderStatus.AUTHORIZED, ProviderStatus.CAPTURED):
                    entry.authorized = entry.amount
                if entry.status is ProviderStatus.CAPTURED:
                    entry.captured = entry.amount
            return self._authorize_output(entry, self._session_id(payment))

        return self._run("authorize_payment", payment, answer)

    def _scenario_answer(self, entry: _Ledger) -> ProviderStatus:
        if entry.scenario == "requires_more" and not entry.action_completed:
            return ProviderStatus.REQUIRES_MORE
        return _ANSWERS.get(entry.scenario, ProviderStatus.AUTHORIZED)

    def _authorize_output(self, entry: _Ledger, session_id: str) -> ProviderOutput:
        if entry.status is ProviderStatus.ERROR:
            return self._output(entry, session_id, decline_code="card_declined")
        if entry.status is ProviderStatus.REQUIRES_MORE:
            action = {"type": "three_d_secure", "url": f"https://test.invalid/3ds/{session_id}"}
            output = self._output(entry, session_id)
            return ProviderOutput(output.status, output.data, action=action)
        return self._output(entry, session_id)

    def capture_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Capture ``payment.amount`` if the authorization has that much left."""

        def answer() -> ProviderOutput:
            entry = self._ledger_of(payment)
            self._maybe_fail(entry, "capture_payment")
            if entry.status not in (ProviderStatus.AUTHORIZED, ProviderStatus.CAPTURED):
                raise self._error("payment_not_authorized", f"status is {entry.status}")
            amount = payment.amount if payment.amount is not None else _ZERO
            if amount <= 0 or amount > entry.authorized - entry.captured:
                raise self._error("amount_too_large", "more than the authorization has left")
            entry.captured += amount
            entry.status = ProviderStatus.CAPTURED
            return self._output(entry, self._session_id(payment))

        return self._run("capture_payment", payment, answer)

    def refund_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Refund ``payment.amount`` if that much was captured and not refunded."""

        def answer() -> ProviderOutput:
            entry = self._ledger_of(payment)
            amount = payment.amount if payment.amount is not None else _ZERO
            if amount <= 0 or amount > entry.captured - entry.refunded:
                raise self._error("amount_too_large", "more than was captured")
            entry.refunded += amount
            return self._output(entry, self._session_id(payment))

        return self._run("refund_payment", payment, answer)

    def cancel_payment(
        self, payment: ProviderInput, *, method: str = "cancel_payment"
    ) -> ProviderOutput:
        """Void the authorization; refused once something was captured."""

        def answer() -> ProviderOutput:
            entry = self._ledger_of(payment)
            if entry.captured > 0:
                raise self._error("already_captured", "refund instead")
            entry.status = ProviderStatus.CANCELED
            entry.authorized = _ZERO
            return self._output(entry, self._session_id(payment))

        return self._run(method, payment, answer)

    def retrieve_payment(self, payment: ProviderInput) -> ProviderOutput:
        """The ledger's view of the payment."""
        return self.get_payment_status(payment, method="retrieve_payment")

    def get_payment_status(
        self, payment: ProviderInput, *, method: str = "get_payment_status"
    ) -> ProviderOutput:
        """The ledger's status for the session."""

        def answer() -> ProviderOutput:
            return self._output(self._ledger_of(payment), self._session_id(payment))

        with self._lock:  # reads are not idempotent operations: never replayed
            self._calls.append(ProviderCall(method, payment.context.idempotency_key, payment))
            return answer()

    def create_account_holder(self, holder: AccountHolderInput) -> AccountHolderOutput:
        """Create a test customer (``tcus_...``)."""

        def answer() -> AccountHolderOutput:
            external_id = f"tcus_{secrets.token_hex(6)}"
            return AccountHolderOutput(external_id, {"id": external_id})

        key = holder.context.idempotency_key
        return self._handle("create_account_holder", key, holder, answer)

    def make_webhook(
        self,
        action: str,
        *,
        session_id: str,
        amount: Decimal | None = None,
        timestamp: int | None = None,
    ) -> Webhook:
        """Move the session's ledger as the gateway would, and return the signed webhook.

        Args:
            action: A `PaymentAction` value, e.g. ``"captured"``.
            session_id: The session the event is about.
            amount: The amount moved (default: all that can move for that action).
            timestamp: The signed time (default: now); an old one makes a stale webhook.

        Raises:
            KeyError: the gateway never saw that session.
        """
        kind = PaymentAction(action)
        with self._lock:
            entry = self._ledgers[session_id]
            moved = self._move(entry, kind, amount)
            body = {
                "id": f"evt_test_{next(self._events)}",
                "type": kind.value,
                "session_id": session_id,
                "amount": None if moved is None else str(moved),
                "currency_code": entry.currency_code,
            }
        raw = json.dumps(body, sort_keys=True).encode()
        signed_at = int(self._clock()) if timestamp is None else timestamp
        header = signing.signature_header(self._secret, signed_at, raw)
        return Webhook(raw, {self.signature_header: header})

    def _move(self, entry: _Ledger, kind: PaymentAction, amount: Decimal | None) -> Decimal | None:
        if kind in (PaymentAction.AUTHORIZED, PaymentAction.CAPTURED) and entry.authorized == 0:
            entry.authorized = entry.amount
            entry.status = ProviderStatus.AUTHORIZED
        if kind is PaymentAction.CAPTURED:
            moved = amount if amount is not None else entry.authorized - entry.captured
            entry.captured += moved
            entry.status = ProviderStatus.CAPTURED
            return moved
        if kind is PaymentAction.REFUNDED:
            moved = amount if amount is not None else entry.captured - entry.refunded
            entry.refunded += moved
            return moved
        entry.status = _WEBHOOK_STATUS.get(kind, entry.status)
        return entry.authorized if kind is PaymentAction.AUTHORIZED else amount

    def get_webhook_action_and_data(self, webhook: Webhook) -> WebhookAction:
        """Verify the signature (HMAC-SHA256, timestamp tolerance), then parse the body.

        Raises:
            WebhookSignatureError: missing, malformed, wrong or stale signature.
            InvalidData: a correctly signed body that is not a valid event.
        """
        signing.verify(
            self.id, self._secret, webhook.headers, webhook.raw_body,
            header=self.signature_header, now=self._clock(), tolerance_seconds=self._tolerance,
        )  # fmt: skip
        return _parse_event(webhook.raw_body)


_WEBHOOK_STATUS = {
    PaymentAction.AUTHORIZED: ProviderStatus.AUTHORIZED,
    PaymentAction.FAILED: ProviderStatus.ERROR,
    PaymentAction.PENDING: ProviderStatus.PENDING_AUTHORIZATION,
    PaymentAction.REQUIRES_MORE: ProviderStatus.REQUIRES_MORE,
    PaymentAction.CANCELED: ProviderStatus.CANCELED,
}


def _text(event: dict[str, Any], name: str) -> str | None:
    value = event.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidData("webhook", f"{name} is not a string")
    return value


def _action(kind: str | None) -> PaymentAction:
    try:
        return PaymentAction(kind or "")
    except ValueError:
        return PaymentAction.NOT_SUPPORTED


def _parse_event(raw_body: bytes) -> WebhookAction:
    try:
        event = json.loads(raw_body)
    except ValueError:
        raise InvalidData("webhook", "the body is not JSON") from None
    if not isinstance(event, dict):
        raise InvalidData("webhook", "the body is not a JSON object")
    action = _action(_text(event, "type"))
    currency, amount = _text(event, "currency_code"), _text(event, "amount")
    if amount is not None and currency is None:
        raise InvalidData("webhook", "an amount without a currency")
    currency = None if currency is None else normalize_currency(currency)
    value = (
        None if amount is None or currency is None else to_amount(amount, currency, positive=False)
    )
    return WebhookAction(action, _text(event, "session_id"), value, currency, _text(event, "id"))
