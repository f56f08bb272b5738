"""The payment steps: each does one thing through the `PaymentModule`, and undoes exactly that.

Steps resolve `PaymentModule` and `CartService` from the run's container and pass their step
context's idempotency key to every module call that creates a record or moves money (with
`#{i}` for the i-th item of a batch), so a retried or recovered step reaches the module and the
provider with the same key: nothing is created, captured or refunded twice. A compensation
returns early when its step did nothing.

Every public step takes its input class or a mapping with the same keys (nested records and
lists too), converted by `payment.inputs.as_input` when the step runs, whatever it was given:
the workflow's input, a `Ref` to another step's output, a `transform`, or a dict literal that
holds refs. A bad input fails the step with `InvalidData` (naming the input class) before it
calls the module, so nothing is written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from flowkit import RetryPolicy, StepContext, StepResponse, step
from payment.cart import Cart, CartService
from payment.domain import Payment, PaymentCollection, PaymentSession, SessionStatus
from payment.exceptions import (
    CartNotEligible,
    NotFound,
    PaymentActionRequired,
    PaymentAlreadyAuthorized,
    PaymentAlreadyCaptured,
    PaymentError,
    ProviderError,
)
from payment.inputs import (
    AuthorizationAttempt,
    AuthorizePaymentSessionInput,
    CancelPaymentCollectionInput,
    CapturePaymentInput,
    CreatePaymentCollectionForCartInput,
    CreatePaymentSessionsInput,
    RefundOutcome,
    RefundPaymentInput,
    ReleaseExpiredAuthorizationsInput,
    SessionSpec,
    accepts_input,
)
from payment.providers import PaymentAction, WebhookAction
from payment.service import PaymentModule

__all__ = [
    "PROVIDER_RETRY",
    "REFUNDED_ON_FAILURE",
    "authorize_payment_session_step",
    "await_payment_action_step",
    "begin_authorization_step",
    "cancel_payment_collection_step",
    "capture_payment_step",
    "create_payment_collection_step",
    "create_payment_session_step",
    "delete_old_payment_sessions_step",
    "process_webhook_step",
    "refund_payment_step",
    "refund_payments_step",
    "release_expired_authorizations_step",
    "retrieve_payment_collection_step",
    "validate_cart_step",
]

REFUNDED_ON_FAILURE = "Refunded due to cart completion failure"


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


PROVIDER_RETRY = RetryPolicy(max_retries=3, interval=0.05, backoff=2.0, retry_if=_retryable)
"""Retries a provider call only when the provider says retrying can help."""


def _scrubbed(fn: Callable[[Any, StepContext], Any]) -> Callable[[Any, StepContext], Any]:
    """Keep provider secrets (a client secret) out of what the step returns: it is stored."""

    @functools.wraps(fn)
    def run(inp: Any, ctx: StepContext) -> Any:
        result = fn(inp, ctx)
        scrub = _module(ctx).without_secrets
        if not isinstance(result, StepResponse):
            return scrub(result)
        if result.skipped:
            return result
        return StepResponse(
            scrub(result.output), scrub(result.compensate_input), timeout=result.timeout
        )

    return run


def _module(ctx: StepContext) -> PaymentModule:
    return ctx.resolve(PaymentModule)


# --- collections ------------------------------------------------------------------------


@step("validate-cart")
@accepts_input(CreatePaymentCollectionForCartInput)
def validate_cart_step(inp: CreatePaymentCollectionForCartInput, ctx: StepContext) -> Cart:
    """The cart, if it may get a payment collection: open, and without one yet.

    Raises:
        CartNotEligible: the cart is unknown, completed, or already has a collection.
    """
    cart = ctx.resolve(CartService).retrieve_cart(inp.cart_id)  # type: ignore[type-abstract]
    if cart.completed_at is not None:
        raise CartNotEligible(cart.id, f"Cart {cart.id} is already completed")
    try:
        _module(ctx).retrieve_payment_collection_for_cart(cart.id)
    except NotFound:
        return cart
    raise CartNotEligible(cart.id, f"Cart {cart.id} already has a payment collection")


@step("create-payment-collection")
@_scrubbed
@accepts_input(Cart)
def create_payment_collection_step(
    cart: Cart, ctx: StepContext
) -> StepResponse[PaymentCollection, str]:
    """A collection for the cart's total and currency, linked to the cart (one transaction)."""
    collection = _module(ctx).create_payment_collection(
        cart.currency_code, cart.total, cart_id=cart.id, idempotency_key=ctx.idempotency_key
    )
    return StepResponse(collection, compensate_input=collection.id)


