"""A FastAPI storefront API that runs the payment workflows, one registry scope per request.

The composition root (`Storefront`) builds ONE `flowkit.Registry` holding the payment module,
the carts, the engine and the settings. Each request opens ``registry.scope()`` (the Python
``req.scope``), passes it as the workflows' ``container=`` and closes it when the request is
over, failed or not (`examples.storefront_api.dependencies`).

Routes (each runs a workflow through the durable engine):

    POST /store/payment-collections                          create-payment-collection-for-cart
    POST /store/payment-collections/{id}/payment-sessions    create-payment-sessions
    POST /store/carts/{id}/complete                          storefront-checkout
    POST /admin/payments/{id}/capture                        capture-payment
    POST /admin/payments/{id}/refund                         refund-payment
    POST /admin/payments/{id}/cancel                         cancel-payment
    POST /hooks/payment/{provider}                           payment-webhook (queued)
    GET  /admin/workflows/runs/{transaction_id}              (reads a run's timeline)

Routes are plain ``def`` functions on purpose: `flowkit.Engine.run` is synchronous and FastAPI
runs such routes in its thread pool (see `examples.storefront_api.running`).

Run it from the repository root:

    STOREFRONT_ADMIN_API_KEY=change-me-16-chars uvicorn examples.storefront_api.main:app

or ``python -m examples.storefront_api`` (same variables, plus ``--host``/``--port``).
"""

from .app import create_app
from .settings import Settings
from .storefront import Storefront

__all__ = ["Settings", "Storefront", "create_app"]
