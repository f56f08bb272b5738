"""PostgreSQL LISTEN/NOTIFY: idle workers wake when a run is queued, without busy polling."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

__all__ = ["CHANNEL", "Listener"]

CHANNEL = "flowkit_queue"


class Listener:
    """Listens on `CHANNEL` on its own connection and calls `on_notify(queue)` per message.

    A daemon thread waits on the connection; `close()` stops it.
    """

    def __init__(self, url: str, on_notify: Callable[[str], None]) -> None:
        import psycopg

        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._conn: Any = psycopg.connect(dsn, autocommit=True)
        self._conn.execute(f"LISTEN {CHANNEL}")
        self._on_notify = on_notify
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="flowkit-listen", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        import psycopg

        while not self._closed.is_set():
            try:
                for note in self._conn.notifies(timeout=0.5):
                    self._on_notify(note.payload)
            except psycopg.Error:
                if self._closed.is_set():
                    return
                self._closed.wait(1.0)  # the server went away: polling still works meanwhile

    def close(self) -> None:
        """Stop listening and close the connection."""
        self._closed.set()
        self._thread.join(timeout=5)
        self._conn.close()
