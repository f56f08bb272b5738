"""Workflows of the encryption tests: every value they store carries a marker string."""

from __future__ import annotations

from typing import Any

from attrs import frozen

import flowkit
from flowkit import Secret, StepContext, StepResponse, WorkflowResponse, step, workflow

MARKERS = ("MARK-INPUT", "MARK-OUTPUT", "MARK-UNDO", "MARK-ERROR", "MARK-SIGNAL", "MARK-SECRET")


@frozen
class Payload:
    """A run input with a marker, a secret and where to fail."""

    note: str
    password: Secret[str] | None = None
    fail: bool = False


@step("take")
def take(inp: Payload, ctx: StepContext) -> StepResponse[str, str]:
    """Outputs and compensate inputs carry markers; a Secret arrives as one."""
    assert inp.password is None or inp.password.reveal() == "MARK-SECRET-pw"
    return StepResponse(f"MARK-OUTPUT {inp.note}", compensate_input=f"MARK-UNDO {inp.note}")


@take.compensate
def _untake(undo: str, ctx: StepContext) -> None:
    assert undo.startswith("MARK-UNDO")


@step("check")
def check(inp: Payload, ctx: StepContext) -> str:
    """Fails with a marker in its message when asked to."""
    if inp.fail:
        raise RuntimeError(f"MARK-ERROR while handling {inp.note}")
    return "checked"


wait = step("wait", async_completion=True)(
    lambda inp, ctx: StepResponse(None, compensate_input="MARK-UNDO-wait")
)


@workflow("sealed")
def sealed(inp: flowkit.Ref[Payload]) -> WorkflowResponse[Any]:
    """Take, check, and return both outputs."""
    taken = take(inp)
    return WorkflowResponse({"taken": taken, "checked": check(inp)})


@workflow("sealed-wait")
def sealed_wait(inp: flowkit.Ref[Payload]) -> WorkflowResponse[Any]:
    """Take, wait for a signal, check."""
    take(inp)
    answer = wait(inp)
    check(inp)
    return WorkflowResponse(answer)


ALL = [sealed, sealed_wait]
