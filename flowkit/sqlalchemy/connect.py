"""Connecting to the database: engines (with SQLite's pragmas and locking), URLs, the clock.

`SqlStore` builds its engines here; nothing in this module holds state of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import Double, Engine, bindparam, create_engine, event, literal_column
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.sql import ColumnElement

from flowkit.exceptions import StoreError
from flowkit.sqlalchemy.tables import SCHEMA_REVISION, VERSION_TABLE

__all__ = [
    "Durability",
    "SqlitePragmas",
    "checked_durability",
    "database_of",
    "first_line",
    "make_engine",
    "masked",
    "normalize_url",
    "now_expression",
    "stamp",
    "translated",
]


class SqlitePragmas:
    """How a SQLite connection is set up: journal mode, `synchronous`, busy timeout."""

    __slots__ = ("busy_timeout", "journal_mode", "synchronous")

    def __init__(self, journal_mode: str, synchronous: str, busy_timeout: float) -> None:
        self.journal_mode = journal_mode
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout


def make_engine(
    url: str,
    options: dict[str, Any],
    pragmas: SqlitePragmas | None,
    write_lock: Any,
    *,
    immediate: bool,
) -> Engine:
    """A SQLAlchemy engine on `url`; on SQLite (`pragmas` given) its connections are configured
    and, when `immediate`, every transaction begins IMMEDIATE behind `write_lock`.

    Raises:
        StoreError: the URL is malformed or its driver is missing.
    """
    try:
        if pragmas is not None:
            connect_args = {"check_same_thread": False, "timeout": pragmas.busy_timeout}
            engine = create_engine(url, connect_args=connect_args, **options)
            _sqlite_events(engine, pragmas, write_lock if immediate else None)
        else:
            engine = create_engine(url, pool_pre_ping=True, **options)
    except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
        raise StoreError(f"cannot use database URL {masked(url)}: {exc}") from None
    return engine


def _sqlite_events(engine: Engine, pragmas: SqlitePragmas, lock: Any) -> None:
    @event.listens_for(engine, "connect")
    def configure(dbapi_conn: Any, record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA journal_mode={pragmas.journal_mode}")
        cursor.execute(f"PRAGMA synchronous={pragmas.synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(pragmas.busy_timeout * 1000)}")
        cursor.close()

    if lock is None:

        @event.listens_for(engine, "begin")
        def begin_read(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

        return

    @event.listens_for(engine, "begin")
    def begin(conn: Any) -> None:
        lock.acquire()  # queue behind this process's other writers, not in SQLite's busy sleep
        conn.info[_HOLDS_LOCK] = True
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine, "checkin")
    def checkin(dbapi_conn: Any, record: Any) -> None:
        if record is not None and record.info.pop(_HOLDS_LOCK, False):
            lock.release()


def stamp(conn: Any) -> None:
    """Record the schema revision in a database whose tables were just created."""
    conn.exec_driver_sql(
        f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} "
        "(version_num VARCHAR(32) NOT NULL, "
        f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))"
    )
    found = conn.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
    if found is None:
        conn.exec_driver_sql(
            f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('{SCHEMA_REVISION}')"
        )


def now_expression(sqlite: bool, clock: Callable[[], float] | None = None) -> ColumnElement[Any]:
    """The database clock in epoch seconds, as a SQL expression (leases use it); with `clock`,
    the parameter `p_now` holding its value at each execution instead (an engine's clock)."""
    if clock is not None:
        return bindparam("p_now", callable_=clock, type_=Double)
    if sqlite:
        return literal_column("((julianday('now') - 2440587.5) * 86400.0)", Double)
    return literal_column("extract(epoch from clock_timestamp())", Double)


_HOLDS_LOCK = "flowkit_writer_lock"


def normalize_url(url: str) -> str:
    """`url` checked, with `postgresql://` meaning psycopg 3."""
    if not isinstance(url, str) or not url:
        raise StoreError(f"a database URL is a non-empty string, not {url!r}")
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def database_of(url: str) -> str:
    """The database (for SQLite: the file path) a URL names, or ''."""
    try:
        return make_url(url).database or ""
    except ArgumentError:
        return ""


def masked(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<malformed URL>"


def first_line(exc: BaseException) -> str:
    """The first line of a database error (the driver's own message when there is one)."""
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


F = TypeVar("F", bound=Callable[..., Any])
Durability = Literal["full", "acknowledged"]


def checked_durability(
    durability: object, url: str, journal_mode: str, synchronous: str | None
) -> Durability:
    """The store's durability setting, checked against its database and pragmas.

    Raises:
        StoreError: an unknown setting, or acknowledged durability outside a SQLite file in
            WAL mode (or with a `synchronous` that fsyncs every commit anyway).
    """
    if durability == "full":
        return "full"
    if durability != "acknowledged":
        raise StoreError(f"durability must be 'full' or 'acknowledged', not {durability!r}")
    if not url.startswith("sqlite") or journal_mode.upper() != "WAL":
        raise StoreError(
            "durability='acknowledged' needs a SQLite file in WAL mode (PostgreSQL: set "
            f"synchronous_commit in the server instead), not {masked(url)}"
        )
    if synchronous not in (None, "NORMAL"):
        raise StoreError(
            f"durability='acknowledged' commits with synchronous=NORMAL, not {synchronous!r}"
        )
    return "acknowledged"


def translated(method: F) -> F:
    """Turn a database error raised by a store method into `StoreError` (its cause kept).

    The store names the errors to translate in `_database_errors`, and its URL in `url`.
    """

    @functools.wraps(method)
    def translating(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except self._database_errors as exc:
            raise StoreError(
                f"{method.__name__} failed on {masked(self.url)}: {first_line(exc)}"
            ) from exc

    return cast(F, translating)
