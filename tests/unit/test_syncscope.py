"""Unit tests of `flowkit.syncscope`: which writes may defer their fsync, and when it happens."""

from __future__ import annotations

import pytest

from flowkit.memory import MemoryStore
from flowkit.syncscope import SyncScope, deferred_sync, sync_scope


def _scope(key: str, flushes: list[str]) -> SyncScope:
    return SyncScope(key, lambda: flushes.append(key))


def _recording() -> tuple[SyncScope, list[str]]:
    """A scope on ``/db/a`` and the list its flushes land in."""
    flushes: list[str] = []
    return _scope("/db/a", flushes), flushes


def test_no_scope_is_open_outside_a_block() -> None:
    """Outside any block a writer finds no scope, so it syncs by itself."""
    assert deferred_sync("/db/a") is None


def test_a_scope_serves_only_its_own_file() -> None:
    """Inside a block the scope is found for its file and not for another one."""
    scope = _scope("/db/a", [])
    with sync_scope(scope):
        assert deferred_sync("/db/a") is scope
        assert deferred_sync("/db/b") is None
    assert deferred_sync("/db/a") is None


def test_the_in_memory_store_offers_no_scope() -> None:
    """A `MemoryStore` has no file: every engine drive on it opens nothing."""
    store = MemoryStore()
    assert store.sync_key is None
    assert store.sync_scope() is None


def test_none_opens_nothing() -> None:
    """`sync_scope(None)` (a store without deferred fsync) leaves writers on their own fsync."""
    with sync_scope(None):
        assert deferred_sync("/db/a") is None


def test_a_deferred_write_not_covered_is_flushed_once_at_the_end() -> None:
    """A write deferred after the last durable commit is synced when the block ends, once."""
    scope, flushes = _recording()
    with sync_scope(scope):
        scope.defer()
        scope.defer()
    assert flushes == ["/db/a"]
    assert not scope.pending


def test_a_covered_write_costs_no_extra_flush() -> None:
    """A durable commit after the deferred writes covers them: the block ends without a flush."""
    scope, flushes = _recording()
    with sync_scope(scope):
        scope.defer()
        scope.synced(scope.mark())
    assert flushes == []


def _crash_after_deferring(scope: SyncScope) -> None:
    with sync_scope(scope):
        scope.defer()
        raise RuntimeError("step crashed")


def test_the_flush_happens_when_the_block_raises() -> None:
    """A drive that ends with an exception still syncs what it deferred."""
    scope, flushes = _recording()
    with pytest.raises(RuntimeError):
        _crash_after_deferring(scope)
    assert flushes == ["/db/a"]
    assert deferred_sync("/db/a") is None


def test_a_write_during_a_durable_commit_stays_pending() -> None:
    """A commit deferred after a durable commit began is not covered by it."""
    scope, flushes = _recording()
    with sync_scope(scope):
        scope.defer()
        mark = scope.mark()  # the checkpoint begins: it covers the first write
        scope.defer()  # another thread's write lands while the checkpoint commits
        scope.synced(mark)
        assert scope.pending
    assert flushes == ["/db/a"]


def test_nested_blocks_restore_the_outer_scope() -> None:
    """A nested drive's scope (another file) hides the outer one only for its own block."""
    outer = _scope("/db/a", [])
    inner = _scope("/db/b", [])
    with sync_scope(outer):
        with sync_scope(inner):
            assert deferred_sync("/db/a") is None
            assert deferred_sync("/db/b") is inner
        assert deferred_sync("/db/a") is outer
