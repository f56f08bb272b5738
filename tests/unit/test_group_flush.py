"""Group commit with a separate flush, and the WAL flusher that shares fsyncs between writers."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from flowkit.sqlalchemy import sqlite as sqlite_module
from flowkit.sqlalchemy.group import Entry, GroupCommit
from flowkit.sqlalchemy.sqlite import WalFlusher, wal_flusher


def test_callers_go_on_only_after_the_flush() -> None:
    """A submitted item returns after its batch was written and then flushed."""
    log: list[str] = []

    def write(batch: Sequence[Entry]) -> None:
        log.append(f"write {[e.item for e in batch]}")
        for entry in batch:
            entry.result = entry.item * 2

    group = GroupCommit(write, lambda: log.append("flush"))
    assert group.submit(21) == 42
    assert log == ["write [21]", "flush"]


def test_the_next_batch_is_written_while_the_first_one_flushes() -> None:
    """Leadership passes on before the flush: a second writer commits during the first fsync."""
    flushing = threading.Event()
    release = threading.Event()
    written: list[int] = []

    def write(batch: Sequence[Entry]) -> None:
        written.extend(e.item for e in batch)

    def flush() -> None:
        if not flushing.is_set():  # the first flush waits until the second batch is written
            flushing.set()
            assert release.wait(5)

    group = GroupCommit(write, flush)
    first = threading.Thread(target=group.submit, args=(1,))
    first.start()
    assert flushing.wait(5)
    second = threading.Thread(target=lambda: (group.submit(2), release.set()))
    second.start()
    second.join(5)
    first.join(5)
    assert not first.is_alive()
    assert not second.is_alive()
    assert written == [1, 2]


def test_a_failed_flush_fails_the_batch() -> None:
    """An fsync error reaches every caller of the batch it should have made durable."""

    def flush() -> None:
        raise OSError("disk gone")

    group = GroupCommit(lambda batch: None, flush)
    with pytest.raises(OSError, match="disk gone"):
        group.submit(1)


def test_a_failed_write_is_not_flushed() -> None:
    """A batch whose every item failed costs no fsync."""
    flushes: list[int] = []

    def write(batch: Sequence[Entry]) -> None:
        raise ValueError("bad row")

    group = GroupCommit(write, lambda: flushes.append(1))
    with pytest.raises(ValueError, match="bad row"):
        group.submit(1)
    assert flushes == []


def _counting(monkeypatch: pytest.MonkeyPatch, gate: threading.Event | None = None) -> list[str]:
    synced: list[str] = []

    def sync(database: str, known: int | None = None) -> None:
        synced.append(database)
        if gate is not None:
            assert gate.wait(5)

    monkeypatch.setattr(sqlite_module, "sync_wal", sync)
    return synced


def test_a_ticket_already_covered_costs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Waiting for a commit an earlier fsync covered returns at once."""
    synced = _counting(monkeypatch)
    flusher = WalFlusher("/db/a")
    first = flusher.committed()
    second = flusher.committed()
    flusher.wait(second)
    flusher.wait(first)
    assert synced == ["/db/a"]
    assert flusher.fsyncs == 1


def test_a_commit_made_during_an_fsync_waits_for_the_next_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An fsync covers only the commits before it began; a later one gets its own."""
    gate = threading.Event()
    synced = _counting(monkeypatch, gate)
    flusher = WalFlusher("/db/a")
    early = threading.Thread(target=flusher.sync)
    early.start()
    while not synced:  # the first fsync is running
        threading.Event().wait(0.001)
    late = flusher.committed()
    waiter = threading.Thread(target=flusher.wait, args=(late,))
    waiter.start()
    gate.set()
    early.join(5)
    waiter.join(5)
    assert flusher.fsyncs == 2


def test_a_failed_fsync_is_retried_by_the_next_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller whose fsync failed gets the error; the next one syncs again."""
    calls: list[str] = []

    def sync(database: str, known: int | None = None) -> None:
        calls.append(database)
        if len(calls) == 1:
            raise OSError("EIO")

    monkeypatch.setattr(sqlite_module, "sync_wal", sync)
    flusher = WalFlusher("/db/a")
    ticket = flusher.committed()
    with pytest.raises(OSError, match="EIO"):
        flusher.wait(ticket)
    flusher.wait(ticket)
    assert len(calls) == 2


def test_one_flusher_per_file_whatever_the_path(tmp_path: Path) -> None:
    """Writers reaching one file by different paths share its flusher."""
    (tmp_path / "sub").mkdir()
    direct = wal_flusher(str(tmp_path / "shop.db"))
    roundabout = wal_flusher(str(tmp_path / "sub" / ".." / "shop.db"))
    assert direct is roundabout
    assert wal_flusher(str(tmp_path / "other.db")) is not direct


def test_sync_wal_syncs_the_log_and_skips_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`sync_wal` syncs ``<db>-wal`` when it exists and does nothing when it does not."""
    synced: list[int] = []
    real = sqlite_module._datasync
    monkeypatch.setattr(sqlite_module, "_datasync", lambda fd: (synced.append(fd), real(fd)))
    database = tmp_path / "shop.db"
    assert sqlite_module.sync_wal(str(database)) is None  # no log yet: nothing to sync
    assert synced == []
    (tmp_path / "shop.db-wal").write_bytes(b"frames")
    inode = sqlite_module.sync_wal(str(database))
    assert inode == (tmp_path / "shop.db-wal").stat().st_ino
    assert len(synced) == 1


def test_a_new_log_gets_its_directory_synced_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory is synced the first time a log (by inode) is synced, not on every sync."""
    directories: list[str] = []
    monkeypatch.setattr(sqlite_module, "_sync_directory", directories.append)
    database = str(tmp_path / "shop.db")
    (tmp_path / "shop.db-wal").write_bytes(b"frames")
    inode = sqlite_module.sync_wal(database)
    sqlite_module.sync_wal(database, inode)
    assert directories == [str(tmp_path)]
    (tmp_path / "shop.db-wal").unlink()  # SQLite deletes the log; a new one is another file
    (tmp_path / "shop.db-wal2").write_bytes(b"keep the inode busy")
    (tmp_path / "shop.db-wal").write_bytes(b"frames again")
    sqlite_module.sync_wal(database, inode)
    assert directories == [str(tmp_path), str(tmp_path)]
