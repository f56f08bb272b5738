"""The flowkit pytest plugin (registered through the `pytest11` entry point)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkit.container import Registry
from flowkit.engine import Engine
from flowkit.memory import MemoryStore
from flowkit.sqlalchemy import SqlStore


@pytest.fixture
def flowkit_registry() -> Iterator[Registry]:
    """A fresh `flowkit.Registry`, closed (singleton cleanups run) after the test."""
    registry = Registry()
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture(params=["memory", "sqlite"])
def flowkit_engine(
    request: pytest.FixtureRequest, tmp_path: Path, flowkit_registry: Registry
) -> Iterator[Engine]:
    """An `Engine` on an in-memory store, then on a SQLite file (each test runs on both).

    Its container is `flowkit_registry`; workflows register on first run.
    """
    if request.param == "memory":
        store = MemoryStore()
    else:
        sql = SqlStore(f"sqlite:///{tmp_path / 'flowkit.db'}")
        sql.create_all()
        store = sql  # type: ignore[assignment]
    engine = Engine(store, container=flowkit_registry)
    try:
        yield engine
    finally:
        engine.close()
