"""Fixtures shared by every test: databases on SQLite files and on the real PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

POSTGRES_ENV = "FLOWKIT_TEST_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _admin_url() -> str:
    return os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)


def _connect_admin() -> object:
    """Connect to the server's maintenance database with autocommit (for CREATE DATABASE)."""
    import psycopg

    url = _admin_url().replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(url, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The base URL of a reachable PostgreSQL server; skips (or fails under CI=true) when absent."""
    try:
        conn = _connect_admin()
    except Exception as exc:  # the driver raises several types for "not there"
        reason = f"PostgreSQL unreachable at {_admin_url()} ({type(exc).__name__}: {exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI expects PostgreSQL: {reason}")
        pytest.skip(reason)
    conn.close()  # type: ignore[attr-defined]
    return _admin_url()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"flowkit_t_{uuid.uuid4().hex[:12]}"
    conn = _connect_admin()
    conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[attr-defined]
    base = postgres_server.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        conn.execute(  # type: ignore[attr-defined]
            f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        )
        conn.close()  # type: ignore[attr-defined]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite file URL in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs once on a SQLite file and once on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(autouse=True)
def _structlog_as_found() -> Iterator[None]:
    """Each test meets structlog unconfigured: `capture_logs` and `configure` calls do not leak.

    `structlog.testing.capture_logs` restores the processors it replaced by calling `configure`,
    which leaves structlog marked configured (printing to stdout) for every later test.
    """
    import structlog

    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Accept the `timeout` setting without pytest-timeout: the suite still collects, unbounded."""
    try:
        import pytest_timeout  # noqa: F401
    except ImportError:
        parser.addini(
            "timeout", "per-test limit in seconds (needs pytest-timeout, in the dev extra)"
        )


def pytest_configure(config: pytest.Config) -> None:
    """Register the `timeout` marker when pytest-timeout is absent (it then has no effect)."""
    if not config.pluginmanager.hasplugin("timeout"):
        config.addinivalue_line(
            "markers", "timeout(seconds): per-test limit (needs pytest-timeout)"
        )
