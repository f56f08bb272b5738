"""Unit tests of `flowkit.retry`: `RetryPolicy` validation, `should_retry`, the retry loop."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import attrs
import pytest

from flowkit import (
    DefinitionError,
    PermanentFailure,
    RetryPolicy,
    StepTimeout,
    WorkflowTimeout,
)
from flowkit.retry import call_with_retries, call_with_retries_async


class Transient(Exception):
    """Worth retrying."""


class Broken(Transient):
    """A transient subclass the policy gives up on."""


def test_defaults_match_the_spec() -> None:
    """The defaults are the spec's: no retries, no waits, retry any `Exception`."""
    policy = RetryPolicy()
    assert policy.max_retries == 0
    assert policy.interval == 0.0
    assert policy.backoff == 1.0
    assert policy.max_interval is None
    assert policy.jitter == 0.0
    assert policy.retry_on == (Exception,)
    assert policy.give_up_on == ()
    assert policy.retry_if is None


def test_policy_is_a_frozen_value() -> None:
    """A policy cannot be changed after creation, and equal policies are equal."""
    policy = RetryPolicy(max_retries=2)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        policy.max_retries = 3  # type: ignore[misc]
    assert policy == RetryPolicy(max_retries=2)
    assert hash(policy) == hash(RetryPolicy(max_retries=2))


def test_single_exception_types_become_tuples() -> None:
    """`retry_on=X` and `give_up_on=Y` are stored as tuples."""
    policy = RetryPolicy(retry_on=Transient, give_up_on=Broken)  # type: ignore[arg-type]
    assert policy.retry_on == (Transient,)
    assert policy.give_up_on == (Broken,)


@pytest.mark.parametrize(
    ("options", "mentions"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_retries": "2"}, "max_retries"),
        ({"interval": -0.1}, "interval"),
        ({"interval": math.nan}, "interval"),
        ({"interval": math.inf}, "interval"),
        ({"jitter": -1}, "jitter"),
        ({"backoff": 0.5}, "backoff"),
        ({"backoff": math.nan}, "backoff"),
        ({"max_interval": 0}, "max_interval"),
        ({"max_interval": -2}, "max_interval"),
        ({"retry_on": (ValueError, "KeyError")}, "retry_on"),
        ({"retry_on": (int,)}, "retry_on"),
        ({"give_up_on": (ValueError(),)}, "give_up_on"),
        ({"retry_if": "yes"}, "retry_if"),
    ],
    ids=lambda v: str(v),
)
def test_bad_options_are_definition_errors(options: dict[str, Any], mentions: str) -> None:
    """Each invalid option raises `DefinitionError` naming what is wrong."""
    with pytest.raises(DefinitionError, match=mentions):
        RetryPolicy(**options)


def test_should_retry_any_exception_by_default() -> None:
    """By default every `Exception` is worth a retry."""
    assert RetryPolicy().should_retry(ValueError("x")) is True


@pytest.mark.parametrize(
    "exc",
    [PermanentFailure("no"), StepTimeout("s", 1.0), WorkflowTimeout("w", 1.0)],
    ids=["permanent", "step-timeout", "workflow-timeout"],
)
def test_permanent_failure_and_timeouts_are_never_retried(exc: Exception) -> None:
    """`PermanentFailure` and timeouts are not retried, even when `retry_on` names them."""
    policy = RetryPolicy(retry_on=(Exception, type(exc)))
    assert policy.should_retry(exc) is False


def test_base_exceptions_are_not_retried_by_default() -> None:
    """A `BaseException` that is not an `Exception` (KeyboardInterrupt) is not retried."""
    assert RetryPolicy().should_retry(KeyboardInterrupt()) is False


def test_retry_on_limits_the_types() -> None:
    """Only instances of `retry_on` types are retried."""
    policy = RetryPolicy(retry_on=(Transient,))
    assert policy.should_retry(Transient()) is True
    assert policy.should_retry(ValueError()) is False


def test_give_up_on_wins_over_retry_on() -> None:
    """A `give_up_on` type is not retried even though `retry_on` matches it."""
    policy = RetryPolicy(retry_on=(Transient,), give_up_on=(Broken,))
    assert policy.should_retry(Transient()) is True
    assert policy.should_retry(Broken()) is False


def test_retry_if_refines_retry_on() -> None:
    """`retry_if` is asked only for exceptions `retry_on` accepts, and decides for them."""
    asked: list[BaseException] = []

    def only_retryable(exc: BaseException) -> bool:
        asked.append(exc)
        return "retryable" in str(exc)

    policy = RetryPolicy(retry_on=(Transient,), retry_if=only_retryable)
    assert policy.should_retry(Transient("retryable")) is True
    assert policy.should_retry(Transient("fatal")) is False
    assert policy.should_retry(ValueError("retryable")) is False
    assert [str(e) for e in asked] == ["retryable", "fatal"]


# --- the retry loop ---------------------------------------------------------------------------


class Attempts:
    """A fake attempt function: fails with `errors` in turn, then returns `done`."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.numbers: list[int] = []

    def __call__(self, number: int) -> str:
        self.numbers.append(number)
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def test_call_with_retries_numbers_the_later_attempts() -> None:
    """After a failed first attempt, attempts 2, 3... are made until one succeeds."""
    attempts = Attempts(Transient("2"))
    result = call_with_retries(RetryPolicy(max_retries=3), Transient("1"), attempts)
    assert result == "done"
    assert attempts.numbers == [2, 3]


def test_call_with_retries_stops_after_max_retries() -> None:
    """`max_retries=2`: attempts 2 and 3 are made, then the last error is raised."""
    attempts = Attempts(Transient("2"), Transient("3"), Transient("4"))
    with pytest.raises(Transient, match="3"):
        call_with_retries(RetryPolicy(max_retries=2), Transient("1"), attempts)
    assert attempts.numbers == [2, 3]


def test_call_with_retries_reraises_an_unretried_first_error() -> None:
    """A first error the policy does not retry is raised as is, with no other attempt."""
    first = PermanentFailure("no")
    attempts = Attempts()
    with pytest.raises(PermanentFailure) as caught:
        call_with_retries(RetryPolicy(max_retries=3), first, attempts)
    assert caught.value is first
    assert attempts.numbers == []


def test_call_with_retries_stops_on_an_unretried_later_error() -> None:
    """A later attempt failing with an error the policy does not retry ends the loop."""
    attempts = Attempts(PermanentFailure("stop"))
    with pytest.raises(PermanentFailure, match="stop"):
        call_with_retries(RetryPolicy(max_retries=5), Transient("1"), attempts)
    assert attempts.numbers == [2]


def test_call_with_retries_async() -> None:
    """The async loop numbers attempts the same way and returns the result."""
    numbers: list[int] = []

    async def attempt(number: int) -> str:
        numbers.append(number)
        if number < 3:
            raise Transient(str(number))
        return "done"

    policy = RetryPolicy(max_retries=4)
    assert asyncio.run(call_with_retries_async(policy, Transient("1"), attempt)) == "done"
    assert numbers == [2, 3]
