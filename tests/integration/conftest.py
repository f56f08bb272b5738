"""Fixtures of the integration tests: durable stores on every backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowkit import MemoryStore
from flowkit.sqlalchemy import SqlStore
from flowkit.store import Store

StoreFactory = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of stores that all reach the same data (memory, a SQLite file, a PG database),
    as engines of separate processes would."""
    if request.param == "memory":
        shared = MemoryStore()
        yield lambda: shared
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'runs.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    opened: list[SqlStore] = []
    setup = SqlStore(url)
    setup.create_all()
    setup.close()

    def factory() -> Store:
        store = SqlStore(url)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def durable_store(make_store: StoreFactory) -> Store:
    """One durable store on each backend (memory, SQLite, PostgreSQL)."""
    return make_store()