@create_payment_collection_step.compensate
def _delete_collection(collection_id: str | None, ctx: StepContext) -> None:
    if collection_id is None:
        return  # the create failed: its transaction left nothing
    module = _module(ctx)
    try:
        module.delete_payment_collections([collection_id])  # the cart link goes with it
    except PaymentAlreadyCaptured:  # money moved and came back: keep its history, free the cart
        module.cancel_payment_collection(collection_id)


@step("retrieve-payment-collection", continue_on_permanent_failure=True)
@_scrubbed
@accepts_input(str)
def retrieve_payment_collection_step(collection_id: str, ctx: StepContext) -> PaymentCollection:
    """The collection as it is now (reads only).

    When the read fails for good the run goes on without it (its result is then None and the
    error is in `RunResult.errors`): a failed read must not undo the money that moved before
    it, and reverting a capture would refund it and leave an authorized session that the
    earlier steps' compensations cannot delete.
    """
    return _module(ctx).retrieve_payment_collection(collection_id)


@step("cancel-payment-collection", retry=PROVIDER_RETRY)
@_scrubbed
@accepts_input(CancelPaymentCollectionInput)
def cancel_payment_collection_step(
    inp: CancelPaymentCollectionInput, ctx: StepContext
) -> PaymentCollection:
    """Cancel a collection, voiding its authorizations (not compensated: voids are final)."""
    return _module(ctx).cancel_payment_collection(inp.payment_collection_id)


# --- sessions ---------------------------------------------------------------------------


@step("create-payment-session", retry=PROVIDER_RETRY)
@_scrubbed
@accepts_input(CreatePaymentSessionsInput)
def create_payment_session_step(
    inp: CreatePaymentSessionsInput, ctx: StepContext
) -> StepResponse[PaymentSession, str]:
    """A new session for what the collection still needs, initiated at the provider.

    Raises:
        InvalidCurrency: the input names another currency than the collection's.
    """
    module = _module(ctx)
    collection = module.retrieve_payment_collection(inp.payment_collection_id)
    session = module.create_payment_session(
        collection.id,
        inp.provider_id,
        inp.currency_code or collection.currency_code,
        collection.amount - collection.authorized_amount,
        data=inp.data,
        context=inp.context,
        idempotency_key=ctx.idempotency_key,
    )
    return StepResponse(session, compensate_input=session.id)


@create_payment_session_step.compensate
def _delete_session(session_id: str | None, ctx: StepContext) -> None:
    if session_id is None:
        return  # a failed create leaves no session (the module removes it)
    module = _module(ctx)
    try:
        module.delete_payment_session(session_id)
    except (PaymentAlreadyAuthorized, PaymentAlreadyCaptured):
        if not _holds_nothing(module, session_id):
            raise
        # its money moved and came back: keep the session's history (the collection is
        # canceled by its own compensation, which frees the cart)


def _holds_nothing(module: PaymentModule, session_id: str) -> bool:
    payments = module.list_payments(session_id=session_id)
    return all(p.canceled_at is not None or p.refunded_in_full for p in payments)


@step("delete-old-payment-sessions", retry=PROVIDER_RETRY)
@_scrubbed
@accepts_input(PaymentSession)
def delete_old_payment_sessions_step(
    session: PaymentSession, ctx: StepContext
) -> StepResponse[list[str], list[SessionSpec]]:
    """Delete the collection's other sessions that hold no authorization.

    Compensation creates them again: with new ids and new provider payments (a provider cannot
    bring back what was deleted there), from the same provider, amount, data and context.
    """
    module = _module(ctx)
    collection = module.retrieve_payment_collection(session.payment_collection_id)
    old = [s for s in collection.sessions if s.id != session.id and _disposable(s)]
    deleted: list[SessionSpec] = []
    try:
        for old_session in old:
            module.delete_payment_session(old_session.id)
            deleted.append(_spec(old_session))
    except PaymentError:
        _recreate(module, deleted, ctx.idempotency_key)  # undo our part before failing
        raise
    return StepResponse([s.id for s in old], compensate_input=deleted)


@delete_old_payment_sessions_step.compensate
def _recreate_sessions(deleted: list[SessionSpec] | None, ctx: StepContext) -> None:
    if deleted:
        _recreate(_module(ctx), deleted, ctx.idempotency_key)


def _disposable(session: PaymentSession) -> bool:
    return session.payment_id is None and session.status is not SessionStatus.AUTHORIZED


def _spec(session: PaymentSession) -> SessionSpec:
    return SessionSpec(
        session.payment_collection_id,
        session.provider_id,
        session.currency_code,
        session.amount,
        dict(session.data),
        dict(session.context),
    )


