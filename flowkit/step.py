"""Steps: a function that does one thing, and optionally the function that undoes it."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar, overload

from flowkit.clock import as_seconds
from flowkit.exceptions import DefinitionError, PermanentFailure
from flowkit.refs import Ref, current_recording
from flowkit.retry import RetryPolicy

if TYPE_CHECKING:
    from flowkit.container import Scope

__all__ = ["Step", "StepContext", "StepResponse", "step"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")
CompT = TypeVar("CompT")
T = TypeVar("T")

UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET"})()


class StepResponse(Generic[OutT, CompT]):
    """What a step returns: its output, and what its compensation gets if it is undone.

    Args:
        output: The value downstream steps see.
        compensate_input: What the compensation receives; when left out, it receives `output`.
        timeout: For an `async_completion` step: seconds this wait may last (its deadline
            is the time it parks plus this), overriding the step's own `timeout`; a
            negative, non-finite or non-numeric one raises `InvalidTime`.
    """

    __slots__ = ("compensate_input", "output", "skipped", "timeout")

    def __init__(
        self, output: OutT, compensate_input: CompT = UNSET, *, timeout: float | None = None
    ) -> None:
        self.output = output
        self.compensate_input = output if compensate_input is UNSET else compensate_input
        self.skipped = False
        self.timeout = None if timeout is None else as_seconds(timeout, "StepResponse timeout")

    @classmethod
    def skip(cls) -> StepResponse[Any, Any]:
        """Mark the step `skipped`: it is not compensated, and refs to it resolve to None."""
        response: StepResponse[Any, Any] = StepResponse(None)
        response.skipped = True
        return response

    @staticmethod
    def permanent_failure(message: str) -> NoReturn:
        """Fail the step at once, ignoring its retry policy.

        Raises:
            PermanentFailure: always.
        """
        raise PermanentFailure(message)

    def __repr__(self) -> str:
        if self.skipped:
            return "StepResponse.skip()"
        return f"StepResponse({self.output!r}, compensate_input={self.compensate_input!r})"


class StepContext:
    """What a running step knows about its run; every field is computed only when read.

    Attributes:
        attempt: The attempt number, 1-based.
        action: `"invoke"` or `"compensate"`.
    """

    __slots__ = ("_node", "_run", "_session", "action", "attempt")

    def __init__(self, run: Any, node: Any, attempt: int, action: str = "invoke") -> None:
        self._run = run
        self._node = node
        self.attempt = attempt
        self.action = action
        self._session: Any = None

    @property
    def container(self) -> Scope:
        """The run's own scope (a child of the container the run was given)."""
        scope: Scope = self._run.scope
        return scope

    @overload
    def resolve(self, key: type[T]) -> T: ...
    @overload
    def resolve(self, key: str) -> Any: ...
    def resolve(self, key: Any) -> Any:
        """Resolve a service from the run's scope.

        Raises:
            ServiceNotFound: nothing is registered under `key`.
        """
        return self._run.scope.resolve(key)

    @property
    def workflow_name(self) -> str:
        """The name of the workflow running this step (the child's, inside a nested one)."""
        name: str = self._run.plan.name
        return name

    @property
    def step_name(self) -> str:
        """This step's name in its workflow."""
        name: str = self._node.name
        return name

    @property
    def transaction_id(self) -> str:
        """The run's transaction id (`"{parent}/{step}"` inside a nested workflow)."""
        tx: str = self._run.transaction_id
        return tx

    @property
    def idempotency_key(self) -> str:
        """`"{workflow}:{transaction_id}:{step}:{invoke|compensate}"`: the same on every retry and
        after a crash, so an external call made with it is never doubled."""
        run = self._run
        return f"{run.plan.name}:{run.transaction_id}:{self._node.name}:{self.action}"

    @property
    def event_group_id(self) -> str | None:
        """The event group id the run was started with, if any."""
        group: str | None = self._run.event_group_id
        return group

    @property
    def metadata(self) -> dict[str, Any]:
        """Free-form metadata of the run (shared by its steps)."""
        metadata: dict[str, Any] = self._run.metadata
        return metadata

    @property
    def session(self) -> Any:
        """A SQLAlchemy `Session` whose writes commit with this step's checkpoint.

        Opened on first use, per attempt. Only durable runs (an `Engine` with a SQL store) have
        one, and only sync steps.

        Raises:
            RuntimeError: the run has no database unit of work, or the step is `async def`.
        """
        if self._session is None:
            self._session = self._run.open_session(self)
        return self._session

    def __repr__(self) -> str:
        return (
            f"StepContext(workflow={self.workflow_name!r}, step={self.step_name!r}, "
            f"transaction_id={self.transaction_id!r}, attempt={self.attempt}, "
            f"action={self.action!r})"
        )


