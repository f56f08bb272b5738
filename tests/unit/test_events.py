"""Unit tests of `flowkit.events`: structlog events of a run, and silence when nobody listens."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from flowkit import (
    Event,
    RetryPolicy,
    StepContext,
    StepResponse,
    WorkflowResponse,
    step,
    when,
    workflow,
)
from flowkit import events as events_module
from flowkit.events import Emitter, Subscription, emitter_for


@pytest.fixture(autouse=True)
def _structlog_defaults() -> Iterator[None]:
    """Every test starts and ends with structlog unconfigured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


def _configure(level: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level))


@pytest.fixture
def debug_logs() -> Iterator[list[dict[str, Any]]]:
    """structlog configured at DEBUG, its entries captured."""
    _configure(logging.DEBUG)
    with capture_logs() as logs:
        yield logs


@pytest.fixture
def info_logs() -> Iterator[list[dict[str, Any]]]:
    """structlog configured to filter DEBUG out, as in production; entries captured."""
    _configure(logging.INFO)
    with capture_logs() as logs:
        yield logs


@step("reserve")
def reserve(inp: Any, ctx: StepContext) -> str:
    """A compensated step."""
    return "reservation"


@reserve.compensate
def release(value: Any, ctx: StepContext) -> None:
    """Undo `reserve`."""


@step("charge")
def charge(inp: Any, ctx: StepContext) -> str:
    """Fails when the input says so."""
    if inp == "fail":
        raise ValueError("declined")
    return "charged"


@workflow("shop")
def shop(inp: Any) -> Any:
    """reserve, then charge."""
    reserve(inp)
    return WorkflowResponse(charge(inp))


def _names(logs: list[dict[str, Any]]) -> list[str]:
    return [entry["event"] for entry in logs]


def test_successful_run_events_in_order(debug_logs: list[dict[str, Any]]) -> None:
    """A done run emits run_started, started/succeeded per step, then run_finished."""
    shop.run("ok", transaction_id="tx-1")
    assert _names(debug_logs) == [
        "run_started",
        "step_started",
        "step_succeeded",
        "step_started",
        "step_succeeded",
        "run_finished",
    ]


def test_events_carry_workflow_transaction_step_and_attempt(
    debug_logs: list[dict[str, Any]],
) -> None:
    """Every event has workflow and transaction id; step events add step and attempt."""
    shop.run("ok", transaction_id="tx-1")
    for entry in debug_logs:
        assert (entry["workflow"], entry["transaction_id"]) == ("shop", "tx-1")
    step_events = [e for e in debug_logs if e["event"].startswith("step_")]
    assert [(e["step"], e["attempt"]) for e in step_events] == [
        ("reserve", 1),
        ("reserve", 1),
        ("charge", 1),
        ("charge", 1),
    ]


def test_levels_step_debug_outcome_info(debug_logs: list[dict[str, Any]]) -> None:
    """Step events are DEBUG; a done run's outcome is INFO."""
    shop.run("ok")
    levels = {e["event"]: e["log_level"] for e in debug_logs}
    assert levels["step_started"] == "debug"
    assert levels["step_succeeded"] == "debug"
    assert levels["run_finished"] == "info"
    finished = debug_logs[-1]
    assert finished["status"] == "done"


def test_failed_run_events(debug_logs: list[dict[str, Any]]) -> None:
    """A reverted run: step_failed (ERROR), compensation_started once, step_compensated."""
    shop.run("fail", throw_on_error=False)
    names = _names(debug_logs)
    assert names[-4:] == [
        "step_failed",
        "compensation_started",
        "step_compensated",
        "run_finished",
    ]
    failed = debug_logs[names.index("step_failed")]
    assert (failed["step"], failed["log_level"]) == ("charge", "error")
    assert "declined" in failed["error"]
    compensated = debug_logs[names.index("step_compensated")]
    assert (compensated["step"], compensated["log_level"]) == ("reserve", "debug")
    assert debug_logs[-1]["status"] == "reverted"
    assert debug_logs[-1]["log_level"] in ("warning", "error")


def test_compensation_started_is_emitted_once_per_run(debug_logs: list[dict[str, Any]]) -> None:
    """Several compensations (nested ones included) still emit one compensation_started."""

    @workflow("inner-events")
    def inner(inp: Any) -> Any:
        return WorkflowResponse(reserve(inp))

    @workflow("outer-events")
    def outer(inp: Any) -> Any:
        reserve.with_name("first")(inp)
        inner.as_step(inp)
        return WorkflowResponse(charge(inp))

    outer.run("fail", throw_on_error=False)
    assert _names(debug_logs).count("compensation_started") == 1
    compensated = [e["step"] for e in debug_logs if e["event"] == "step_compensated"]
    assert compensated == ["inner-events/reserve", "inner-events", "first"]


