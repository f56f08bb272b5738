"""`ManualClock`: time that moves only when a test moves it (defined in `flowkit.clock`, so that
code outside tests, such as a demo, can use it without the test extras)."""

from __future__ import annotations

from flowkit.clock import ManualClock

__all__ = ["ManualClock"]
