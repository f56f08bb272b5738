"""The run console's pages, JSON twins and actions over a database made by the demo."""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from console_support import HOSTILE, WAITING_STEP, ConsoleWorld, make_console_db

import flowkit.ui
from flowkit.cli import cli
from flowkit.ui import create_app

with warnings.catch_warnings():  # starlette warns that its TestClient still uses httpx
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

STATIC = Path(flowkit.ui.__file__).resolve().parent / "static"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorld]:
    """The demo's database, shared by the read-only tests."""
    made = make_console_db(f"sqlite:///{tmp_path_factory.mktemp('console')}/console.db")
    yield made
    made.close()


@pytest.fixture
def client(world: ConsoleWorld) -> Iterator[TestClient]:
    """A client of the read-only console."""
    with world.reader() as reader, TestClient(create_app(reader)) as test_client:
        yield test_client


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[ConsoleWorld]:
    """A database of its own, for the tests that move runs on."""
    made = make_console_db(f"sqlite:///{tmp_path}/console.db")
    yield made
    made.close()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found is not None, "the page has no CSRF token"
    return found.group(1)


def _app_client(world: ConsoleWorld, **options: Any) -> tuple[TestClient, Any]:
    engine = world.engine()
    return TestClient(create_app(engine, engine=engine, **options)), engine


def test_list_shows_runs_newest_first(client: TestClient, world: ConsoleWorld) -> None:
    """`/` lists every run, the newest first, each linking to its page."""
    page = client.get("/")
    assert page.status_code == 200
    links = re.findall(r'href="/runs/([^"]+)"', page.text)
    assert links[0] == world.hostile  # made last
    assert {world.done, world.waiting, world.reverted} <= set(links)
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


def test_list_filters_by_status_and_workflow(client: TestClient, world: ConsoleWorld) -> None:
    """The status and workflow filters narrow the list; an unknown status is a 400."""
    waiting = client.get("/", params={"status": "waiting"}).text
    assert world.waiting in waiting
    assert world.done not in waiting
    echo = client.get("/", params={"workflow": "echo"}).text
    assert world.hostile in echo
    assert world.waiting not in echo
    assert client.get("/", params={"status": "bogus"}).status_code == 400
    future = client.get("/", params={"since": "2999-01-01T00:00:00"}).text
    assert "no runs found" in future
    assert "no runs found" in client.get("/", params={"version": "v-nope"}).text
    assert "no runs found" in client.get("/", params={"until": "2000-01-01"}).text
    assert world.done in client.get("/", params={"since": "1h", "until": "2999-01-01"}).text
    assert client.get("/", params={"since": "yesterday"}).status_code == 400
    assert client.get("/api/runs", params={"page": "0"}).status_code == 400


def test_list_pages(client: TestClient) -> None:
    """A page of two runs links to the older page, which links back."""
    first = client.get("/", params={"size": "2"}).text
    assert len(re.findall(r'href="/runs/', first)) == 2
    assert 'rel="next"' in first
    second = client.get("/", params={"size": "2", "page": "2"}).text
    assert 'rel="prev"' in second
    assert set(re.findall(r'href="/runs/([^"]+)"', first)).isdisjoint(
        re.findall(r'href="/runs/([^"]+)"', second)
    )


def test_run_page_draws_the_timeline(client: TestClient, world: ConsoleWorld) -> None:
    """A done demo run shows a bar per step attempt, its wait, input and output."""
    page = client.get(f"/runs/{world.done}")
    assert page.status_code == 200
    widths = [float(w) for w in re.findall(r"width: ([0-9.]+)%", page.text)]
    assert len(widths) >= 8
    assert all(w > 0 for w in widths)
    assert "kind-waiting" in page.text  # the 3-D Secure wait is drawn as such
    assert "authorize-payment-session" in page.text
    assert 'class="input"' in page.text
    assert "pp_test" in page.text  # the output: the payment


