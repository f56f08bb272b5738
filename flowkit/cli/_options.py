"""Options shared by the commands, the value types behind them, and the CLI's error kinds."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

from flowkit.encryption import Encryption
from flowkit.exceptions import DefinitionError

__all__ = [
    "DEFAULT_DATABASE_URL",
    "BadValue",
    "app_option",
    "app_value",
    "database_option",
    "duration_value",
    "json_option",
    "json_value",
    "key_file_option",
    "search_path",
    "since_value",
]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DATABASE_URL = "sqlite:///flowkit-demo.db"
"""The database read-only commands open without `--database-url` or `FLOWKIT_DATABASE_URL`
(the accept-payment demo writes this file in the current directory)."""

DATABASE_ENV = "FLOWKIT_DATABASE_URL"
APP_ENV = "FLOWKIT_APP"
KEY_FILE_ENV = "FLOWKIT_KEY_FILE"

_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[wdhms])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")


class BadValue(click.ClickException):
    """A value given on the command line cannot be used: one line on stderr, exit code 2.

    (Not a `click.BadParameter`, which prints the usage text too.)
    """

    exit_code = 2


def _named(param: click.Parameter, message: str) -> BadValue:
    name = param.opts[0] if param.opts else param.human_readable_name
    return BadValue(f"{name}: {message}")


def duration_value(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Option callback: a duration like `90s`, `15m`, `1h30m`, `2d` or `1w`, as a `timedelta`.

    Raises:
        BadValue: it is not a duration.
    """
    if value is None:
        return None
    parsed = parse_duration(value)
    if parsed is None:
        raise _named(param, f"{value!r} is not a duration like 30m, 1h, 2d or 1w")
    return parsed


def since_value(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Option callback: an ISO 8601 date or datetime (UTC unless it says otherwise), or a
    duration ago, as an aware `datetime`.

    Raises:
        BadValue: it is neither a datetime nor a duration.
    """
    if value is None:
        return None
    ago = parse_duration(value)
    if ago is not None:
        return datetime.now(UTC) - ago
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _named(
            param,
            f"{value!r} is neither an ISO 8601 datetime (2026-01-31T12:00) "
            "nor a duration like 30m, 1h, 2d",
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def json_value(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Option callback: a JSON document, decoded.

    Raises:
        BadValue: it is not valid JSON.
    """
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise _named(param, f"malformed JSON ({exc.msg} at column {exc.colno})") from None


def app_value(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Option callback: `MODULE:ATTR`, like uvicorn's app string (`ATTR` may be dotted).

    Only the shape is checked; importing happens when the command runs.

    Raises:
        BadValue: it is not `MODULE:ATTR`.
    """
    if value is None:
        return None
    module, sep, attr = value.partition(":")
    if not sep or not _dotted(module) or not _dotted(attr):
        raise _named(param, f"{value!r} is not MODULE:ATTR (like myapp.flows:engine)")
    return value


def _dotted(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


def parse_duration(text: str) -> timedelta | None:
    """`1h30m` as a `timedelta`; None when `text` is not a duration."""
    compact = text.strip().lower()
    if not _DURATION.fullmatch(compact):
        return None
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(compact))
    return timedelta(seconds=seconds)


def database_option(fn: F) -> F:
    """`--database-url` (or `FLOWKIT_DATABASE_URL`), for commands that only read the store."""
    return click.option(
        "--database-url",
        envvar=DATABASE_ENV,
        default=DEFAULT_DATABASE_URL,
        show_default=True,
        show_envvar=True,
        metavar="URL",
        help="SQLAlchemy URL of the flowkit database.",
    )(fn)


def app_option(fn: F) -> F:
    """`--app MODULE:ATTR` (or `FLOWKIT_APP`), for commands that run workflow code.

    ATTR is an `Engine`, or a callable returning one, holding the store, the workflows and
    the container; open it in the command with `open_app_engine(app)`.
    """
    return click.option(
        "--app",
        "app",
        callback=app_value,
        required=True,
        metavar="MODULE:ATTR",
        envvar=APP_ENV,
        show_envvar=True,
        help="Your Engine, or a function returning one: MODULE:ATTR.",
    )(fn)


def _key_file_value(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """Option callback: the `Encryption` a key file describes (None without one)."""
    if value is None:
        return None
    try:
        return Encryption.from_key_file(value)
    except DefinitionError as exc:
        raise _named(param, str(exc)) from None


def key_file_option(fn: F) -> F:
    """`--key-file PATH` (or `FLOWKIT_KEY_FILE`): the keys encrypted values are read with.

    Without it encrypted inputs, outputs and errors are shown as ``<encrypted>``.
    """
    return click.option(
        "--key-file",
        "encryption",
        callback=_key_file_value,
        envvar=KEY_FILE_ENV,
        show_envvar=True,
        metavar="PATH",
        help='JSON {"primary": ID, "keys": {ID: BASE64}}: decrypt stored values with it.',
    )(fn)


def json_option(fn: F) -> F:
    """`--json`: machine-readable output with stable keys."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (stable keys) instead of a table."
    )(fn)


@contextmanager
def search_path(directory: str) -> Iterator[None]:
    """Put `directory` first on `sys.path` while a command runs (as uvicorn's `--app-dir`).

    The app's modules, and the classes of stored values, are then importable from it.
    """
    path = os.path.abspath(directory)
    if path in sys.path:
        yield
        return
    sys.path.insert(0, path)
    try:
        yield
    finally:
        if path in sys.path:
            sys.path.remove(path)
