"""`explore_rollbacks`: run a workflow under every kind of failure and check your invariants."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from attrs import frozen
from hypothesis import given, settings
from hypothesis.control import currently_in_test_context

from flowkit.container import Registry, Scope
from flowkit.engine import Engine
from flowkit.exceptions import FlowkitError, InjectedFailure, SimulatedCrash
from flowkit.memory import MemoryStore
from flowkit.state import RunResult
from flowkit.testing.faults import FailurePlan, PlanFaults
from flowkit.testing.strategies import failure_plans
from flowkit.workflow import Workflow

__all__ = ["ExplorationError", "Trial", "explore_rollbacks"]


class ExplorationError(FlowkitError):
    """`explore_rollbacks` cannot explore as asked (not a failure of your invariants)."""


@frozen
class Trial:
    """One explored run.

    Attributes:
        plan: The faults injected.
        transaction_id: The run's transaction id.
        crashed: True when the run was abandoned and recovered by a fresh engine.
        engine: The engine that finished the run (the fresh one after a crash).
    """

    plan: FailurePlan
    transaction_id: str
    crashed: bool
    engine: Engine


Check = Callable[..., Any]


def explore_rollbacks(
    workflow: Workflow[Any, Any],
    make_input: Callable[[], Any],
    check: Check,
    *,
    engine_factory: Callable[[], Engine] | None = None,
    container: Registry | Scope | None = None,
    max_examples: int = 100,
    max_faults: int = 3,
    errors: Sequence[type[Exception]] = (InjectedFailure,),
    **settings_overrides: Any,
) -> None:
    """Run `workflow` under generated failure plans and call `check` after every outcome.

    For each plan: `make_input()` builds fresh entities (database state is not reset between
    examples), the run gets a fresh transaction id, faults are injected by the engine (never in
    your code). After a crash the crashed engine is closed, the run's lease marked expired and a
    fresh engine from `engine_factory` recovers it. Then `check(result)` or
    `check(result, trial)` runs with the final `RunResult`.

    A failing check is shrunk to the simplest plan (fewest faults, earliest steps) and its own
    exception is re-raised with `plan.describe()` added as a note.

    Args:
        workflow: The workflow to explore.
        make_input: Builds one run's input (fresh entities each call).
        check: Your invariants; raise `AssertionError` when one is broken.
        engine_factory: Makes engines on one shared store (default: in-memory engines sharing
            one `MemoryStore`, so values must be storable as in a durable run).
        container: The registry or scope runs and recoveries resolve services from.
        max_examples: How many plans to try.
        max_faults: The most faults in one plan.
        errors: Exception types an injected step failure raises (instantiated with a
            message): pass your own to exercise retry policies that only retry some errors.
        settings_overrides: Passed to Hypothesis `settings` (defaults: `deadline=None`,
            `database=None`, `report_multiple_bugs=False`).

    Raises:
        AssertionError: (or whatever your check raised) for the simplest failing plan.
        ExplorationError: called inside `@given`, a check that raises something other than an
            AssertionError, or an engine factory that returns an engine twice or a closed store.
    """
    if currently_in_test_context():
        raise ExplorationError("explore_rollbacks runs Hypothesis itself: do not call it in @given")
    strategy = failure_plans(workflow, max_faults=max_faults, errors=errors)
    explorer = _Explorer(workflow, make_input, check, engine_factory, container)
    options: dict[str, Any] = {"deadline": None, "database": None, "report_multiple_bugs": False}
    options.update(settings_overrides)

    @settings(max_examples=max_examples, **options)
    @given(strategy)
    def explore(plan: FailurePlan) -> None:
        try:
            explorer.trial(plan)
        except ExplorationError as exc:
            raise _Abort(exc) from exc  # a usage error: stop now, there is nothing to shrink

    try:
        explore()
    except _Abort as abort:
        raise abort.error from abort.error.__cause__
    finally:
        explorer.close()


class _Abort(BaseException):
    """Carries an `ExplorationError` past Hypothesis (which would shrink an `Exception`)."""

    def __init__(self, error: ExplorationError) -> None:
        super().__init__(str(error))
        self.error = error


class _Explorer:
    def __init__(
        self,
        workflow: Workflow[Any, Any],
        make_input: Callable[[], Any],
        check: Check,
        engine_factory: Callable[[], Engine] | None,
        container: Registry | Scope | None,
    ) -> None:
        self.workflow = workflow
        self.make_input = make_input
        self.check = check
        self.takes_trial = _arity(check) >= 2
        self.container = container
        self._factory = engine_factory or _memory_engines(workflow, container)
        self._seen: list[Engine] = []

    def engine(self) -> Engine:
        engine = self._factory()
        if not isinstance(engine, Engine):
            raise ExplorationError(f"engine_factory returned {engine!r}, not an Engine")
        if any(engine is seen for seen in self._seen):
            raise ExplorationError("engine_factory must return a new Engine on every call")
        if getattr(engine.store, "closed", False):
            raise ExplorationError("engine_factory returned an engine whose store is closed")
        engine.register(self.workflow)
        self._seen.append(engine)
        return engine

    def trial(self, plan: FailurePlan) -> None:
        tx = uuid.uuid4().hex
        engine = self.engine()
        engine.faults[tx] = PlanFaults(plan)
        inp = self.make_input()
        crashed = False
        try:
            result: RunResult[Any] | None = engine.run(
                self.workflow,
                inp,
                transaction_id=tx,
                throw_on_error=False,
                container=self.container,
            )
        except SimulatedCrash:
            crashed = True
            engine, result = self._recover(engine, tx)
        finally:
            engine.faults.pop(tx, None)
        assert result is not None
        self._check(result, Trial(plan, tx, crashed, engine))

    def _recover(self, crashed: Engine, tx: str) -> tuple[Engine, RunResult[Any] | None]:
        crashed.close()
        fresh = self.engine()
        fresh.store.expire_lease(tx)
        for result in fresh.recover(container=self.container):
            if result.transaction_id == tx:
                return fresh, result
        return fresh, fresh.result(tx)  # the crash came after its last checkpoint

    def _check(self, result: RunResult[Any], trial: Trial) -> None:
        try:
            if self.takes_trial:
                self.check(result, trial)
            else:
                self.check(result)
        except AssertionError as exc:
            exc.add_note(f"under this plan: {trial.plan.describe()}")
            raise
        except Exception as exc:
            raise ExplorationError(
                f"the check raised {type(exc).__name__} (not an AssertionError): {exc}; "
                f"under this plan: {trial.plan.describe()}"
            ) from exc

    def close(self) -> None:
        for engine in self._seen:
            engine.close()
        self._seen.clear()


def _memory_engines(
    workflow: Workflow[Any, Any], container: Registry | Scope | None
) -> Callable[[], Engine]:
    store = _SharedMemoryStore()

    def make() -> Engine:
        return Engine(store, [workflow], container=container)

    return make


class _SharedMemoryStore(MemoryStore):
    """A memory store that survives its engines being closed (they share it)."""

    def close(self) -> None:
        """Engines close their store; this one outlives them."""


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 1
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional)
