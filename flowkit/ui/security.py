"""The console's guards: the optional access token and the CSRF tokens of its forms.

Access: with a token configured, every request presents it, as `Authorization: Bearer T`, as
the `flowkit_token` cookie, or once as `?token=T` (the console then sets the cookie and
redirects to the same address without it). CSRF: a random nonce in a `SameSite=Strict` cookie,
and in each form the nonce's HMAC under a secret made at start-up; a POST whose form token does
not match its cookie is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["CSRF_COOKIE", "TOKEN_COOKIE", "Csrf", "TokenGuard", "security_headers"]

TOKEN_COOKIE = "flowkit_token"
CSRF_COOKIE = "flowkit_csrf"
_HEADERS = {
    # scripts only from the console itself (the vendored mermaid.js and graph.js), no inline
    # script; inline styles place the timeline's bars and style mermaid's SVG
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def security_headers(response: Response) -> Response:
    """`response` with the console's security headers."""
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    return response


class TokenGuard:
    """ASGI middleware: refuses (401) every HTTP request that does not present the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on when it presents the token."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        offered = request.query_params.get("token")
        if offered is not None and self._same(offered):
            clean = URL(scope=scope).remove_query_params("token")
            response: Response = RedirectResponse(str(clean.replace(scheme="", netloc="")), 303)
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
            await security_headers(response)(scope, receive, send)
            return
        header = request.headers.get("authorization", "")
        bearer = header[7:] if header.lower().startswith("bearer ") else None
        for candidate in (bearer, request.cookies.get(TOKEN_COOKIE)):
            if candidate is not None and self._same(candidate):
                await self.app(scope, receive, send)
                return
        refused = PlainTextResponse("a valid token is required (--token)", 401)
        refused.headers["www-authenticate"] = "Bearer"
        await security_headers(refused)(scope, receive, send)

    def _same(self, offered: str) -> bool:
        return hmac.compare_digest(offered.encode(), self.token.encode())


class Csrf:
    """CSRF tokens bound to a per-browser nonce cookie."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def nonce(self, request: Request) -> tuple[str, bool]:
        """The browser's nonce, and True when it is new (the response must set the cookie)."""
        found = request.cookies.get(CSRF_COOKIE)
        if found and len(found) <= 128:
            return found, False
        return secrets.token_urlsafe(24), True

    def token(self, nonce: str) -> str:
        """The form token for `nonce`."""
        return hmac.new(self._secret, nonce.encode(), hashlib.sha256).hexdigest()

    def valid(self, request: Request, offered: object) -> bool:
        """True when `offered` (the form's token) matches the request's nonce cookie."""
        nonce = request.cookies.get(CSRF_COOKIE)
        if not nonce or not isinstance(offered, str):
            return False
        return hmac.compare_digest(offered.encode(), self.token(nonce).encode())

    @staticmethod
    def remember(response: Response, nonce: str) -> None:
        """Set the nonce cookie on `response`."""
        response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="strict")
