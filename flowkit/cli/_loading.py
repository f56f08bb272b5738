"""Opening engines: from the database alone (read-only commands) or from the user's app."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from flowkit.cli._options import BadValue
from flowkit.encryption import Encryption
from flowkit.engine import Engine
from flowkit.exceptions import FlowkitError, StoreError
from flowkit.sqlalchemy import SqlStore
from flowkit.workflow import Workflow

__all__ = ["load_engine", "load_object", "load_workflow", "open_app_engine", "open_read_engine"]


def load_object(spec: str, option: str = "--app") -> Any:
    """Import `MODULE:ATTR` (ATTR may be dotted) and return the attribute.

    Raises:
        BadValue: the module does not exist or lacks the attribute (exit code 2).
        click.ClickException: importing the module raised (exit code 1).
    """
    module_name, _, attr = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and _is_prefix(exc.name, module_name):
            raise BadValue(f"{option} {spec!r}: no module named {exc.name!r}") from None
        raise _failed(f"importing {module_name!r}", exc) from None
    except Exception as exc:
        raise _failed(f"importing {module_name!r}", exc) from None
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise BadValue(
                f"{option} {spec!r}: {module_name!r} has no attribute {attr!r}"
            ) from None
    return target


def load_engine(spec: str) -> Engine:
    """The `Engine` named by an app string: the object itself, or what calling it returns.

    Raises:
        BadValue: the object is neither an Engine nor a callable returning one.
        click.ClickException: calling it raised.
    """
    found = load_object(spec)
    if isinstance(found, Engine):
        return found
    if isinstance(found, Workflow) or not callable(found):
        raise BadValue(f"--app {spec!r} is {_describe(found)}, not an Engine or a factory of one")
    try:
        made = found()
    except FlowkitError:
        raise
    except Exception as exc:
        raise _failed(f"calling {spec!r}", exc) from None
    if not isinstance(made, Engine):
        raise BadValue(f"--app {spec!r} returned {_describe(made)}, not an Engine")
    return made


@contextmanager
def open_app_engine(spec: str) -> Iterator[Engine]:
    """The app's engine for one command, closed afterwards (its store with it)."""
    with load_engine(spec) as engine:
        yield engine


def load_workflow(spec: str) -> Workflow[Any, Any]:
    """The `Workflow` named by `MODULE:WORKFLOW`.

    Raises:
        BadValue: the object is not a workflow.
    """
    found = load_object(spec, option="workflow")
    if not isinstance(found, Workflow):
        raise BadValue(f"{spec!r} is {_describe(found)}, not a flowkit Workflow")
    return found


@contextmanager
def open_read_engine(url: str, encryption: Encryption | None = None) -> Iterator[Engine]:
    """An engine without workflows on the database at `url`, for reading and purging
    (with `encryption`, encrypted values are read in clear).

    Raises:
        StoreError: the URL is unusable, the SQLite file does not exist, or the database
            has no flowkit schema (`SchemaMismatch`).
    """
    _check_sqlite_file(url)
    store = SqlStore(url)
    try:
        engine = Engine(store, encryption=encryption)
    except BaseException:
        store.close()
        raise
    with engine:
        yield engine


def _check_sqlite_file(url: str) -> None:
    """Refuse a missing SQLite file (SQLite would create an empty one and find no schema)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return  # SqlStore reports a malformed URL in its own words
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return
    if not path.startswith("file:") and not os.path.exists(path):
        raise StoreError(f"no SQLite database at {os.path.abspath(path)}")


def _is_prefix(package: str, module: str) -> bool:
    return module == package or module.startswith(package + ".")


def _failed(doing: str, exc: BaseException) -> click.ClickException:
    return click.ClickException(f"{doing} failed: {type(exc).__name__}: {exc}")


def _describe(value: object) -> str:
    return f"a {type(value).__module__}.{type(value).__qualname__}"
