"""The journal between a run and a `Store`: each checkpoint out, fenced on the engine's lease."""

from __future__ import annotations

import json
import time
from typing import Any

from flowkit.codec import Codec
from flowkit.plan import PlanNode
from flowkit.run import Run
from flowkit.state import StepState, TransactionState
from flowkit.step import StepContext
from flowkit.store import Checkpoint, RunUpdate, Store, StoredStep
from flowkit.syncscope import deferred_sync

__all__ = ["StoreJournal", "wake_at"]

OUTPUT_STATES = frozenset({StepState.DONE, StepState.WAITING})
_COMP_STATES = frozenset({StepState.DONE, StepState.WAITING, StepState.TIMEOUT, StepState.FAILED})
HARD_FAILED = frozenset({StepState.FAILED, StepState.TIMEOUT})


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
            if state in OUTPUT_STATES
            else None
        )
        if state not in _COMP_STATES:
            encoded_comp = None
        elif comp is output and encoded is not None:
            encoded_comp = encoded  # a plain return value is both: encode it once
        else:
            encoded_comp = dumps(comp, lambda: f"the compensate input of step {name!r}")
        failed = state in HARD_FAILED or state is StepState.FAILED
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
            run.due.get(i) if run.due is not None and state is StepState.WAITING else None,
        )
        update = self._run_update(run, node, state)
        self._write(Checkpoint(self.transaction_id, self.owner, (row,), update), ctx)

    def _run_update(self, run: Run, node: PlanNode, state: StepState) -> RunUpdate | None:
        if run.parent is not None:
            return None
        if state in HARD_FAILED and not node.fails_softly:
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
            status=run.status.value,
            output=output,
            errors=self.errors_json(run),
            release=True,
            wake_at=wake_at(run) if waiting else None,
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
        if scope is not None and self.store.syncs_each_commit:
            scope.synced(mark)  # this durable commit covered the deferred ones before it

    def errors_json(self, run: Run) -> str:
        return json.dumps(
            [[e.step, e.action, e.type_name, e.message, e.fatal] for e in run.errors],
            separators=(",", ":"),
        )


def wake_at(run: Run) -> float | None:
    """The earliest deadline of a parked run's waiting steps (None: it waits for signals only)."""
    due = [
        owner.due[node.index]
        for owner, node in run.waiting()
        if owner.due is not None and node.index in owner.due
    ]
    return min(due, default=None)


def _error_json(run: Run, name: str, action: str) -> str | None:
    for error in reversed(run.errors):
        if error.step == name and error.action == action:
            return json.dumps([error.type_name, error.message])
    return None


def _is_last(run: Run, node: PlanNode) -> bool:
    stages = run.plan.stages
    return bool(stages) and stages[-1] is node
