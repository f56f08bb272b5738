"""How the driver coroutine is driven: inline when it never suspends, or on an event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from contextvars import ContextVar
from typing import Any, TypeVar

__all__ = ["ON_LOOP", "drive_sync", "in_loop"]

T = TypeVar("T")


def drive_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a plan without async parts) to its end."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("flowkit: a workflow without async steps tried to suspend")


ON_LOOP: ContextVar[bool] = ContextVar("flowkit_on_loop", default=False)
"""True while the driver runs as a coroutine on an event loop (run_async, or run() of a plan
with async parts). Threads started for parallel sync steps see the default, False: they block."""


def in_loop() -> bool:
    """True when an event loop runs in this thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
