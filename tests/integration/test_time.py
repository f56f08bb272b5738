"""Time in durable runs (spec §10): deadlines on waits, sleeps, delayed runs, schedules.

Every test moves a `ManualClock`; none sleeps. Each runs on the in-memory store, a SQLite
file and a fresh PostgreSQL database.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_app
from time_app import ALL, NAP, WAIT, hold_and_wait, nap, nap_for

import flowkit
from flowkit import (
    DefinitionError,
    Engine,
    Event,
    InvalidTime,
    Schedule,
    SimulatedCrash,
    StepNotWaiting,
    StepState,
    TransactionState,
    UnknownWorkflow,
    workflow,
)
from flowkit.store import Store
from flowkit.testing import ManualClock
from flowkit.testing.faults import Crash, FailurePlan, PlanFaults

EngineFactory = Callable[..., Engine]


@pytest.fixture
def clock() -> ManualClock:
    """The clock every engine of a test reads."""
    return ManualClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))


@pytest.fixture
def engines(make_store: Callable[[], Store], clock: ManualClock) -> Iterator[EngineFactory]:
    """Builds engines over the test's store and clock (each as a separate process would)."""
    time_app.JOURNAL.entries.clear()
    made: list[Engine] = []

    def make(**options: Any) -> Engine:
        options.setdefault("clock", clock)
        engine = Engine(make_store(), ALL, **options)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.runtime.leases.close()


