"""Schedules of the payment workflows, for `flowkit.Engine(..., schedules=[...])`."""

from __future__ import annotations

from datetime import datetime, timedelta

from attrs import frozen

from flowkit import Schedule
from payment.exceptions import InvalidData
from payment.inputs import ReleaseExpiredAuthorizationsInput
from payment.workflows import release_expired_authorizations_workflow

__all__ = ["release_expired_authorizations_schedule"]


@frozen
class _AuthorizedBefore:
    """The release's input at a tick: what was authorized more than `window` before it."""

    window: timedelta

    def __call__(self, tick: datetime) -> ReleaseExpiredAuthorizationsInput:
        return ReleaseExpiredAuthorizationsInput(tick - self.window)


def release_expired_authorizations_schedule(
    every: timedelta = timedelta(hours=1),
    window: timedelta = timedelta(days=7),
    *,
    name: str = "release-expired-authorizations",
    queue: str = "default",
) -> Schedule:
    """A schedule that runs `release_expired_authorizations_workflow` at every tick, with
    ``authorized_before = tick - window``.

    Each tick's run has the transaction id ``{name}@{tick}``, so engines and workers firing
    the same tick release once; missed ticks are not caught up (the latest one releases
    everything older anyway).

    Args:
        every: The interval between ticks (on its multiples since the epoch: every hour, on
            the hour).
        window: How old an uncaptured authorization must be to be released: the shortest
            `authorization_window` of the providers you use (Stripe's is 7 days), so an
            authorization is voided once the provider would no longer honour it.
        name: The schedule's name (the prefix of its runs' transaction ids).
        queue: The queue its runs go to.

    Returns:
        The `flowkit.Schedule`; give it to the engine that holds the workflow.

    Raises:
        InvalidData: a `window` that is not a positive `timedelta`.
        flowkit.InvalidTime: an `every` that is not a positive interval.
    """
    if not isinstance(window, timedelta) or window <= timedelta(0):
        raise InvalidData("window", "expected a positive timedelta")
    return Schedule(
        name,
        release_expired_authorizations_workflow,
        every=every,
        input=_AuthorizedBefore(window),
        queue=queue,
    )
