"""A database made by the accept-payment demo for the console's tests, and the screenshot code.

`make_console_db(url)` runs the demo once (a done accept-payment run, a capture and a refund),
then parks a second accept-payment run at its 3-D Secure step (waiting), fails a third one's
signal (compensated: errors and compensations), parks a sign-off under a deadline, retries a
flaky step twice, puts a sleeping run and a delayed one beside them, and runs a tiny workflow
whose step output holds hostile HTML. `ConsoleWorld.engine()` is an engine with the demo's
workflows, for `--app`.

`save_run_screenshot(...)` is the one code path that drives headless Chromium: the browser test
calls it with a tmp path, `python tests/ui/console_support.py docs/console-run.png` writes the
README's picture with it (the whole run page, its graph drawn by the vendored mermaid.js).
"""

from __future__ import annotations

import io
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from attrs import frozen
from rich.console import Console

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for _path in (ROOT, ROOT / "examples"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from accept_payment import Demo, _walk_through, accept_payment_workflow  # noqa: E402

import flowkit  # noqa: E402
from flowkit import (  # noqa: E402
    Engine,
    RetryPolicy,
    StepContext,
    WorkflowResponse,
    step,
    workflow,
)
from flowkit.sqlalchemy import SqlStore  # noqa: E402
from flowkit.ui import create_app  # noqa: E402
from payment.testing import get_test_provider  # noqa: E402

HOSTILE = "<script>alert('pwned')</script>"
WAITING_STEP = "await-payment-action"


@step("echo")
def echo_step(text: str, ctx: StepContext) -> dict[str, str]:
    """Return the text it was given (a step output holding user data)."""
    return {"note": text}


@workflow("echo")
def echo_workflow(text: flowkit.Ref[str]) -> WorkflowResponse[dict[str, str]]:
    """One step that echoes its input."""
    return WorkflowResponse(echo_step(text))


SIGN_OFF_WAIT = 900.0
"""The deadline of the sign-off wait, in seconds."""
RETRY = RetryPolicy(max_retries=2)
"""The flaky step's policy: three attempts, no wait between them."""


@step("sign-off", async_completion=True, timeout=SIGN_OFF_WAIT)
def sign_off(text: str, ctx: StepContext) -> str:
    """Park until someone signs off (for at most `SIGN_OFF_WAIT` seconds)."""
    return f"asked: {text}"


@step("flaky-pack", retry=RETRY)
def flaky_pack(text: str, ctx: StepContext) -> str:
    """Fail the first two attempts, then pack."""
    if ctx.attempt < 3:
        raise RuntimeError(f"attempt {ctx.attempt} tore the box")
    return f"packed: {text}"


@workflow("flaky")
def flaky_workflow(text: flowkit.Ref[str]) -> WorkflowResponse[str]:
    """One step that succeeds on its third attempt."""
    return WorkflowResponse(flaky_pack(text))


@workflow("nap")
def nap_workflow(text: flowkit.Ref[str]) -> WorkflowResponse[dict[str, str]]:
    """Sleep an hour, then echo."""
    flowkit.sleep(timedelta(hours=1), name="nap")
    return WorkflowResponse(echo_step(text))


@workflow("sign-off", timeout=3600)
def sign_off_workflow(text: flowkit.Ref[str]) -> WorkflowResponse[str]:
    """One waiting step, under a deadline of an hour."""
    return WorkflowResponse(sign_off(text))


CONSOLE_WORKFLOWS = (echo_workflow, sign_off_workflow, flaky_workflow, nap_workflow)
"""The console tests' own workflows, beside the demo's."""


@frozen
class ConsoleWorld:
    """The demo's database and the transaction ids of its interesting runs."""

    url: str
    demo: Demo
    done: str
    waiting: str
    reverted: str
    hostile: str
    deadline: str
    retried: str
    sleeping: str
    delayed: str

    def engine(self) -> Engine:
        """An engine with the demo's workflows (and the echo one) on the database."""
        engine = Engine(
            SqlStore(self.url),
            [*self.demo.workflows, *CONSOLE_WORKFLOWS],
            container=self.demo.registry,
        )
        return engine

    def reader(self) -> Engine:
        """An engine without workflows on the database, as `flowkit ui` reads with."""
        return Engine(SqlStore(self.url))

    def complete_challenge(self, transaction_id: str) -> None:
        """The customer passes 3-D Secure for the session of a waiting run."""
        cart_id = transaction_id.removeprefix("accept-")
        collection = self.demo.module.retrieve_payment_collection_for_cart(cart_id)
        get_test_provider(self.demo.module).complete_action(collection.sessions[-1].id)

    def close(self) -> None:
        """Release the demo's connections."""
        self.demo.close()


def _park(demo: Demo, engine: Engine, cart: str) -> str:
    demo.carts.add_cart(cart, Decimal("42.00"), "usd")
    tx = f"accept-{cart}"
    request = {"cart_id": cart, "data": {"scenario": "requires_more"}}
    engine.run(accept_payment_workflow, request, transaction_id=tx)
    return tx


def make_console_db(url: str) -> ConsoleWorld:
    """Run the demo on `url` and add the waiting, reverted and hostile runs."""
    quiet = Console(file=io.StringIO())
    demo = Demo(url, quiet)
    _walk_through(demo, quiet)
    done = next(r.transaction_id for r in _engine(demo).list(workflow="accept-payment"))
    engine = Engine(SqlStore(url), [*demo.workflows, *CONSOLE_WORKFLOWS], container=demo.registry)
    with engine:
        waiting = _park(demo, engine, "cart_waiting")
        reverted = _park(demo, engine, "cart_declined")
        engine.set_step_failure(reverted, WAITING_STEP, "the customer failed 3-D Secure")
        deadline = "sign-off-1"
        engine.run(sign_off_workflow, "the refund", transaction_id=deadline)
        delayed = engine.enqueue(
            echo_workflow, "later", transaction_id="echo-delayed", delay=timedelta(hours=2)
        )
        retried = "flaky-1"
        engine.run(flaky_workflow, "the parcel", transaction_id=retried)
        sleeping = "nap-1"
        engine.run(nap_workflow, "good morning", transaction_id=sleeping)
        hostile = "echo-hostile"
        engine.run(echo_workflow, HOSTILE, transaction_id=hostile)
    return ConsoleWorld(
        url, demo, done, waiting, reverted, hostile, deadline, retried, sleeping, delayed
    )


def _engine(demo: Demo) -> Engine:
    return Engine(SqlStore(demo.database_url), demo.workflows)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free port in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):  # waiting for a server thread to bind, not measuring time
        if server.started:
            break
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def chromium_driver() -> Any:
    """A headless Chromium (the system's `chromium` and `chromedriver`) driven by Selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1280,1400")
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    return webdriver.Chrome(options=options, service=Service(driver))


@frozen
class Drawn:
    """What headless Chromium drew on a run page.

    Attributes:
        widths: The timeline bars' widths, in CSS pixels.
        graph: How the graph ended: `svg` (mermaid.js drew it), `error`, or `` (no script ran).
        nodes: The text of each node mermaid drew.
    """

    widths: list[float]
    graph: str
    nodes: list[str]


def save_run_screenshot(url: str, target: Path, pick: str = "done") -> Drawn:
    """Make the demo's database at `url`, serve the console on it with uvicorn (with the demo's
    engine, as `--app` gives it, so the workflow's graph is drawn), open the page of one run
    (`pick`: a `ConsoleWorld` field, the done accept-payment run by default) in headless
    Chromium, let mermaid.js draw the graph, and save a PNG of the whole page at `target`.

    Returns:
        What the browser drew.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    world = make_console_db(url)
    try:
        engine = world.engine()
        with engine, serve(create_app(engine, engine=engine)) as base:
            driver = chromium_driver()
            try:
                driver.get(f"{base}/runs/{getattr(world, pick)}")
                graph = driver.find_element(By.ID, "graph")
                WebDriverWait(driver, 60).until(lambda _: graph.get_attribute("data-rendered"))
                bars = driver.find_elements(By.CSS_SELECTOR, ".timeline .bar")
                nodes = driver.find_elements(By.CSS_SELECTOR, "#graph svg .node")
                drawn = Drawn(
                    [float(bar.rect["width"]) for bar in bars],
                    graph.get_attribute("data-rendered") or "",
                    [(node.get_attribute("textContent") or "").strip() for node in nodes],
                )
                height = driver.execute_script("return document.documentElement.scrollHeight")
                driver.set_window_size(1280, int(height) + 40)  # the whole page in one picture
                target.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(target))
            finally:
                driver.quit()
    finally:
        world.close()
    return drawn


if __name__ == "__main__":  # python tests/ui/console_support.py docs/console-run.png
    import tempfile

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/console-run.png")
    with tempfile.TemporaryDirectory() as tmp:
        drawn = save_run_screenshot(f"sqlite:///{tmp}/console.db", out)
    print(f"wrote {out} ({len(drawn.widths)} bars, graph: {drawn.graph})")
