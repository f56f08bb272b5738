"""The app for ``uvicorn examples.storefront_api.main:app``, configured from the environment.

    STOREFRONT_ADMIN_API_KEY=... uvicorn examples.storefront_api.main:app

See `examples.storefront_api.settings` for the variables. Importing this module builds the
FastAPI object only; the database is opened when the server starts the app.
"""

from __future__ import annotations

from .app import create_app
from .settings import Settings

app = create_app(Settings.from_env())
