"""Runs rebuilt from their step log: where each node stood, where the run resumes, and the
signals that finish waiting steps."""

from __future__ import annotations

import json
import time
from typing import Any

from flowkit import events
from flowkit.codec import Codec
from flowkit.exceptions import IncompatibleRun, SignalledFailure, StepTimeout
from flowkit.journal import HARD_FAILED, OUTPUT_STATES
from flowkit.plan import SKIPPED, Plan, PlanNode, stage_nodes
from flowkit.run import Run
from flowkit.state import StepError, StepState, TransactionState
from flowkit.store import Signal, StoredStep

__all__ = [
    "PENDING_INPUT",
    "Fired",
    "apply_signal",
    "child_run",
    "find_node",
    "fire_due",
    "inflight",
    "locate",
    "position",
    "rebuild",
]

_SKIPPED_STATES = frozenset({StepState.SKIPPED, StepState.SKIPPED_FAILURE})
_SETTLED = frozenset({StepState.DONE, StepState.SKIPPED, StepState.SKIPPED_FAILURE})

PENDING_INPUT: Any = type("PendingInput", (), {"__repr__": lambda self: "PENDING_INPUT"})()


# --- rebuilding a run from its log -------------------------------------------------------------


def rebuild(run: Run, steps: list[StoredStep], codec: Codec, *, compensating: bool = False) -> Run:
    """Fill a fresh `Run` from its step log, and set where it resumes.

    `compensating` says the run row is already compensating (a failure outside any step).

    Raises:
        IncompatibleRun: a checkpointed step does not exist in the workflow.
    """
    for row in steps:
        target, node = locate(run, row.step)
        if row.action == "invoke":
            _apply_invoke(target, node, row, codec)
        else:
            _apply_compensation(target, node, row)
    position(run, compensating=compensating)
    return run


def locate(run: Run, name: str) -> tuple[Run, PlanNode]:
    """The (run, node) a recorded step name belongs to, creating nested runs on the way.

    Raises:
        IncompatibleRun: the name matches no node.
    """
    node = run.plan.by_name.get(name)
    if node is not None:
        return run, node
    head, _, rest = name.partition("/")
    parent = run.plan.by_name.get(head)
    if parent is None or parent.child is None or not rest:
        raise IncompatibleRun(
            f"run {run.transaction_id!r} has a checkpoint of step {run.prefix + name!r}, which "
            f"workflow {run.plan.name!r} does not have"
        )
    return locate(child_run(run, parent), rest)


def find_node(plan: Plan, name: str) -> PlanNode | None:
    """The node a recorded step name (`"child/step"` for nested ones) names, or None."""
    node = plan.by_name.get(name)
    if node is not None:
        return node
    head, _, rest = name.partition("/")
    parent = plan.by_name.get(head)
    if parent is None or parent.child is None or not rest:
        return None
    return find_node(parent.child, rest)


def child_run(run: Run, node: PlanNode) -> Run:
    """The nested run of a child-workflow node, created (with its input) if missing."""
    return run.nested(node, PENDING_INPUT)  # set by `position`, once earlier stages are settled


def _apply_invoke(run: Run, node: PlanNode, row: StoredStep, codec: Codec) -> None:
    i = node.index
    state = StepState(row.status)
    run.states[i] = state
    run.attempts[i] = row.attempt
    run.started[i] = row.started_at
    run.ended[i] = row.ended_at
    if state is StepState.WAITING and row.due_at is not None:
        run.set_due(i, row.due_at)
    if state in OUTPUT_STATES:
        run.outputs[i] = codec.loads(row.output)
    elif state in _SKIPPED_STATES or (state is StepState.FAILED and node.fails_softly):
        run.outputs[i] = SKIPPED
    run.comp_inputs[i] = codec.loads(row.compensate_input)
    if row.error is not None:
        _restore_error(run, run.full_name(node), "invoke", row.error, fatal=not node.fails_softly)


def _apply_compensation(run: Run, node: PlanNode, row: StoredStep) -> None:
    i = node.index
    state = StepState(row.status)
    run.states[i] = state
    if run.compensated_at is None:
        run.compensated_at = [None] * len(run.plan.nodes)
    run.compensated_at[i] = row.ended_at
    if state is StepState.COMPENSATION_FAILED:
        run.comp_failed = True
        if row.error is not None:
            _restore_error(run, run.full_name(node), "compensate", row.error)


def _restore_error(run: Run, name: str, action: Any, text: str, *, fatal: bool = True) -> None:
    type_name, message = json.loads(text)
    run.errors.append(StepError(name, action, type_name, message, None, fatal))


def position(run: Run, *, compensating: bool = False) -> None:
    """Set `next_stage` and `status` of a rebuilt run (and of its nested runs) from states.

    The last stage that left a trace is where the run stood. Earlier stages without a trace
    were passed: a node skipped by its `when` (such skips are not checkpointed), or a nested
    workflow whose own steps all finished (its node's `done` is not checkpointed either).
    """
    stages = run.plan.stages
    traced = [
        k for k, stage in enumerate(stages) if any(_traced(run, n) for n in stage_nodes(stage))
    ]
    last = traced[-1] if traced else -1
    for k, stage in enumerate(stages[: last + 1]):
        for node in stage_nodes(stage):
            _position_child(run, node)  # its input needs the stages before it settled
            if k < last:
                _settle_passed(run, node)
    nodes = [n for stage in stages[: last + 1] for n in stage_nodes(stage)]
    failing = run.comp_failed or compensating
    failing = failing or any(_hard_failed(run, n) or _compensation_seen(run, n) for n in nodes)
    if failing:
        run.status = TransactionState.COMPENSATING
        run.next_stage = last + 1
        return
    run.status = TransactionState.INVOKING
    finished = last >= 0 and all(_settled(run, n) for n in stage_nodes(stages[last]))
    run.next_stage = last + 1 if finished else max(last, 0)


