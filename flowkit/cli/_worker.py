"""`flowkit worker`: execute queued runs until SIGTERM (or Ctrl-C), then stop gracefully."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from flowkit.cli._loading import open_app_engine
from flowkit.cli._options import app_option


@click.command()
@app_option
@click.option("--queue", default="default", show_default=True, help="The queue to serve.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Runs executed at once by this worker.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop after this many seconds with nothing to do (default: never).",
)
def worker(app: str, queue: str, concurrency: int, idle_timeout: float | None) -> None:
    """Execute queued runs of the app's workflows; SIGTERM finishes the current steps, releases
    their leases (another worker resumes them) and exits 0."""
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        with open_app_engine(app) as engine:
            engine._queue(queue)  # an unknown queue is refused before anything starts
            click.echo(f"worker {engine.owner} serving queue {queue!r}", err=True)
            report = engine.work(
                queue, concurrency=concurrency, stop=stop, idle_timeout=idle_timeout
            )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    finished = ", ".join(f"{n} {s}" for s, n in sorted(report.finished.items())) or "none"
    click.echo(
        f"claimed {report.claimed}, recovered {report.recovered}, finished {finished}, "
        f"released {report.released}",
        err=True,
    )
    for workflow, count in sorted(report.not_handled.items()):
        click.echo(f"left queued: {count} run(s) of {workflow!r} (not held by this app)", err=True)
