"""The `flowkit` command group and its commands."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from typing import Any

import click
from rich.console import Console

from flowkit.cli._loading import load_workflow, open_app_engine, open_read_engine
from flowkit.cli._options import (
    BadValue,
    app_option,
    app_value,
    database_option,
    duration_value,
    json_option,
    json_value,
    key_file_option,
    search_path,
    since_value,
)
from flowkit.cli._reading import list_incompatible, list_runs, read_run, schedule_lines
from flowkit.cli._render import (
    dumps,
    print_result,
    print_run,
    print_runs,
    print_schedules,
    run_json,
    schedule_json,
)
from flowkit.encryption import Encryption
from flowkit.exceptions import FlowkitError
from flowkit.state import RunRecord, TransactionState

__all__ = ["cli"]

_SIGNAL_FAILURE = "failed by `flowkit signal`"
PLUGIN_GROUP = "flowkit.commands"
"""The entry-point group of commands other packages (and flowkit's extras) add to `flowkit`."""
_EXTRAS = {"ui": "ui"}  # plugin command -> the extra that installs what it needs


class FlowkitGroup(click.Group):
    """A group that turns flowkit's errors into one line on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; a `FlowkitError` or a database error becomes a `ClickException`."""
        from sqlalchemy.exc import SQLAlchemyError

        try:
            return super().invoke(ctx)
        except FlowkitError as exc:
            raise click.ClickException(str(exc)) from None
        except SQLAlchemyError as exc:
            first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise click.ClickException(f"database error: {first}") from None

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The built-in commands and the plugins', sorted."""
        plugins = {ep.name for ep in entry_points(group=PLUGIN_GROUP)}
        return sorted(set(super().list_commands(ctx)) | plugins)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A built-in command, or a plugin's, imported only when it is called."""
        found = super().get_command(ctx, cmd_name)
        if found is not None:
            return found
        for ep in entry_points(group=PLUGIN_GROUP, name=cmd_name):
            try:
                loaded = ep.load()
            except ImportError as exc:
                return _missing_extra(cmd_name, exc)
            return loaded if isinstance(loaded, click.Command) else None
        return None


def _missing_extra(name: str, exc: ImportError) -> click.Command:
    """A stand-in for a plugin command whose dependencies are not installed."""
    extra = _EXTRAS.get(name, name)

    @click.command(name, context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def missing(args: tuple[str, ...]) -> None:
        raise click.ClickException(
            f"`flowkit {name}` needs the {extra!r} extra: pip install 'flowkit[{extra}]' ({exc})"
        )

    missing.help = f"(not installed: pip install 'flowkit[{extra}]')"
    return missing


def _console() -> Console:
    # names and messages are data: no markup, emoji codes or highlighting in them
    console = Console(markup=False, emoji=False, highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 240  # piped output: never cut ids to fit 80 columns
    return console


@click.group(cls=FlowkitGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flowkit")
@click.option(
    "--app-dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where to import your modules (and the classes of stored values) from.",
)
@click.pass_context
def cli(ctx: click.Context, app_dir: str) -> None:
    """Inspect and operate flowkit's durable runs."""
    ctx.with_resource(search_path(app_dir))


@cli.group()
def runs() -> None:
    """Read stored runs (needs only the database)."""


@runs.command("list")
@click.option(
    "--status", type=click.Choice([s.value for s in TransactionState], case_sensitive=False)
)
@click.option("--workflow", metavar="NAME", help="Only runs of this workflow.")
@click.option(
    "--since",
    callback=since_value,
    metavar="ISO|DURATION",
    help="Created since: an ISO 8601 datetime (UTC) or a duration ago (30m, 1h, 2d).",
)
@click.option("--version", type=click.IntRange(min=1), help="Only runs of this workflow version.")
@click.option(
    "--incompatible",
    is_flag=True,
    help="Only unfinished runs no definition held by the --app engine can continue "
    "(its workflow, or the version it started on, is not registered there).",
)
@click.option(
    "--app",
    "app",
    callback=app_value,
    metavar="MODULE:ATTR",
    help="With --incompatible: your Engine, or a function returning one (its database is read).",
)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@json_option
@database_option
@key_file_option
def runs_list(
    status: str | None,
    workflow: str | None,
    since: datetime | None,
    version: int | None,
    incompatible: bool,
    app: str | None,
    limit: int,
    as_json: bool,
    database_url: str,
    encryption: Encryption | None,
) -> None:
    """List runs, newest first, with the workflow version each started on."""
    if incompatible:
        records, note = _incompatible(app, status, workflow, since, version, limit)
    else:
        with open_read_engine(database_url, encryption) as engine:
            records, note = list_runs(engine, status, workflow, since, limit, version)
    _note(note)
    if as_json:
        click.echo(dumps([run_json(r) for r in records]))
    else:
        print_runs(_console(), records, limit)


def _incompatible(
    app: str | None,
    status: str | None,
    workflow: str | None,
    since: datetime | None,
    version: int | None,
    limit: int,
) -> tuple[list[RunRecord], str | None]:
    if app is None:
        raise BadValue("--incompatible needs --app MODULE:ATTR: the engine whose definitions count")
    with open_app_engine(app) as engine:
        records, note = list_incompatible(engine, workflow, limit)
    kept = [
        r
        for r in records
        if (status is None or r.status.value == status)
        and (version is None or r.version == version)
        and (since is None or r.created_at >= since)
    ]
    return kept, note


@runs.command("show")
@click.argument("transaction_id")
@json_option
@database_option
@key_file_option
def runs_show(
    transaction_id: str, as_json: bool, database_url: str, encryption: Encryption | None
) -> None:
    """Show one run: its status, errors and step timeline (encrypted values need --key-file)."""
    with open_read_engine(database_url, encryption) as engine:
        view = read_run(engine, transaction_id)
    _note(view.note)
    if as_json:
        click.echo(dumps(run_json(view.record, view.steps)))
    else:
        print_run(_console(), view)


@cli.group()
def schedules() -> None:
    """The schedules an app's engine fires (`flowkit.Schedule`)."""


@schedules.command("list")
@app_option
@json_option
def schedules_list(app: str, as_json: bool) -> None:
    """Each schedule of the --app engine: what it starts, its next tick, its latest run."""
    with open_app_engine(app) as engine:
        lines = schedule_lines(engine)
    if as_json:
        click.echo(dumps([schedule_json(line) for line in lines]))
    else:
        print_schedules(_console(), lines)


@cli.command()
@click.option(
    "--older-than",
    callback=duration_value,
    metavar="DURATION",
    help="Age of the runs to delete, like 7d or 12h (default: the engine's retention, 7d).",
)
@database_option
def purge(older_than: timedelta | None, database_url: str) -> None:
    """Delete finished runs older than a cut-off.

    Only done, reverted and failed runs last updated before the cut-off are deleted; their
    transaction ids are then new again.
    """
    with open_read_engine(database_url) as engine:
        count = engine.purge(older_than)
    click.echo(f"purged {count} finished run{'' if count == 1 else 's'}")


@cli.command()
@click.argument("workflow", metavar="MODULE:WORKFLOW", callback=app_value)
@click.option(
    "--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid", show_default=True
)
def graph(workflow: str, fmt: str) -> None:
    """Print a workflow's graph as Mermaid or Graphviz text."""
    found = load_workflow(workflow)
    click.echo(found.to_mermaid() if fmt == "mermaid" else found.graph().to_dot(), nl=False)


@cli.command()
@app_option
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
def recover(app: str, limit: int) -> None:
    """Finish runs whose engine died (their lease expired)."""
    console = _console()
    with open_app_engine(app) as engine:
        report = engine.recover(limit=limit)
    for result in report:
        print_result(console, result)
    for skipped in report.skipped:
        console.print(f"skipped {skipped.transaction_id} ({skipped.workflow}): {skipped.reason}")
    click.echo(f"recovered {len(report)} run{'' if len(report) == 1 else 's'}")


@cli.command()
@click.argument("transaction_id")
@click.argument("step")
@click.option("--success", "outcome", flag_value="success", help="The step succeeded.")
@click.option("--failure", "outcome", flag_value="failure", help="The step failed.")
@click.option(
    "--data",
    callback=json_value,
    metavar="JSON",
    help="With --success the step's output; with --failure the error message.",
)
@app_option
def signal(transaction_id: str, step: str, outcome: str | None, data: Any, app: str) -> None:
    """Finish a waiting step and continue its run.

    STEP is an `async_completion` step; the run goes on (--success) or is compensated
    (--failure).
    """
    if outcome is None:
        raise click.UsageError("give --success or --failure")
    with open_app_engine(app) as engine:
        if outcome == "success":
            result = engine.set_step_success(transaction_id, step, data)
        else:
            result = engine.set_step_failure(transaction_id, step, _failure_message(data))
    print_result(_console(), result)


def _failure_message(data: Any) -> str:
    if data is None:
        return _SIGNAL_FAILURE
    return data if isinstance(data, str) else json.dumps(data)


@cli.command()
@click.argument("transaction_id")
@app_option
def cancel(transaction_id: str, app: str) -> None:
    """Compensate a done or waiting run."""
    with open_app_engine(app) as engine:
        result = engine.cancel(transaction_id)
    print_result(_console(), result)


def _note(note: str | None) -> None:
    if note is not None:
        click.echo(f"note: {note}", err=True)
