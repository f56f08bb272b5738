"""Structured events of a run, delivered to subscribers and to structlog.

Nothing is built when nobody listens: a run gets an `Emitter` only when an engine has a matching
subscriber or the application configured structlog with a level that lets events through.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from attrs import field, frozen

from flowkit import emitting

__all__ = ["Event", "EventHandler"]

DEBUG = logging.DEBUG
INFO = logging.INFO
WARNING = logging.WARNING
ERROR = logging.ERROR


@frozen
class Event:
    """One thing that happened in a run.

    Attributes:
        name: `run_started`, `step_started`, `step_succeeded`, `step_retrying`, `step_failed`,
            `step_skipped`, `step_waiting`, `compensation_started`, `step_compensated`,
            `compensation_failed`, `run_finished`, `run_parked` (a drive ended waiting),
            or the time events `step_expired`, `run_woken` and `schedule_fired`.
        workflow: The workflow's name.
        transaction_id: The run's transaction id.
        step: The step's name (None for run events).
        attempt: The attempt number, when it applies.
        level: The `logging` level the event is logged at.
        timestamp: Seconds since the epoch.
        data: Event-specific fields (`state`, `error`, `duration`...).
    """

    name: str
    workflow: str
    transaction_id: str
    step: str | None = None
    attempt: int | None = None
    level: int = DEBUG
    timestamp: float = field(factory=time.time)
    data: Mapping[str, Any] = field(factory=dict)


EventHandler = Callable[[Event], None]


@frozen
class Subscription:
    """A handler and the runs it wants to hear about."""

    handler: EventHandler
    workflow: str | None = None
    transaction_id: str | None = None

    def wants(self, workflow: str, transaction_id: str) -> bool:
        """True when events of this run go to the handler."""
        return (self.workflow is None or self.workflow == workflow) and (
            self.transaction_id is None or self.transaction_id == transaction_id
        )


class Emitter:
    """Delivers one run's events; exists only when someone listens.

    Attributes:
        debug: True when debug-level events reach someone (the runner skips them otherwise).
    """

    __slots__ = ("_handlers", "_logger", "_min_level", "debug", "transaction_id", "workflow")

    def __init__(
        self, workflow: str, transaction_id: str, handlers: list[EventHandler], min_level: int
    ) -> None:
        self.workflow = workflow
        self.transaction_id = transaction_id
        self._handlers = handlers
        self._min_level = min_level
        self._logger: Any = None
        self.debug = bool(handlers) or min_level <= DEBUG

    def emit(
        self,
        name: str,
        level: int,
        step: str | None = None,
        attempt: int | None = None,
        **data: Any,
    ) -> None:
        """Deliver one event to the subscribers, then to structlog if its level is enabled."""
        if self._handlers:
            event = Event(name, self.workflow, self.transaction_id, step, attempt, level, data=data)
            for handler in self._handlers:
                handler(event)
        if level < self._min_level:
            return
        logger = self._logger
        if logger is None:
            logger = self._logger = emitting.logger()
        fields = {k: v for k, v in data.items() if v is not None}
        if step is not None:
            fields["step"] = step
        if attempt is not None:
            fields["attempt"] = attempt
        logger.log(
            level, name, workflow=self.workflow, transaction_id=self.transaction_id, **fields
        )


_NOTHING = 1_000  # above every logging level: structlog is not listening


def emitter_for(
    workflow: str, transaction_id: str, subscriptions: tuple[Subscription, ...] = ()
) -> Emitter | None:
    """The emitter of a new run, or None when neither subscribers nor structlog listen."""
    handlers = [s.handler for s in subscriptions if s.wants(workflow, transaction_id)]
    level = emitting.enabled_level()
    if not handlers and level is None:
        return None
    return Emitter(workflow, transaction_id, handlers, _NOTHING if level is None else level)
