"""`create_app`: the FastAPI app over one `Storefront`.

The app's lifespan builds the `Storefront` (the composition root: one registry, one engine),
starts its webhook worker, and closes it all at shutdown. A caller that built the `Storefront`
itself (a test, a bigger app) passes it in and keeps owning it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from payment import PaymentProvider

from . import admin_routes, hook_routes, store_routes
from .errors import install_error_handlers
from .security import BodyLimitMiddleware
from .settings import Settings
from .storefront import Storefront

__all__ = ["create_app"]

DESCRIPTION = """\
Payment workflows behind HTTP routes: every route runs a flowkit workflow, durably, with a
container scope opened for the request. Store routes never return provider data; admin
routes need the `X-Admin-Key` header; webhooks are verified against the raw body.
"""


def create_app(
    settings: Settings,
    *,
    storefront: Storefront | None = None,
    providers: Iterable[PaymentProvider] | None = None,
) -> FastAPI:
    """Build the app (nothing connects before it starts).

    Args:
        settings: Database, admin key, limits.
        storefront: An already built composition root, owned by the caller (its settings must
            be `settings`); by default the app builds its own at start-up and closes it at
            shutdown.
        providers: The payment providers of the storefront the app builds (default: the
            system provider and a `TestProvider`).

    Raises:
        ValueError: `storefront` was built with other settings.
    """
    if storefront is not None and storefront.settings != settings:
        raise ValueError("the storefront was built with other settings")
    app = FastAPI(
        title="flowkit storefront API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=_lifespan(settings, storefront, providers),
    )
    if storefront is not None:
        app.state.storefront = storefront
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)
    for module in (store_routes, admin_routes, hook_routes):
        app.include_router(module.router)
    return app


def _lifespan(
    settings: Settings,
    given: Storefront | None,
    providers: Iterable[PaymentProvider] | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if given is not None:
            app.state.storefront = given
            yield
            return
        storefront = await run_in_threadpool(_open, settings, providers)
        app.state.storefront = storefront
        try:
            yield
        finally:
            await run_in_threadpool(storefront.close)

    return lifespan


def _open(settings: Settings, providers: Iterable[PaymentProvider] | None) -> Storefront:
    storefront = Storefront(settings, providers=providers)
    if settings.run_worker:
        storefront.start_worker()
    return storefront
