"""One SQLite connection per file for its writers in a process: the store's checkpoints and the
payment module's writes share it (and its page cache); reads use it only when it is free."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowkit.sqlalchemy import SqlStore
from flowkit.sqlalchemy import sqlite as sqlite_module
from flowkit.sqlalchemy.sqlite import SharedConnection, shared_connection
from payment.adapters.engine import create_payment_engine
from payment.adapters.schema import upgrade_schema
from payment.adapters.sqlalchemy import SqlPaymentStore


@pytest.fixture
def payment_store(tmp_path: Path) -> Iterator[SqlPaymentStore]:
    """The payment module's SQL store on ``shop.db``."""
    engine = create_payment_engine(f"sqlite:///{tmp_path / 'shop.db'}")
    upgrade_schema(engine)
    store = SqlPaymentStore(engine)
    yield store
    store.close()


def _shared_of(path: Path) -> SharedConnection:
    """The registered shared connection of `path` (attached by someone already)."""
    return sqlite_module._shared[sqlite_module.database_key(str(path))]


def test_one_file_reached_by_two_paths_gets_one_connection(tmp_path: Path) -> None:
    """Two spellings of one file attach to the same connection; the last detach closes it."""
    (tmp_path / "sub").mkdir()
    first = shared_connection(str(tmp_path / "shop.db"), 5.0)
    second = shared_connection(str(tmp_path / "sub" / ".." / "shop.db"), 5.0)
    assert first is second
    with first.lock:
        conn = first.connection("FULL")
    first.detach()
    assert conn.execute("SELECT 1").fetchone() == (1,)  # still open for the other user
    second.detach()
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    third = shared_connection(str(tmp_path / "shop.db"), 5.0)
    assert third is not first
    third.detach()


def test_synchronous_is_set_only_when_asked_and_only_when_it_differs(tmp_path: Path) -> None:
    """`connection(mode)` switches the pragma once; `connection(None)` leaves it as it is."""
    shared = shared_connection(str(tmp_path / "shop.db"), 5.0)
    seen: list[str] = []
    try:
        with shared.lock:
            conn = shared.connection("NORMAL")
            conn.set_trace_callback(seen.append)
            assert shared.connection("NORMAL") is conn
            assert shared.connection(None).execute("PRAGMA synchronous").fetchone() == (1,)
            shared.connection("FULL")
            assert conn.execute("PRAGMA synchronous").fetchone() == (2,)
    finally:
        shared.detach()
    assert [s for s in seen if s.startswith("PRAGMA synchronous=")] == ["PRAGMA synchronous=FULL"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")
def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    """After a fork the child writes on a connection of its own, and the parent's (left
    unclosed in the child) goes on working in the parent."""
    shared = shared_connection(str(tmp_path / "shop.db"), 5.0)
    try:
        with shared.lock:
            parent = shared.connection("FULL")
            parent.execute("CREATE TABLE t (n INTEGER)")
        pid = os.fork()
        if pid == 0:  # the child: exit status 0 only if it got a new, working connection
            status = 1
            try:
                with shared.lock:
                    child = shared.connection("FULL")
                    child.execute("INSERT INTO t VALUES (1)")
                    status = 0 if child is not parent else 2
            finally:
                os._exit(status)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        with shared.lock:
            assert shared.connection(None) is parent
            assert parent.execute("SELECT n FROM t").fetchall() == [(1,)]
    finally:
        shared.detach()


def test_a_discarded_connection_is_replaced_on_next_use(tmp_path: Path) -> None:
    """After `discard` (an error broke it) the next use opens a fresh connection."""
    shared = shared_connection(str(tmp_path / "shop.db"), 5.0)
    try:
        with shared.lock:
            first = shared.connection("FULL")
            shared.discard()
            second = shared.connection("FULL")
        assert second is not first
        assert second.execute("PRAGMA foreign_keys").fetchone() == (1,)
        assert second.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        shared.detach()


def test_store_and_payment_module_on_one_file_write_through_one_connection(
    tmp_path: Path, payment_store: SqlPaymentStore
) -> None:
    """A store on the module's file checkpoints through the connection the module writes on."""
    with SqlStore(f"sqlite:///{tmp_path / 'shop.db'}") as store:
        assert store._writer._writer() is _shared_of(tmp_path / "shop.db").connection(None)
        with payment_store.write() as repo:
            assert repo._connection is store._writer._writer()
    with SqlStore(f"sqlite:///{tmp_path / 'runs.db'}") as elsewhere, payment_store.write() as repo:
        assert repo._connection is not elsewhere._writer._writer()


def test_a_store_in_memory_or_another_journal_keeps_its_own_connection(tmp_path: Path) -> None:
    """Only a file in WAL mode shares: in memory, or with another journal, nothing is shared."""
    with SqlStore("sqlite://") as memory:
        assert memory._writer._shared is None
    with SqlStore(f"sqlite:///{tmp_path / 'd.db'}", journal_mode="DELETE") as other:
        assert other._writer._shared is None
        assert sqlite_module.database_key(str(tmp_path / "d.db")) not in sqlite_module._shared


def test_a_read_while_another_thread_writes_takes_a_pooled_connection(
    tmp_path: Path, payment_store: SqlPaymentStore
) -> None:
    """A read never waits for a writer: with the lock held elsewhere it reads on the pool."""
    shared = _shared_of(tmp_path / "shop.db")
    with shared.lock:
        idle = shared.connection(None)
    holding, done = threading.Event(), threading.Event()

    def writer() -> None:
        with shared.lock:
            holding.set()
            done.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert holding.wait(5)
        with payment_store.read() as repo:
            assert repo._connection is not idle
            assert repo.list_collections() == []
    finally:
        done.set()
        thread.join(10)
    with payment_store.read() as repo:  # free again: the read takes the warm connection
        assert repo._connection is idle


def test_a_read_inside_a_write_of_the_same_thread_goes_to_the_pool(
    tmp_path: Path, payment_store: SqlPaymentStore
) -> None:
    """The lock is re-entrant, so a nested read must not begin a second transaction on it."""
    with payment_store.write() as writing, payment_store.read() as reading:
        assert reading._connection is not writing._connection
        assert reading.list_collections() == []
