"""The composition root: build a `PaymentModule` and register it in a flowkit `Registry`.

Nothing here runs at import time; each call builds its own engine, store and providers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from flowkit import Registry
from payment.adapters.engine import create_payment_engine
from payment.adapters.schema import upgrade_schema
from payment.adapters.sqlalchemy import SqlPaymentStore
from payment.providers import PaymentProvider, SystemProvider, TestProvider
from payment.service import PaymentModule

__all__ = ["make_payment_module", "register"]


def _default_providers() -> list[PaymentProvider]:
    return [SystemProvider(), TestProvider()]


def make_payment_module(
    database_url: str,
    *,
    providers: Iterable[PaymentProvider] | None = None,
    create_schema: bool = True,
    clock: Callable[[], datetime] | None = None,
) -> PaymentModule:
    """Build the payment module on a database.

    Args:
        database_url: ``sqlite:///path.db`` or ``postgresql+psycopg://user@host/db``.
        providers: The payment providers; by default a `SystemProvider` and a `TestProvider`.
        create_schema: Run the payment migrations (Alembic, version table
            ``payment_alembic_version``) up to the latest before returning.
        clock: The current time, timezone-aware, for every record's timestamps (default: the
            system clock in UTC). Give the engine's clock (``engine.clock.now``) so that a
            payment's authorization time and the engine's schedule ticks agree, e.g. under a
            `flowkit.testing.ManualClock`.

    Returns:
        The module; call `close()` when the application stops.

    Raises:
        ValueError: a provider id is malformed or registered twice, or a provider's
            ``authorization_window`` is not a positive `timedelta` or None.
    """
    engine = create_payment_engine(database_url)
    try:
        if create_schema:
            upgrade_schema(engine)
        chosen = _default_providers() if providers is None else list(providers)
        return PaymentModule(SqlPaymentStore(engine), chosen, clock=clock)
    except BaseException:
        engine.dispose()
        raise


def register(registry: Registry, module: PaymentModule) -> None:
    """Make `module` what ``scope.resolve(PaymentModule)`` returns in every scope of `registry`.

    The registry does not close the module: the application does, when it stops.
    """
    registry.register_value(PaymentModule, module)
