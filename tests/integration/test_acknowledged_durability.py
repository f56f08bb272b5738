"""Acknowledged durability (`SqlStore(url, durability="acknowledged")`): checkpoints commit
without their own fsync, the WAL is synced before anything is acknowledged, and a power cut
that drops the unsynced suffix is recovered by re-invoking those steps with the same keys."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import flowkit.sqlalchemy.store as store_module
from flowkit import (
    Engine,
    SimulatedCrash,
    StepContext,
    StoreError,
    TransactionState,
    WorkflowResponse,
    step,
    workflow,
)
from flowkit.sqlalchemy import SqlStore

EFFECTS: list[tuple[str, str]] = []
"""What the steps did outside the database, with their idempotency keys (survives the cut)."""
CRASH: dict[str, Any] = {"armed": False}


@step("first")
def first(value: int, ctx: StepContext) -> int:
    """An effect outside the database, keyed."""
    EFFECTS.append(("first", ctx.idempotency_key))
    return value + 1


@step("second")
def second(value: int, ctx: StepContext) -> int:
    """Another keyed effect."""
    EFFECTS.append(("second", ctx.idempotency_key))
    return value * 10


@step("third")
def third(value: int, ctx: StepContext) -> int:
    """The power goes out here, once (as a dead process would leave it)."""
    if CRASH["armed"]:
        CRASH["armed"] = False
        CRASH["snapshots"] = len(SNAPSHOTS)
        raise SimulatedCrash("power cut")
    EFFECTS.append(("third", ctx.idempotency_key))
    return value + 3


@workflow("three-effects")
def three_effects(value: int) -> WorkflowResponse[int]:
    """first, second, third: each an effect with its own idempotency key."""
    return WorkflowResponse(third(second(first(value))))


SNAPSHOTS: list[Path] = []


@pytest.fixture
def snapshotting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every WAL sync the store makes also copies the database files as they stand then."""
    SNAPSHOTS.clear()
    EFFECTS.clear()
    real = store_module.sync_wal
    database = tmp_path / "runs.db"

    def sync_and_copy(path: str) -> None:
        real(path)
        target = tmp_path / f"synced-{len(SNAPSHOTS)}"
        target.mkdir()
        for suffix in ("", "-wal"):
            source = Path(path + suffix)
            if source.exists():
                shutil.copyfile(source, target / f"runs.db{suffix}")
        SNAPSHOTS.append(target)

    monkeypatch.setattr(store_module, "sync_wal", sync_and_copy)
    return database


def _store(path: Path) -> SqlStore:
    store = SqlStore(f"sqlite:///{path}", durability="acknowledged")
    store.create_all()
    return store


def test_a_run_is_synced_once_at_its_start_and_once_when_acknowledged(snapshotting: Path) -> None:
    """Three checkpoints, two fsyncs: the run row before any step, the rest when it returns."""
    with Engine(_store(snapshotting), [three_effects]) as engine:
        before = len(SNAPSHOTS)  # create_all's own commits
        result = engine.run(three_effects, 1, transaction_id="one")
    assert result.result == 23
    assert len(SNAPSHOTS) - before == 2


def test_a_power_cut_drops_the_unsynced_suffix_and_recovery_reinvokes_it_with_the_same_keys(
    snapshotting: Path, tmp_path: Path
) -> None:
    """Recovering from the files as they stood at the last fsync re-runs first and second
    (their checkpoints were never synced) with the keys they had, and finishes the run; an
    acknowledged run is never lost."""
    with Engine(_store(snapshotting), [three_effects]) as engine:
        assert engine.run(three_effects, 1, transaction_id="acked").result == 23
        CRASH["armed"] = True
        with pytest.raises(SimulatedCrash):
            engine.run(three_effects, 2, transaction_id="cut")
    first_keys = [key for name, key in EFFECTS if name in ("first", "second")][2:]
    last_synced = SNAPSHOTS[CRASH["snapshots"] - 1]  # the power cut: nothing after this fsync

    with Engine(_store(last_synced / "runs.db"), [three_effects]) as after:
        acked = after.get("acked")
        assert acked is not None
        assert acked.status is TransactionState.DONE
        cut = after.get("cut")
        assert cut is not None
        assert cut.status is TransactionState.INVOKING
        assert cut.steps == {} or all(s.attempts == 0 for s in cut.steps.values())
        after.store.expire_lease("cut")  # its process is gone
        EFFECTS.clear()
        recovered = after.recover()
    assert [r.transaction_id for r in recovered] == ["cut"]
    assert recovered[0].result == 33
    assert [key for name, key in EFFECTS if name in ("first", "second")] == first_keys
    assert [name for name, _ in EFFECTS] == ["first", "second", "third"]


def test_acknowledged_durability_commits_with_synchronous_normal(tmp_path: Path) -> None:
    """The store's connections run synchronous=NORMAL; the default stays FULL per commit."""
    store = SqlStore(f"sqlite:///{tmp_path / 'a.db'}", durability="acknowledged")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1
    assert not store.syncs_each_commit
    assert store.sync_key is not None
    store.close()
    full = SqlStore(f"sqlite:///{tmp_path / 'f.db'}")
    assert full.durability == "full"
    assert full.syncs_each_commit
    full.close()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"durability": "fast"}, "'full' or 'acknowledged'"),
        ({"durability": "acknowledged", "journal_mode": "DELETE"}, "WAL mode"),
        ({"durability": "acknowledged", "synchronous": "FULL"}, "synchronous=NORMAL"),
    ],
)
def test_bad_durability_settings_are_store_errors(
    tmp_path: Path, options: dict[str, Any], match: str
) -> None:
    """An unknown setting, or acknowledged durability outside WAL/NORMAL, is a StoreError."""
    with pytest.raises(StoreError, match=match):
        SqlStore(f"sqlite:///{tmp_path / 'b.db'}", **options)


@pytest.mark.postgres
def test_acknowledged_durability_is_refused_on_postgresql(postgres_url: str) -> None:
    """PostgreSQL keeps its own commit durability: the setting names what to use instead."""
    with pytest.raises(StoreError, match="synchronous_commit"):
        SqlStore(postgres_url, durability="acknowledged")
