"""Emitting to structlog on the library's side: never configures it, emits only when the app did."""

from __future__ import annotations

import logging
from typing import Any

import structlog

_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
# filtering bound loggers fix their level when configured: their answer can be reused until
# the configuration changes (the key holds the wrapper class, which reconfiguring replaces)
_static_levels: dict[tuple[Any, Any], int | None] = {}
_loggers: dict[tuple[Any, ...], Any] = {}


def enabled_level() -> int | None:
    """The lowest level structlog lets through for flowkit, or None when it is not configured.

    An application that never configured structlog gets no output from flowkit and pays for
    nothing but this check.
    """
    if not structlog.is_configured():
        return None
    config = structlog.get_config()
    wrapper = config["wrapper_class"]
    key = (wrapper, config["logger_factory"])
    if key in _static_levels:
        return _static_levels[key]
    level = _lowest_enabled(structlog.get_logger("flowkit"))
    if getattr(wrapper, "__module__", "") == "structlog._native":
        _static_levels[key] = level
    return level


def logger() -> Any:
    """flowkit's structlog logger, bound once per configuration (binding costs microseconds)."""
    config = structlog.get_config()
    key = (config["wrapper_class"], config["logger_factory"], *config["processors"])
    found = _loggers.get(key)
    if found is None:
        found = structlog.get_logger("flowkit").bind()
        if len(_loggers) > 8:  # configurations come and go in test suites
            _loggers.clear()
        _loggers[key] = found
    return found


def _lowest_enabled(logger: Any) -> int | None:
    check = getattr(logger, "is_enabled_for", None) or getattr(logger, "isEnabledFor", None)
    if check is None:
        return logging.DEBUG
    for level in _LEVELS:
        if check(level):
            return level
    return None
