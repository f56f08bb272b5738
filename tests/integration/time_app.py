"""Workflows of the time tests: a wait with a deadline, a sleep, and what they leave behind."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import flowkit
from flowkit import Ref, StepContext, StepResponse, step, transform, workflow

WAIT = 900.0
"""The deadline of `hold_and_wait`'s wait, in seconds."""
NAP = timedelta(hours=1)
"""How long `nap` sleeps."""


class Journal:
    """What the steps did, in order (shared by every engine of a test; thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entries: list[tuple[str, Any]] = []

    def add(self, what: str, value: Any) -> None:
        """Record one thing a step did."""
        with self.lock:
            self.entries.append((what, value))

    def count(self, what: str) -> int:
        """How many times `what` happened."""
        with self.lock:
            return sum(1 for name, _ in self.entries if name == what)


JOURNAL = Journal()


@step("hold")
def hold(value: Any, ctx: StepContext) -> StepResponse[Any, str]:
    """Reserve something; its compensation releases it."""
    JOURNAL.add("hold", value)
    return StepResponse(value, compensate_input=f"hold-{value}")


@hold.compensate
def _release(token: str, ctx: StepContext) -> None:
    JOURNAL.add("release", token)


@step("challenge", async_completion=True, timeout=WAIT)
def challenge(value: Any, ctx: StepContext) -> StepResponse[str, str]:
    """Start a challenge the customer must complete; its compensation cancels it."""
    return StepResponse("pending", compensate_input=f"challenge-{value}")


@challenge.compensate
def _cancel(token: str, ctx: StepContext) -> None:
    JOURNAL.add("cancel", token)


@step("finish")
def finish(value: Any, ctx: StepContext) -> Any:
    """The step after the wait."""
    JOURNAL.add("finish", value)
    return value


@workflow("hold-and-wait")
def hold_and_wait(value: Ref[Any]) -> flowkit.WorkflowResponse[Any]:
    """Hold, then wait for the customer (deadline `WAIT`), then finish with what they sent."""
    held = hold(value)
    answer = challenge(held)
    return flowkit.WorkflowResponse(finish(answer))


@step("ask", async_completion=True)
def ask(request: dict[str, Any], ctx: StepContext) -> StepResponse[str, None]:
    """A wait whose deadline comes from the run's input (`StepResponse(timeout=...)`)."""
    return StepResponse("asked", None, timeout=request["timeout"])


@workflow("ask-with-deadline")
def ask_with_deadline(request: Ref[dict[str, Any]]) -> flowkit.WorkflowResponse[Any]:
    """Hold, then a wait whose deadline is the input's `timeout` seconds."""
    hold.with_name("hold-ask")(request["value"])
    return flowkit.WorkflowResponse(ask(request))


@workflow("nap")
def nap(value: Ref[Any]) -> flowkit.WorkflowResponse[Any]:
    """Hold, sleep `NAP`, then finish."""
    held = hold.with_name("hold-nap")(value)
    flowkit.sleep(NAP)
    return flowkit.WorkflowResponse(finish.with_name("finish-nap")(held))


@workflow("nap-for")
def nap_for(request: Ref[dict[str, Any]]) -> flowkit.WorkflowResponse[Any]:
    """Sleep as long as the input says (a `Ref` duration), then finish."""
    flowkit.sleep(request["seconds"], name="nap-for")
    return flowkit.WorkflowResponse(
        finish.with_name("finish-nap-for")(transform(request, lambda r: r["seconds"]))
    )


ALL = [hold_and_wait, ask_with_deadline, nap, nap_for]