def test_failed_run_shows_errors_and_compensations(client: TestClient, world: ConsoleWorld) -> None:
    """A run failed at its waiting step shows the error with its step and the compensations."""
    page = client.get(f"/runs/{world.reverted}").text
    assert "reverted" in page
    assert f"<strong>{WAITING_STEP}</strong>" in page
    assert "the customer failed 3-D Secure" in page
    assert "kind-compensate" in page
    detail = client.get(f"/api/runs/{world.reverted}").json()
    assert detail["errors"][0]["step"] == WAITING_STEP
    assert any(s["compensation"] for s in detail["steps"])


def test_json_twins_have_the_cli_shapes(client: TestClient, world: ConsoleWorld) -> None:
    """`/api/runs` and `/api/runs/{id}` give what `flowkit runs list/show --json` print."""
    listed = client.get("/api/runs", params={"workflow": "accept-payment"}).json()
    runner = CliRunner()
    shown = runner.invoke(
        cli, ["runs", "list", "--workflow", "accept-payment", "--json", "--database-url", world.url]
    )
    assert listed == json.loads(shown.output)
    one = client.get(f"/api/runs/{world.done}").json()
    shown = runner.invoke(cli, ["runs", "show", world.done, "--json", "--database-url", world.url])
    assert one == json.loads(shown.output)
    assert client.get("/api/runs/nope").status_code == 404


def test_hostile_output_is_rendered_as_text(client: TestClient, world: ConsoleWorld) -> None:
    """A step output holding `<script>` is escaped on the run page, with or without --app."""
    page = client.get(f"/runs/{world.hostile}").text
    assert HOSTILE not in page
    assert "&lt;script&gt;" in page
    assert "<script" not in page
    engine = world.engine()  # with --app the page loads the graph's scripts, and only those
    with engine, TestClient(create_app(engine, engine=engine)) as test_client:
        drawn = test_client.get(f"/runs/{world.hostile}").text
    assert HOSTILE not in drawn
    assert "&lt;script&gt;" in drawn
    assert re.findall(r"<script[^>]*>", drawn) == [
        '<script src="/static/mermaid/mermaid.tiny.js">',
        '<script src="/static/graph.js">',
    ]


def test_signal_button_moves_a_waiting_run_on(fresh: ConsoleWorld) -> None:
    """With --app, the waiting run's signal form (with its CSRF token) finishes the run."""
    test_client, engine = _app_client(fresh)
    with engine, test_client:
        page = test_client.get(f"/runs/{fresh.waiting}").text
        assert 'class="inline signal"' in page
        fresh.complete_challenge(fresh.waiting)
        moved = test_client.post(
            f"/runs/{fresh.waiting}/signal",
            data={
                "csrf": _csrf(page),
                "step": WAITING_STEP,
                "outcome": "success",
                "data": '{"completed": "3ds"}',
            },
            follow_redirects=True,
        )
        assert moved.status_code == 200
        assert '<span class="state state-done" id="status">done</span>' in moved.text


def test_post_without_csrf_is_refused(fresh: ConsoleWorld) -> None:
    """A POST without (or with a wrong) CSRF token is a 403 and changes nothing."""
    test_client, engine = _app_client(fresh)
    with engine, test_client:
        test_client.get("/")
        bare = test_client.post(f"/runs/{fresh.waiting}/cancel", data={})
        forged = test_client.post(f"/runs/{fresh.waiting}/cancel", data={"csrf": "0" * 64})
        assert (bare.status_code, forged.status_code) == (403, 403)
        assert engine.get(fresh.waiting).status.value == "waiting"


