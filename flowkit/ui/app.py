"""The console's Starlette application: pages, their JSON twins and the operator's actions.

Pages are rendered by Jinja2 with autoescaping on (every value shown is user data); reads go
through the engine's reading API and the store, never through SQL of the console's own. The
actions (signal, cancel, recover) exist only when an engine with the workflows is given
(`--app`), each a POST carrying a CSRF token. `/static/` serves the console's own scripts: the
vendored mermaid.js (see `static/mermaid/NOTICE.md`) and the few lines that draw the graph.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from flowkit.cli.reading import dumps, jsonable, run_json
from flowkit.engine import Engine
from flowkit.exceptions import FlowkitError, RunNotFound
from flowkit.state import TransactionState
from flowkit.ui.security import Csrf, TokenGuard, security_headers
from flowkit.ui.views import BadFilter, RunFilter, run_detail, runs_page, version_of

__all__ = ["create_app"]

_TEMPLATES = Path(__file__).resolve().parent / "templates"
_STATIC = Path(__file__).resolve().parent / "static"
_SIGNAL_FAILURE = "failed from the flowkit console"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = lambda value: dumps(jsonable(value))
    env.filters["when"] = lambda m: "-" if m is None else m.strftime("%Y-%m-%d %H:%M:%S")
    env.filters["ms"] = lambda s: "-" if s is None else f"{s * 1000:.1f} ms"
    env.globals["version_of"] = version_of
    env.globals["states"] = [s.value for s in TransactionState]
    return env


class Console:
    """The console's state: the engine it reads with, the one it acts with, its CSRF guard."""

    def __init__(self, reader: Engine, actor: Engine | None) -> None:
        self.reader = actor or reader
        self.actor = actor
        self.csrf = Csrf()
        self.env = _environment()

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        """A rendered page, with a CSRF nonce cookie when the browser has none."""
        nonce, new = self.csrf.nonce(request)
        html = self.env.get_template(template).render(
            request=request, actions=self.actor is not None, csrf=self.csrf.token(nonce), **context
        )
        response = HTMLResponse(html, status)
        if new:
            self.csrf.remember(response, nonce)
        return security_headers(response)

    # --- pages ------------------------------------------------------------------------------

    async def runs(self, request: Request) -> Response:
        """`/`: the runs, newest first, filtered and paged."""
        try:
            wanted = RunFilter.parse(request.query_params)
        except BadFilter as exc:
            return self.page(request, "error.html", 400, message=str(exc))
        found = await run_in_threadpool(runs_page, self.reader, wanted)
        return self.page(request, "runs.html", page=found, wanted=wanted)

    async def run(self, request: Request) -> Response:
        """`/runs/{transaction_id}`: one run."""
        transaction_id = request.path_params["transaction_id"]
        try:
            detail = await run_in_threadpool(run_detail, self.reader, transaction_id)
        except RunNotFound as exc:
            return self.page(request, "error.html", 404, message=str(exc))
        return self.page(request, "run.html", run=detail, record=detail.view.record)

    # --- JSON -------------------------------------------------------------------------------

    async def api_runs(self, request: Request) -> Response:
        """`/api/runs`: the runs as `flowkit runs list --json` prints them."""
        try:
            wanted = RunFilter.parse(request.query_params)
        except BadFilter as exc:
            return _json({"error": str(exc)}, 400)
        found = await run_in_threadpool(runs_page, self.reader, wanted)
        return _json([run_json(r) for r in found.records])

    async def api_run(self, request: Request) -> Response:
        """`/api/runs/{transaction_id}`: one run as `flowkit runs show --json` prints it."""
        transaction_id = request.path_params["transaction_id"]
        try:
            detail = await run_in_threadpool(run_detail, self.reader, transaction_id)
        except RunNotFound as exc:
            return _json({"error": str(exc)}, 404)
        return _json(run_json(detail.view.record, detail.view.steps))

    # --- actions ----------------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        """POST `/runs/{id}/signal|cancel` and `/recover`: move runs on with the app's engine."""
        form = await request.form()
        if not self.csrf.valid(request, form.get("csrf")):
            return self.page(request, "error.html", 403, message="missing or stale CSRF token")
        if self.actor is None:
            return self.page(request, "error.html", 404, message="actions need --app")
        action = request.path_params.get("action", "recover")
        transaction_id = request.path_params.get("transaction_id")
        try:
            await run_in_threadpool(self._do, action, transaction_id, dict(form))
        except FlowkitError as exc:
            return self.page(request, "error.html", 409, message=f"{type(exc).__name__}: {exc}")
        except ValueError as exc:
            return self.page(request, "error.html", 400, message=str(exc))
        target = "/" if transaction_id is None else f"/runs/{transaction_id}"
        return security_headers(RedirectResponse(target, 303))

    def _do(self, action: str, transaction_id: str | None, form: dict[str, Any]) -> None:
        engine = self.actor
        assert engine is not None  # checked by `act`
        if action == "recover":
            engine.recover()
        elif action == "cancel" and transaction_id is not None:
            engine.cancel(transaction_id)
        elif action == "signal" and transaction_id is not None:
            step = str(form.get("step", ""))
            data = _data(str(form.get("data", "")))
            if form.get("outcome") == "failure":
                message = data if isinstance(data, str) else json.dumps(data)
                engine.set_step_failure(transaction_id, step, message or _SIGNAL_FAILURE)
            else:
                engine.set_step_success(transaction_id, step, data)
        else:
            raise ValueError(f"unknown action {action!r}")


def _data(text: str) -> Any:
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise ValueError(f"data is not JSON: {text[:80]!r}") from None


def _json(data: Any, status: int = 200) -> Response:
    return security_headers(JSONResponse(data, status))


class _Static(StaticFiles):
    """The console's scripts, with its security headers (and cached for an hour: mermaid.js
    is large and changes only with flowkit)."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file, or a 404, with the headers."""
        response = await super().get_response(path, scope)
        response.headers.setdefault("cache-control", "private, max-age=3600")
        return security_headers(response)


def create_app(
    reader: Engine,
    *,
    engine: Engine | None = None,
    token: str | None = None,
) -> Starlette:
    """The console as an ASGI application.

    Args:
        reader: The engine runs are read with (`flowkit ui` opens one on `--database-url`, as
            `flowkit runs` does). The console does not close it.
        engine: The app's engine (`--app`): enables the signal, cancel and recover forms, and
            the workflows' graphs; runs are then read with it. The console does not close it.
        token: When given, every request must present it.

    Returns:
        The Starlette application.

    Raises:
        ValueError: the token is empty.
    """
    if token is not None and not token:
        raise ValueError("the console's token must not be empty")
    console = Console(reader, engine)
    routes = [
        Route("/", console.runs),
        Route("/runs/{transaction_id:path}/{action:str}", console.act, methods=["POST"]),
        Route("/runs/{transaction_id:path}", console.run),
        Route("/recover", console.act, methods=["POST"]),
        Route("/api/runs", console.api_runs),
        Route("/api/runs/{transaction_id:path}", console.api_run),
        Mount("/static", _Static(directory=_STATIC), name="static"),
    ]
    middleware = [Middleware(TokenGuard, token=token)] if token is not None else []
    app = Starlette(routes=routes, middleware=middleware)
    app.state.console = console
    return app
