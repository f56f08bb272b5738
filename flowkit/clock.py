"""One clock per engine, and the checks every duration and instant a caller gives goes through.

Every time-dependent decision of an engine (deadlines of waits, wake-ups of sleeping runs,
delayed starts, schedule ticks) reads `engine.clock`. The default is the system clock; tests
give `flowkit.testing.ManualClock` and move time instead of sleeping.
"""

from __future__ import annotations

import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from flowkit.exceptions import InvalidTime

__all__ = ["Clock", "ManualClock", "SystemClock", "as_seconds", "as_utc", "epoch_of"]


@runtime_checkable
class Clock(Protocol):
    """What an engine reads the time from."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""


class SystemClock:
    """The machine's clock (the default of every engine)."""

    def now(self) -> datetime:
        """The current instant, in UTC."""
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


def epoch_of(clock: Clock) -> float:
    """The clock's current instant, in seconds since the epoch (what stores compare)."""
    return clock.now().timestamp()


def as_seconds(value: object, what: str) -> float:
    """A duration given as seconds or a `timedelta`, checked finite and not negative.

    Raises:
        InvalidTime: another type, a negative, NaN or infinite duration (naming `what`).
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise InvalidTime(
            f"{what} must be seconds (an int or float) or a timedelta, not {type(value).__name__}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidTime(f"{what} must be a finite number of seconds >= 0, not {value!r}")
    return seconds


def as_utc(value: object, what: str) -> datetime:
    """An instant given as an aware `datetime`, converted to UTC.

    Raises:
        InvalidTime: not a datetime, or one without a time zone (naming `what`).
    """
    if not isinstance(value, datetime):
        raise InvalidTime(f"{what} must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidTime(
            f"{what} {value.isoformat()} has no time zone: give an aware datetime "
            "(datetime(..., tzinfo=UTC))"
        )
    return value.astimezone(UTC)


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
