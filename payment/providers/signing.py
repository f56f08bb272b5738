"""HMAC-SHA256 webhook signatures over ``{timestamp}.{raw body}`` with a timestamp tolerance.

The header reads ``t=1700000000,v1=<hex>`` (several ``v1`` entries are accepted, for secret
rotation), the scheme Stripe and others use. Only the signature decides: the body is not parsed
before it is verified.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from payment.exceptions import WebhookSignatureError

__all__ = ["sign", "signature_header", "verify"]


def sign(secret: str, timestamp: int, raw_body: bytes) -> str:
    """Return the hex HMAC-SHA256 of ``{timestamp}.`` + `raw_body` under `secret`."""
    message = str(timestamp).encode() + b"." + raw_body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, raw_body: bytes) -> str:
    """Return the header value ``t={timestamp},v1={signature}``."""
    return f"t={timestamp},v1={sign(secret, timestamp, raw_body)}"


def _parse_header(provider_id: str, header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            timestamp = int(value)
        elif name == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookSignatureError(provider_id, "malformed signature header")
    return timestamp, signatures


def verify(
    provider_id: str,
    secret: str,
    webhook_headers: Mapping[str, str],
    raw_body: bytes,
    *,
    header: str,
    now: float,
    tolerance_seconds: float,
) -> None:
    """Check a webhook's signature header.

    Args:
        provider_id: Named in the error.
        secret: The shared signing secret.
        webhook_headers: The request headers, names lower-cased.
        raw_body: The body exactly as received.
        header: The signature header's name, lower-case.
        now: The current time in seconds since the epoch.
        tolerance_seconds: How far the signed timestamp may be from `now`.

    Raises:
        WebhookSignatureError: missing, malformed, stale, or no signature matches.
    """
    value = webhook_headers.get(header)
    if not value:
        raise WebhookSignatureError(provider_id, f"missing {header} header")
    timestamp, signatures = _parse_header(provider_id, value)
    if abs(now - timestamp) > tolerance_seconds:
        raise WebhookSignatureError(provider_id, "timestamp outside the tolerance")
    expected = sign(secret, timestamp, raw_body)
    if not any(hmac.compare_digest(expected, given) for given in signatures):
        raise WebhookSignatureError(provider_id, "signature does not match")
