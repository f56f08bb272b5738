"""The library's side of structlog: never configures it, emits only when the app did."""

from __future__ import annotations

import logging
from typing import Any

import structlog

_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


def run_logger(workflow: str, transaction_id: str) -> tuple[Any, int]:
    """A logger bound to one run and the lowest level it lets through, or `(None, 0)`.

    An application that never configured structlog gets no output from flowkit and pays for
    nothing but this check.
    """
    if not structlog.is_configured():
        return None, 0
    logger = structlog.get_logger("flowkit").bind(workflow=workflow, transaction_id=transaction_id)
    min_level = _lowest_enabled(logger)
    if min_level is None:
        return None, 0
    return logger, min_level


def _lowest_enabled(logger: Any) -> int | None:
    check = getattr(logger, "is_enabled_for", None) or getattr(logger, "isEnabledFor", None)
    if check is None:
        return logging.DEBUG
    for level in _LEVELS:
        if check(level):
            return level
    return None