def test_token_is_enforced(world: ConsoleWorld) -> None:
    """With a token, requests without it get 401; the header, or ?token= once, let them in."""
    with world.reader() as reader, TestClient(create_app(reader, token="s3cret")) as test_client:
        assert test_client.get("/").status_code == 401
        assert test_client.get("/api/runs").status_code == 401
        assert test_client.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = test_client.get("/api/runs", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert test_client.get("/?token=s3cret").status_code == 200  # redirected, cookie set
        assert test_client.get("/").status_code == 200


def test_ui_command_is_a_plugin_of_the_cli() -> None:
    """`flowkit ui` is found through its entry point and lists its options."""
    shown = CliRunner().invoke(cli, ["ui", "--help"])
    assert shown.exit_code == 0, shown.output
    for option in ("--database-url", "--host", "--port", "--app", "--token", "--key-file"):
        assert option in shown.output
    assert "ui" in CliRunner().invoke(cli, ["--help"]).output


def test_deadline_is_drawn_and_graph_shown_with_app(world: ConsoleWorld) -> None:
    """A run under a workflow timeout shows its deadline marker; --app adds the graph: a place
    for the diagram, the Mermaid text in a <details>, and the local scripts that draw it."""
    with world.reader() as reader, TestClient(create_app(reader)) as test_client:
        page = test_client.get(f"/runs/{world.deadline}").text
        assert 'class="marker"' in page
        assert "deadline " in page
        assert "start the console with <code>--app</code>" in page
        assert "<script" not in page  # nothing to draw without the workflow
    engine = world.engine()
    with engine, TestClient(create_app(engine, engine=engine)) as test_client:
        page = test_client.get(f"/runs/{world.deadline}").text
    assert '<div id="graph"' in page
    source = page.split('<pre class="mermaid-source" id="graph-source">')[1].split("</pre>")[0]
    assert source.startswith("flowchart TD")
    assert "sign-off" in source
    assert "<details" in page.split('id="graph"')[1]
    scripts = re.findall(r"<script([^>]*)>", page)
    assert scripts == [
        ' src="/static/mermaid/mermaid.tiny.js"',
        ' src="/static/graph.js"',
    ]  # no inline script: the CSP allows only the console's own files


def test_the_vendored_mermaid_is_served_as_its_notice_says(client: TestClient) -> None:
    """`/static/` serves mermaid.tiny.js (the bytes the NOTICE's sha256 names) and graph.js as
    JavaScript with the security headers, and nothing outside its folder; pages allow scripts
    from the console only."""
    notice = (STATIC / "mermaid" / "NOTICE.md").read_text()
    mermaid = client.get("/static/mermaid/mermaid.tiny.js")
    assert mermaid.status_code == 200
    assert "javascript" in mermaid.headers["content-type"]
    assert hashlib.sha256(mermaid.content).hexdigest() in notice
    assert mermaid.headers["x-content-type-options"] == "nosniff"
    assert (STATIC / "mermaid" / "LICENSE").read_text().startswith("The MIT License")
    graph = client.get("/static/graph.js")
    assert graph.status_code == 200
    assert "securityLevel" in graph.text
    assert client.get("/static/../templates/base.html").status_code == 404
    assert client.get("/static/%2e%2e/app.py").status_code == 404
    policy = client.get("/").headers["content-security-policy"]
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]


def test_read_only_console_has_no_actions(client: TestClient, world: ConsoleWorld) -> None:
    """Without --app the page has no forms, and a POST with a valid CSRF token is a 404."""
    page = client.get(f"/runs/{world.waiting}").text
    assert '<form class="inline' not in page
    token = client.app.state.console.csrf.token(client.cookies["flowkit_csrf"])  # type: ignore[attr-defined]
    refused = client.post(f"/runs/{world.waiting}/cancel", data={"csrf": token})
    assert refused.status_code == 404


