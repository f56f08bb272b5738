"""Runs read back from a store (the engine's queries): `RunResult`s, `RunRecord`s, and raising
for stored failures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from flowkit.codec import Codec
from flowkit.encryption import is_sealed
from flowkit.exceptions import StoredError
from flowkit.outcome import first_fatal_error, raise_for
from flowkit.state import (
    RunRecord,
    RunResult,
    StepError,
    StepRecord,
    StepState,
    TransactionState,
    datetime_of,
)
from flowkit.store import Store, StoredRun, StoredStep

__all__ = [
    "ENCRYPTED",
    "decode_errors",
    "list_records",
    "load_record",
    "load_result",
    "raise_any",
    "record_of",
    "step_records",
    "stored_result",
]


def stored_result(stored: StoredRun, steps: list[StoredStep], codec: Codec) -> RunResult[Any]:
    """The `RunResult` of a stored run (errors carry no exception objects)."""
    status = TransactionState(stored.status)
    return RunResult(
        result=codec.loads(stored.output) if status is TransactionState.DONE else None,
        status=status,
        errors=decode_errors(stored.errors),
        transaction_id=stored.transaction_id,
        workflow=stored.workflow,
        is_partially_completed=any(
            s.status == StepState.FAILED for s in steps if s.action == "invoke"
        )
        and status is TransactionState.DONE,
        steps=lambda: step_records(steps),
        waiting=_waiting(steps, codec) if status is TransactionState.WAITING else None,
    )


def _waiting(steps: list[StoredStep], codec: Codec) -> dict[str, Any]:
    """The invoke outputs of the steps whose latest row says they wait."""
    latest = {row.step: row for row in steps}
    return {
        name: codec.loads(row.output)
        for name, row in latest.items()
        if row.action == "invoke" and row.status == StepState.WAITING
    }


ENCRYPTED = "<encrypted>"
"""What an encrypted value read without its keys is shown as (`decode=False`)."""


def decode_errors(text: str) -> list[StepError]:
    """Errors of a run row (encrypted ones, read without the keys: one `ENCRYPTED` error)."""
    if is_sealed(text):
        return [StepError(ENCRYPTED, "invoke", ENCRYPTED, ENCRYPTED, None, True)]
    return [
        StepError(step, action, kind, message, None, fatal)
        for step, action, kind, message, fatal in json.loads(text)
    ]


def step_records(steps: list[StoredStep]) -> dict[str, StepRecord]:
    """Per-step records folded from a step log (the latest row of each step wins).

    A nested workflow's node comes before its steps; when it finished, its own `done` left no
    row (its steps' rows say it all), so its record is made from theirs.
    """
    return _with_nested_nodes(_fold(steps))


def _fold(steps: list[StoredStep]) -> dict[str, StepRecord]:
    records: dict[str, StepRecord] = {}
    for row in steps:
        previous = records.get(row.step)
        if row.action == "invoke":
            state = StepState(row.status)
            records[row.step] = StepRecord(
                row.step,
                state,
                row.attempt,
                datetime_of(row.started_at),
                datetime_of(row.ended_at),
                previous.compensated_at if previous else None,
                state,
                datetime_of(row.due_at) if state is StepState.WAITING else None,
            )
        else:
            base = previous or StepRecord(row.step, StepState.NOT_STARTED)
            records[row.step] = StepRecord(
                row.step,
                StepState(row.status),
                base.attempts,
                base.started_at,
                base.ended_at,
                datetime_of(row.ended_at),
                base.invoke_state,
            )
    return records


def _with_nested_nodes(records: dict[str, StepRecord]) -> dict[str, StepRecord]:
    ordered: dict[str, StepRecord] = {}
    for name, record in records.items():
        parts = name.split("/")
        for depth in range(1, len(parts)):
            ancestor = "/".join(parts[:depth])
            if ancestor not in ordered:
                ordered[ancestor] = _nested_node(ancestor, records)
        if name not in ordered:
            ordered[name] = record
    return ordered


def _nested_node(name: str, records: dict[str, StepRecord]) -> StepRecord:
    own = records.get(name)
    if own is not None and own.invoke_state is not None:
        return own
    steps = [r for n, r in records.items() if n.startswith(f"{name}/")]
    started = [r.started_at for r in steps if r.started_at is not None]
    ended = [r.ended_at for r in steps if r.ended_at is not None]
    return StepRecord(
        name,
        own.state if own is not None else StepState.DONE,
        1,
        min(started, default=None),
        max(ended, default=None),
        own.compensated_at if own is not None else None,
        StepState.DONE,
    )


def record_of(
    stored: StoredRun, steps: Sequence[StoredStep] | None, codec: Codec, *, decode: bool = True
) -> RunRecord:
    """A stored run as a `RunRecord` (`decode=False` keeps inputs and outputs as JSON, and
    shows encrypted ones the store could not open as `ENCRYPTED`)."""
    loads = codec.loads if decode else _raw_json
    return RunRecord(
        transaction_id=stored.transaction_id,
        workflow=stored.workflow,
        status=TransactionState(stored.status),
        input=loads(stored.input),
        output=loads(stored.output),
        errors=tuple(decode_errors(stored.errors)),
        steps=step_records(list(steps)) if steps is not None else {},
        owner=stored.owner,
        lease_expires_at=datetime_of(stored.lease_expires_at),
        created_at=datetime_of(stored.created_at) or datetime.fromtimestamp(0),
        updated_at=datetime_of(stored.updated_at) or datetime.fromtimestamp(0),
        queue=stored.queue,
        version=stored.version,
        fingerprint=stored.fingerprint,
        wake_at=datetime_of(stored.wake_at) if stored.status == TransactionState.WAITING else None,
        start_at=datetime_of(stored.start_at),
        trace_context=stored.trace_context,
    )


def raise_any(result: RunResult[Any]) -> None:
    """Raise for a reverted or failed result, in-process (`raise_for`) or stored (`StoredError`)."""
    if result.status not in (TransactionState.REVERTED, TransactionState.FAILED):
        return
    if any(e.exception is not None for e in result.errors):
        raise_for(result)
    if not result.errors:
        raise StoredError(None, "unknown", f"run {result.transaction_id!r} is {result.status}")
    first = first_fatal_error(result)
    raise StoredError(first.step, first.type_name, first.message)


def _raw_json(text: str | None) -> Any:
    if text is None:
        return None
    return ENCRYPTED if is_sealed(text) else json.loads(text)


def load_record(
    store: Store, codec: Codec, transaction_id: str, *, decode: bool
) -> RunRecord | None:
    """The stored run with its steps as a `RunRecord`, or None when unknown (`Engine.get`)."""
    loaded = store.load(transaction_id)
    if loaded is None:
        return None
    return record_of(loaded[0], loaded[1], codec, decode=decode)


def list_records(
    store: Store,
    codec: Codec,
    status: TransactionState | str | None,
    workflow: str | None,
    since: datetime | None,
    limit: int,
    *,
    decode: bool,
    version: int | None = None,
) -> list[RunRecord]:
    """Stored runs, newest first, without their steps (`Engine.list`)."""
    rows = store.list_runs(
        None if status is None else TransactionState(status).value,
        workflow,
        since.timestamp() if since is not None else None,
        limit,
        version,
    )
    return [record_of(row, None, codec, decode=decode) for row in rows]


def load_result(store: Store, codec: Codec, transaction_id: str) -> RunResult[Any] | None:
    """The stored `RunResult` of a run, or None when unknown (`Engine.result`)."""
    loaded = store.load(transaction_id)
    return None if loaded is None else stored_result(loaded[0], loaded[1], codec)
