"""Shared fakes for the conformance suite: steps that record what happened to them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from flowkit import Step, StepContext, StepResponse, step

_OUTPUT: Any = object()


class Saga:
    """A factory of recording steps for one test.

    Every invoke and every compensation appends `(action, step name, value)` to `calls`, where
    the value is the invoke's input or the compensation's input. Thread-safe: parallel steps
    append from several threads.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.contexts: list[StepContext] = []
        self._lock = threading.Lock()

    def record(self, action: str, name: str, value: Any, ctx: StepContext) -> None:
        """Append one call (used by the steps this factory builds)."""
        with self._lock:
            self.calls.append((action, name, value))
            self.contexts.append(ctx)

    def step(
        self,
        name: str,
        *,
        returns: Any = None,
        comp_input: Any = _OUTPUT,
        fail: BaseException | None = None,
        compensated: bool = True,
        comp_fail: BaseException | None = None,
        **options: Any,
    ) -> Step[Any, Any]:
        """A sync step named `name` that returns `returns` (default `"{name}-out"`).

        Args:
            name: The step's name.
            returns: Its output.
            comp_input: When given, it returns `StepResponse(output, compensate_input=...)`.
            fail: An exception the invoke raises (every attempt).
            compensated: Whether it has a compensation.
            comp_fail: An exception the compensation raises (every attempt).
            options: Passed to `flowkit.step`.
        """
        output = f"{name}-out" if returns is None else returns

        def invoke(inp: Any, ctx: StepContext) -> Any:
            self.record("invoke", name, inp, ctx)
            if fail is not None:
                raise fail
            if comp_input is _OUTPUT:
                return output
            return StepResponse(output, compensate_input=comp_input)

        made = step(name, **options)(invoke)
        if compensated:

            def undo(value: Any, ctx: StepContext) -> None:
                self.record("compensate", name, value, ctx)
                if comp_fail is not None:
                    raise comp_fail

            made.compensate(undo)
        return made

    def custom(
        self, name: str, fn: Callable[[Any, StepContext], Any], **options: Any
    ) -> Step[Any, Any]:
        """A step running `fn`, recorded, and compensated (recorded too)."""

        def invoke(inp: Any, ctx: StepContext) -> Any:
            self.record("invoke", name, inp, ctx)
            return fn(inp, ctx)

        made = step(name, **options)(invoke)

        @made.compensate
        def undo(value: Any, ctx: StepContext) -> None:
            self.record("compensate", name, value, ctx)

        return made

    def names(self, action: str) -> list[str]:
        """The step names of every `action` call, in order."""
        return [name for act, name, _ in self.calls if act == action]

    @property
    def invoked(self) -> list[str]:
        """Names of the invoked steps, in call order (one entry per attempt)."""
        return self.names("invoke")

    @property
    def compensated(self) -> list[tuple[str, Any]]:
        """`(step, compensate input)` of every compensation call, in call order."""
        return [(name, value) for act, name, value in self.calls if act == "compensate"]


@pytest.fixture
def saga() -> Saga:
    """A fresh factory of recording steps."""
    return Saga()