def _at_once(*calls: Callable[[], Any]) -> list[Any]:
    """Run `calls` in threads released together; their results, or the first error raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def run(k: int) -> None:
        barrier.wait()
        try:
            results[k] = calls[k]()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


# --- deadlines on waits ------------------------------------------------------------------------


def test_a_wait_past_its_deadline_times_out_on_tick_and_compensates(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """tick() after the deadline fails the wait with StepTimeout and compensates the run."""
    engine = engines()
    parked = engine.run(hold_and_wait, "cart-1", transaction_id="tx-1")
    assert parked.status is TransactionState.WAITING
    record = engine.get("tx-1")
    assert record is not None
    deadline = clock.now() + timedelta(seconds=WAIT)
    assert record.wake_at == deadline
    assert record.steps["challenge"].due_at == deadline

    clock.advance(WAIT - 1)
    assert engine.tick().expired == []
    assert engine.get("tx-1").status is TransactionState.WAITING  # type: ignore[union-attr]

    clock.advance(1)
    report = engine.tick()
    assert report.expired == ["tx-1"]
    after = engine.get("tx-1")
    assert after is not None
    assert after.status is TransactionState.REVERTED
    assert after.steps["challenge"].invoke_state is StepState.TIMEOUT
    assert [e.type_name for e in after.errors] == ["flowkit.exceptions.StepTimeout"]
    assert "900s" in after.errors[0].message
    assert time_app.JOURNAL.count("cancel") == 1  # the wait's own compensation, with its input
    assert ("cancel", "challenge-cart-1") in time_app.JOURNAL.entries
    assert ("release", "hold-cart-1") in time_app.JOURNAL.entries
    assert engine.tick().expired == []  # nothing is due twice


def test_a_deadline_is_fired_by_an_engine_built_after_the_parking_one_is_gone(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """The deadline lives in the store: a new engine (another process) fires it."""
    first = engines()
    first.run(hold_and_wait, "cart-2", transaction_id="tx-2")
    first.close()
    clock.advance(WAIT + 60)
    later = engines()
    assert later.tick().expired == ["tx-2"]
    assert later.get("tx-2").status is TransactionState.REVERTED  # type: ignore[union-attr]


def test_a_signal_before_the_deadline_succeeds_and_the_deadline_is_gone(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """A signal in time finishes the wait; a later tick has nothing to expire."""
    engine = engines()
    engine.run(hold_and_wait, "cart-3", transaction_id="tx-3")
    clock.advance(WAIT - 10)
    done = engine.set_step_success("tx-3", "challenge", "answered")
    assert done.status is TransactionState.DONE
    assert done.result == "answered"
    clock.advance(3600)
    assert engine.tick().expired == []
    assert engine.get("tx-3").wake_at is None  # type: ignore[union-attr]


def test_a_signal_after_the_deadline_times_out_the_step_and_returns_the_reverted_run(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """A late signal does not succeed: no tick ran, yet the step times out and the run reverts."""
    engine = engines()
    engine.run(hold_and_wait, "cart-4", transaction_id="tx-4")
    clock.advance(WAIT + 1)
    late = engine.set_step_success("tx-4", "challenge", "too late")
    assert late.status is TransactionState.REVERTED
    assert [e.type_name for e in late.errors] == ["flowkit.exceptions.StepTimeout"]
    assert time_app.JOURNAL.count("finish") == 0
    assert time_app.JOURNAL.count("cancel") == 1


def test_a_signal_racing_the_deadline_changes_the_run_once(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """A tick and a late signal from two engines at once: one times the step out, once."""
    parker = engines()
    for i in range(5):
        parker.run(hold_and_wait, f"race-{i}", transaction_id=f"race-{i}")
    clock.advance(WAIT + 1)
    ticker, signaller = engines(), engines()

    def signal() -> None:
        for i in range(5):  # refused, or kept, when the tick got there first: never a success
            with contextlib.suppress(StepNotWaiting, flowkit.TransactionInProgress):
                signaller.set_step_success(f"race-{i}", "challenge", "late")

    _at_once(ticker.tick, signal)
    for i in range(5):
        record = ticker.get(f"race-{i}")
        assert record is not None
        assert record.status is TransactionState.REVERTED
    assert time_app.JOURNAL.count("cancel") == 5  # each wait compensated exactly once
    assert time_app.JOURNAL.count("finish") == 0


def test_two_engines_ticking_at_once_expire_each_wait_once(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """Concurrent ticks claim by compare-and-set: every run appears in one report only."""
    parker = engines()
    for i in range(6):
        parker.run(hold_and_wait, f"twin-{i}", transaction_id=f"twin-{i}")
    clock.advance(WAIT + 1)
    a, b = engines(), engines()
    reports = _at_once(a.tick, b.tick)
    expired = [tx for report in reports for tx in report.expired]
    assert sorted(expired) == sorted(f"twin-{i}" for i in range(6))
    assert time_app.JOURNAL.count("cancel") == 6


def test_a_wait_deadline_can_come_from_the_run_input(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """StepResponse(timeout=...) gives one run's wait its own deadline."""
    engine = engines()
    engine.run(time_app.ask_with_deadline, {"value": "a", "timeout": 30}, transaction_id="short")
    engine.run(time_app.ask_with_deadline, {"value": "b", "timeout": 300}, transaction_id="long")
    clock.advance(31)
    assert engine.tick().expired == ["short"]
    assert engine.get("long").status is TransactionState.WAITING  # type: ignore[union-attr]


def test_a_bad_wait_timeout_from_the_input_fails_the_step_with_a_typed_error(
    engines: EngineFactory,
) -> None:
    """A negative StepResponse timeout is InvalidTime inside the step: the run reverts."""
    engine = engines()
    result = engine.run(
        time_app.ask_with_deadline,
        {"value": "c", "timeout": -5},
        transaction_id="bad-timeout",
        throw_on_error=False,
    )
    assert result.status is TransactionState.REVERTED
    assert result.errors[0].type_name == "flowkit.exceptions.InvalidTime"


# --- durable sleep -----------------------------------------------------------------------------