def test_compensation_failure_event(debug_logs: list[dict[str, Any]]) -> None:
    """A compensation failing for good emits compensation_failed at ERROR; the run is failed."""

    @step("fragile")
    def fragile(inp: Any, ctx: StepContext) -> None:
        return None

    @fragile.compensate
    def break_undo(value: Any, ctx: StepContext) -> None:
        raise OSError("cannot undo")

    @workflow("comp-fail-events")
    def flow(inp: Any) -> Any:
        fragile(inp)
        return WorkflowResponse(charge(inp))

    flow.run("fail", throw_on_error=False)
    failed = [e for e in debug_logs if e["event"] == "compensation_failed"]
    assert [(e["step"], e["log_level"]) for e in failed] == [("fragile", "error")]
    assert (debug_logs[-1]["status"], debug_logs[-1]["log_level"]) == ("failed", "error")


def test_retry_events(debug_logs: list[dict[str, Any]]) -> None:
    """A retried step emits step_retrying (WARNING) with the next attempt's number."""

    @step("flaky", retry=RetryPolicy(max_retries=1))
    def flaky(inp: Any, ctx: StepContext) -> str:
        if ctx.attempt == 1:
            raise ConnectionError("again")
        return "ok"

    @workflow("retry-events")
    def flow(inp: Any) -> Any:
        return WorkflowResponse(flaky(inp))

    flow.run(0)
    retrying = [e for e in debug_logs if e["event"] == "step_retrying"]
    assert [(e["step"], e["attempt"], e["log_level"]) for e in retrying] == [
        ("flaky", 2, "warning")
    ]
    succeeded = [e for e in debug_logs if e["event"] == "step_succeeded"]
    assert succeeded[0]["attempt"] == 2


def test_skip_events(debug_logs: list[dict[str, Any]]) -> None:
    """Steps skipped by `when` or by `StepResponse.skip()` emit step_skipped at DEBUG."""

    @step("maybe")
    def maybe(inp: Any, ctx: StepContext) -> Any:
        return StepResponse.skip()

    @workflow("skip-events")
    def flow(inp: Any) -> Any:
        maybe(inp)
        when(inp, lambda v: False).then(lambda: reserve(inp))
        return WorkflowResponse(None)

    flow.run(0)
    skipped = [(e["step"], e["log_level"]) for e in debug_logs if e["event"] == "step_skipped"]
    assert skipped == [("maybe", "debug"), ("reserve", "debug")]


def test_debug_filtered_out_leaves_only_run_outcomes(info_logs: list[dict[str, Any]]) -> None:
    """With DEBUG filtered out, no step event is logged; outcomes and failures still are."""
    shop.run("ok")
    assert _names(info_logs) == ["run_finished"]
    info_logs.clear()
    shop.run("fail", throw_on_error=False)
    assert _names(info_logs) == ["step_failed", "compensation_started", "run_finished"]


def test_unconfigured_structlog_gets_no_output(capsys: pytest.CaptureFixture[str]) -> None:
    """With structlog unconfigured, a run prints nothing, even when it fails."""
    assert not structlog.is_configured()
    shop.run("ok")
    shop.run("fail", throw_on_error=False)
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")
    assert not structlog.is_configured()


def test_unconfigured_structlog_builds_no_emitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """With structlog unconfigured and no subscriber, no `Emitter` is ever created."""
    created: list[Emitter] = []

    class CountingEmitter(Emitter):
        """Counts its instances."""

        def __init__(self, *args: Any) -> None:
            created.append(self)
            super().__init__(*args)

    monkeypatch.setattr(events_module, "Emitter", CountingEmitter)
    assert emitter_for("shop", "tx") is None
    shop.run("ok")
    shop.run("fail", throw_on_error=False)
    assert created == []
    _configure(logging.INFO)
    shop.run("ok")
    assert len(created) == 1


def test_emitter_delivers_event_objects_to_subscribers() -> None:
    """A subscriber gets frozen `Event` objects, even with structlog unconfigured."""
    got: list[Event] = []
    emitter = emitter_for("shop", "tx-7", (Subscription(got.append, workflow="shop"),))
    assert emitter is not None
    emitter.emit("step_started", logging.DEBUG, "reserve", 1)
    [event] = got
    assert (event.name, event.workflow, event.transaction_id) == ("step_started", "shop", "tx-7")
    assert (event.step, event.attempt, event.level) == ("reserve", 1, logging.DEBUG)


def test_subscription_filters_by_workflow_and_transaction() -> None:
    """A subscription only wants the runs it names."""
    assert Subscription(print).wants("any", "tx")
    assert Subscription(print, workflow="shop").wants("shop", "tx")
    assert not Subscription(print, workflow="shop").wants("other", "tx")
    assert not Subscription(print, transaction_id="tx-1").wants("shop", "tx-2")
    assert emitter_for("other", "tx", (Subscription(print, workflow="shop"),)) is None
