"""The storefront API's settings: one frozen value, built by the caller or from the environment.

Environment variables read by `Settings.from_env` (what ``uvicorn
examples.storefront_api.main:app`` uses):

``STOREFRONT_DATABASE_URL``
    SQLAlchemy URL of the one database holding flowkit's runs, the payment module and the
    carts (default ``sqlite:///storefront.db``).
``STOREFRONT_ADMIN_API_KEY``
    The key admin routes require in the ``X-Admin-Key`` header. Required: an admin API
    without a key is refused at start-up rather than left open.
``STOREFRONT_MAX_BODY_BYTES``
    The largest request body accepted, in bytes (default 65536; larger bodies get 413).
``STOREFRONT_STORE_PROVIDERS``
    Comma-separated provider ids customers may pay with (default ``pp_stripe`` when
    ``STRIPE_API_KEY`` is set, else ``pp_test``).
``STOREFRONT_RUN_WORKER``
    ``1`` (default) runs the webhook queue's worker in a thread of the app; ``0`` leaves the
    queue to workers started elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from attrs import field, frozen

__all__ = ["DEFAULT_MAX_BODY_BYTES", "WEBHOOK_QUEUE", "Settings"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024
WEBHOOK_QUEUE = "webhooks"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _providers(value: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(value)


def _check_key(_: object, __: object, value: str) -> None:
    if len(value) < 16:
        raise ValueError("the admin API key must have at least 16 characters")


@frozen
class Settings:
    """What the composition root needs to build the app.

    Attributes:
        database_url: The one database of runs, payments and carts.
        admin_api_key: The secret admin routes require in ``X-Admin-Key`` (16+ characters).
        max_body_bytes: The largest request body accepted (413 above it).
        store_providers: Providers a customer may choose for a payment session (the system
            provider, which authorizes anything, is for admins and never offered here).
        run_worker: Run the webhook queue's worker inside the app process.
        worker_poll: First and longest wait of an idle worker between polls, in seconds.
    """

    database_url: str
    admin_api_key: str = field(repr=False, validator=_check_key)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    store_providers: tuple[str, ...] = field(default=("pp_test",), converter=_providers)
    run_worker: bool = True
    worker_poll: tuple[float, float] = (0.02, 0.5)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``STOREFRONT_*`` variables (see the module docstring).

        Raises:
            ValueError: the admin key is missing or short, or a number or flag is malformed.
        """
        env = os.environ if environ is None else environ
        key = env.get("STOREFRONT_ADMIN_API_KEY")
        if not key:
            raise ValueError("set STOREFRONT_ADMIN_API_KEY (16+ characters) to run the API")
        default = "pp_stripe" if env.get("STRIPE_API_KEY") else "pp_test"
        providers = env.get("STOREFRONT_STORE_PROVIDERS", default)
        return cls(
            database_url=env.get("STOREFRONT_DATABASE_URL", "sqlite:///storefront.db"),
            admin_api_key=key,
            max_body_bytes=int(env.get("STOREFRONT_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
            store_providers=tuple(p.strip() for p in providers.split(",") if p.strip()),
            run_worker=_flag(env.get("STOREFRONT_RUN_WORKER", "1")),
        )


def _flag(value: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"STOREFRONT_RUN_WORKER must be 0 or 1, not {value!r}")