class Step(Generic[InT, OutT]):
    """A unit of work with an optional compensation; call it inside a `@workflow` to use it.

    Build one with the `step` decorator. Attributes are read-only after definition.

    Attributes:
        name: The durable key of the step.
        fn: The invoke function `fn(input, ctx)`.
        retry: Its `RetryPolicy` (None: no retries).
        timeout: Seconds before it is considered timed out (None: no limit).
        async_completion: True when the step is finished later by a signal.
        continue_on_permanent_failure: On final failure, the run goes on.
        skip_on_permanent_failure: On final failure, every later step is skipped.
        explicit_name: True when the name was given, not derived from the function.
        sleeps: True for the steps `flowkit.sleep` adds (their wait ends at its deadline).
    """

    sleeps = False
    __slots__ = (
        "_compensation",
        "async_completion",
        "continue_on_permanent_failure",
        "explicit_name",
        "fn",
        "is_async",
        "name",
        "retry",
        "skip_on_permanent_failure",
        "timeout",
    )

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str,
        *,
        explicit_name: bool,
        retry: RetryPolicy | None,
        timeout: float | None,
        async_completion: bool,
        continue_on_permanent_failure: bool,
        skip_on_permanent_failure: bool,
    ) -> None:
        self.fn = fn
        self.name = name
        self.explicit_name = explicit_name
        self.is_async = inspect.iscoroutinefunction(fn)
        self.retry = retry
        self.timeout = timeout
        self.async_completion = async_completion
        self.continue_on_permanent_failure = continue_on_permanent_failure
        self.skip_on_permanent_failure = skip_on_permanent_failure
        # shared with the copies made by with_name(), so a compensation attached later applies
        self._compensation: list[Callable[..., Any]] = []

    @property
    def compensate_fn(self) -> Callable[..., Any] | None:
        """The compensation function, or None when the step is not compensated."""
        return self._compensation[0] if self._compensation else None

    def compensate(
        self, fn: Callable[[Any, StepContext], Any]
    ) -> Callable[[Any, StepContext], Any]:
        """Attach the compensation `fn(compensate_input, ctx)` (use as a decorator).

        Raises:
            DefinitionError: `fn` is not callable, has the wrong arity, or one is attached already.
        """
        _check_callable(fn, f"compensation of step {self.name!r}")
        if self._compensation:
            raise DefinitionError(f"step {self.name!r} already has a compensation")
        self._compensation.append(fn)
        return fn

    def with_name(self, name: str) -> Step[InT, OutT]:
        """The same step under another name, to use it twice in one workflow."""
        check_name(name, "step")
        copy: Step[InT, OutT] = Step.__new__(Step)
        for slot in Step.__slots__:
            setattr(copy, slot, getattr(self, slot))
        copy.name = name
        copy.explicit_name = True
        return copy

    def __call__(self, input: Any) -> Ref[OutT]:
        """Record a call of this step in the workflow being defined; returns a `Ref` to its output.

        Raises:
            DefinitionError: called outside a `@workflow` function.
        """
        return current_recording(f"step {self.name!r}").record_step(self, input)

    def __repr__(self) -> str:
        return f"<Step {self.name!r}>"


