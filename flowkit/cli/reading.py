"""The command line's reading helpers, public for other tools (the run console): runs read
through the engine, their timelines, and their `--json` shapes.

Nothing here opens a database or imports SQLAlchemy: callers hand in an `Engine`.
"""

from __future__ import annotations

from flowkit.cli._options import parse_duration
from flowkit.cli._reading import RunView, StepLine, list_runs, read_run, timeline
from flowkit.cli._render import dumps, error_json, jsonable, run_json, step_json

__all__ = [
    "RunView",
    "StepLine",
    "dumps",
    "error_json",
    "jsonable",
    "list_runs",
    "parse_duration",
    "read_run",
    "run_json",
    "step_json",
    "timeline",
]
