"""The storefront's own workflows, built from the payment and checkout steps.

- `checkout_workflow` ("storefront-checkout"): the checkout example's `complete_cart_workflow`
  with a durable wait. When the gateway asks for 3-D Secure or answers by webhook, the run parks
  on ``await-payment-action`` (holding the cart) and a later request (the customer is back) or
  the webhook finishes it.
- `cancel_payment_workflow` ("cancel-payment"): void one payment's authorization.
- `webhook_workflow` ("payment-webhook"): what a verified webhook does, run from the webhook
  queue: `process_payment_workflow` as a step, then the signal to the checkout run waiting for it.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen

from examples.checkout import CompleteCartInput
from examples.checkout.carts import NewOrder
from examples.checkout.workflow import (
    ClaimedCart,
    claim_cart_step,
    create_order_step,
    reserve_inventory_step,
)
from flowkit import (
    Engine,
    Ref,
    RetryPolicy,
    RunNotFound,
    StepContext,
    StepNotWaiting,
    TransactionInProgress,
    WorkflowResponse,
    step,
    transform,
    when,
    workflow,
)
from payment import (
    NotFound,
    Payment,
    PaymentAction,
    PaymentModule,
    PaymentNotAuthorized,
    SessionStatus,
    WebhookAction,
)
from payment.inputs import AuthorizationAttempt, AuthorizePaymentSessionInput, as_input
from payment.steps import (
    PROVIDER_RETRY,
    authorize_payment_session_step,
    await_payment_action_step,
    begin_authorization_step,
)
from payment.workflows import process_payment_workflow

from .carts import CheckoutCarts

__all__ = [
    "AWAIT_STEP",
    "CancelPaymentInput",
    "cancel_payment_workflow",
    "checkout_workflow",
    "signal_checkout_step",
    "webhook_workflow",
]

AWAIT_STEP = "await-payment-action"
"""The step a waiting checkout run is parked on."""

_SUCCESS = frozenset({PaymentAction.AUTHORIZED, PaymentAction.CAPTURED})
_FAILURE = frozenset({PaymentAction.FAILED, PaymentAction.CANCELED})


# --- checkout ---------------------------------------------------------------------------


def _waits(attempt: AuthorizationAttempt) -> bool:
    return attempt.waiting_for is not None


def _authorize_input(claimed: ClaimedCart) -> AuthorizePaymentSessionInput:
    return AuthorizePaymentSessionInput(claimed.payment_session_id)


def _new_order(value: tuple[ClaimedCart, Payment | None]) -> NewOrder:
    claimed, payment = value
    if payment is None:  # the provider still has not answered: nothing to sell yet
        raise PaymentNotAuthorized(
            claimed.payment_session_id, SessionStatus.PENDING_AUTHORIZATION.value
        )
    return NewOrder(claimed.cart_id, payment.id, claimed.total, claimed.currency_code)


@workflow("storefront-checkout")
def checkout_workflow(inp: Ref[CompleteCartInput]) -> WorkflowResponse[Any]:
    """Claim the cart, authorize (waiting durably when asked to), order, reserve stock.

    Input: `CompleteCartInput`. Returns the `Order`. A failure reverts everything, as
    `complete_cart_workflow` does: stock back, order deleted, payment canceled or refunded,
    cart released.
    """
    claimed = claim_cart_step(transform(inp, lambda v: as_input(v, CompleteCartInput)))
    authorize = transform(claimed, _authorize_input)
    attempt = begin_authorization_step(authorize)
    when(attempt, _waits).then(lambda: await_payment_action_step(attempt))
    payment = authorize_payment_session_step(authorize)
    order = create_order_step(transform((claimed, payment), _new_order))
    reserve_inventory_step(order)
    return WorkflowResponse(order)


# --- cancel -----------------------------------------------------------------------------


@frozen
class CancelPaymentInput:
    """Input of `cancel_payment_workflow`."""

    payment_id: str


@step("cancel-payment", retry=PROVIDER_RETRY)
def cancel_payment_step(inp: CancelPaymentInput, ctx: StepContext) -> Payment:
    """Void the payment's authorization (idempotent; not compensated: a void is final).

    Raises:
        NotFound: unknown payment.
        PaymentAlreadyCaptured: money was captured; refund instead.
    """
    return ctx.resolve(PaymentModule).cancel_payment(inp.payment_id)


@workflow("cancel-payment")
def cancel_payment_workflow(inp: Ref[CancelPaymentInput]) -> WorkflowResponse[Any]:
    """Cancel one payment; returns the canceled `Payment`."""
    return WorkflowResponse(
        cancel_payment_step(transform(inp, lambda v: as_input(v, CancelPaymentInput)))
    )


# --- webhooks ---------------------------------------------------------------------------

_SIGNAL_RETRY = RetryPolicy(
    max_retries=8, interval=0.05, backoff=2.0, max_interval=1.0, retry_on=(TransactionInProgress,)
)


@step("signal-checkout", retry=_SIGNAL_RETRY)
def signal_checkout_step(action: WebhookAction, ctx: StepContext) -> str:
    """Finish (or fail) the checkout run waiting for this webhook's session, if there is one.

    Returns what happened: ``signalled``, ``failed``, or why there was nothing to do. A run
    that was already signalled (a repeated event, or the customer's own request won the race)
    is left as it is.
    """
    if action.session_id is None or action.action not in _SUCCESS | _FAILURE:
        return "nothing to signal"
    holder = _checkout_run(ctx, action.session_id)
    if holder is None:
        return "no checkout run"
    engine = ctx.resolve(Engine)
    try:
        if action.action in _SUCCESS:
            engine.set_step_success(holder, AWAIT_STEP, {"webhook": action.event_id})
            return "signalled"
        engine.set_step_failure(holder, AWAIT_STEP, f"the provider reported {action.action}")
    except (StepNotWaiting, RunNotFound) as exc:
        return f"not waiting: {exc}"
    return "failed"


def _checkout_run(ctx: StepContext, session_id: str) -> str | None:
    module = ctx.resolve(PaymentModule)
    try:
        session = module.retrieve_payment_session(session_id)
        collection = module.retrieve_payment_collection(session.payment_collection_id)
    except NotFound:
        return None
    if collection.cart_id is None:
        return None
    try:
        return ctx.resolve(CheckoutCarts).state(collection.cart_id).checkout_run
    except NotFound:
        return None


@workflow("payment-webhook")
def webhook_workflow(inp: Ref[WebhookAction]) -> WorkflowResponse[Any]:
    """Process a verified webhook, then continue the checkout run waiting for it.

    Run it with a transaction id made from the event id: a repeated delivery invokes nothing.
    Returns the `Payment` the webhook touched (None when it needed nothing).
    """
    payment = process_payment_workflow.as_step(inp, "process-payment")
    signal_checkout_step(inp)
    return WorkflowResponse(payment)
