"""Test support for applications built on flowkit: fixtures, fault injection, rollback paths.

`explore_rollbacks` runs a workflow under generated failure plans (a step failing on some
attempts, compensations failing, a crash at a checkpoint and a recovery) and checks your
invariants after every outcome; `failure_plans` is the Hypothesis strategy behind it.
`ManualClock` moves time for tests of deadlines, sleeps and schedules (they never sleep). The
pytest plugin (registered automatically) provides the `flowkit_engine` and `flowkit_registry`
fixtures.
"""

from flowkit.testing.clock import ManualClock
from flowkit.testing.explore import ExplorationError, Trial, explore_rollbacks
from flowkit.testing.faults import (
    CompensationFailure,
    Crash,
    FailurePlan,
    PlanFaults,
    StepFailure,
)
from flowkit.testing.strategies import failure_plans

__all__ = [
    "CompensationFailure",
    "Crash",
    "ExplorationError",
    "FailurePlan",
    "ManualClock",
    "PlanFaults",
    "StepFailure",
    "Trial",
    "explore_rollbacks",
    "failure_plans",
]
