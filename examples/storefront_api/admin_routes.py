"""Admin routes: capture, refund and cancel payments, read a run's timeline (API key needed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path

from flowkit import Engine, RunNotFound, Scope, Workflow
from payment import Payment, PaymentModule
from payment.inputs import CapturePaymentInput, RefundPaymentInput
from payment.workflows import capture_payment_workflow, refund_payment_workflow

from .dependencies import RequestScope
from .errors import ERROR_RESPONSES
from .models import (
    ID_PATTERN,
    CaptureRequest,
    PaymentOperationOut,
    RefundRequest,
    RunOut,
    payment_out,
    run_out,
)
from .running import new_transaction_id, result_of, run_workflow
from .security import require_admin
from .workflows import CancelPaymentInput, cancel_payment_workflow

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])
PathId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
TransactionId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="Repeat an operation safely: the same key answers with the first result.",
    ),
]


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: dict(ERROR_RESPONSES[code]) for code in codes}


_MONEY_ERRORS = _errors(400, 401, 404, 409, 413, 422, 502, 503)


def _operate(
    scope: Scope, workflow: Workflow[Any, Any], input: Any, payment_id: str, key: str | None
) -> PaymentOperationOut:
    """Run a payment operation; its transaction id comes from the idempotency key if any."""
    scope.resolve(PaymentModule).retrieve_payment(payment_id)  # 404 before any run is stored
    operation = f"{workflow.name}-{payment_id}"
    transaction_id = f"{operation}-{key}" if key else new_transaction_id(operation)
    result = run_workflow(scope, workflow, input, transaction_id)
    payment = result_of(result, Payment)
    return PaymentOperationOut(payment=payment_out(payment), transaction_id=transaction_id)


@router.post("/payments/{payment_id}/capture", responses=_MONEY_ERRORS)
def capture(
    payment_id: PathId,
    scope: RequestScope,
    body: CaptureRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> PaymentOperationOut:
    """Capture the payment (no amount: all that is left). Runs `capture_payment_workflow`.

    409 when it asks for more than the authorization has left, or the payment is canceled.
    """
    amount = None if body is None else body.amount
    inp = CapturePaymentInput(payment_id, amount, "admin")
    return _operate(scope, capture_payment_workflow, inp, payment_id, idempotency_key)


@router.post("/payments/{payment_id}/refund", responses=_MONEY_ERRORS)
def refund(
    payment_id: PathId,
    scope: RequestScope,
    body: RefundRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> PaymentOperationOut:
    """Refund the payment (no amount: all that was captured and not refunded). Runs
    `refund_payment_workflow`.

    409 when it asks for more than was captured and not refunded.
    """
    request = body or RefundRequest()
    inp = RefundPaymentInput(payment_id, request.amount, request.reason_id, request.note)
    return _operate(scope, refund_payment_workflow, inp, payment_id, idempotency_key)


@router.post("/payments/{payment_id}/cancel", responses=_MONEY_ERRORS)
def cancel(
    payment_id: PathId, scope: RequestScope, idempotency_key: IdempotencyKey = None
) -> PaymentOperationOut:
    """Void the payment's authorization (again: the canceled payment). Runs the storefront's
    `cancel_payment_workflow`.

    409 when something was captured: refund instead.
    """
    inp = CancelPaymentInput(payment_id)
    return _operate(scope, cancel_payment_workflow, inp, payment_id, idempotency_key)


@router.get("/workflows/runs/{transaction_id}", responses=_errors(401, 404, 422))
def get_run(transaction_id: TransactionId, scope: RequestScope) -> RunOut:
    """A durable run's timeline: status, steps in the order they started, errors."""
    record = scope.resolve(Engine).get(transaction_id, decode=False)
    if record is None:
        raise RunNotFound(transaction_id)
    return run_out(record)
