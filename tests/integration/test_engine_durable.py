"""Durable runs through the Engine, on the in-memory store, SQLite and PostgreSQL (spec §6)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from durable_app import (
    ALL,
    Ledger,
    Order,
    ledger_registry,
    outer,
    three_steps,
    with_wait,
)

from flowkit import (
    DefinitionError,
    Engine,
    LeaseLost,
    MemoryStore,
    RunNotFound,
    StepNotWaiting,
    StepState,
    StoredError,
    TransactionConflict,
    TransactionInProgress,
    TransactionState,
    UnknownStep,
)
from flowkit.store import Store
from flowkit.testing.faults import Crash, FailurePlan, PlanFaults

StoreFactory = Callable[[], Store]


@pytest.fixture
def ledger() -> Ledger:
    """A fresh ledger of step calls."""
    return Ledger()


def engine(make_store: StoreFactory, ledger: Ledger, **options: Any) -> Engine:
    """An engine holding every test workflow, resolving the ledger."""
    return Engine(make_store(), ALL, container=ledger_registry(ledger), **options)


def crash_at(eng: Engine, tx: str, crash: Crash) -> None:
    """Make the engine's run `tx` die at `crash`."""
    eng.faults[tx] = PlanFaults(FailurePlan(crash=crash))


def test_done_run_is_stored_and_read_back(make_store: StoreFactory, ledger: Ledger) -> None:
    """A finished run's record holds its input, output and every step, exactly decoded."""
    eng = engine(make_store, ledger)
    order = Order("o1", Decimal("10.50"))
    result = eng.run(three_steps, order, transaction_id="tx-done")
    record = eng.get("tx-done")
    assert result.status is TransactionState.DONE
    assert record is not None
    assert record.input == order
    assert record.output == {
        "a": "first-out",
        "b": "second-out",
        "c": "third-out",
        "amount": Decimal("10.50"),
    }
    assert [r.state for r in record.steps.values()] == [StepState.DONE] * 3
    assert record.owner is None
    assert eng.get("unknown") is None


def test_finished_run_is_not_invoked_again(make_store: StoreFactory, ledger: Ledger) -> None:
    """Running a finished transaction id again returns the stored result and invokes nothing."""
    eng = engine(make_store, ledger)
    order = Order("o2", Decimal("1"))
    first = eng.run(three_steps, order, transaction_id="tx-again")
    calls = len(ledger.calls)
    again = engine(make_store, ledger).run(three_steps, order, transaction_id="tx-again")
    assert again.result == first.result
    assert len(ledger.calls) == calls


def test_reverted_stored_run_raises_stored_error(make_store: StoreFactory, ledger: Ledger) -> None:
    """A reverted run read back from the store raises StoredError naming the step and type."""
    eng = engine(make_store, ledger)
    order = Order("o3", Decimal("1"), fail_at="second")
    with pytest.raises(RuntimeError, match="second failed"):
        eng.run(three_steps, order, transaction_id="tx-rev")
    with pytest.raises(StoredError) as caught:
        engine(make_store, ledger).run(three_steps, order, transaction_id="tx-rev")
    assert caught.value.step == "second"
    assert caught.value.type_name == "RuntimeError"
    stored = engine(make_store, ledger).run(
        three_steps, order, transaction_id="tx-rev", throw_on_error=False
    )
    assert stored.status is TransactionState.REVERTED
    assert stored.errors[0].exception is None


def test_same_id_other_input_or_workflow_conflicts(
    make_store: StoreFactory, ledger: Ledger
) -> None:
    """A transaction id reused with another input or workflow raises TransactionConflict."""
    eng = engine(make_store, ledger)
    eng.run(three_steps, Order("o4", Decimal("1")), transaction_id="tx-c")
    with pytest.raises(TransactionConflict, match="another input"):
        eng.run(three_steps, Order("o4", Decimal("2")), transaction_id="tx-c")
    with pytest.raises(TransactionConflict, match="three-steps"):
        eng.run(outer, Order("o4", Decimal("1")), transaction_id="tx-c")


