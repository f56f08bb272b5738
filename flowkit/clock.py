"""One clock per engine, and the checks every duration and instant a caller gives goes through.

Every time-dependent decision of an engine (deadlines of waits, wake-ups of sleeping runs,
delayed starts, schedule ticks) reads `engine.clock`. The default is the system clock; tests
give `flowkit.testing.ManualClock` and move time instead of sleeping.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from flowkit.exceptions import InvalidTime

__all__ = ["Clock", "SystemClock", "as_seconds", "as_utc", "epoch_of"]


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
