"""`Schedule`: a workflow started at every tick of a cron expression or an interval.

A schedule keeps no state of its own. Its ticks are instants computed from the expression (in
UTC) or from the interval (multiples of it since the Unix epoch), so every engine and worker
agrees on them; each due tick enqueues one run under the transaction id `name@<tick>`,
which makes two processes firing the same tick create it once. `engine.tick()` fires them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from cronsim import CronSim, CronSimError

from flowkit.clock import as_seconds
from flowkit.exceptions import DefinitionError, InvalidTime
from flowkit.step import check_name
from flowkit.workflow import Workflow

__all__ = ["CATCH_UP_LIMIT", "Schedule"]

CATCH_UP_LIMIT = 1000
"""Missed ticks one `tick()` call enqueues at most per schedule (the rest: the next call)."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TICK_FORMAT = "%Y%m%dT%H%M%SZ"


class Schedule:
    """Start `workflow` at every tick of `cron` or `every`.

    Args:
        name: The schedule's name (the prefix of its runs' transaction ids; no `@`).
        workflow: The workflow to start (or its name); the engine given the schedule must
            hold it.
        cron: A 5-field cron expression (minute hour day month weekday), evaluated in UTC.
        every: An interval (a `timedelta`, or seconds); ticks fall on its multiples since
            the Unix epoch (every hour: on the hour).
        input: The run's input: a value, or a callable given the tick's `datetime`.
        queue: The queue its runs go to (a worker of that queue executes them).
        catch_up: When ticks were missed (nothing ticked for a while), enqueue every one of
            them (up to `CATCH_UP_LIMIT` per call); by default only the latest.

    Raises:
        InvalidTime: not exactly one of `cron` and `every`, an invalid cron expression, or
            an interval that is not positive.
        DefinitionError: a bad name or workflow.
    """

    __slots__ = ("catch_up", "cron", "every", "input", "name", "queue", "workflow")

    def __init__(
        self,
        name: str,
        workflow: Workflow[Any, Any] | str,
        *,
        cron: str | None = None,
        every: timedelta | float | None = None,
        input: Any = None,
        queue: str = "default",
        catch_up: bool = False,
    ) -> None:
        check_name(name, "schedule")  # it begins its runs' transaction ids: no ':' either
        if "@" in name or not name.strip():
            raise DefinitionError(f"a schedule needs a name without '@', not {name!r}")
        if not isinstance(workflow, Workflow | str):
            raise DefinitionError(
                f"schedule {name!r}: workflow must be a Workflow or its name, "
                f"not {type(workflow).__name__}"
            )
        if (cron is None) == (every is None):
            raise InvalidTime(f"schedule {name!r} needs exactly one of cron= and every=")
        self.name = name
        self.workflow = workflow
        self.cron = None if cron is None else _checked_cron(cron, name)
        self.every = None if every is None else _interval(every, name)
        self.input = input
        self.queue = queue
        self.catch_up = catch_up

    @property
    def workflow_name(self) -> str:
        """The name of the workflow this schedule starts."""
        wf = self.workflow
        return wf if isinstance(wf, str) else wf.name

    def latest(self, now: datetime) -> datetime:
        """The latest tick at or before `now`."""
        if self.every is not None:
            step = self.every.total_seconds()
            count = (now - _EPOCH).total_seconds() // step
            return _EPOCH + timedelta(seconds=count * step)
        # cronsim walks back strictly before its start: start one second after `now`
        start = now.replace(microsecond=0) + timedelta(seconds=1)
        return next(iter(CronSim(self._cron_text, start, reverse=True)))

    def after(self, tick: datetime) -> Iterator[datetime]:
        """The ticks strictly after `tick`, in order."""
        if self.every is not None:
            step = self.every
            current = self.latest(tick)
            while True:
                current += step
                yield current
        else:
            yield from CronSim(self._cron_text, tick)

    def due(self, last: datetime | None, now: datetime) -> list[datetime]:
        """The ticks to fire at `now`, given the last tick fired (None: none known).

        The latest tick at or before `now`, when it is newer than `last`; with `catch_up`,
        every tick after `last` up to `now` (at most `CATCH_UP_LIMIT`, the oldest first).
        """
        latest = self.latest(now)
        if last is not None and latest <= last:
            return []
        if not self.catch_up or last is None:
            return [latest]
        ticks: list[datetime] = []
        for tick in self.after(last):
            if tick > now or len(ticks) >= CATCH_UP_LIMIT:
                break
            ticks.append(tick)
        return ticks

    def next_tick(self, now: datetime) -> datetime:
        """The first tick strictly after `now`."""
        return next(iter(self.after(now)))

    def transaction_id(self, tick: datetime) -> str:
        """The transaction id of the run started for `tick`: `name@` and the tick in ISO 8601
        basic format, UTC (`nightly@20260101T030000Z`: transaction ids hold no `:`)."""
        return f"{self.name}@{tick.astimezone(UTC).strftime(_TICK_FORMAT)}"

    def tick_of(self, transaction_id: str) -> datetime | None:
        """The tick a transaction id of this schedule names (None: not one of its ids)."""
        head, _, tail = transaction_id.partition("@")
        if head != self.name or not tail:
            return None
        try:
            return datetime.strptime(tail, _TICK_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            return None

    def input_for(self, tick: datetime) -> Any:
        """The input of the run started for `tick`."""
        given = self.input
        return given(tick) if callable(given) else given

    @property
    def _cron_text(self) -> str:
        assert self.cron is not None
        return self.cron

    def __repr__(self) -> str:
        when = f"cron={self.cron!r}" if self.cron is not None else f"every={self.every!r}"
        return f"Schedule({self.name!r}, {self.workflow_name!r}, {when})"


def _interval(every: timedelta | float, name: str) -> timedelta:
    seconds = as_seconds(every, f"schedule {name!r}: every")
    if seconds <= 0:
        raise InvalidTime(f"schedule {name!r}: every must be positive, not {every!r}")
    return timedelta(seconds=seconds)


def _checked_cron(cron: object, name: str) -> str:
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise InvalidTime(
            f"schedule {name!r}: cron must be 5 fields (minute hour day month weekday), "
            f"not {cron!r}"
        )
    try:
        CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise InvalidTime(f"schedule {name!r}: invalid cron expression {cron!r}: {exc}") from None
    return cron
