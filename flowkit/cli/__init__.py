"""The `flowkit` command line (click, with rich tables).

Read-only commands need only the database (`--database-url`, `FLOWKIT_DATABASE_URL`, default
`DEFAULT_DATABASE_URL`)::

    flowkit runs list [--status S] [--workflow W] [--since 1h] [--limit N] [--json]
    flowkit runs show TRANSACTION_ID [--json]
    flowkit purge [--older-than 7d]
    flowkit graph MODULE:WORKFLOW [--format mermaid|dot]
    flowkit ui [--app MODULE:ATTR] [--host 127.0.0.1] [--port 8765] [--token T]

`flowkit ui` (the run console, extra `ui`) is a plugin command: packages register commands under
the `flowkit.commands` entry-point group and the group loads them when they are called. The
helpers the console shares with `runs list` / `runs show` (reading runs, their `--json` shapes)
are public in `flowkit.cli.reading`, which imports no database driver.

Commands that run workflow code load your engine from `--app MODULE:ATTR` (an `Engine`, or a
callable returning one)::

    flowkit recover --app myapp.flows:engine
    flowkit signal TRANSACTION_ID STEP (--success|--failure) [--data JSON] --app ...
    flowkit cancel TRANSACTION_ID --app ...
    flowkit worker --app ... [--queue default] [--concurrency 4]

Errors print one line on stderr: exit code 1 for flowkit's errors (unknown run, unusable
database), 2 for unusable values on the command line (as click does for usage errors).

A new command that runs code takes the shared option and opens the engine for its duration::

    @cli.command()
    @app_option
    def worker(app: str) -> None:
        with open_app_engine(app) as engine:
            ...
"""

from __future__ import annotations

from flowkit.cli._commands import cli
from flowkit.cli._loading import load_engine, open_app_engine, open_read_engine
from flowkit.cli._options import (
    DEFAULT_DATABASE_URL,
    BadValue,
    app_option,
    database_option,
    search_path,
)
from flowkit.cli._worker import worker

__all__ = [
    "DEFAULT_DATABASE_URL",
    "BadValue",
    "app_option",
    "cli",
    "database_option",
    "load_engine",
    "main",
    "open_app_engine",
    "open_read_engine",
    "search_path",
]

cli.add_command(worker)  # the one command defined outside `_commands`, wired here


def main() -> None:
    """The `flowkit` console script."""
    cli(prog_name="flowkit")