def test_a_sleep_parks_the_run_and_a_tick_after_it_resumes_the_run(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """flowkit.sleep parks without an owner; a later engine's tick wakes it and it finishes."""
    first = engines()
    parked = first.run(nap, "n", transaction_id="nap-1")
    assert parked.status is TransactionState.WAITING
    record = first.get("nap-1")
    assert record is not None
    assert record.owner is None
    assert record.wake_at == clock.now() + NAP
    first.close()

    later = engines()
    clock.advance(NAP - timedelta(seconds=1))
    assert later.tick().woken == []
    clock.advance(1)
    assert later.tick().woken == ["nap-1"]
    done = later.get("nap-1")
    assert done is not None
    assert done.status is TransactionState.DONE
    assert done.output == "n"
    assert done.steps["sleep-1"].state is StepState.DONE


def test_a_sleep_duration_may_be_a_ref_and_a_bad_one_fails_the_run(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """A Ref duration is read at run time; a negative one fails the sleep with InvalidTime."""
    engine = engines()
    engine.run(nap_for, {"seconds": 90}, transaction_id="ref-ok")
    clock.advance(90)
    assert engine.tick().woken == ["ref-ok"]
    assert engine.get("ref-ok").output == 90  # type: ignore[union-attr]
    bad = engine.run(nap_for, {"seconds": -1}, transaction_id="ref-bad", throw_on_error=False)
    assert bad.status is TransactionState.REVERTED
    assert bad.errors[0].type_name == "flowkit.exceptions.InvalidTime"


def test_a_sleep_cannot_be_signalled(engines: EngineFactory) -> None:
    """Only tick() ends a sleep: a signal for it is StepNotWaiting, and nothing changes."""
    engine = engines()
    engine.run(nap, "s", transaction_id="nap-sig")
    with pytest.raises(StepNotWaiting, match=r"flowkit\.sleep"):
        engine.set_step_success("nap-sig", "sleep-1", None)
    assert engine.get("nap-sig").status is TransactionState.WAITING  # type: ignore[union-attr]


@pytest.mark.parametrize("duration", [-1, math.nan, math.inf, "10", True])
def test_a_bad_sleep_duration_is_refused_when_the_workflow_is_defined(duration: Any) -> None:
    """A negative, non-finite or non-numeric literal duration is InvalidTime at definition."""
    with pytest.raises(InvalidTime):

        @workflow("bad-sleep")
        def bad(value: Any) -> Any:
            flowkit.sleep(duration)
            return value


def test_sleep_outside_a_workflow_and_without_a_store_are_definition_errors() -> None:
    """flowkit.sleep needs a workflow being defined, and a durable store to run."""
    with pytest.raises(DefinitionError):
        flowkit.sleep(5)
    with pytest.raises(DefinitionError, match="durable store"):
        Engine(None, [nap]).run(nap, "x")


def test_sleeps_are_numbered_and_change_the_fingerprint() -> None:
    """Unnamed sleeps are sleep-1, sleep-2; a sleep is part of the graph's fingerprint."""

    @workflow("two-naps")
    def two(value: Any) -> Any:
        flowkit.sleep(1)
        flowkit.sleep(2)
        return value

    @workflow("two-naps")
    def none(value: Any) -> Any:
        return value

    assert [n.name for n in two.definition.nodes] == ["sleep-1", "sleep-2"]
    assert two.fingerprint != none.fingerprint


# --- delayed runs ------------------------------------------------------------------------------


def test_a_delayed_run_is_not_claimed_before_its_start(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """enqueue(delay=) and enqueue(start_at=) keep a run queued until the clock gets there."""
    engine = engines()
    later = engine.enqueue(hold_and_wait, "d1", delay=timedelta(minutes=5))
    at = engine.enqueue(hold_and_wait, "d2", start_at=clock.now() + timedelta(minutes=10))
    assert engine.get(later).start_at == clock.now() + timedelta(minutes=5)  # type: ignore[union-attr]
    assert engine.work(idle_timeout=0).claimed == 0
    clock.advance(timedelta(minutes=5))
    assert engine.work(idle_timeout=0).claimed == 1
    assert engine.get(later).status is TransactionState.WAITING  # type: ignore[union-attr]
    assert engine.get(at).status is TransactionState.QUEUED  # type: ignore[union-attr]
    clock.advance(timedelta(minutes=5))
    assert engine.work(idle_timeout=0).claimed == 1


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"delay": -1}, "finite number"),
        ({"delay": math.nan}, "finite number"),
        ({"delay": "soon"}, "seconds"),
        ({"start_at": datetime(2026, 3, 1, 13, 0)}, "no time zone"),
        ({"start_at": "2026-03-01"}, "datetime"),
        ({"start_at": datetime(2026, 3, 1, 13, 0, tzinfo=UTC), "delay": 5}, "not both"),
    ],
)
def test_bad_start_times_are_typed_errors_and_store_nothing(
    engines: EngineFactory, options: dict[str, Any], match: str
) -> None:
    """A bad delay or start_at is InvalidTime (a ValueError), and no run is stored."""
    engine = engines()
    with pytest.raises(InvalidTime, match=match):
        engine.enqueue(hold_and_wait, "x", transaction_id="never", **options)
    assert engine.get("never") is None
    assert isinstance(InvalidTime("x"), ValueError)


