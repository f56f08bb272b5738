"""The run console: `flowkit ui`, a small web app over the store (extra `ui`).

`/` lists runs newest first (filters: status, workflow, version, since/until; paged),
`/runs/{transaction_id}` shows one run: its step timeline drawn to scale (a bar per attempt,
waits, deadlines and wake-ups), input, output, errors and, given the app's engine (`--app`),
the workflow's graph, drawn in the browser from its Mermaid text by the mermaid.js vendored in
`static/` (served by the console itself); `/api/runs` and `/api/runs/{transaction_id}` are
their JSON twins in the shapes of `flowkit runs list --json` and `flowkit runs show --json`.
With `--app` the run page also has forms to signal a waiting step, cancel and recover, each a
POST with a CSRF token. An optional token guards every request; `--key-file` shows encrypted
values in clear. The console binds to 127.0.0.1 unless told otherwise and renders every value
escaped.

    from flowkit.ui import create_app
    app = create_app("sqlite:///flowkit-demo.db")          # any ASGI server
"""

from __future__ import annotations

from flowkit.ui.app import create_app

__all__ = ["create_app"]
