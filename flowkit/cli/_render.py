"""Rendering runs: JSON with stable keys for scripts, rich tables for people."""

from __future__ import annotations

import dataclasses
import enum
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import attrs
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from flowkit.cli._reading import RunView, ScheduleLine, StepLine
from flowkit.state import RunRecord, RunResult, StepError, TransactionState

__all__ = [
    "dumps",
    "error_json",
    "jsonable",
    "print_result",
    "print_run",
    "print_runs",
    "run_json",
    "step_json",
]

_STYLES = {
    "done": "green",
    "reverted": "yellow",
    "failed": "bold red",
    "timeout": "red",
    "compensation_failed": "bold red",
    "waiting": "cyan",
    "invoking": "blue",
    "compensating": "magenta",
    "queued": "cyan",
    "skipped": "dim",
    "skipped_failure": "dim",
}
_NONE = Text("-", style="dim")

# --- JSON -----------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """A JSON-ready copy of a stored value: datetimes in ISO 8601, Decimal and UUID as strings,
    attrs classes and dataclasses as objects of their fields, sets as sorted lists."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=repr)
    return _jsonable_scalar(value)


def _jsonable_scalar(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, enum.Enum):
        return jsonable(value.value)
    if attrs.has(type(value)):
        return {a.name: jsonable(getattr(value, a.name)) for a in attrs.fields(type(value))}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value)


def run_json(record: RunRecord, steps: Iterable[StepLine] | None = None) -> dict[str, Any]:
    """A run as JSON (`steps` only when given: `runs list` leaves them out)."""
    data: dict[str, Any] = {
        "transaction_id": record.transaction_id,
        "workflow": record.workflow,
        "status": record.status.value,
        "version": record.version,
        "fingerprint": record.fingerprint,
        "created_at": record.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
        "owner": record.owner,
        "lease_expires_at": _iso(record.lease_expires_at),
        "queue": record.queue,
        "wake_at": _iso(record.wake_at),
        "start_at": _iso(record.start_at),
        "input": jsonable(record.input),
        "output": jsonable(record.output),
        "errors": [error_json(e) for e in record.errors],
    }
    if steps is not None:
        data["steps"] = [step_json(s) for s in steps]
    return data


def step_json(line: StepLine) -> dict[str, Any]:
    """One timeline step as JSON."""
    compensation = None
    if line.compensation is not None:
        compensation = {
            "state": line.compensation.value,
            "at": _iso(line.compensated_at),
            "error": _short_error_json(line.compensation_error),
        }
    return {
        "step": line.name,
        "state": line.state.value if line.state is not None else None,
        "attempts": line.attempts,
        "started_at": _iso(line.started_at),
        "ended_at": _iso(line.ended_at),
        "duration_seconds": line.duration,
        "due_at": _iso(line.due_at),
        "error": _short_error_json(line.error),
        "compensation": compensation,
    }


def error_json(error: StepError) -> dict[str, Any]:
    """One recorded error as JSON."""
    return {
        "step": error.step,
        "action": error.action,
        "type": error.type_name,
        "message": error.message,
        "fatal": error.fatal,
    }


def _short_error_json(error: StepError | None) -> dict[str, str] | None:
    return None if error is None else {"type": error.type_name, "message": error.message}


def dumps(data: Any) -> str:
    """Indented JSON text, keys in the order given."""
    return json.dumps(data, indent=2, ensure_ascii=False)


# --- tables ---------------------------------------------------------------------------------


def print_runs(console: Console, records: list[RunRecord], limit: int) -> None:
    """A table of runs, newest first."""
    if not records:
        console.print("no runs found")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title in ("transaction id", "workflow", "status", "version", "created (UTC)"):
        table.add_column(title, no_wrap=True)
    table.add_column("error", overflow="fold", min_width=16, max_width=60)  # the one that wraps
    for record in records:
        table.add_row(
            record.transaction_id,
            record.workflow,
            _state(record.status.value),
            f"v{record.version}",
            _when(record.created_at),
            _first_error(record.errors),
        )
    console.print(table)
    if len(records) == limit:
        console.print(Text(f"showing the newest {limit} runs: --limit for more", style="dim"))


