"""Failure plans and their injection into an engine, keyed by transaction id.

A plan never touches user code: the engine consults it around each step. An injected failure
raises `InjectedFailure` *instead of* calling the step (so the step does nothing); an injected
crash raises `SimulatedCrash` at a checkpoint boundary and the engine abandons the run as a dead
process would (its open session is rolled back; `finally` blocks still run, unlike a real crash).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Literal, NoReturn

from attrs import field, frozen

from flowkit.exceptions import InjectedFailure, SimulatedCrash

__all__ = ["Crash", "FailurePlan", "PlanFaults", "StepFailure"]

Action = Literal["invoke", "compensate"]
Point = Literal["before", "after"]


@frozen
class StepFailure:
    """The first `attempts` invoke attempts of `step` fail (more than its retries: for good).

    Each failing attempt raises `error(message)` in place of the step's function.
    """

    step: str
    attempts: int = 1
    error: type[Exception] = field(default=InjectedFailure, repr=lambda t: t.__qualname__)

    def describe(self) -> str:
        """English, as in `FailurePlan.describe()`."""
        times = "attempt 1" if self.attempts == 1 else f"attempts 1-{self.attempts}"
        return f"step `{self.step}` fails on {times}"


@frozen
class CompensationFailure:
    """The first `times` attempts of `step`'s compensation fail."""

    step: str
    times: int = 1

    def describe(self) -> str:
        """English, as in `FailurePlan.describe()`."""
        count = "once" if self.times == 1 else f"{self.times} times"
        return f"compensation of `{self.step}` fails {count}"


@frozen
class Crash:
    """The process dies before or after the checkpoint of `step`'s invoke or compensation.

    `before` means after the function returned and before its checkpoint was written.
    """

    step: str
    action: Action = "invoke"
    point: Point = "after"

    def describe(self) -> str:
        """English, as in `FailurePlan.describe()`."""
        what = "the checkpoint of" if self.action == "invoke" else "the compensation checkpoint of"
        if self.point == "after":
            return f"crash after {what} `{self.step}`"
        return f"crash before {what} `{self.step}` (its function had returned)"


@frozen
class FailurePlan:
    """What goes wrong in one run: step failures, compensation failures, at most one crash."""

    failures: tuple[StepFailure, ...] = ()
    compensation_failures: tuple[CompensationFailure, ...] = ()
    crash: Crash | None = None

    @property
    def fault_count(self) -> int:
        """How many faults the plan injects."""
        return len(self.failures) + len(self.compensation_failures) + (self.crash is not None)

    def describe(self) -> str:
        """The plan as one English sentence."""
        parts = [f.describe() for f in self.failures]
        parts += [c.describe() for c in self.compensation_failures]
        if self.crash is not None:
            parts.append(self.crash.describe())
        return "; ".join(parts) if parts else "no faults"


def _die() -> NoReturn:
    raise SimulatedCrash("flowkit.testing: simulated crash")


class PlanFaults:
    """The engine-side injector of one plan (see `Engine.faults`).

    Args:
        plan: What to inject.
        on_crash: Called at the crash point (default: raise `SimulatedCrash`; a subprocess test
            may pass `lambda: os._exit(9)` for a real death).
    """

    def __init__(self, plan: FailurePlan, on_crash: Callable[[], Any] = _die) -> None:
        self.plan = plan
        self.on_crash = on_crash
        self.failing = {f.step: f for f in plan.failures}
        self._compensation_left = {c.step: c.times for c in plan.compensation_failures}
        self._lock = threading.Lock()
        self.crashed = False

    def fail(self, run: Any, node: Any, action: str, attempt: int) -> None:
        """Raise `InjectedFailure` in place of the step when the plan says so."""
        name = run.full_name(node)
        if action == "invoke":
            failure = self.failing.get(name)
            if failure is not None and attempt <= failure.attempts:
                raise failure.error(f"injected failure of step {name!r} (attempt {attempt})")
            return
        with self._lock:
            left = self._compensation_left.get(name, 0)
            if left <= 0:
                return
            self._compensation_left[name] = left - 1
        raise InjectedFailure(f"injected failure of the compensation of {name!r}")

    def crash(self, run: Any, node: Any, action: str, point: str) -> None:
        """Die here when this is the plan's crash point (only once)."""
        crash = self.plan.crash
        if crash is None or self.crashed:
            return
        if crash.action == action and crash.point == point and crash.step == run.full_name(node):
            self.crashed = True
            self.on_crash()
