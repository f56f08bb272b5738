"""The admin API key check and the request body size limit."""

from __future__ import annotations

import hmac
import json
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .dependencies import storefront_of

__all__ = ["ADMIN_KEY_HEADER", "BodyLimitMiddleware", "require_admin"]

ADMIN_KEY_HEADER = "X-Admin-Key"
_admin_key = APIKeyHeader(
    name=ADMIN_KEY_HEADER,
    auto_error=False,
    scheme_name="AdminKey",
    description="The admin API key (STOREFRONT_ADMIN_API_KEY).",
)


def require_admin(request: Request, key: Annotated[str | None, Depends(_admin_key)] = None) -> None:
    """Let the request through only with the right admin key (compared in constant time).

    Raises:
        HTTPException: 401 when the header is missing or the key is wrong.
    """
    if not key:
        raise HTTPException(401, f"missing {ADMIN_KEY_HEADER} header")
    expected = storefront_of(request).settings.admin_api_key
    if not hmac.compare_digest(key.encode(), expected.encode()):
        raise HTTPException(401, "invalid admin API key")


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413, before any route reads them.

    The declared ``Content-Length`` is checked first; a body sent without one (chunked) is
    read up to the limit and handed on whole, so the routes (and the webhook signature check)
    see exactly the bytes that were sent.

    Args:
        app: The ASGI app to protect.
        max_bytes: The largest body accepted.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the body of an HTTP request, then call the app with it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is None:
            await _refuse(send, 400, "malformed Content-Length header", "invalid_request")
            return
        if declared > self.max_bytes:
            await self._too_large(send)
            return
        body = await self._read(receive)
        if body is None:
            await self._too_large(send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away: let the app see nothing more
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, send: Send) -> None:
        reason = f"request body larger than {self.max_bytes} bytes"
        await _refuse(send, 413, reason, "body_too_large")


def _content_length(scope: Scope) -> int | None:
    """The declared length (0 when not declared), or None when it is malformed."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return 0


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _refuse(send: Send, status: int, reason: str, code: str) -> None:
    payload = json.dumps({"detail": reason, "code": code}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
