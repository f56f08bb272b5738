"""Store routes: what a customer's browser calls. Every answer leaves provider data out."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from flowkit import Scope
from payment import (
    NotFound,
    PaymentCollection,
    PaymentModule,
    PaymentSession,
    ProviderNotFound,
)
from payment.inputs import CreatePaymentCollectionForCartInput, CreatePaymentSessionsInput
from payment.workflows import (
    create_payment_collection_for_cart_workflow,
    create_payment_sessions_workflow,
)

from .carts import CheckoutCarts
from .checkout import complete_cart
from .dependencies import RequestScope
from .errors import ERROR_RESPONSES
from .models import (
    ID_PATTERN,
    CheckoutOut,
    CollectionOut,
    CreateCollectionRequest,
    CreateSessionRequest,
    SessionOut,
    collection_out,
    session_out,
)
from .running import new_transaction_id, result_of, run_workflow
from .settings import Settings

__all__ = ["router"]

router = APIRouter(prefix="/store", tags=["store"])
PathId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]


def _responses(
    extra: dict[int | str, dict[str, Any]], *codes: int
) -> dict[int | str, dict[str, Any]]:
    return extra | {code: dict(ERROR_RESPONSES[code]) for code in codes}


@router.post(
    "/payment-collections",
    status_code=201,
    responses=_responses(
        {200: {"model": CollectionOut, "description": "The cart's existing collection"}},
        *(400, 404, 409, 413, 422),
    ),
)
def create_payment_collection(
    body: CreateCollectionRequest, scope: RequestScope, response: Response
) -> CollectionOut:
    """Give the cart a payment collection for its total (or return the one it has: 200).

    Runs `create_payment_collection_for_cart_workflow`.
    """
    scope.resolve(CheckoutCarts).require(body.cart_id)
    existing = _collection_of_cart(scope, body.cart_id)
    if existing is not None:
        response.status_code = 200
        return collection_out(existing)
    result = run_workflow(
        scope,
        create_payment_collection_for_cart_workflow,
        CreatePaymentCollectionForCartInput(body.cart_id),
        new_transaction_id(f"collection-{body.cart_id}"),
    )
    return collection_out(result_of(result, PaymentCollection))


def _collection_of_cart(scope: Scope, cart_id: str) -> PaymentCollection | None:
    try:
        return scope.resolve(PaymentModule).retrieve_payment_collection_for_cart(cart_id)
    except NotFound:
        return None


@router.post(
    "/payment-collections/{collection_id}/payment-sessions",
    status_code=201,
    responses=_responses({}, 400, 404, 409, 413, 422, 502, 503),
)
def create_payment_session(
    collection_id: PathId, body: CreateSessionRequest, scope: RequestScope
) -> SessionOut:
    """Start paying the collection with a provider; older unauthorized sessions are dropped.

    The body names the collection's cart: a collection is reachable only through its cart (an
    unknown collection and someone else's answer the same 404). Runs
    `create_payment_sessions_workflow`.
    """
    collection = _collection_of_cart(scope, body.cart_id)
    if collection is None or collection.id != collection_id:
        raise NotFound("PaymentCollection", collection_id)
    if body.provider_id not in scope.resolve(Settings).store_providers:
        raise ProviderNotFound(body.provider_id)
    result = run_workflow(
        scope,
        create_payment_sessions_workflow,
        CreatePaymentSessionsInput(
            collection.id, body.provider_id, body.data, currency_code=body.currency_code
        ),
        new_transaction_id(f"session-{collection.id}"),
    )
    return session_out(result_of(result, PaymentSession))


@router.post(
    "/carts/{cart_id}/complete",
    responses=_responses(
        {202: {"model": CheckoutOut, "description": "Waiting for the provider"}},
        *(400, 402, 404, 409, 413, 422, 502, 503),
    ),
)
def complete(cart_id: PathId, scope: RequestScope, response: Response) -> CheckoutOut:
    """Complete the cart: authorize its payment session, place the order, reserve the stock.

    200 with the order (also when asked again); 202 while the provider's webhook is awaited;
    402 with the action the customer must take (3-D Secure), after which the same call
    continues the checkout. Runs the storefront's checkout workflow.
    """
    outcome = complete_cart(scope, cart_id)
    if outcome.status == "pending":
        response.status_code = 202
    return outcome
