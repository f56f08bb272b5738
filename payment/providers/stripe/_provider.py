"""`StripeProvider`: the payment protocol on Stripe PaymentIntents, through the official SDK."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import stripe

from payment.domain import ProviderStatus, thaw_json
from payment.exceptions import InvalidData, ProviderError, WebhookSignatureError
from payment.providers.base import (
    AccountHolderInput,
    AccountHolderOutput,
    ProviderContext,
    ProviderInput,
    ProviderOutput,
    Webhook,
    WebhookAction,
)
from payment.providers.stripe._amounts import (
    ensure_stripe_currency,
    stripe_currencies,
    to_stripe_amount,
)
from payment.providers.stripe._errors import to_provider_error
from payment.providers.stripe._intents import intent_output, webhook_action

if TYPE_CHECKING:
    from stripe._base_address import BaseAddresses
    from stripe.params import (
        CustomerCreateParams,
        PaymentIntentCaptureParams,
        PaymentIntentConfirmParams,
        PaymentIntentCreateParams,
        PaymentIntentUpdateParams,
        RefundCreateParams,
    )

__all__ = ["CaptureMethod", "MissingWebhookSecret", "StripeProvider", "stripe_idempotency_key"]

CaptureMethod = Literal["manual", "automatic", "automatic_async"]
"""When Stripe captures: ``manual`` (the module's capture call) or at authorization."""

T = TypeVar("T")

_CAPTURE_METHODS = frozenset({"manual", "automatic", "automatic_async"})
_KEY_PREFIXES = ("sk_", "rk_")
# Session data keys passed on to PaymentIntent creation (strings unless noted).
_CREATE_FIELDS = ("payment_method", "description", "receipt_email", "setup_future_usage")
_FAILED_REFUND = frozenset({"failed", "canceled"})
_MAX_KEY = 255  # Stripe refuses longer idempotency keys


class MissingWebhookSecret(UserWarning):
    """A `StripeProvider` was built without a webhook secret: it refuses every webhook."""


def _check_api_key(api_key: object) -> str:
    """The key if it looks like a server-side Stripe key; the error never repeats it."""
    if not isinstance(api_key, str) or not api_key:
        raise ValueError(
            "StripeProvider needs api_key: a secret key (sk_...) or a restricted key (rk_...)"
        )
    if not api_key.startswith(_KEY_PREFIXES) or api_key != api_key.strip():
        raise ValueError(
            "StripeProvider's api_key is not a secret (sk_...) or restricted (rk_...) key "
            "without surrounding spaces; a publishable key (pk_...) cannot make server calls"
        )
    return api_key


def stripe_idempotency_key(key: str) -> str:
    """`key` itself when Stripe takes it; longer keys become a digest (the same every time)."""
    if len(key) <= _MAX_KEY:
        return key
    return f"sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def _check_api_base(api_base: str | None) -> BaseAddresses:
    if api_base is None:
        return {}
    if not api_base.startswith(("https://", "http://")):
        raise ValueError("StripeProvider's api_base must be an http(s) URL")
    return {"api": api_base.rstrip("/")}


def _text_field(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidData("data", f"{name} must be a string")
    return value


class StripeProvider:
    """``pp_stripe``: payments as Stripe PaymentIntents, one `stripe.StripeClient` per provider.

    A session creates a PaymentIntent (the session id in its metadata and as the idempotency
    key); authorizing confirms it (the session data's ``payment_method``, set at creation or
    with `update_payment_session`); capturing sends ``amount_to_capture``; refunds and cancels
    map to Stripe's. Every call sends the caller's idempotency key, so a retried step replays
    Stripe's first answer instead of moving money twice (keys over Stripe's 255 characters
    are sent as their SHA-256, which is just as stable). A card decline is an answer (status
    ``error``, ``decline_code`` in the data); Stripe's other errors raise `ProviderError` with
    Stripe's code, retryable for network errors, rate limits, lock timeouts and 5xx.

    Args:
        api_key: A secret (``sk_...``) or restricted (``rk_...``) key. Never logged or shown.
        webhook_secret: The endpoint's signing secret (``whsec_...``). Without it a
            `MissingWebhookSecret` warning is issued and every webhook is refused.
        capture_method: ``manual`` (default: authorize now, capture later) or Stripe's
            ``automatic`` / ``automatic_async`` (authorization answers ``captured``).
        automatic_payment_methods: Let Stripe choose the payment methods from the Dashboard
            settings (``automatic_payment_methods[enabled]``) when the session data names no
            ``payment_method_types``. Redirect-based methods then need ``return_url`` in the
            session data.
        api_base: Where the Stripe API lives (default Stripe's); e.g. a localstripe URL.
        webhook_tolerance_seconds: How old a webhook's signed timestamp may be.
        max_network_retries: Retries the SDK itself makes (same idempotency key). 0 by
            default: the payment workflows already retry retryable `ProviderError`s.
        http_client: A `stripe.HTTPClient` (proxies, timeouts, tests).
        currencies: The currencies to accept (default: `STRIPE_CURRENCIES`).

    Raises:
        ValueError: a missing or malformed api key, api base, capture method or tolerance.
    """

    id = "pp_stripe"
    secret_fields = frozenset({"client_secret"})
    """Data keys kept out of workflow outputs (`PaymentModule.retrieve_session_secrets`)."""
    authorization_window: timedelta | None = timedelta(days=7)
    """Stripe releases an uncaptured card authorization after 7 days."""

    def __init__(
        self,
        *,
        api_key: str | None,
        webhook_secret: str | None = None,
        capture_method: CaptureMethod = "manual",
        automatic_payment_methods: bool = False,
        api_base: str | None = None,
        webhook_tolerance_seconds: int = 300,
        max_network_retries: int = 0,
        http_client: stripe.HTTPClient | None = None,
        currencies: Iterable[str] | None = None,
    ) -> None:
        key = _check_api_key(api_key)
        if capture_method not in _CAPTURE_METHODS:
            raise ValueError(f"capture_method must be one of {sorted(_CAPTURE_METHODS)}")
        if webhook_tolerance_seconds <= 0:  # the SDK would skip the timestamp check at 0
            raise ValueError("webhook_tolerance_seconds must be positive")
        if not webhook_secret:
            warnings.warn(
                "StripeProvider has no webhook_secret: every webhook will be refused",
                MissingWebhookSecret,
                stacklevel=2,
            )
        self._client = stripe.StripeClient(
            key,
            base_addresses=_check_api_base(api_base),
            max_network_retries=max_network_retries,
            http_client=http_client,
        )
        self._webhook_secret = webhook_secret or None
        self._secrets = tuple(s for s in (key, webhook_secret) if s)
        self._capture_method = capture_method
        self._automatic_payment_methods = automatic_payment_methods
        self._tolerance = webhook_tolerance_seconds
        self._currencies = stripe_currencies(currencies)
        self._api_base = api_base or stripe.DEFAULT_API_BASE

    def __repr__(self) -> str:
        return f"StripeProvider(api_base={self._api_base!r}, capture={self._capture_method!r})"

    # --- plumbing ----------------------------------------------------------------------

    def _call(self, request: Callable[[], T]) -> T:
        """Run one SDK call; Stripe's errors become `ProviderError` without their context."""
        try:
            return request()
        except stripe.StripeError as error:
            raise to_provider_error(self.id, error, self._secrets) from None

    @staticmethod
    def _options(context: ProviderContext) -> stripe.RequestOptions:
        return {"idempotency_key": stripe_idempotency_key(context.idempotency_key)}

    def _error(self, code: str, message: str) -> ProviderError:
        return ProviderError(self.id, code, retryable=False, message=message)

    def _intent_id(self, payment: ProviderInput) -> str:
        intent_id = payment.data.get("id")
        if not isinstance(intent_id, str) or not intent_id.startswith("pi_"):
            raise self._error(
                "invalid_request",
                "the payment data has no PaymentIntent id (send the session's data along "
                "with any change)",
            )
        return intent_id

    def _amount(self, payment: ProviderInput) -> tuple[int, str]:
        """The operation's amount in Stripe's minor units, and its currency."""
        currency = ensure_stripe_currency(payment.currency_code, self._currencies)
        if payment.amount is None:
            raise self._error("invalid_request", "the operation needs an amount")
        return to_stripe_amount(payment.amount, currency), currency

    def _output(self, intent: stripe.PaymentIntent) -> ProviderOutput:
        return intent_output(self.id, intent.to_dict(for_json=True))

    def _retrieve(self, intent_id: str, context: ProviderContext) -> stripe.PaymentIntent:
        payment_intents = self._client.v1.payment_intents
        return self._call(lambda: payment_intents.retrieve(intent_id, None, self._options(context)))

    # --- the protocol ------------------------------------------------------------------

    def initiate_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Create the session's PaymentIntent (idempotency key: the session id).

        Session data may name ``payment_method``, ``payment_method_types`` (a list),
        ``description``, ``receipt_email`` and ``setup_future_usage``; the account holder of
        this provider, when the context has one, becomes the intent's ``customer``.

        Raises:
            InvalidCurrency: a currency Stripe does not charge in (nothing is sent).
            InvalidAmount: an amount Stripe cannot take in that currency (nothing is sent).
            InvalidData: a malformed data field. ProviderError: Stripe refused or no answer.
        """
        session_id = payment.context.session_id
        if not session_id:
            raise self._error("invalid_request", "the context has no session id")
        amount, currency = self._amount(payment)
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency,
            "capture_method": self._capture_method,
            "metadata": {"session_id": session_id},
            **self._create_fields(payment),
        }
        create = self._client.v1.payment_intents.create
        options = self._options(payment.context)
        intent = self._call(lambda: create(cast("PaymentIntentCreateParams", params), options))
        return self._output(intent)

    def _create_fields(self, payment: ProviderInput) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        for name in _CREATE_FIELDS:
            value = _text_field(payment.data, name)
            if value is not None:
                fields[name] = value
        types = payment.data.get("payment_method_types")
        if types is not None:
            if not isinstance(types, tuple | list) or not all(isinstance(t, str) for t in types):
                raise InvalidData("data", "payment_method_types must be a list of strings")
            fields["payment_method_types"] = list(types)
        elif self._automatic_payment_methods:
            fields["automatic_payment_methods"] = {"enabled": True}
        holder = payment.context.account_holder
        if holder is not None and holder.provider_id == self.id and holder.external_id:
            fields["customer"] = holder.external_id
        return fields

    def update_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Change the intent's amount and currency (and its ``payment_method`` from the data).

        Raises:
            InvalidCurrency, InvalidAmount: as for `initiate_payment` (nothing is sent).
            ProviderError: no intent id in the data, or Stripe refused.
        """
        intent_id = self._intent_id(payment)
        amount, currency = self._amount(payment)
        params: dict[str, Any] = {"amount": amount, "currency": currency}
        payment_method = _text_field(payment.data, "payment_method")
        if payment_method is not None:
            params["payment_method"] = payment_method
        update = self._client.v1.payment_intents.update
        options = self._options(payment.context)
        typed = cast("PaymentIntentUpdateParams", params)
        return self._output(self._call(lambda: update(intent_id, typed, options)))

    def delete_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Cancel the intent of a deleted session (a session never initiated has none).

        Raises:
            ProviderError: Stripe refused (e.g. the intent already succeeded).
        """
        if "id" not in payment.data:
            return ProviderOutput(ProviderStatus.CANCELED, payment.data)
        return self.cancel_payment(payment)

    def authorize_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Confirm the intent if it awaits confirmation, then report its status.

        ``requires_action`` (3-D Secure) answers ``requires_more`` with Stripe's next action;
        once the customer completed it, authorizing again reads ``requires_capture`` and
        answers ``authorized``. A card error on confirm is the answer ``error`` with the decline
        code in the data, not an exception.

        Raises:
            ProviderError: no intent id, or no usable answer from Stripe.
        """
        intent_id = self._intent_id(payment)
        intent = self._retrieve(intent_id, payment.context)
        if intent.status != "requires_confirmation":
            return self._output(intent)
        params: dict[str, Any] = {}
        return_url = _text_field(payment.data, "return_url")
        if return_url is not None:
            params["return_url"] = return_url
        confirm = self._client.v1.payment_intents.confirm
        options = self._options(payment.context)
        try:
            typed = cast("PaymentIntentConfirmParams", params or None)
            confirmed = confirm(intent_id, typed, options)
        except stripe.CardError as error:
            declined = self._retrieve(intent_id, payment.context).to_dict(for_json=True)
            code = (error.error.decline_code if error.error else None) or error.code
            return intent_output(self.id, declined, decline_code=code or "card_declined")
        except stripe.StripeError as error:
            raise to_provider_error(self.id, error, self._secrets) from None
        return self._output(confirmed)

    def capture_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Capture ``payment.amount`` (``amount_to_capture``: a partial capture releases the rest,
        as Stripe captures a PaymentIntent once).

        Raises:
            InvalidAmount: an amount Stripe cannot take (nothing is sent).
            ProviderError: Stripe refused (more than capturable, already captured) or no answer.
        """
        intent_id = self._intent_id(payment)
        amount, _ = self._amount(payment)
        params = cast("PaymentIntentCaptureParams", {"amount_to_capture": amount})
        capture = self._client.v1.payment_intents.capture
        options = self._options(payment.context)
        return self._output(self._call(lambda: capture(intent_id, params, options)))

    def refund_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Refund ``payment.amount`` of the intent; the refund ids gather in ``refunds``.

        Raises:
            InvalidAmount: an amount Stripe cannot take (nothing is sent).
            ProviderError: Stripe refused, or the refund failed at once.
        """
        intent_id = self._intent_id(payment)
        amount, _ = self._amount(payment)
        params = cast("RefundCreateParams", {"payment_intent": intent_id, "amount": amount})
        create = self._client.v1.refunds.create
        options = self._options(payment.context)
        refund = self._call(lambda: create(params, options))
        if refund.status in _FAILED_REFUND:
            raise self._error("refund_failed", f"refund {refund.id} is {refund.status}")
        data = thaw_json(payment.data)
        data["refunds"] = [*data.get("refunds", []), refund.id]
        return ProviderOutput(ProviderStatus.CAPTURED, data)

    def cancel_payment(self, payment: ProviderInput) -> ProviderOutput:
        """Cancel the intent; one that is already canceled is reported as such.

        Raises:
            ProviderError: Stripe refused (e.g. the intent succeeded: refund instead).
        """
        intent_id = self._intent_id(payment)
        cancel = self._client.v1.payment_intents.cancel
        options = self._options(payment.context)
        try:
            return self._output(cancel(intent_id, None, options))
        except stripe.InvalidRequestError as error:
            refused = to_provider_error(self.id, error, self._secrets)
            intent = self._retrieve(intent_id, payment.context)
            if intent.status != "canceled":
                raise refused from None
            return self._output(intent)
        except stripe.StripeError as error:
            raise to_provider_error(self.id, error, self._secrets) from None

    def retrieve_payment(self, payment: ProviderInput) -> ProviderOutput:
        """The intent as Stripe has it now.

        Raises:
            ProviderError: unknown intent (``resource_missing``) or no answer.
        """
        return self._output(self._retrieve(self._intent_id(payment), payment.context))

    def get_payment_status(self, payment: ProviderInput) -> ProviderOutput:
        """The intent's status now (same call as `retrieve_payment`).

        Raises:
            ProviderError: unknown intent (``resource_missing``) or no answer.
        """
        return self.retrieve_payment(payment)

    def create_account_holder(self, holder: AccountHolderInput) -> AccountHolderOutput:
        """Create a Stripe Customer (idempotency key: the customer id).

        Raises:
            ProviderError: Stripe refused or no answer.
        """
        params: dict[str, Any] = {"metadata": {"customer_id": holder.customer.id}}
        if holder.customer.email:
            params["email"] = holder.customer.email
        create = self._client.v1.customers.create
        options = self._options(holder.context)
        customer = self._call(lambda: create(cast("CustomerCreateParams", params), options))
        return AccountHolderOutput(customer.id, {"id": customer.id})

    def get_webhook_action_and_data(self, webhook: Webhook) -> WebhookAction:
        """Verify the ``Stripe-Signature`` header over the raw body, then map the event.

        ``payment_intent.amount_capturable_updated`` → authorized, ``succeeded`` → captured
        (``amount_received``), ``payment_failed`` → failed, ``requires_action`` →
        requires_more, ``canceled`` → canceled; other events, and intents without a session
        id in their metadata, → not_supported.

        Raises:
            WebhookSignatureError: no webhook secret configured; a missing, malformed, wrong
                or stale signature (nothing is parsed).
            InvalidData: a correctly signed body that is not a Stripe event.
        """
        if self._webhook_secret is None:
            raise WebhookSignatureError(self.id, "no webhook secret is configured")
        header = webhook.headers.get("stripe-signature")
        if not header:
            raise WebhookSignatureError(self.id, "missing stripe-signature header")
        try:
            body = webhook.raw_body.decode("utf-8")
        except UnicodeDecodeError:
            raise WebhookSignatureError(self.id, "the body is not UTF-8") from None
        try:
            event = self._client.construct_event(
                body, header, self._webhook_secret, self._tolerance
            )
        except stripe.SignatureVerificationError as error:
            raise WebhookSignatureError(self.id, _signature_failure(error)) from None
        except ValueError:
            raise InvalidData("webhook", "the signed body is not a Stripe event") from None
        return webhook_action(event.to_dict(for_json=True))


def _signature_failure(error: stripe.SignatureVerificationError) -> str:
    """Which check failed, in our words (never the header, body or secret)."""
    message = error.user_message or ""
    if "tolerance" in message:
        return "timestamp outside the tolerance"
    if "matching the expected signature" in message:
        return "signature does not match"
    return "malformed signature header"
