"""The `flowkit ui` command (a plugin of the `flowkit` group, see `flowkit.cli`)."""

from __future__ import annotations

from contextlib import ExitStack

import click
import uvicorn

from flowkit.cli import DEFAULT_DATABASE_URL, load_engine, open_read_engine
from flowkit.cli._options import key_file_option  # the same option as `runs show --key-file`
from flowkit.encryption import Encryption
from flowkit.ui.app import create_app

__all__ = ["ui"]


@click.command("ui")
@click.option(
    "--database-url",
    envvar="FLOWKIT_DATABASE_URL",
    default=DEFAULT_DATABASE_URL,
    show_default=True,
    help="The database to read (or FLOWKIT_DATABASE_URL).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True)
@click.option(
    "--app",
    envvar="FLOWKIT_APP",
    metavar="MODULE:ATTR",
    help="Your engine (or a factory of one): enables signal, cancel and recover.",
)
@click.option(
    "--token",
    envvar="FLOWKIT_UI_TOKEN",
    help="A secret every request must present (Bearer header, cookie, or ?token= once).",
)
@key_file_option
def ui(
    database_url: str,
    host: str,
    port: int,
    app: str | None,
    token: str | None,
    encryption: Encryption | None,
) -> None:
    """Serve the run console in the browser (encrypted values need --key-file, or --app's
    engine with its keys)."""
    with ExitStack() as stack:
        reader = stack.enter_context(open_read_engine(database_url, encryption))
        engine = stack.enter_context(load_engine(app)) if app is not None else None
        console = create_app(reader, engine=engine, token=token or None)
        shown = f"http://{host}:{port}/" + (f"?token={token}" if token else "")
        click.echo(f"flowkit console on {shown}", err=True)
        uvicorn.run(console, host=host, port=port, log_level="warning")
