"""What routes depend on: the app's `Storefront`, a registry scope per request, the raw body.

The scope is the Python ``req.scope``: opened before the route runs, passed as the workflows'
``container=``, and closed once the request is over (FastAPI runs a generator dependency's
code after ``yield`` when the response is done), in reverse order of the services it built.
When the route fails, the exception is thrown in at the ``yield``: it closes the scope with
it, so scoped services' cleanups see it, and goes on to the error handlers.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends, Request

from flowkit import Scope

from .context import RequestContext

if TYPE_CHECKING:
    from .storefront import Storefront

__all__ = ["RawBody", "RequestScope", "raw_body", "request_scope", "storefront_of"]


def storefront_of(request: Request) -> Storefront:
    """The app's composition root (set when the app started)."""
    return cast("Storefront", request.app.state.storefront)


def _route_name(request: Request) -> str:
    route = request.scope.get("route")
    return f"{request.method} {getattr(route, 'path', request.url.path)}"


def request_scope(request: Request) -> Iterator[Scope]:
    """A scope of the app's registry for this request, closed after it (see module doc)."""
    scope = storefront_of(request).registry.scope()
    scope.register_value(RequestContext, RequestContext(uuid.uuid4().hex, _route_name(request)))
    error: BaseException | None = None
    try:
        yield scope
    except BaseException as exc:
        error = exc
        raise
    finally:
        scope.close(error)


async def raw_body(request: Request) -> bytes:
    """The body exactly as received (a webhook's signature covers these bytes)."""
    return await request.body()


RequestScope = Annotated[Scope, Depends(request_scope)]
"""A route parameter that receives the request's scope."""
RawBody = Annotated[bytes, Depends(raw_body)]
"""A route parameter that receives the raw request body."""
