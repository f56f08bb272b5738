"""The payment workflows (spec §5), each compensating what it did.

Every workflow takes its input class or a mapping with the same keys, converted by the step
that reads it (`payment.inputs.as_input`: bad input fails that first step with `InvalidData`,
before anything is written). Run them with the
application's container (a `flowkit.Registry` or a request scope holding `PaymentModule` and,
for carts, `CartService`), in memory or through a durable `flowkit.Engine`.
"""

from __future__ import annotations

from typing import Any

from flowkit import Ref, WorkflowResponse, transform, workflow
from payment.inputs import (
    AuthorizePaymentSessionInput,
    CancelPaymentCollectionInput,
    CapturePaymentInput,
    CreatePaymentCollectionForCartInput,
    CreatePaymentSessionsInput,
    MarkPaymentCollectionAsPaidInput,
    RefundPaymentInput,
    ReleaseExpiredAuthorizationsInput,
    as_input,
)
from payment.providers import WebhookAction
from payment.steps import (
    authorize_payment_session_step,
    cancel_payment_collection_step,
    capture_payment_step,
    create_payment_collection_step,
    create_payment_session_step,
    delete_old_payment_sessions_step,
    process_webhook_step,
    refund_payment_step,
    refund_payments_step,
    release_expired_authorizations_step,
    retrieve_payment_collection_step,
    validate_cart_step,
)

__all__ = [
    "cancel_payment_collection_workflow",
    "capture_payment_workflow",
    "create_payment_collection_for_cart_workflow",
    "create_payment_sessions_workflow",
    "mark_payment_collection_as_paid_workflow",
    "process_payment_workflow",
    "refund_payment_workflow",
    "refund_payments_workflow",
    "release_expired_authorizations_workflow",
]


@workflow("create-payment-collection-for-cart")
def create_payment_collection_for_cart_workflow(
    inp: Ref[CreatePaymentCollectionForCartInput],
) -> WorkflowResponse[Any]:
    """Validate the cart (open, no collection yet) and create its collection, linked to it.

    Returns the `PaymentCollection`. Compensation deletes the collection and the link.
    """
    cart = validate_cart_step(inp)
    return WorkflowResponse(create_payment_collection_step(cart))


@workflow("create-payment-sessions")
def create_payment_sessions_workflow(
    inp: Ref[CreatePaymentSessionsInput],
) -> WorkflowResponse[Any]:
    """Create a session for what the collection still needs, then delete its older sessions
    that hold no authorization.

    Returns the new `PaymentSession`. Compensation deletes the new session and creates the
    deleted ones again (with new ids and new provider payments).
    """
    session = create_payment_session_step(inp)
    delete_old_payment_sessions_step(session)
    return WorkflowResponse(session)


@workflow("capture-payment")
def capture_payment_workflow(inp: Ref[CapturePaymentInput]) -> WorkflowResponse[Any]:
    """Capture (part of) a payment; returns the `Payment` after it. Not compensated."""
    return WorkflowResponse(capture_payment_step(inp))


@workflow("refund-payment")
def refund_payment_workflow(inp: Ref[RefundPaymentInput]) -> WorkflowResponse[Any]:
    """Refund (part of) a payment; returns the `Payment` after it. Not compensated."""
    return WorkflowResponse(refund_payment_step(inp))


@workflow("refund-payments")
def refund_payments_workflow(inp: Ref[list[RefundPaymentInput]]) -> WorkflowResponse[Any]:
    """Refund several payments; returns a `RefundOutcome` per payment (failures reported)."""
    return WorkflowResponse(refund_payments_step(inp))


@workflow("cancel-payment-collection")
def cancel_payment_collection_workflow(
    inp: Ref[CancelPaymentCollectionInput],
) -> WorkflowResponse[Any]:
    """Cancel a collection, voiding its authorizations; returns the collection."""
    return WorkflowResponse(cancel_payment_collection_step(inp))


def _system_session(value: Any) -> CreatePaymentSessionsInput:
    data = as_input(value, MarkPaymentCollectionAsPaidInput)
    return CreatePaymentSessionsInput(data.payment_collection_id, "pp_system_default")


@workflow("mark-payment-collection-as-paid")
def mark_payment_collection_as_paid_workflow(
    inp: Ref[MarkPaymentCollectionAsPaidInput],
) -> WorkflowResponse[Any]:
    """Record money received outside any gateway: a system-provider session for what is left,
    authorized and captured. Returns the collection (None, with the error in the result's
    errors, when only reading it back failed: the payment stays recorded).

    If the capture fails the authorization is voided and the session deleted.
    """
    session = create_payment_session_step(transform(inp, _system_session))
    payment = authorize_payment_session_step(
        transform(session, lambda s: AuthorizePaymentSessionInput(s.id))
    )
    capture_payment_step(
        transform(
            (inp, payment),
            lambda v: CapturePaymentInput(
                v[1].id, None, as_input(v[0], MarkPaymentCollectionAsPaidInput).captured_by
            ),
        )
    )
    return WorkflowResponse(retrieve_payment_collection_step(session.payment_collection_id))


@workflow("process-payment")
def process_payment_workflow(inp: Ref[WebhookAction]) -> WorkflowResponse[Any]:
    """Act on a verified webhook: authorize the session's payment and/or record a capture.

    Returns the `Payment` (None for actions that need nothing). Idempotent when the same event
    arrives twice or races the customer's own completion. Run it with the event id as the
    transaction id and a repeated delivery invokes nothing at all.
    """
    return WorkflowResponse(process_webhook_step(inp))


@workflow("release-expired-authorizations")
def release_expired_authorizations_workflow(
    inp: Ref[ReleaseExpiredAuthorizationsInput],
) -> WorkflowResponse[Any]:
    """Cancel, at the provider and in the module, every payment authorized before
    `authorized_before` with nothing captured; leave captured, newer and canceled ones alone,
    and those of providers whose authorizations never lapse (the system provider's).

    Input: ``{"authorized_before": <aware datetime>}`` (a naive one is `InvalidData`). Returns
    the ids released. Idempotent: a second run releases nothing and calls no provider.
    `payment.release_expired_authorizations_schedule` runs it every hour.
    """
    return WorkflowResponse(release_expired_authorizations_step(inp))