@overload
def step(name: Callable[..., Any], /) -> Step[Any, Any]: ...
@overload
def step(
    name: str | None = None,
    *,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    async_completion: bool = False,
    continue_on_permanent_failure: bool = False,
    skip_on_permanent_failure: bool = False,
) -> Callable[[Callable[..., Any]], Step[Any, Any]]: ...
def step(
    name: str | Callable[..., Any] | None = None,
    *,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
    async_completion: bool = False,
    continue_on_permanent_failure: bool = False,
    skip_on_permanent_failure: bool = False,
) -> Step[Any, Any] | Callable[[Callable[..., Any]], Step[Any, Any]]:
    """Turn `fn(input, ctx)` (sync or `async def`) into a `Step`.

    Args:
        name: The durable key (default: the function's qualified name). No `:` allowed.
        retry: A `RetryPolicy` for the step and its compensation.
        timeout: Seconds; an `async def` step is cancelled at the deadline, a sync one is
            marked `timeout` when it returns late.
        async_completion: The step only starts work; a signal (`Engine.set_step_success` or
            `set_step_failure`) finishes it later. Needs an engine with a store.
        continue_on_permanent_failure: When the step fails for good, the run goes on.
        skip_on_permanent_failure: When the step fails for good, every later step is skipped.

    Returns:
        A `Step`, or a decorator making one.

    Raises:
        DefinitionError: a bad name or option, or a function that cannot take `(input, ctx)`.
    """
    options = _Options(
        retry, timeout, async_completion, continue_on_permanent_failure, skip_on_permanent_failure
    )
    if callable(name):
        return options.make(name, None)

    def decorate(fn: Callable[..., Any]) -> Step[Any, Any]:
        return options.make(fn, name)

    return decorate


class _Options:
    def __init__(
        self,
        retry: RetryPolicy | None,
        timeout: float | None,
        async_completion: bool,
        continue_on: bool,
        skip_on: bool,
    ) -> None:
        self.retry = retry
        self.timeout = timeout
        self.async_completion = async_completion
        self.continue_on = continue_on
        self.skip_on = skip_on

    def make(self, fn: Callable[..., Any], name: str | None) -> Step[Any, Any]:
        label = name or str(getattr(fn, "__qualname__", repr(fn)))
        if name is not None:
            check_name(name, "step")
        _check_callable(fn, f"step {label!r}")
        self.check(label)
        return Step(
            fn,
            name or _qualified_name(fn),
            explicit_name=name is not None,
            retry=self.retry,
            timeout=self.timeout,
            async_completion=self.async_completion,
            continue_on_permanent_failure=self.continue_on,
            skip_on_permanent_failure=self.skip_on,
        )

    def check(self, label: str) -> None:
        if self.retry is not None and not isinstance(self.retry, RetryPolicy):
            raise DefinitionError(
                f"step {label!r}: retry must be a RetryPolicy, not {self.retry!r}"
            )
        check_timeout(self.timeout, f"step {label!r}")
        if self.continue_on and self.skip_on:
            raise DefinitionError(
                f"step {label!r}: continue_on_permanent_failure and skip_on_permanent_failure "
                "exclude each other"
            )


def check_timeout(timeout: object, label: str) -> None:
    """Raise `DefinitionError` unless `timeout` is None or a finite number of seconds > 0."""
    if timeout is None:
        return
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise DefinitionError(f"{label}: timeout must be a number of seconds > 0, not {timeout!r}")


def check_name(name: object, what: str) -> None:
    """Raise `DefinitionError` unless `name` is a non-empty string without `:`."""
    if not isinstance(name, str) or not name:
        raise DefinitionError(f"a {what} name must be a non-empty string, not {name!r}")
    if ":" in name:
        raise DefinitionError(f"{what} name {name!r} may not contain ':'")


def _check_callable(fn: object, label: str) -> None:
    if not callable(fn):
        raise DefinitionError(f"{label} is not callable: {fn!r}")
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        raise DefinitionError(
            f"{label} must take two positional arguments (input, ctx): {_describe(fn)}"
        ) from None
    except ValueError:  # builtins without a signature: trust them
        return


def _describe(fn: object) -> str:
    try:
        return f"{getattr(fn, '__qualname__', fn)}{inspect.signature(fn)}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return repr(fn)


def _qualified_name(fn: Callable[..., Any]) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return name.replace(":", ".").replace("<locals>", "locals")
