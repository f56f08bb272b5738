"""The payment webhook route: verify, queue, answer at once."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from flowkit import Engine
from payment import PaymentAction, PaymentModule, WebhookAction

from .dependencies import RawBody, RequestScope
from .errors import ERROR_RESPONSES
from .models import ID_PATTERN, WebhookAck
from .settings import WEBHOOK_QUEUE
from .workflows import webhook_workflow

__all__ = ["router", "webhook_transaction_id"]

router = APIRouter(prefix="/hooks", tags=["hooks"])
PathId = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
_SAFE_EVENT_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")
_RAW_JSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The provider's event, exactly as signed (the signature header covers "
        "these bytes).",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def webhook_transaction_id(provider_id: str, action: WebhookAction, raw_body: bytes) -> str:
    """``webhook-{provider}-{event id}``: the same event always maps to the same run.

    An event without a usable id is keyed by the hash of its signed body instead.
    """
    event = action.event_id
    if event is None or not _SAFE_EVENT_ID.match(event):
        event = hashlib.sha256(raw_body).hexdigest()[:40]
    return f"webhook-{provider_id}-{event}"


@router.post(
    "/payment/{provider_id}",
    status_code=202,
    openapi_extra=_RAW_JSON_BODY,
    responses={code: dict(ERROR_RESPONSES[code]) for code in (400, 404, 409, 413, 422)},
)
def receive_payment_webhook(
    provider_id: PathId, request: Request, body: RawBody, scope: RequestScope
) -> WebhookAck:
    """Verify the provider's signature over the raw body, queue the event, answer 202.

    The queued `webhook_workflow` run (its transaction id comes from the event id) processes
    the payment with `process_payment_workflow` and signals the checkout run waiting for it;
    the same event delivered twice is queued once. 400 for a missing, wrong or stale
    signature (nothing is queued), 404 for an unknown provider.
    """
    module = scope.resolve(PaymentModule)
    action = module.get_webhook_action_and_data(provider_id, body, dict(request.headers))
    if action.action is PaymentAction.NOT_SUPPORTED:
        return WebhookAck(action=action.action.value, transaction_id=None)
    transaction_id = webhook_transaction_id(provider_id, action, body)
    scope.resolve(Engine).enqueue(
        webhook_workflow, action, transaction_id=transaction_id, queue=WEBHOOK_QUEUE
    )
    return WebhookAck(action=action.action.value, transaction_id=transaction_id)
