"""Retry policies, carried out by tenacity (the only module that imports it).

A step's first attempt is a plain call; tenacity is entered only after a failure the policy
retries, so a step that succeeds pays nothing for having a policy.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import tenacity
from attrs import field, frozen

from flowkit.exceptions import DefinitionError, PermanentFailure, StepTimeout, WorkflowTimeout

__all__ = ["RetryPolicy"]

T = TypeVar("T")
_NEVER_RETRIED = (PermanentFailure, StepTimeout, WorkflowTimeout)


def _exception_types(value: object) -> tuple[type[BaseException], ...]:
    types = value if isinstance(value, tuple) else (value,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise DefinitionError(f"retry_on/give_up_on take exception types, not {t!r}")
    return types


@frozen
class RetryPolicy:
    """How a step (and its compensation) is retried: a frozen value, like Temporal's.

    Args:
        max_retries: Retries after the first attempt: `N` means `N + 1` attempts at most.
        interval: Seconds to wait before the first retry.
        backoff: Each next wait is the previous one times this (1.0: constant waits).
        max_interval: A cap on any single wait, in seconds (None: no cap).
        jitter: Up to this many random seconds added to each wait.
        retry_on: Exception types worth retrying.
        give_up_on: Exception types never retried, even when they match `retry_on`.
        retry_if: Refines `retry_on`: called with the exception, retries only when it returns
            True (for example, only a provider error that says retrying can help).

    `PermanentFailure` and timeouts are never retried.

    Raises:
        DefinitionError: a negative count or interval, a backoff below 1, or a non-exception type.
    """

    max_retries: int = 0
    interval: float = 0.0
    backoff: float = 1.0
    max_interval: float | None = None
    jitter: float = 0.0
    retry_on: tuple[type[BaseException], ...] = field(
        default=(Exception,), converter=_exception_types
    )
    give_up_on: tuple[type[BaseException], ...] = field(default=(), converter=_exception_types)
    retry_if: Callable[[BaseException], bool] | None = None

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise DefinitionError(f"max_retries must be an int >= 0, not {self.max_retries!r}")
        for name in ("interval", "jitter"):
            value = getattr(self, name)
            if not _finite(value) or value < 0:
                raise DefinitionError(f"{name} must be a number >= 0, not {value!r}")
        if not _finite(self.backoff) or self.backoff < 1:
            raise DefinitionError(f"backoff must be a number >= 1, not {self.backoff!r}")
        if self.max_interval is not None and (
            not _finite(self.max_interval) or self.max_interval <= 0
        ):
            raise DefinitionError(f"max_interval must be > 0, not {self.max_interval!r}")
        if self.retry_if is not None and not callable(self.retry_if):
            raise DefinitionError(f"retry_if must be callable, not {self.retry_if!r}")

    def should_retry(self, exc: BaseException) -> bool:
        """True when `exc` is worth another attempt under this policy."""
        if isinstance(exc, _NEVER_RETRIED) or not isinstance(exc, self.retry_on):
            return False
        if self.give_up_on and isinstance(exc, self.give_up_on):
            return False
        return self.retry_if is None or bool(self.retry_if(exc))

    def _tenacity_kwargs(self) -> dict[str, object]:
        wait: tenacity.wait.wait_base = tenacity.wait_exponential(
            multiplier=self.interval,
            exp_base=self.backoff,
            max=self.max_interval if self.max_interval is not None else math.inf,
            min=0,
        )
        if self.jitter:
            wait = wait + tenacity.wait_random(0, self.jitter)
        return {
            "stop": tenacity.stop_after_attempt(self.max_retries + 1),
            "wait": wait,
            "retry": tenacity.retry_if_exception(self.should_retry),
            "reraise": True,
        }


def call_with_retries(
    policy: RetryPolicy, first_error: Exception, attempt: Callable[[int], T]
) -> T:
    """Go on after a failed first attempt: call `attempt(n)` for n = 2, 3... as the policy says.

    Raises:
        Exception: `first_error` when the policy does not retry it, else the last attempt's error.
    """
    if not policy.should_retry(first_error):
        raise first_error
    retrying = tenacity.Retrying(**policy._tenacity_kwargs())  # type: ignore[arg-type]
    counter = _Counter(first_error)
    return retrying(lambda: attempt(counter.next()))


async def call_with_retries_async(
    policy: RetryPolicy, first_error: Exception, attempt: Callable[[int], Awaitable[T]]
) -> T:
    """The `async` form of `call_with_retries`: waits with `asyncio.sleep`."""
    if not policy.should_retry(first_error):
        raise first_error
    retrying = tenacity.AsyncRetrying(**policy._tenacity_kwargs())  # type: ignore[arg-type]
    counter = _Counter(first_error)

    async def call() -> T:
        return await attempt(counter.next())

    return await retrying(call)


class _Counter:
    """Replays the first (already failed) attempt to tenacity, then numbers the next ones."""

    def __init__(self, first_error: Exception) -> None:
        self.first_error: Exception | None = first_error
        self.number = 1

    def next(self) -> int:
        if self.first_error is not None:
            error, self.first_error = self.first_error, None
            raise error
        self.number += 1
        return self.number


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
