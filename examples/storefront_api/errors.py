"""Errors as HTTP answers: one handler per error family, each a one-line JSON reason.

==========================================================  =====  ============================
error                                                       HTTP   code
==========================================================  =====  ============================
InvalidAmount, InvalidCurrency, InvalidData                 400    invalid_amount / _currency /
                                                                   _data
WebhookSignatureError                                       400    invalid_signature
malformed JSON body                                         400    malformed_json
missing or wrong ``X-Admin-Key``                            401    unauthorized
PaymentActionRequired                                       402    payment_action_required
                                                                   (with ``action``)
PaymentNotAuthorized (declined, pending)                    402    payment_not_authorized
NotFound (cart, collection, payment, provider), RunNotFound 404    not_found
CaptureExceedsAuthorized, RefundExceedsCaptured,            409    the error's name in
PaymentAlreadyCaptured, PaymentAlreadyAuthorized,                  snake_case
PaymentCanceled, CartNotEligible, ProviderDisabled,
OutOfStock, TransactionInProgress, TransactionConflict,
StepNotWaiting
body over the size limit                                    413    body_too_large
request validation (wrong types, missing fields)            422    invalid_request
ProviderError                                               502    provider_error
                                                                   (503 when retryable)
==========================================================  =====  ============================

A `StoredError` (a repeated transaction id whose run failed before) is answered as the error
it stores. Anything else is a bug: logged with its traceback, answered 500 without details.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from examples.checkout import OutOfStock
from flowkit import (
    FlowkitError,
    RunNotFound,
    StepNotWaiting,
    StoredError,
    TransactionConflict,
    TransactionInProgress,
)
from payment import (
    CaptureExceedsAuthorized,
    CartNotEligible,
    InvalidAmount,
    InvalidCurrency,
    InvalidData,
    NotFound,
    PaymentActionRequired,
    PaymentAlreadyAuthorized,
    PaymentAlreadyCaptured,
    PaymentCanceled,
    PaymentError,
    PaymentNotAuthorized,
    ProviderDisabled,
    ProviderError,
    RefundExceedsCaptured,
    WebhookSignatureError,
)
from payment.domain import thaw_json

from .models import ActionRequiredBody, ErrorBody

__all__ = ["ERROR_RESPONSES", "error_response", "install_error_handlers", "status_of"]

_STATUS: Mapping[type[BaseException], int] = {
    InvalidAmount: 400,
    InvalidCurrency: 400,
    InvalidData: 400,
    WebhookSignatureError: 400,
    PaymentActionRequired: 402,
    PaymentNotAuthorized: 402,
    NotFound: 404,
    RunNotFound: 404,
    CaptureExceedsAuthorized: 409,
    RefundExceedsCaptured: 409,
    PaymentAlreadyCaptured: 409,
    PaymentAlreadyAuthorized: 409,
    PaymentCanceled: 409,
    CartNotEligible: 409,
    ProviderDisabled: 409,
    OutOfStock: 409,
    TransactionInProgress: 409,
    TransactionConflict: 409,
    StepNotWaiting: 409,
    ProviderError: 502,
}
_CODES: Mapping[type[BaseException], str] = {
    WebhookSignatureError: "invalid_signature",
    NotFound: "not_found",
    RunNotFound: "not_found",
    TransactionInProgress: "run_in_progress",
}
_BY_NAME = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in _STATUS}


def _known(kind: type[BaseException]) -> type[BaseException] | None:
    """The most specific class of the table that `kind` is (None when it is none of them)."""
    return next((cls for cls in kind.__mro__ if cls in _STATUS), None)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def status_of(kind: type[BaseException]) -> int | None:
    """The HTTP status of an error class (None when it is not an expected error)."""
    known = _known(kind)
    return None if known is None else _STATUS[known]


def _code(kind: type[BaseException]) -> str:
    known = _known(kind) or kind
    return _CODES.get(known, _snake(known.__name__))


def one_line(text: str) -> str:
    """The first line of a message, trimmed (reasons never span lines)."""
    lines = text.strip().splitlines()
    return lines[0].strip() if lines else ""


def error_response(
    status: int, detail: str, code: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The JSON answer of every error: ``{"detail": ..., "code": ...}``."""
    body = ErrorBody(detail=one_line(detail) or "error", code=code)
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers or {}))


def _expected(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, PaymentActionRequired):
        return _action_required(exc)
    status = status_of(type(exc))
    if status is None:  # an error of the family this table does not know: a bug here
        return _unexpected(request, exc)
    headers = {"Retry-After": "1"} if isinstance(exc, ProviderError) and exc.retryable else {}
    if headers:
        status = 503
    return error_response(status, str(exc), _code(type(exc)), headers)


def _action_required(exc: PaymentActionRequired) -> JSONResponse:
    body = ActionRequiredBody(
        detail=one_line(str(exc)),
        code="payment_action_required",
        session_id=exc.session_id,
        action=thaw_json(exc.action),  # a provider's action nests frozen JSON objects
    )
    return JSONResponse(body.model_dump(), status_code=402)


def _stored(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StoredError)
    kind = _BY_NAME.get(exc.type_name)
    if kind is None:
        return error_response(409, f"the run failed: {exc.message}", "run_failed")
    return error_response(_STATUS[kind], exc.message, _code(kind))


def _flowkit(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, StoredError):
        return _stored(request, exc)
    if status_of(type(exc)) is None:
        return _unexpected(request, exc)
    return _expected(request, exc)


def _validation_reason(errors: Sequence[Any]) -> tuple[int, str, str]:
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return 400, "malformed_json", f"malformed JSON body: {first.get('ctx', {}).get('error')}"
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return 422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}{more}"


def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    status, code, reason = _validation_reason(exc.errors())
    return error_response(status, reason, code)


def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = "unauthorized" if exc.status_code == 401 else f"http_{exc.status_code}"
    return error_response(exc.status_code, str(exc.detail), code, exc.headers)


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    structlog.get_logger("storefront").error(
        "unexpected_error", path=request.url.path, exc_info=exc
    )
    return error_response(500, "Internal server error", "internal_error")


Handler = Callable[[Request, Exception], JSONResponse]
_HANDLERS: Sequence[tuple[type[Exception], Handler]] = (
    (PaymentError, _expected),
    (OutOfStock, _expected),
    (FlowkitError, _flowkit),
    (RequestValidationError, _validation),
    (HTTPException, _http),
    (Exception, _unexpected),
)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error family with its status and a one-line reason (see the module doc)."""
    for kind, handler in _HANDLERS:
        app.add_exception_handler(kind, handler)


def _documented(model: type[ErrorBody], description: str) -> dict[str, Any]:
    return {"model": model, "description": description}


ERROR_RESPONSES: Mapping[int, dict[str, Any]] = {
    400: _documented(ErrorBody, "Invalid amount, currency, data, JSON or signature"),
    401: _documented(ErrorBody, "Missing or wrong X-Admin-Key"),
    402: _documented(ActionRequiredBody, "The payment needs the customer's action"),
    404: _documented(ErrorBody, "Unknown id"),
    409: _documented(ErrorBody, "Conflicts with the current state"),
    413: _documented(ErrorBody, "Request body too large"),
    422: _documented(ErrorBody, "Request validation failed"),
    502: _documented(ErrorBody, "The payment provider failed"),
    503: _documented(ErrorBody, "The payment provider failed; retry"),
}
"""Every error answer, for the routes' OpenAPI ``responses`` (pick what applies)."""
