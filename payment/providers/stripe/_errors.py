"""Stripe's errors as `ProviderError`s: Stripe's code, whether retrying can help, no secrets.

Connection errors, rate limits, lock timeouts and Stripe's own 5xx errors are retryable (the
same idempotency key makes the retry safe); card errors, bad requests, bad keys and idempotency
conflicts are not. Messages keep Stripe's sentence and request id with anything that looks
like a key or a webhook secret replaced by ``[redacted]``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import stripe

from payment.exceptions import ProviderError

__all__ = ["redact", "to_provider_error"]

_KEY_PATTERN = re.compile(r"\b(?:sk|rk|pk)_(?:test|live)_[0-9A-Za-z_]+|\bwhsec_[0-9A-Za-z_]+")
_MAX_MESSAGE = 300
_CODE_BY_TYPE: tuple[tuple[type[stripe.StripeError], str], ...] = (
    (stripe.APIConnectionError, "api_connection_error"),
    (stripe.RateLimitError, "rate_limit"),
    (stripe.AuthenticationError, "authentication_error"),
    (stripe.PermissionError, "permission_error"),
    (stripe.IdempotencyError, "idempotency_error"),
    (stripe.CardError, "card_error"),
    (stripe.InvalidRequestError, "invalid_request_error"),
)
_RETRYABLE_CODES = frozenset({"lock_timeout", "rate_limit"})


def redact(text: str, secrets: Iterable[str]) -> str:
    """`text` with each of `secrets`, and anything shaped like a Stripe key, replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return _KEY_PATTERN.sub("[redacted]", text)


def _code(error: stripe.StripeError) -> str:
    if error.code:
        return error.code
    if error.http_status == 404:
        return "resource_missing"  # what Stripe names it; fakes may omit the code
    for kind, code in _CODE_BY_TYPE:
        if isinstance(error, kind):
            return code
    return "api_error"


def _retryable(error: stripe.StripeError, code: str) -> bool:
    if isinstance(error, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    if isinstance(error, stripe.CardError | stripe.IdempotencyError):
        return False
    status = error.http_status or 0
    return code in _RETRYABLE_CODES or status == 409 or status >= 500


def to_provider_error(
    provider_id: str, error: stripe.StripeError, secrets: Iterable[str]
) -> ProviderError:
    """The `ProviderError` for a Stripe error (raise it ``from None``: the original may carry
    headers and bodies that do not belong in logs).

    Args:
        provider_id: The provider's id.
        error: What the SDK raised.
        secrets: The api key and webhook secret, removed from the message if present.
    """
    code = _code(error)
    sentence = " ".join((error.user_message or type(error).__name__).split())
    if error.request_id:
        sentence = f"{sentence} (request {error.request_id})"
    message = redact(sentence, secrets)[:_MAX_MESSAGE]
    return ProviderError(provider_id, code, retryable=_retryable(error, code), message=message)