def _position_child(run: Run, node: PlanNode) -> None:
    child = run.children.get(node.index) if run.children else None
    if child is not None:
        if child.input is PENDING_INPUT:
            child.input = node.get(run)
        position(child)


def _traced(run: Run, node: PlanNode) -> bool:
    return run.states[node.index] is not None or bool(run.children and node.index in run.children)


def _settle_passed(run: Run, node: PlanNode) -> None:
    """A node of a stage the run went past, that left no checkpoint of its own."""
    i = node.index
    if run.states[i] is not None:
        return
    child = run.children.get(i) if run.children else None
    if child is None:  # skipped by its when()
        run.states[i] = StepState.SKIPPED
        run.outputs[i] = SKIPPED
        return
    child.result = child.plan.result(child)
    child.status = TransactionState.DONE
    run.states[i] = StepState.DONE
    run.outputs[i] = child.result


def _hard_failed(run: Run, node: PlanNode) -> bool:
    return run.states[node.index] in HARD_FAILED and not node.fails_softly


def _compensation_seen(run: Run, node: PlanNode) -> bool:
    return run.states[node.index] in (
        StepState.REVERTED,
        StepState.COMPENSATION_FAILED,
        StepState.COMPENSATING,
    )


def _settled(run: Run, node: PlanNode) -> bool:
    state = run.states[node.index]
    return state in _SETTLED or (state is StepState.FAILED and node.fails_softly)


def inflight(run: Run) -> tuple[Run, PlanNode] | None:
    """The node a resumed run will run (or compensate) first, nested runs included."""
    stages = run.plan.stages
    if run.status is TransactionState.COMPENSATING:
        for k in range(min(run.next_stage, len(stages)) - 1, -1, -1):
            for node in stage_nodes(stages[k]):
                if run.states[node.index] in _COMP_PENDING:
                    return _descend(run, node)
        return None
    if run.next_stage >= len(stages):
        return None
    for node in stage_nodes(stages[run.next_stage]):
        if not _settled(run, node):
            return _descend(run, node)
    return None


_COMP_PENDING = frozenset(
    {StepState.DONE, StepState.WAITING, StepState.TIMEOUT, StepState.FAILED, StepState.COMPENSATING}
)


def _descend(run: Run, node: PlanNode) -> tuple[Run, PlanNode]:
    child = run.children.get(node.index) if run.children else None
    if child is not None:
        found = inflight(child)
        if found is not None:
            return found
    return run, node


def apply_signal(run: Run, signal: Signal, codec: Codec) -> None:
    """Finish (or fail) the signalled step of a run the engine owns."""
    target, node = locate(run, signal.step)
    i = node.index
    if signal.kind == "success":
        _finish_wait(run, target, node, codec.loads(signal.payload), time.time())
        return
    type_name, message = codec.loads(signal.payload)
    target.fail(node, SignalledFailure(type_name, message), comp_input=target.comp_inputs[i])


class Fired:
    """What `fire_due` did: the waits it expired and the sleeps it ended, by step name."""

    __slots__ = ("expired", "woken")

    def __init__(self) -> None:
        self.expired: list[str] = []
        self.woken: list[str] = []


def _finish_wait(run: Run, target: Run, node: PlanNode, output: Any, at: float) -> None:
    """A waiting step (of `target`, inside `run`) done with `output`, and checkpointed; its
    compensation gets `output` unless its invoke gave it an input of its own."""
    i = node.index
    target.outputs[i] = output
    if target.comp_inputs[i] is None:
        target.comp_inputs[i] = output
    target.states[i] = StepState.DONE
    target.ended[i] = at
    assert run.journal is not None
    run.journal.invoked(target, node, None)


def fire_due(run: Run, now: float, only: str | None = None) -> Fired:
    """End the waits of an owned, rebuilt run whose deadline is at or before `now`.

    A sleep succeeds (its output None); any other wait fails with `StepTimeout` (state
    `timeout`), keeping its invoke's compensate input, so the run compensates. `only` limits
    this to one step (a signal that arrived late). Call `position(run)` afterwards.
    """
    fired = Fired()
    for target, node in list(run.waiting()):
        i = node.index
        due = target.due.get(i) if target.due is not None else None
        name = target.full_name(node)
        if due is None or due > now or (only is not None and name != only):
            continue
        if node.sleep:
            _finish_wait(run, target, node, None, now)
            fired.woken.append(name)
            _announce(run, "run_woken", name, due)
            continue
        parked = target.ended[i]
        limit = due - parked if parked is not None and parked <= due else 0.0
        target.fail(
            node,
            StepTimeout(name, round(limit, 3)),
            state=StepState.TIMEOUT,
            comp_input=target.comp_inputs[i],
        )
        fired.expired.append(name)
        _announce(run, "step_expired", name, due)
    return fired


def _announce(run: Run, name: str, step: str, due: float) -> None:
    if run.emitter is not None:
        level = events.WARNING if name == "step_expired" else events.INFO
        run.emitter.emit(name, level, step, deadline=due)