def test_run_owned_by_live_engine_is_in_progress(make_store: StoreFactory, ledger: Ledger) -> None:
    """A run owned under a live lease is in progress; once the lease expires it is taken over."""
    dying = engine(make_store, ledger)
    crash_at(dying, "tx-live", Crash("first"))
    order = Order("o5", Decimal("1"))
    with pytest.raises(BaseException, match="simulated crash"):
        dying.run(three_steps, order, transaction_id="tx-live")
    other = engine(make_store, ledger)
    with pytest.raises(TransactionInProgress):
        other.run(three_steps, order, transaction_id="tx-live")
    other.store.expire_lease("tx-live")
    result = other.run(three_steps, order, transaction_id="tx-live")
    assert result.status is TransactionState.DONE
    assert ledger.count("invoke", "first") == 1


@pytest.mark.parametrize("crash_step", ["first", "second", "third"])
def test_recover_after_checkpoint_never_reinvokes(
    make_store: StoreFactory, ledger: Ledger, crash_step: str
) -> None:
    """A crash right after a step's checkpoint is recovered without invoking that step again."""
    dying = engine(make_store, ledger)
    crash_at(dying, "tx-rec", Crash(crash_step, "invoke", "after"))
    with pytest.raises(BaseException, match="simulated crash"):
        dying.run(three_steps, Order("o6", Decimal("1")), transaction_id="tx-rec")
    dying.close()
    fresh = engine(make_store, ledger)
    fresh.store.expire_lease("tx-rec")
    report = fresh.recover()
    assert [r.status for r in report] == [TransactionState.DONE] * (crash_step != "third")
    assert fresh.get("tx-rec").status is TransactionState.DONE  # type: ignore[union-attr]
    assert [ledger.count("invoke", s) for s in ("first", "second", "third")] == [1, 1, 1]


def test_recover_before_checkpoint_reinvokes_with_same_key(
    make_store: StoreFactory, ledger: Ledger
) -> None:
    """A step that returned but was not checkpointed runs again, with the same idempotency key."""
    dying = engine(make_store, ledger)
    crash_at(dying, "tx-key", Crash("second", "invoke", "before"))
    with pytest.raises(BaseException, match="simulated crash"):
        dying.run(three_steps, Order("o7", Decimal("1")), transaction_id="tx-key")
    fresh = engine(make_store, ledger)
    fresh.store.expire_lease("tx-key")
    assert fresh.recover()[0].status is TransactionState.DONE
    keys = [key for action, name, key in ledger.calls if name == "second"]
    assert keys == ["three-steps:tx-key:second:invoke"] * 2
    assert ledger.count("invoke", "first") == 1


def test_recover_resumes_compensation_where_it_stopped(
    make_store: StoreFactory, ledger: Ledger
) -> None:
    """A crash mid-compensation resumes it: finished compensations are not repeated."""
    dying = engine(make_store, ledger)
    crash_at(dying, "tx-comp", Crash("second", "compensate", "after"))
    with pytest.raises(BaseException, match="simulated crash"):
        dying.run(three_steps, Order("o8", Decimal("1"), fail_at="third"), transaction_id="tx-comp")
    assert ledger.names("compensate") == ["third", "second"]
    fresh = engine(make_store, ledger)
    fresh.store.expire_lease("tx-comp")
    report = fresh.recover()
    assert report[0].status is TransactionState.REVERTED
    assert ledger.names("compensate") == ["third", "second", "first"]


def test_nested_and_parallel_steps_recover(make_store: StoreFactory, ledger: Ledger) -> None:
    """A crash inside a nested workflow resumes inside it; nothing checkpointed runs twice."""
    dying = engine(make_store, ledger)
    crash_at(dying, "tx-nest", Crash("nested/x", "invoke", "after"))
    with pytest.raises(BaseException, match="simulated crash"):
        dying.run(outer, Order("o9", Decimal("1")), transaction_id="tx-nest")
    fresh = engine(make_store, ledger)
    fresh.store.expire_lease("tx-nest")
    result = fresh.recover()[0]
    assert result.status is TransactionState.DONE
    assert "nested/y" in result.steps
    names = ("first", "left", "right", "x", "y", "third")
    assert [ledger.count("invoke", n) for n in names] == [1] * len(names)


