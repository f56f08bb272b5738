"""The app for ``uvicorn examples.storefront_api.main:app``, configured from the environment.

    STOREFRONT_ADMIN_API_KEY=... uvicorn examples.storefront_api.main:app

See `examples.storefront_api.settings` for the ``STOREFRONT_*`` variables. Customers pay with
the test gateway, unless ``STRIPE_API_KEY`` is set: then with Stripe (``pp_stripe``), configured
by ``STRIPE_WEBHOOK_SECRET``, ``STRIPE_CAPTURE_METHOD`` (``manual`` by default) and
``STRIPE_API_BASE`` (e.g. a localstripe URL). Importing this module builds the FastAPI object
and the providers only; the database is opened when the server starts the app.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from payment import PaymentProvider, SystemProvider, TestProvider

from .app import create_app
from .settings import Settings

__all__ = ["app", "providers_from_env"]


def providers_from_env(environ: Mapping[str, str] | None = None) -> list[PaymentProvider]:
    """The system provider and Stripe when ``STRIPE_API_KEY`` is set, else the test gateway.

    Raises:
        ImportError: Stripe is configured but the ``stripe`` extra is not installed.
        ValueError: a malformed Stripe option.
    """
    env = os.environ if environ is None else environ
    key = env.get("STRIPE_API_KEY")
    if not key:
        return [SystemProvider(), TestProvider()]
    from payment.providers.stripe import StripeProvider

    options: dict[str, Any] = {
        "api_key": key,
        "webhook_secret": env.get("STRIPE_WEBHOOK_SECRET"),
        "capture_method": env.get("STRIPE_CAPTURE_METHOD", "manual"),
        "api_base": env.get("STRIPE_API_BASE"),
    }
    return [SystemProvider(), StripeProvider(**options)]


app = create_app(Settings.from_env(), providers=providers_from_env())
