"""`flowkit.sleep`: a durable pause inside a workflow.

A sleep is a step that parks its run (like an `async_completion` step) with a deadline of
`now + duration` on the engine's clock; no process needs to stay alive meanwhile, and
`engine.tick()` (every worker calls it) resumes the run once the deadline has passed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flowkit.clock import as_seconds
from flowkit.recording import current_builder
from flowkit.refs import Ref
from flowkit.step import Step, StepContext, StepResponse, check_name

__all__ = ["SleepStep", "sleep"]


class SleepStep(Step[Any, None]):
    """The step `flowkit.sleep` records: it waits until its deadline, then succeeds."""

    __slots__ = ()
    sleeps = True


def _park(duration: Any, ctx: StepContext) -> StepResponse[None, None]:
    seconds = as_seconds(duration, f"the duration of {ctx.step_name!r}")
    return StepResponse(None, None, timeout=seconds)


def sleep(duration: float | timedelta | Ref[Any], name: str | None = None) -> Ref[None]:
    """Pause the workflow being defined for `duration`, durably.

    Args:
        duration: Seconds or a `timedelta`, or a `Ref` to one (checked when the run gets
            there: a bad value then fails the step, and the run compensates).
        name: The step's durable name (default `sleep-<n>`, counting this workflow's sleeps).

    Returns:
        A ref to the step's output (None once it woke), to order later steps after it.

    Raises:
        InvalidTime: a negative, non-finite or non-numeric `duration`.
        DefinitionError: outside a `@workflow` function, or a bad or taken name.
    """
    builder = current_builder("flowkit.sleep")
    if not isinstance(duration, Ref):
        as_seconds(duration, "flowkit.sleep duration")
    if name is None:
        count = sum(1 for node in builder.nodes if node.step is not None and node.step.sleeps)
        name = f"sleep-{count + 1}"
    check_name(name, "step")
    step = SleepStep(
        _park,
        name,
        explicit_name=True,
        retry=None,
        timeout=None,
        async_completion=True,
        continue_on_permanent_failure=False,
        skip_on_permanent_failure=False,
    )
    return builder.record_step(step, duration)
