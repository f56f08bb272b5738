"""Threads syncing one SQLite WAL at once share fsyncs, and none returns uncovered."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import flowkit.sqlalchemy.sqlite as sqlite_module
from flowkit.sqlalchemy.sqlite import sync_wal


def test_concurrent_syncs_share_fsyncs_and_each_waits_for_one_begun_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight threads arriving while a sync runs are served by one more sync, begun after them."""
    database = str(tmp_path / "w.db")
    Path(database + "-wal").write_bytes(b"log")
    began: list[int] = []
    first_running = threading.Event()
    release_first = threading.Event()

    def slow_datasync(fd: int) -> None:
        began.append(len(began) + 1)
        if len(began) == 1:
            first_running.set()
            release_first.wait(5)

    monkeypatch.setattr(sqlite_module, "_datasync", slow_datasync)
    returned_after: list[int] = []
    leader = threading.Thread(target=sync_wal, args=(database,))
    leader.start()
    assert first_running.wait(5)

    def follower() -> None:
        sync_wal(database)
        returned_after.append(len(began))

    followers = [threading.Thread(target=follower) for _ in range(8)]
    for t in followers:
        t.start()
    syncer = sqlite_module._syncers[sqlite_module.database_key(database)]
    waiting = threading.Event()
    for _ in range(5000):  # until all eight wait on the syncer (CPython's Condition keeps them)
        if len(syncer._cond._waiters) == 8:  # type: ignore[attr-defined]
            break
        waiting.wait(0.001)
    assert len(syncer._cond._waiters) == 8  # type: ignore[attr-defined]
    release_first.set()
    for t in [leader, *followers]:
        t.join(5)
    assert len(began) == 2  # the one in flight, and one for all eight that came during it
    assert returned_after == [2] * 8  # none was covered by the sync begun before it called


def test_a_failed_sync_covers_nobody(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the fsync fails, the caller sees the error and the next call syncs again."""
    database = str(tmp_path / "f.db")
    Path(database + "-wal").write_bytes(b"log")
    calls: list[int] = []

    def failing_once(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            raise OSError("disk gone")

    monkeypatch.setattr(sqlite_module, "_datasync", failing_once)
    with pytest.raises(OSError, match="disk gone"):
        sync_wal(database)
    sync_wal(database)
    assert len(calls) == 2
