"""The bridge between the runner and a store: checkpoints out, runs rebuilt from step logs in."""

from __future__ import annotations

import json
import time
from typing import Any

from flowkit.codec import Codec
from flowkit.exceptions import IncompatibleRun
from flowkit.plan import SKIPPED, Plan, PlanNode
from flowkit.run import Run, stage_nodes
from flowkit.state import (
    StepError,
    StepState,
    TransactionState,
)
from flowkit.step import StepContext
from flowkit.store import Checkpoint, RunUpdate, Store, StoredStep
from flowkit.syncscope import deferred_sync

_OUTPUT_STATES = frozenset({StepState.DONE, StepState.WAITING})
_COMP_STATES = frozenset({StepState.DONE, StepState.WAITING, StepState.TIMEOUT, StepState.FAILED})
_SKIPPED_STATES = frozenset({StepState.SKIPPED, StepState.SKIPPED_FAILURE})
_HARD_FAILED = frozenset({StepState.FAILED, StepState.TIMEOUT})
_SETTLED = frozenset({StepState.DONE, StepState.SKIPPED, StepState.SKIPPED_FAILURE})


PENDING_INPUT: Any = type("PendingInput", (), {"__repr__": lambda self: "PENDING_INPUT"})()


class StoreJournal:
    """Writes a run's checkpoints to a store, fenced on the engine's ownership."""

    __slots__ = (
        "codec",
        "finished_early",
        "output",
        "owner",
        "sessions",
        "store",
        "taken",
        "transaction_id",
    )

    def __init__(self, store: Store, codec: Codec, transaction_id: str, owner: str) -> None:
        self.store = store
        self.codec = codec
        self.transaction_id = transaction_id
        self.owner = owner
        self.sessions: list[Any] = []
        self.finished_early = False
        self.output: str | None = None
        self.taken: list[Any] = []

    # --- unit of work ----------------------------------------------------------------------

    def open_session(self, run: Run, ctx: StepContext) -> Any:
        session = self.store.open_session()
        self.sessions.append(session)
        return session

    def discard(self, ctx: StepContext) -> None:
        session, ctx._session = ctx._session, None
        if session is not None:
            self._close(session, commit=False)

    def flush(self, ctx: StepContext) -> None:
        if ctx._session is not None:
            ctx._session.flush()

    def abandon(self) -> None:
        """Roll back every open session (the run was abandoned, as by a dead process)."""
        for session in list(self.sessions):
            self._close(session, commit=False)

    def _close(self, session: Any, *, commit: bool) -> None:
        if session in self.sessions:
            self.sessions.remove(session)
        try:
            if not commit:
                session.rollback()
        finally:
            session.close()

    # --- checkpoints -----------------------------------------------------------------------

    def invoked(self, run: Run, node: PlanNode, ctx: StepContext | None) -> None:
        i = node.index
        state = run.states[i]
        assert state is not None
        dumps = self.codec.dumps
        name = run.full_name(node)
        output = run.outputs[i]
        comp = run.comp_inputs[i]
        encoded = (
            dumps(output, lambda: f"the output of step {name!r}")
            if state in _OUTPUT_STATES
            else None
        )
        if state not in _COMP_STATES:
            encoded_comp = None
        elif comp is output and encoded is not None:
            encoded_comp = encoded  # a plain return value is both: encode it once
        else:
            encoded_comp = dumps(comp, lambda: f"the compensate input of step {name!r}")
        failed = state in _HARD_FAILED or state is StepState.FAILED
        row = StoredStep(
            name,
            "invoke",
            state.value,
            run.attempts[i],
            encoded,
            encoded_comp,
            _error_json(run, name, "invoke") if failed else None,
            run.started[i],
            run.ended[i],
        )
        update = self._run_update(run, node, state)
        self._write(Checkpoint(self.transaction_id, self.owner, (row,), update), ctx)

    def _run_update(self, run: Run, node: PlanNode, state: StepState) -> RunUpdate | None:
        if run.parent is not None:
            return None
        if state in _HARD_FAILED and not node.fails_softly:
            return RunUpdate(status=TransactionState.COMPENSATING, errors=self.errors_json(run))
        if state is StepState.DONE and _is_last(run, node):
            return self._early_finish(run)
        return None

    def _early_finish(self, run: Run) -> RunUpdate | None:
        """Fold the run's `done` into the last step's checkpoint (one commit instead of two)."""
        try:
            output = self.codec.dumps(run.plan.result(run), "the workflow's result")
        except Exception:
            return None  # the runner will meet the same error and fail the run
        self.finished_early = True
        self.output = output
        return RunUpdate(
            status=TransactionState.DONE, output=output, errors=self.errors_json(run), release=True
        )

    def accept_result(self, run: Run) -> None:
        if self.output is None:
            self.output = self.codec.dumps(run.result, "the workflow's result")

    def compensated(self, run: Run, node: PlanNode, ctx: StepContext | None) -> None:
        i = node.index
        state = run.states[i]
        assert state is not None
        name = run.full_name(node)
        error = (
            _error_json(run, name, "compensate") if state is StepState.COMPENSATION_FAILED else None
        )
        row = StoredStep(name, "compensate", state.value, 1, None, None, error, None, time.time())
        self._write(Checkpoint(self.transaction_id, self.owner, (row,), None), ctx)

    def finished(self, run: Run) -> None:
        if run.parent is not None:
            return
        if self.finished_early and run.status is TransactionState.DONE:
            return
        output = self.output if run.status is TransactionState.DONE else None
        waiting = run.status is TransactionState.WAITING
        update = RunUpdate(
            status=run.status.value, output=output, errors=self.errors_json(run), release=True
        )
        checkpoint = Checkpoint(
            self.transaction_id,
            self.owner,
            (),
            update,
            take_signals=[owner.full_name(node) for owner, node in run.waiting()]
            if waiting
            else (),
        )
        self._write(checkpoint, None)
        self.taken.extend(checkpoint.taken)

    def release(self, run: Run) -> None:
        if run.parent is None:
            self.note(RunUpdate(release=True))

    def failing(self, run: Run) -> None:
        self.note(RunUpdate(status=TransactionState.COMPENSATING, errors=self.errors_json(run)))

    def note(self, update: RunUpdate) -> None:
        """Write a change of the run row alone (recovery counts, a cancel)."""
        self._write(Checkpoint(self.transaction_id, self.owner, (), update), None)

    def _write(self, checkpoint: Checkpoint, ctx: StepContext | None) -> None:
        key = self.store.sync_key
        scope = deferred_sync(key) if key is not None else None
        mark = scope.mark() if scope is not None else 0
        session = ctx._session if ctx is not None else None
        if session is None:
            self.store.write(checkpoint)
        else:
            ctx._session = None  # type: ignore[union-attr]
            try:
                self.store.write(checkpoint, session)
            finally:
                self._close(session, commit=True)
        if scope is not None:
            scope.synced(mark)  # this durable commit covered the deferred ones before it

    def errors_json(self, run: Run) -> str:
        return json.dumps(
            [[e.step, e.action, e.type_name, e.message, e.fatal] for e in run.errors],
            separators=(",", ":"),
        )


def _error_json(run: Run, name: str, action: str) -> str | None:
    for error in reversed(run.errors):
        if error.step == name and error.action == action:
            return json.dumps([error.type_name, error.message])
    return None


def _is_last(run: Run, node: PlanNode) -> bool:
    stages = run.plan.stages
    return bool(stages) and stages[-1] is node


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
    if state in _OUTPUT_STATES:
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
    return run.states[node.index] in _HARD_FAILED and not node.fails_softly


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
