"""A ready structlog setup for applications: `configure(dev=True)`.

flowkit itself never configures logging: it emits its run events (spec §7) only once the
application has configured structlog. Call `configure()` once, at the start of a program, to
get them (and your own `structlog.get_logger()` events) rendered for people in development or
as JSON lines in production, with secrets redacted (values under secret keys, every
`flowkit.Secret`, card numbers)::

    import flowkit.logging

    flowkit.logging.configure(dev=False, level="INFO")

It composes with `Engine.subscribe`: subscribers still receive every event as an object, and
structlog receives the same events as log lines.
"""

from __future__ import annotations

import enum
import re
import sys
import uuid
from collections.abc import Iterable, Mapping, MutableMapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TextIO

import attrs
import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import Processor

from flowkit.secret import Secret

__all__ = ["DEFAULT_REDACTED_KEYS", "REDACTED", "RedactSecrets", "configure", "mask_card_numbers"]

DEFAULT_REDACTED_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "token",
    "authorization",
    "cookie",
    "card_number",
    "cvc",
    "cvv",
)
"""Keys `configure` redacts unless told otherwise (matching is described on `RedactSecrets`)."""

REDACTED = "[redacted]"
"""What a redacted value is replaced with."""

_MAX_DEPTH = 16  # deeper (or self-referencing) structures are left as they are past this
_DIGIT_RUN = re.compile(r"[0-9]+(?:[ -][0-9]+)*")
_SEPARATOR = re.compile(r"[ -]")


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def _is_card_run(run: str) -> bool:
    groups = _SEPARATOR.split(run)
    for start in range(len(groups)):
        digits = ""
        for group in groups[start:]:
            digits += group
            if len(digits) > 19:
                break
            if len(digits) >= 13 and _luhn(digits):
                return True
    return False


def mask_card_numbers(text: str) -> str:
    """`text` with every card-like digit run replaced by `REDACTED`.

    A card-like run has 13 to 19 digits (groups separated by single spaces or dashes allowed)
    and passes the Luhn check; digit strings that fail it (order references) are kept.

    Args:
        text: Any text (a log line, a message).

    Returns:
        The text, masked.
    """
    if len(text) < 13:
        return text
    return _DIGIT_RUN.sub(lambda m: REDACTED if _is_card_run(m.group()) else m.group(), text)


class RedactSecrets:
    """A structlog processor replacing the values of secret keys, in nested structures too.

    A key matches when, lower-cased with `-` read as `_`, it equals a configured key or ends
    with `_` and one (`stripe_api_key`, `X-Authorization`, `client_secret`). Values under
    matching keys are replaced with `REDACTED` in the event and in every dict, list and tuple
    inside it, and in attrs instances that have such fields (they are then logged as dicts);
    the application's own objects are never modified (containers are copied). Every
    `flowkit.Secret` becomes ``Secret(***)`` and card-like digit runs in strings (the event's
    message included) become `REDACTED` (see `mask_card_numbers`).

    Args:
        keys: The secret key names.
    """

    def __init__(self, keys: Iterable[str] = DEFAULT_REDACTED_KEYS) -> None:
        self.keys = frozenset(_normalize(k) for k in keys)
        self._suffixes = tuple("_" + k for k in self.keys)

    def is_secret(self, key: object) -> bool:
        """True when values under `key` must not be logged."""
        if not isinstance(key, str):
            return False
        name = _normalize(key)
        return name in self.keys or name.endswith(self._suffixes)

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Redact `event_dict` in place (structlog gives every processor its own copy)."""
        for key, value in event_dict.items():
            if key != "event":
                event_dict[key] = self._redact(key, value, 0)
            elif isinstance(value, str):
                event_dict[key] = mask_card_numbers(value)
        return event_dict

    def _redact(self, key: object, value: Any, depth: int) -> Any:
        if self.is_secret(key):
            return REDACTED
        if isinstance(value, str):
            return mask_card_numbers(value)
        if isinstance(value, Secret):
            return "Secret(***)"
        if depth >= _MAX_DEPTH:
            return value
        if isinstance(value, Mapping):
            return {k: self._redact(k, v, depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self._redact(None, v, depth + 1) for v in value]
        if isinstance(value, tuple):
            return tuple(self._redact(None, v, depth + 1) for v in value)
        if attrs.has(type(value)) and any(
            self.is_secret(a.name) for a in attrs.fields(type(value))
        ):
            # rendered as its fields, so the secret ones can be hidden
            return self._redact(key, attrs.asdict(value, recurse=False), depth)
        return value


def configure(
    dev: bool = True,
    *,
    level: int | str = "INFO",
    redact: Iterable[str] = DEFAULT_REDACTED_KEYS,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for an application (flowkit's events included).

    Every event gets an ISO 8601 UTC `timestamp` and its `level`; values under secret keys
    are redacted (see `RedactSecrets`). Tracebacks never include local variables, which could
    hold secrets the redaction cannot see.

    Args:
        dev: True renders coloured, aligned lines for people (colours only on a terminal);
            False renders one JSON object per line, for log collectors.
        level: The lowest level logged (`"DEBUG"` shows every step event; `"INFO"` run
            outcomes and failures).
        redact: Key names whose values are never logged.
        stream: Where lines go (default: `sys.stderr`, leaving stdout to the program).
    """
    out = stream if stream is not None else sys.stderr
    structlog.configure(
        processors=[*_shared_processors(redact), *_renderers(dev, out)],
        wrapper_class=structlog.make_filtering_bound_logger(_level(level)),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )


def _shared_processors(redact: Iterable[str]) -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        RedactSecrets(redact),
        structlog.processors.StackInfoRenderer(),
    ]


def _renderers(dev: bool, out: TextIO) -> list[Processor]:
    if dev:
        colors = bool(getattr(out, "isatty", lambda: False)())
        formatter = structlog.dev.RichTracebackFormatter(show_locals=False)
        return [
            structlog.dev.set_exc_info,
            _masked(structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=formatter)),
        ]
    transformer = ExceptionDictTransformer(show_locals=False)
    return [
        structlog.processors.ExceptionRenderer(transformer),
        _masked(structlog.processors.JSONRenderer(default=_json_default)),
    ]


def _masked(renderer: Processor) -> Processor:
    """`renderer` with card-like digit runs masked in the line it renders (tracebacks too)."""

    def render(logger: Any, method_name: str, event_dict: Any) -> Any:
        line = renderer(logger, method_name, event_dict)
        return mask_card_numbers(line) if isinstance(line, str) else line

    return render


def _level(level: int | str) -> int:
    if isinstance(level, int):
        return level
    levels = {"CRITICAL": 50, "ERROR": 40, "WARNING": 30, "WARN": 30, "INFO": 20, "DEBUG": 10}
    try:
        return levels[level.upper()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {sorted(levels)}") from None


def _normalize(key: str) -> str:
    return key.lower().replace("-", "_")


def _json_default(value: Any) -> Any:
    """JSON for the values flowkit's events carry (Decimal as a string, never rounded)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if attrs.has(type(value)):
        return attrs.asdict(value, recurse=False)
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    return repr(value)