# --- schedules ---------------------------------------------------------------------------------


def _hourly(**options: Any) -> Schedule:
    return Schedule(
        "hourly-nap", nap, every=timedelta(hours=1), input=lambda tick: tick.hour, **options
    )


def test_a_schedule_enqueues_one_run_per_tick_with_the_tick_as_input(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """Each due tick is one queued run `name@tick`, its input computed from the tick."""
    engine = engines(schedules=[_hourly()])
    first = engine.tick().scheduled
    assert first == ["hourly-nap@20260301T120000Z"]
    assert engine.tick().scheduled == []  # the same tick again: nothing new
    clock.advance(timedelta(minutes=59))
    assert engine.tick().scheduled == []
    clock.advance(timedelta(minutes=1))
    assert engine.tick().scheduled == ["hourly-nap@20260301T130000Z"]
    record = engine.get("hourly-nap@20260301T130000Z")
    assert record is not None
    assert record.status is TransactionState.QUEUED
    assert record.input == 13


def test_two_engines_ticking_one_schedule_create_one_run(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """Workers firing the same tick at once store its run once (transaction id idempotency)."""
    a, b = engines(schedules=[_hourly()]), engines(schedules=[_hourly()])
    reports = _at_once(a.tick, b.tick)
    fired = [tx for report in reports for tx in report.scheduled]
    assert fired == ["hourly-nap@20260301T120000Z"]
    assert len(a.list(workflow="nap")) == 1


def test_missed_ticks_fire_only_the_latest_unless_catch_up(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """After 3 missed hours, one run for the latest tick; catch_up=True gives all three."""
    plain = engines(schedules=[_hourly()])
    plain.tick()
    clock.advance(timedelta(hours=3, minutes=10))
    assert plain.tick().scheduled == ["hourly-nap@20260301T150000Z"]

    caught = engines(
        schedules=[Schedule("catch", nap, every=timedelta(hours=1), input=1, catch_up=True)]
    )
    clock.set(datetime(2026, 3, 2, 0, 0, tzinfo=UTC))
    assert caught.tick().scheduled == ["catch@20260302T000000Z"]
    clock.advance(timedelta(hours=3, minutes=10))
    assert caught.tick().scheduled == [
        "catch@20260302T010000Z",
        "catch@20260302T020000Z",
        "catch@20260302T030000Z",
    ]


def test_a_cron_schedule_fires_at_its_expression_in_utc(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """cron='30 3 * * *' fires at 03:30 UTC, once a day."""
    engine = engines(schedules=[Schedule("nightly", nap, cron="30 3 * * *", input="night")])
    assert engine.tick().scheduled == ["nightly@20260301T033000Z"]  # the latest due tick
    clock.set(datetime(2026, 3, 2, 3, 29, tzinfo=UTC))
    assert engine.tick().scheduled == []
    clock.advance(60)
    assert engine.tick().scheduled == ["nightly@20260302T033000Z"]


def test_schedule_definition_errors_are_typed(make_store: Callable[[], Store]) -> None:
    """Bad cron, both or neither of cron/every, non-positive intervals, unheld workflows and
    queues."""
    with pytest.raises(InvalidTime, match="5 fields"):
        Schedule("s", nap, cron="* * *")
    with pytest.raises(InvalidTime, match="invalid cron"):
        Schedule("s", nap, cron="61 * * * *")
    with pytest.raises(InvalidTime, match="exactly one"):
        Schedule("s", nap)
    with pytest.raises(InvalidTime, match="exactly one"):
        Schedule("s", nap, cron="* * * * *", every=60)
    with pytest.raises(InvalidTime, match="positive"):
        Schedule("s", nap, every=0)
    with pytest.raises(DefinitionError, match="'@'"):
        Schedule("a@b", nap, every=60)
    with pytest.raises(DefinitionError, match="':'"):
        Schedule("a:b", nap, every=60)
    with pytest.raises(UnknownWorkflow, match="does not hold"):
        Engine(make_store(), [hold_and_wait], schedules=[Schedule("s", "nap", every=60)])
    with pytest.raises(flowkit.UnknownQueue, match="nightly"):
        Engine(make_store(), [nap], schedules=[Schedule("s", nap, every=60, queue="nightly")])


# --- events and workers ------------------------------------------------------------------------


def test_tick_emits_expired_woken_and_fired_events(
    engines: EngineFactory, clock: ManualClock
) -> None:
    """step_expired, run_woken and schedule_fired reach subscribers."""
    engine = engines(schedules=[_hourly()])
    seen: list[Event] = []
    engine.subscribe(seen.append)
    engine.run(hold_and_wait, "e", transaction_id="ev-wait")
    engine.run(nap, "e", transaction_id="ev-nap")
    clock.advance(NAP)
    engine.tick()
    names = {(e.name, e.step) for e in seen}
    assert ("step_expired", "challenge") in names
    assert ("run_woken", "sleep-1") in names
    assert any(e.name == "schedule_fired" for e in seen)


def test_a_worker_loop_ticks(engines: EngineFactory, clock: ManualClock) -> None:
    """engine.work() calls tick(): a due sleeper wakes without anyone calling tick()."""
    engine = engines()
    engine.run(nap, "w", transaction_id="worker-nap")
    clock.advance(NAP)
    report = engine.work(idle_timeout=0)
    assert report.woken == 1
    assert engine.get("worker-nap").status is TransactionState.DONE  # type: ignore[union-attr]


def test_a_due_run_of_a_definition_not_held_is_skipped(
    make_store: Callable[[], Store], clock: ManualClock
) -> None:
    """tick() leaves a due run of another version alone and reports it as incompatible."""
    time_app.JOURNAL.entries.clear()
    Engine(make_store(), ALL, clock=clock).run(nap, "v", transaction_id="old-nap")

    @workflow("nap", version=2)
    def nap_v2(value: Any) -> Any:
        return time_app.finish.with_name("finish-v2")(value)

    clock.advance(NAP)
    report = Engine(make_store(), [nap_v2], clock=clock).tick()
    assert report.woken == []
    assert [s.transaction_id for s in report.skipped] == ["old-nap"]
    assert report.skipped[0].incompatible


# --- leases and retention under the engine's clock ---------------------------------------------


def test_leases_follow_the_engine_clock(engines: EngineFactory, clock: ManualClock) -> None:
    """A crashed run's lease runs out when the clock moves past it, not on the wall clock."""
    crashing = engines()
    crashing.faults["crashed"] = PlanFaults(FailurePlan(crash=Crash("hold", "invoke", "after")))
    with pytest.raises(SimulatedCrash):
        crashing.run(hold_and_wait, "c", transaction_id="crashed")
    other = engines()
    assert [r.transaction_id for r in other.recover()] == []  # its lease is still live
    clock.advance(other.lease_seconds + 1)
    assert [r.transaction_id for r in other.recover()] == ["crashed"]
    assert other.get("crashed").status is TransactionState.WAITING  # type: ignore[union-attr]


def test_retention_follows_the_engine_clock(engines: EngineFactory, clock: ManualClock) -> None:
    """purge() cuts at the clock's now minus the retention: runs age as the clock moves."""
    engine = engines()
    engine.run(nap_for, {"seconds": 0}, transaction_id="old")
    engine.tick()
    assert engine.get("old").status is TransactionState.DONE  # type: ignore[union-attr]
    assert engine.purge(timedelta(days=1)) == 0
    clock.advance(timedelta(days=2))
    assert engine.purge(timedelta(days=1)) == 1
    assert engine.get("old") is None