def test_nested_compensation_after_recovery(make_store: StoreFactory, ledger: Ledger) -> None:
    """After a recovered crash, a later failure compensates nested and parallel steps too."""
    dying = engine(make_store, ledger)
    crash_at(dying, "tx-nc", Crash("nested", "invoke", "after"))
    with pytest.raises(BaseException, match="simulated crash"):
        dying.run(outer, Order("o10", Decimal("1"), fail_at="third"), transaction_id="tx-nc")
    fresh = engine(make_store, ledger)
    fresh.store.expire_lease("tx-nc")
    result = fresh.recover()[0]
    assert result.status is TransactionState.REVERTED
    undone = ledger.names("compensate")
    assert undone[:3] == ["third", "y", "x"]
    assert sorted(undone[3:5]) == ["left", "right"]
    assert undone[5:] == ["first"]


def test_process_dying_repeatedly_fails_the_step(make_store: StoreFactory, ledger: Ledger) -> None:
    """After max_retries + 1 recoveries of the same in-flight step, it fails for good."""
    order = Order("o11", Decimal("1"))
    for _ in range(2):
        dying = engine(make_store, ledger)
        crash_at(dying, "tx-loop", Crash("second", "invoke", "before"))
        dying.store.expire_lease("tx-loop")
        started = dying.get("tx-loop") is not None
        with pytest.raises(BaseException, match="simulated crash"):
            _run_or_recover(dying, order, started)
    final = engine(make_store, ledger)
    final.store.expire_lease("tx-loop")
    result = final.recover()[0]
    assert result.status is TransactionState.REVERTED
    assert "ProcessKilled" in result.errors[0].type_name
    assert ledger.count("invoke", "second") == 2


def test_unknown_workflow_and_incompatible_runs_are_reported(
    make_store: StoreFactory, ledger: Ledger
) -> None:
    """recover() skips runs of unknown workflows and runs with unknown steps, and reports them."""
    dying = engine(make_store, ledger)
    crash_at(dying, "tx-u", Crash("first"))
    with pytest.raises(BaseException, match="simulated crash"):
        dying.run(three_steps, Order("o12", Decimal("1")), transaction_id="tx-u")
    dying.store.expire_lease("tx-u")
    stranger = Engine(make_store(), [with_wait], container=ledger_registry(ledger))
    report = stranger.recover()
    assert list(report) == []
    assert [(s.transaction_id, s.reason) for s in report.skipped] == [("tx-u", "unknown workflow")]
    assert stranger.get("tx-u").status is TransactionState.INVOKING  # type: ignore[union-attr]


def test_signal_success_continues_from_another_engine(
    make_store: StoreFactory, ledger: Ledger
) -> None:
    """A waiting run has no owner; set_step_success from another engine finishes it."""
    order = Order("o13", Decimal("1"))
    waiting = engine(make_store, ledger).run(with_wait, order, transaction_id="tx-w")
    assert waiting.status is TransactionState.WAITING
    record = engine(make_store, ledger).get("tx-w")
    assert record is not None
    assert record.owner is None
    done = engine(make_store, ledger).set_step_success("tx-w", "wait-for-bank", {"ok": True})
    assert done.status is TransactionState.DONE
    assert done.result == {"answer": {"ok": True}, "last": "third-out"}
    with pytest.raises(StepNotWaiting, match="done"):
        engine(make_store, ledger).set_step_success("tx-w", "wait-for-bank", 1)


def test_signal_failure_compensates_with_invoke_input(
    make_store: StoreFactory, ledger: Ledger
) -> None:
    """set_step_failure compensates the waiting step with its invoke's compensate input."""
    eng = engine(make_store, ledger)
    eng.run(with_wait, Order("o14", Decimal("1")), transaction_id="tx-f")
    result = engine(make_store, ledger).set_step_failure("tx-f", "wait-for-bank", "card declined")
    assert result.status is TransactionState.REVERTED
    assert result.errors[0].message == "card declined"
    assert ledger.calls[-2:] == [
        ("compensate", "wait-for-bank", "'hold-o14'"),
        ("compensate", "reserve", "res-o14"),
    ]