def test_ui_command_serves_the_database_on_localhost(
    world: ConsoleWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`flowkit ui` binds 127.0.0.1:8765 by default and serves the database, token enforced."""
    served: dict[str, Any] = {}

    def fake_run(app: Any, host: str, port: int, log_level: str) -> None:
        served.update(host=host, port=port)
        with TestClient(app) as test_client:
            served["without"] = test_client.get("/api/runs").status_code
            served["with"] = test_client.get(
                "/api/runs", headers={"Authorization": "Bearer t0k"}
            ).status_code

    monkeypatch.setattr("flowkit.ui.command.uvicorn.run", fake_run)
    shown = CliRunner().invoke(cli, ["ui", "--database-url", world.url, "--token", "t0k"])
    assert shown.exit_code == 0, shown.output
    assert served == {"host": "127.0.0.1", "port": 8765, "without": 401, "with": 200}
    missing = CliRunner().invoke(cli, ["ui", "--database-url", "sqlite:////nonexistent/x.db"])
    assert missing.exit_code == 1
    assert "no SQLite database" in missing.output


def test_ui_command_without_the_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When the ui extra is missing, `flowkit ui` exits 1 naming `pip install 'flowkit[ui]'`."""

    class Missing:
        name = "ui"

        def load(self) -> Any:
            raise ModuleNotFoundError("No module named 'starlette'", name="starlette")

    monkeypatch.setattr("flowkit.cli._commands.entry_points", lambda group, name=None: [Missing()])
    shown = CliRunner().invoke(cli, ["ui", "--port", "1"])
    assert shown.exit_code == 1
    assert "pip install 'flowkit[ui]'" in shown.output
    assert "starlette" in shown.output


def _bars(html: str) -> list[tuple[str, str]]:
    """The timeline's bars as (classes, the lane's name) in page order."""
    lanes = re.findall(
        r'<div class="name" title="[^"]*">([^<]*)</div>\s*<div class="track">\s*'
        r'<div class="bar ([^"]+)"',
        html,
    )
    return [(classes, name) for name, classes in lanes]


def test_retried_step_draws_each_attempt_as_its_own_bar(world: ConsoleWorld) -> None:
    """A step that succeeded on its third attempt is three bars, attempts 1-3, the first two
    failed, all marked as estimated (the store keeps one row for the three)."""
    engine = world.engine()
    with engine, TestClient(create_app(engine, engine=engine)) as test_client:
        page = test_client.get(f"/runs/{world.retried}").text
    bars = [(c, n) for c, n in _bars(page) if "flaky-pack" in n]
    assert [n for _, n in bars] == [f"flaky-pack (attempt {k}) ≈" for k in (1, 2, 3)]
    assert [c.split()[1] for c, _ in bars] == ["state-failed", "state-failed", "state-done"]
    assert all("approximate" in c for c, _ in bars)
    assert "times estimated" in page


def test_waits_show_their_deadline_and_runs_their_wake_up_and_start(world: ConsoleWorld) -> None:
    """A waiting step's deadline is drawn in its lane and listed; a sleeping run shows when it
    wakes, a delayed one when it starts, at the times their records carry."""
    engine = world.engine()
    with engine, TestClient(create_app(engine, engine=engine)) as test_client:
        signing = test_client.get(f"/runs/{world.deadline}").text
        napping = test_client.get(f"/runs/{world.sleeping}").text
        later = test_client.get(f"/runs/{world.delayed}").text
        records = {tx: engine.get(tx) for tx in (world.deadline, world.sleeping, world.delayed)}
    due = records[world.deadline].steps["sign-off"].due_at  # type: ignore[union-attr]
    assert due is not None
    shown = due.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert re.search(rf'<div class="due[^"]*"[^>]*><span>deadline {shown}', signing)
    assert f'<td class="due-at">{shown}</td>' in signing
    wake = records[world.sleeping].wake_at  # type: ignore[union-attr]
    assert wake is not None
    woken = wake.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert f'<time class="wake-at">{woken}</time>' in napping
    assert f"<span>wakes {woken}" in napping  # the sleep's own lane, and the run's marker
    start = records[world.delayed].start_at  # type: ignore[union-attr]
    assert start is not None
    starts = start.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    assert f'<time class="start-at">{starts}</time>' in later
    assert f"<span>starts {starts} →</span>" in later  # after the drawn span: at its edge


def test_run_json_has_wake_start_and_due_times_like_the_cli(
    client: TestClient, world: ConsoleWorld
) -> None:
    """`/api/runs/{id}` carries `wake_at`, `start_at` and each step's `due_at`, as
    `flowkit runs show --json` prints them."""
    runner = CliRunner()
    for tx in (world.deadline, world.sleeping, world.delayed):
        shown = runner.invoke(cli, ["runs", "show", tx, "--json", "--database-url", world.url])
        assert client.get(f"/api/runs/{tx}").json() == json.loads(shown.output)
    napping = client.get(f"/api/runs/{world.sleeping}").json()
    assert napping["wake_at"] is not None
    assert napping["wake_at"] == next(s["due_at"] for s in napping["steps"] if s["step"] == "nap")
    assert client.get(f"/api/runs/{world.delayed}").json()["start_at"] is not None
    signing = client.get(f"/api/runs/{world.deadline}").json()
    assert signing["steps"][0]["due_at"] is not None
    assert client.get(f"/api/runs/{world.done}").json()["wake_at"] is None