def _recreate(module: PaymentModule, specs: Sequence[SessionSpec], key: str) -> None:
    for i, spec in enumerate(specs):
        module.create_payment_session(
            spec.payment_collection_id,
            spec.provider_id,
            spec.currency_code,
            spec.amount,
            data=spec.data,
            context=spec.context,
            idempotency_key=f"{key}#{i}",
        )


# --- authorization ----------------------------------------------------------------------


@step("authorize-payment-session", retry=PROVIDER_RETRY)
@_scrubbed
@accepts_input(AuthorizePaymentSessionInput)
def authorize_payment_session_step(
    inp: AuthorizePaymentSessionInput, ctx: StepContext
) -> StepResponse[Payment | None, str]:
    """Authorize a session: the `Payment`, or None on `pending_authorization` (the payment then
    arrives by webhook through `process_payment_workflow`).

    Raises:
        PaymentActionRequired: `requires_more` ("More information is required for payment";
            carries the session id and what the provider asks for).
        PaymentNotAuthorized: declined, pending or canceled.
    """
    payment = _module(ctx).authorize_payment_session(inp.id, inp.context or None)
    return StepResponse(payment, compensate_input=inp.id)


@authorize_payment_session_step.compensate
def _undo_authorization(session_id: str | None, ctx: StepContext) -> None:
    if session_id is not None:
        undo_payments_of_session(_module(ctx), session_id, ctx.idempotency_key)


def undo_payments_of_session(module: PaymentModule, session_id: str, key: str) -> None:
    """Cancel the session's payment, or refund what it captured, as things stand now.

    Nothing captured → the authorization is voided. Something captured (an auto-capture, or a
    webhook that raced) → what was captured and not refunded is refunded with `key` and the
    note "Refunded due to cart completion failure". Safe to repeat.
    """
    for payment in module.list_payments(session_id=session_id):
        undo_payment(module, payment, key)


def undo_payment(module: PaymentModule, payment: Payment, key: str) -> None:
    """Void or refund one payment (see `undo_payments_of_session`)."""
    if payment.canceled_at is not None:
        return
    left = payment.captured_amount - payment.refunded_amount
    if left > 0:
        module.refund_payment(payment.id, left, note=REFUNDED_ON_FAILURE, idempotency_key=key)
    elif payment.captured_amount == 0:
        module.cancel_payment(payment.id)


@step("begin-authorization", retry=PROVIDER_RETRY)
@_scrubbed
@accepts_input(AuthorizePaymentSessionInput)
def begin_authorization_step(
    inp: AuthorizePaymentSessionInput, ctx: StepContext
) -> StepResponse[AuthorizationAttempt, str]:
    """Try to authorize; a `requires_more` or `pending_authorization` answer is not a failure
    here but a reason to wait (see `await_payment_action_step`)."""
    try:
        payment = _module(ctx).authorize_payment_session(inp.id, inp.context or None)
    except PaymentActionRequired as exc:
        attempt = AuthorizationAttempt(inp.id, None, "customer", exc.action)
    else:
        waiting = None if payment is not None else "provider"
        attempt = AuthorizationAttempt(inp.id, payment, waiting)
    return StepResponse(attempt, compensate_input=inp.id)


@begin_authorization_step.compensate
def _undo_first_attempt(session_id: str | None, ctx: StepContext) -> None:
    if session_id is not None:
        undo_payments_of_session(_module(ctx), session_id, ctx.idempotency_key)


@step("await-payment-action", async_completion=True)
@_scrubbed
@accepts_input(AuthorizationAttempt)
def await_payment_action_step(
    attempt: AuthorizationAttempt, ctx: StepContext
) -> StepResponse[AuthorizationAttempt, None]:
    """Wait, durably, for the customer's action (3-D Secure) or the provider's webhook.

    The run parks here and the process may exit. The app finishes the step with
    `engine.set_step_success(transaction_id, "await-payment-action", ...)` once the customer
    completed the action or the webhook arrived (or `set_step_failure` when they gave up); the
    next step authorizes again.

    With `attempt.action_timeout` the wait has a deadline, that many seconds after the run
    parks: when it passes with no signal, `engine.tick()` fails the step with `StepTimeout`
    and the run compensates (the earlier steps delete the session, which discards it at the
    provider, and the collection, so the cart can start over); a signal that comes later
    gets that reverted result.
    """
    return StepResponse(attempt, compensate_input=None, timeout=attempt.action_timeout)


# --- money movements --------------------------------------------------------------------