def test_bad_signals_change_nothing(make_store: StoreFactory, ledger: Ledger) -> None:
    """Signals for unknown runs, unknown steps or ordinary steps are typed errors."""
    eng = engine(make_store, ledger)
    eng.run(with_wait, Order("o15", Decimal("1")), transaction_id="tx-b")
    with pytest.raises(RunNotFound):
        eng.set_step_success("nope", "wait-for-bank")
    with pytest.raises(UnknownStep, match="no step 'nope'"):
        eng.set_step_success("tx-b", "nope")
    with pytest.raises(StepNotWaiting, match="not an async_completion"):
        eng.set_step_success("tx-b", "reserve")
    assert eng.get("tx-b").status is TransactionState.WAITING  # type: ignore[union-attr]


def test_early_signal_is_kept_and_consumed(make_store: StoreFactory, ledger: Ledger) -> None:
    """A signal sent while the run is still invoking is kept, and used when the step parks."""
    eng = engine(make_store, ledger)
    crash_at(eng, "tx-early", Crash("reserve", "invoke", "after"))
    order = Order("o16", Decimal("1"))
    with pytest.raises(BaseException, match="simulated crash"):
        eng.run(with_wait, order, transaction_id="tx-early")
    kept = engine(make_store, ledger).set_step_success("tx-early", "wait-for-bank", "early")
    assert kept.status is TransactionState.INVOKING
    with pytest.raises(StepNotWaiting, match="already signalled"):
        engine(make_store, ledger).set_step_success("tx-early", "wait-for-bank", "twice")
    fresh = engine(make_store, ledger)
    fresh.store.expire_lease("tx-early")
    result = fresh.recover()[0]
    assert result.status is TransactionState.DONE
    assert result.result == {"answer": "early", "last": "third-out"}


def test_cancel_compensates_done_and_waiting_runs(make_store: StoreFactory, ledger: Ledger) -> None:
    """cancel() compensates a done run in reverse, and a waiting run including its wait."""
    eng = engine(make_store, ledger)
    eng.run(three_steps, Order("o17", Decimal("1")), transaction_id="tx-cd")
    result = engine(make_store, ledger).cancel("tx-cd")
    assert result.status is TransactionState.REVERTED
    assert ledger.names("compensate") == ["third", "second", "first"]
    eng.run(with_wait, Order("o18", Decimal("1")), transaction_id="tx-cw")
    assert engine(make_store, ledger).cancel("tx-cw").status is TransactionState.REVERTED
    assert ledger.names("compensate")[3:] == ["wait-for-bank", "reserve"]
    with pytest.raises(RunNotFound):
        eng.cancel("nope")


def test_purge_deletes_old_finished_runs(make_store: StoreFactory, ledger: Ledger) -> None:
    """purge() removes finished runs past the age given; their ids are new again."""
    eng = engine(make_store, ledger)
    order = Order("o19", Decimal("1"))
    eng.run(three_steps, order, transaction_id="tx-p")
    eng.run(with_wait, order, transaction_id="tx-pw")
    assert eng.purge(older_than=timedelta(days=1)) == 0
    time.sleep(0.05)
    assert eng.purge(older_than=timedelta(seconds=0.01)) == 1
    assert eng.get("tx-p") is None
    assert eng.get("tx-pw") is not None
    eng.run(three_steps, order, transaction_id="tx-p")
    assert ledger.count("invoke", "first") == 2


def test_list_filters_by_status_and_workflow(make_store: StoreFactory, ledger: Ledger) -> None:
    """list() filters by status and workflow, newest first."""
    eng = engine(make_store, ledger)
    eng.run(three_steps, Order("a", Decimal("1")), transaction_id="tx-l1")
    eng.run(with_wait, Order("b", Decimal("1")), transaction_id="tx-l2")
    assert [r.transaction_id for r in eng.list()] == ["tx-l2", "tx-l1"]
    assert [r.transaction_id for r in eng.list(status="waiting")] == ["tx-l2"]
    assert [r.transaction_id for r in eng.list(workflow="three-steps")] == ["tx-l1"]


