"""Completing a cart from a request: start the checkout run, or continue the one waiting.

A cart is held by at most one checkout run (the checkout example's ``checkout_run`` column,
written with the run's ``claim-cart`` checkpoint). So a request for a cart either finds its
order (completed: answered again, idempotently), finds the run holding it, or starts one:

- the run waits for the customer (3-D Secure): the answer is 402 with the action to take; the
  next request, once the customer acted, signals the run, which authorizes again;
- the run waits for the provider: 202, pending; the provider's webhook finishes it;
- the run is busy: 409.
"""

from __future__ import annotations

from typing import Any

from examples.checkout import CompleteCartInput, Order
from flowkit import (
    Engine,
    RunResult,
    Scope,
    StepNotWaiting,
    TransactionInProgress,
    TransactionState,
)
from payment import NotFound, PaymentActionRequired, PaymentModule, SessionStatus
from payment.inputs import AuthorizationAttempt

from .carts import CartState, CheckoutCarts
from .context import RequestLog
from .models import CheckoutOut, order_out
from .running import new_transaction_id, raise_failure, result_of, run_workflow
from .workflows import AWAIT_STEP, checkout_workflow

__all__ = ["complete_cart"]

_CUSTOMER_IS_BACK = frozenset({SessionStatus.REQUIRES_MORE, SessionStatus.AUTHORIZED})


def complete_cart(scope: Scope, cart_id: str) -> CheckoutOut:
    """Complete the cart, or say what it waits for.

    Returns:
        ``completed`` with the order, or ``pending`` while the provider has not answered.

    Raises:
        NotFound: unknown cart.
        PaymentActionRequired: the customer must act first (the action is attached).
        TransactionInProgress: another request is completing the cart right now.
        PaymentError, OutOfStock: why the checkout was reverted.
    """
    state = scope.resolve(CheckoutCarts).state(cart_id)
    if state.order is not None:
        return CheckoutOut(status="completed", transaction_id=state.checkout_run,
                           order=order_out(state.order))  # fmt: skip
    if state.checkout_run is not None:
        return _continue(scope, state.checkout_run, cart_id)
    transaction_id = new_transaction_id(f"checkout-{cart_id}")
    result = run_workflow(scope, checkout_workflow, CompleteCartInput(cart_id), transaction_id)
    return _answer(scope, result)


def _answer(scope: Scope, result: RunResult[Any]) -> CheckoutOut:
    if result.status is TransactionState.DONE:
        order = order_out(result_of(result, Order))
        return CheckoutOut(status="completed", transaction_id=result.transaction_id, order=order)
    attempt = result.waiting.get(AWAIT_STEP)  # the waiting step's input: the first attempt
    if isinstance(attempt, AuthorizationAttempt) and attempt.waiting_for == "customer":
        raise PaymentActionRequired(attempt.session_id, attempt.action)
    return CheckoutOut(status="pending", transaction_id=result.transaction_id, order=None)


def _continue(scope: Scope, transaction_id: str, cart_id: str) -> CheckoutOut:
    engine = scope.resolve(Engine)
    record = engine.get(transaction_id, decode=False)
    if record is None or record.status is not TransactionState.WAITING:
        raise TransactionInProgress(transaction_id, None if record is None else record.owner)
    if not _customer_is_back(scope, cart_id):
        return CheckoutOut(status="pending", transaction_id=transaction_id, order=None)
    try:
        result = engine.set_step_success(
            transaction_id, AWAIT_STEP, {"customer": "back"}, container=scope
        )
    except StepNotWaiting:  # the webhook won the race: answer from what it did
        return _after_race(scope, cart_id, transaction_id)
    scope.resolve(RequestLog).ran(result)
    raise_failure(result)
    return _answer(scope, result)


def _customer_is_back(scope: Scope, cart_id: str) -> bool:
    """True when the run's session (the cart's newest) waits for the customer's action, or
    is authorized already (a webhook came first)."""
    try:
        collection = scope.resolve(PaymentModule).retrieve_payment_collection_for_cart(cart_id)
    except NotFound:
        return False
    sessions = sorted(collection.sessions, key=lambda s: s.created_at)
    return bool(sessions) and sessions[-1].status in _CUSTOMER_IS_BACK


def _after_race(scope: Scope, cart_id: str, transaction_id: str) -> CheckoutOut:
    state: CartState = scope.resolve(CheckoutCarts).state(cart_id)
    if state.order is None:
        raise TransactionInProgress(transaction_id, None)
    return CheckoutOut(status="completed", transaction_id=transaction_id,
                       order=order_out(state.order))  # fmt: skip
