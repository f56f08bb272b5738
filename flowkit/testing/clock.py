"""`ManualClock`: time that moves only when a test moves it."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from flowkit.clock import as_seconds, as_utc

__all__ = ["ManualClock"]

_START = datetime(2026, 1, 1, tzinfo=UTC)


class ManualClock:
    """A `flowkit.Clock` for tests: `now()` stays where it was set until `advance` or `set`.

    Args:
        start: The first instant (an aware datetime; default 2026-01-01 00:00 UTC, so runs
            are reproducible).

    Raises:
        InvalidTime: `start` has no time zone.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = _START if start is None else as_utc(start, "ManualClock start")
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The instant the clock was last set to."""
        with self._lock:
            return self._now

    def advance(self, by: float | timedelta) -> datetime:
        """Move the clock forward by seconds or a `timedelta`; returns the new instant.

        Raises:
            InvalidTime: a negative or non-finite amount (time never runs backwards here).
        """
        seconds = as_seconds(by, "ManualClock.advance")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now

    def set(self, instant: datetime) -> None:
        """Put the clock at `instant` (an aware datetime; it may go backwards).

        Raises:
            InvalidTime: `instant` has no time zone.
        """
        value = as_utc(instant, "ManualClock.set")
        with self._lock:
            self._now = value

    def __repr__(self) -> str:
        return f"ManualClock({self.now().isoformat()})"