@step("capture-payment", retry=PROVIDER_RETRY)
@_scrubbed
@accepts_input(CapturePaymentInput)
def capture_payment_step(inp: CapturePaymentInput, ctx: StepContext) -> Payment:
    """Capture (not compensated: money moved; undoing it is a business decision)."""
    return _module(ctx).capture_payment(
        inp.payment_id, inp.amount, inp.captured_by, idempotency_key=ctx.idempotency_key
    )


@step("refund-payment", retry=PROVIDER_RETRY)
@_scrubbed
@accepts_input(RefundPaymentInput)
def refund_payment_step(inp: RefundPaymentInput, ctx: StepContext) -> Payment:
    """Refund (not compensated: money moved)."""
    return _module(ctx).refund_payment(
        inp.payment_id, inp.amount, inp.reason_id, inp.note, idempotency_key=ctx.idempotency_key
    )


@step("refund-payments")
@_scrubbed
@accepts_input(list[RefundPaymentInput])
def refund_payments_step(items: list[RefundPaymentInput], ctx: StepContext) -> list[RefundOutcome]:
    """Refund several payments; a failed item is reported, the others still refunded."""
    module = _module(ctx)
    outcomes = []
    for i, item in enumerate(items):
        key = f"{ctx.idempotency_key}#{i}"
        try:
            payment = module.refund_payment(
                item.payment_id, item.amount, item.reason_id, item.note, idempotency_key=key
            )
        except PaymentError as exc:
            outcomes.append(RefundOutcome(item.payment_id, None, type(exc).__name__, str(exc)))
        else:
            outcomes.append(RefundOutcome(item.payment_id, payment))
    return outcomes


@step("release-expired-authorizations")
@accepts_input(ReleaseExpiredAuthorizationsInput)
def release_expired_authorizations_step(
    inp: ReleaseExpiredAuthorizationsInput, ctx: StepContext
) -> list[str]:
    """Cancel, at the provider and in the module, every authorization made before
    `authorized_before` with nothing captured (`PaymentModule.list_expired_authorizations`).

    Each payment is canceled with its own provider key, ``{payment_id}:cancel:{step key}``:
    a retried or recovered step replays the provider's answer. Running it again finds nothing
    left to release. A payment captured since it was listed is left alone. A payment whose
    provider refuses is left as it was and the others are still released; the step then
    fails with the first such error (not retried here: the next run tries it again).
    Not compensated: a voided authorization cannot be restored.

    Returns:
        The ids of the payments this invocation released, in id order.
    """
    module = _module(ctx)
    released: list[str] = []
    refused: list[ProviderError] = []
    after: str | None = None
    while page := module.list_expired_authorizations(inp.authorized_before, after_id=after):
        for payment in page:
            try:
                module.cancel_payment(payment.id, idempotency_key=ctx.idempotency_key)
            except (PaymentAlreadyCaptured, NotFound):
                continue  # captured or deleted since it was listed: not stale any more
            except ProviderError as exc:
                refused.append(exc)
                continue
            released.append(payment.id)
        after = page[-1].id
    if refused:
        raise refused[0]
    return released


# --- webhooks ---------------------------------------------------------------------------

_HANDLED = frozenset({PaymentAction.AUTHORIZED, PaymentAction.CAPTURED})


@step("process-payment-webhook", retry=PROVIDER_RETRY)
@_scrubbed
@accepts_input(WebhookAction)
def process_webhook_step(action: WebhookAction, ctx: StepContext) -> Payment | None:
    """Authorize and/or record the capture a verified webhook reports; other actions are left.

    Idempotent: authorizing returns the session's existing payment (the customer's own
    completion may have raced us), and the capture is keyed by the event id.
    """
    if action.action not in _HANDLED or action.session_id is None:
        return None
    module = _module(ctx)
    payment = module.authorize_payment_session(action.session_id)
    if payment is None or action.action is not PaymentAction.CAPTURED:
        return payment
    missing = _not_yet_recorded(action, payment)
    if missing is not None and missing <= 0:
        return payment  # the authorization (or an earlier event) recorded it already
    key = f"webhook:{action.event_id}" if action.event_id else ctx.idempotency_key
    return module.capture_payment(payment.id, missing, idempotency_key=key, is_captured=True)


def _not_yet_recorded(action: WebhookAction, payment: Payment) -> Decimal | None:
    """What the gateway says it captured in all, minus what the payment records (None: all
    that is left). A gateway reports its total, so a repeated event adds nothing."""
    if action.amount is None:
        return None
    recorded = payment.captured_amount + payment.pending_capture_amount
    return min(action.amount, payment.amount) - recorded
