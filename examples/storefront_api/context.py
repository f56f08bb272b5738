"""Per-request services: what a request scope holds beyond the app's singletons.

`RequestContext` is registered as a value in every request scope (so the steps of the runs
the request starts see it too, through their child scopes); `RequestLog` is a scoped service
built by a generator factory, whose cleanup runs when the scope closes and sees the exception
that closed it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import structlog
from attrs import define, field

from flowkit import RunResult, Scope

__all__ = ["RequestContext", "RequestLog", "background_context", "request_log"]


@define
class RequestContext:
    """Facts of one request that the route and the steps it runs share.

    Attributes:
        request_id: A fresh id per request (``background`` outside requests).
        route: The route's method and path template, e.g. ``POST /store/carts/{cart_id}/complete``.
    """

    request_id: str
    route: str


def background_context() -> RequestContext:
    """The context of work done outside any request (a recovered run, a queue worker)."""
    return RequestContext("background", "worker")


@define
class RequestLog:
    """What a request did, logged once when its scope closes.

    Attributes:
        context: The request.
        runs: ``(workflow, transaction id, status)`` of each run the request started or
            continued.
    """

    context: RequestContext
    runs: list[tuple[str, str, str]] = field(factory=list)

    def ran(self, result: RunResult[Any]) -> None:
        """Record a run the request started or continued."""
        self.runs.append((result.workflow, result.transaction_id, result.status.value))

    def finish(self, outcome: str) -> None:
        """Log ``request_finished`` with the outcome (``ok`` or the error's type name)."""
        structlog.get_logger("storefront").info(
            "request_finished",
            request_id=self.context.request_id,
            route=self.context.route,
            outcome=outcome,
            runs=list(self.runs),
        )


def request_log(scope: Scope) -> Iterator[RequestLog]:
    """Scoped factory of `RequestLog`: the code after ``yield`` is the scope's cleanup.

    When the request fails, the scope closes with the exception; it is thrown in here, logged
    as the outcome, and re-raised (a cleanup never swallows the request's error).
    """
    log = RequestLog(scope.resolve(RequestContext))
    try:
        yield log
    except Exception as exc:
        log.finish(type(exc).__name__)
        raise
    log.finish("ok")