def test_lost_lease_stops_the_old_owner(make_store: StoreFactory, ledger: Ledger) -> None:
    """An engine whose run was taken over raises LeaseLost at its next checkpoint."""
    store = make_store()
    eng = Engine(store, ALL, container=ledger_registry(ledger))
    stolen = threading.Event()

    def steal(event: Any) -> None:
        if event.name == "step_succeeded" and event.step == "first" and not stolen.is_set():
            store.expire_lease("tx-lost")
            assert store.claim("tx-lost", "thief", 30, ("invoking",)) is not None
            stolen.set()

    eng.subscribe(steal)
    with pytest.raises(LeaseLost):
        eng.run(three_steps, Order("o20", Decimal("1")), transaction_id="tx-lost")
    assert ledger.count("invoke", "second") == 1
    record = eng.get("tx-lost")
    assert record is not None
    assert "second" not in record.steps


def test_leases_are_renewed_while_a_run_is_long(make_store: StoreFactory, ledger: Ledger) -> None:
    """A run longer than its lease keeps ownership: the background keeper renews it."""
    eng = engine(make_store, ledger, lease_seconds=0.3)
    other = engine(make_store, ledger)
    seen: list[BaseException] = []

    def slow_then_probe(event: Any) -> None:
        if event.name == "step_succeeded" and event.step == "first":
            time.sleep(0.7)
            try:
                other.run(three_steps, Order("o21", Decimal("1")), transaction_id="tx-lease")
            except TransactionInProgress as exc:
                seen.append(exc)

    eng.subscribe(slow_then_probe)
    assert eng.run(three_steps, Order("o21", Decimal("1")), transaction_id="tx-lease").succeeded
    assert len(seen) == 1


def test_durable_engine_wants_explicit_step_names(tmp_path: Path) -> None:
    """With a durable store, a step named only by its function is a DefinitionError."""
    from flowkit import step, workflow

    @step
    def unnamed(x: Any, ctx: Any) -> Any:
        return x

    @workflow("unnamed-wf")
    def wf(inp: Any) -> Any:
        return unnamed(inp)

    with pytest.raises(DefinitionError, match="explicit name"):
        Engine(MemoryStore(), [wf])
    assert Engine(None, [wf]).run(wf, 3).result == 3


def test_engine_without_store_refuses_async_completion(ledger: Ledger) -> None:
    """Engine(store=None) keeps runs in memory and refuses async_completion workflows."""
    eng = Engine(None, [three_steps], container=ledger_registry(ledger))
    assert eng.run(three_steps, Order("o22", Decimal("1")), transaction_id="m1").succeeded
    assert eng.get("m1") is not None
    with pytest.raises(DefinitionError, match="durable store"):
        eng.run(with_wait, Order("o22", Decimal("1")))


def _run_or_recover(eng: Engine, order: Order, started: bool) -> None:
    """Start the run the first time, recover it afterwards."""
    if started:
        eng.recover()
    else:
        eng.run(three_steps, order, transaction_id="tx-loop")


def test_waiting_result_says_what_the_run_waits_on(
    make_store: StoreFactory, ledger: Ledger
) -> None:
    """A waiting run's result holds the waiting steps' outputs, nested ones by full name."""
    from durable_app import with_nested_wait

    order = Order("o23", Decimal("1"))
    waiting = engine(make_store, ledger).run(with_nested_wait, order, transaction_id="tx-nw")
    assert waiting.status is TransactionState.WAITING
    assert waiting.waiting == {"check/ask-bank": {"redirect": "https://bank.test/o23"}}
    stored = engine(make_store, ledger).result("tx-nw")
    assert stored is not None
    assert stored.waiting == waiting.waiting
    done = engine(make_store, ledger).set_step_success("tx-nw", "check/ask-bank", "ok")
    assert done.status is TransactionState.DONE
    assert done.result == "ok"
    assert done.waiting == {}