def print_run(console: Console, view: RunView) -> None:
    """A run's header, its step timeline and its errors."""
    record = view.record
    console.print(
        Text.assemble(
            ("run ", "bold"),
            (record.transaction_id, "bold"),
            f"  {record.workflow}  ",
            _state(record.status.value),
        )
    )
    fingerprint = record.fingerprint or "none (recorded before versions: matched by step names)"
    console.print(f"version {record.version}  fingerprint {fingerprint}")
    console.print(f"created {_when(record.created_at)}  updated {_when(record.updated_at)} (UTC)")
    if record.owner is not None:
        console.print(f"owner {record.owner} until {_when(record.lease_expires_at)}")
    if record.wake_at is not None:
        console.print(f"wakes at {_when(record.wake_at)} (UTC): its earliest deadline or sleep end")
    if record.start_at is not None and record.status is TransactionState.QUEUED:
        console.print(f"starts at {_when(record.start_at)} (UTC) at the earliest")
    for label, value in (("input", record.input), ("output", record.output)):
        if value is not None:
            line = f"{label} {json.dumps(jsonable(value), ensure_ascii=False)}"
            console.print(line, overflow="ellipsis", no_wrap=True)
    console.print(_timeline(view.steps) if view.steps else "no step has finished yet")
    for error in record.errors:
        console.print(
            Text.assemble(
                (f"{error.action} error", "red"),
                f" in {error.step}: {error.type_name}: {error.message}",
            )
        )


def _timeline(steps: Sequence[StepLine]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False)
    # narrow terminals wrap the error and compensation columns first, long step names last
    longest = max(len(line.name) for line in steps)
    table.add_column("step", overflow="fold", min_width=min(longest, 40))
    for title in ("state", "attempts", "started", "duration"):
        table.add_column(title, no_wrap=True, justify="right" if title == "attempts" else "left")
    errors = any(line.error is not None for line in steps)
    compensations = any(line.compensation is not None for line in steps)
    deadlines = any(line.due_at is not None for line in steps)
    if deadlines:
        table.add_column("deadline (UTC)", no_wrap=True)
    if errors:
        table.add_column("error", overflow="fold", min_width=12, max_width=48)
    if compensations:
        table.add_column("compensation", overflow="fold", min_width=12)
    for line in steps:
        cells: list[str | Text] = [
            line.name,
            _state(line.state.value) if line.state is not None else _NONE,
            str(line.attempts),
            _clock(line.started_at),
            _duration(line.duration),
        ]
        cells += [_when(line.due_at) if line.due_at else _NONE] if deadlines else []
        cells += [_short_error(line.error)] if errors else []
        cells += [_compensation(line)] if compensations else []
        table.add_row(*cells)
    return table


def print_schedules(console: Console, lines: Sequence[ScheduleLine]) -> None:
    """A table of an engine's schedules: what each starts, its next tick, its last run."""
    if not lines:
        console.print("this engine has no schedules")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for title in ("schedule", "workflow", "when", "next tick (UTC)", "last run", "status"):
        table.add_column(title, no_wrap=True)
    for line in lines:
        table.add_row(
            line.name,
            line.workflow,
            line.when,
            _when(line.next_tick),
            line.last_run or "-",
            _state(line.last_status) if line.last_status else _NONE,
        )
    console.print(table)


def schedule_json(line: ScheduleLine) -> dict[str, Any]:
    """One schedule as JSON."""
    return {
        "schedule": line.name,
        "workflow": line.workflow,
        "when": line.when,
        "next_tick": _iso(line.next_tick),
        "last_run": line.last_run,
        "last_status": line.last_status,
    }


def print_result(console: Console, result: RunResult[Any]) -> None:
    """One line: where a run stands after a command moved it on."""
    console.print(
        Text.assemble(
            "run ",
            (result.transaction_id, "bold"),
            f" ({result.workflow}) is now ",
            _state(result.status.value),
        )
    )


def _compensation(line: StepLine) -> Text:
    if line.compensation is None:
        return _NONE
    text = Text.assemble(_state(line.compensation.value), " ", _clock(line.compensated_at))
    if line.compensation_error is not None:
        text.append("  ").append(_short_error(line.compensation_error))
    return text


def _state(value: str) -> Text:
    return Text(value, style=_STYLES.get(value, ""))


def _first_error(errors: Iterable[StepError]) -> Text:
    for error in errors:
        if error.fatal:
            return Text(f"{error.step}: ").append(_short_error(error))
    return _NONE


def _short_error(error: StepError | None) -> Text:
    if error is None:
        return _NONE
    return Text(f"{error.type_name.rsplit('.', 1)[-1]}: {error.message}", style="red")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S")


def _clock(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%H:%M:%S.%f")[:-3]


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
