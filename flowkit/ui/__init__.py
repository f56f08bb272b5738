"""The run console: `flowkit ui`, a small web app over the store (extra `ui`).

`/` lists runs newest first (filters: status, workflow, version, since/until; paged),
`/runs/{transaction_id}` shows one run: its step timeline drawn to scale, input, output, errors
and the workflow's Mermaid text; `/api/runs` and `/api/runs/{transaction_id}` are their JSON
twins in the shapes of `flowkit runs list --json` and `flowkit runs show --json`. Given the
app's engine (`--app`), the run page has forms to signal a waiting step, cancel and recover,
each a POST with a CSRF token. An optional token guards every request. The console binds to
127.0.0.1 unless told otherwise and renders every value escaped.

    from flowkit.ui import create_app
    app = create_app("sqlite:///flowkit-demo.db")          # any ASGI server
"""

from __future__ import annotations

from flowkit.ui.app import create_app

__all__ = ["create_app"]
