"""Workflows used by the durable-run tests (importable, so their values can be stored)."""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

from attrs import frozen

import flowkit
from flowkit import (
    RetryPolicy,
    StepContext,
    StepResponse,
    WorkflowResponse,
    parallelize,
    step,
    transform,
    workflow,
)


@frozen
class Order:
    """An order input with values the codec must round-trip exactly."""

    order_id: str
    amount: Decimal
    fail_at: str | None = None


class Ledger:
    """Records every invocation and compensation; optionally mirrored to a file (crash tests)."""

    def __init__(self, path: str | None = None) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.path = path

    def record(self, action: str, name: str, key: str) -> None:
        """Append one call (fsynced to the file, so it survives a killed process)."""
        self.calls.append((action, name, key))
        if self.path is not None:
            with open(self.path, "a") as out:
                out.write(f"{action} {name} {key}\n")
                out.flush()
                os.fsync(out.fileno())

    def count(self, action: str, name: str) -> int:
        """How many times `name` saw `action`."""
        return sum(1 for a, n, _ in self.calls if a == action and n == name)

    def names(self, action: str) -> list[str]:
        """Names that saw `action`, in order."""
        return [n for a, n, _ in self.calls if a == action]


def _recording_step(name: str, *, retry: RetryPolicy | None = None) -> flowkit.Step[Any, Any]:
    def invoke(inp: Any, ctx: StepContext) -> Any:
        ctx.resolve(Ledger).record("invoke", name, ctx.idempotency_key)
        fail_at = getattr(inp, "fail_at", None) if not isinstance(inp, dict) else inp.get("fail")
        if fail_at == name:
            raise RuntimeError(f"{name} failed on purpose")
        return StepResponse(f"{name}-out", compensate_input=f"{name}-undo")

    def compensate(undo: Any, ctx: StepContext) -> None:
        ctx.resolve(Ledger).record("compensate", name, repr(undo))

    made = step(name, retry=retry)(invoke)
    made.compensate(compensate)
    return made


first = _recording_step("first")
second = _recording_step("second")
third = _recording_step("third")


@workflow("three-steps")
def three_steps(order: flowkit.Ref[Order]) -> WorkflowResponse[Any]:
    """Three compensated steps; `order.fail_at` names the one that fails."""
    a = first(order)
    b = second(order)
    c = third(order)
    return WorkflowResponse({"a": a, "b": b, "c": c, "amount": order.amount})


left = _recording_step("left")
_inner_x = _recording_step("x")
_inner_y = _recording_step("y")
right = _recording_step("right")


@workflow("inner")
def inner(order: flowkit.Ref[Order]) -> WorkflowResponse[Any]:
    """A child workflow of two steps."""
    x = _inner_x(order)
    return WorkflowResponse(_inner_y(transform((order, x), lambda v: v[0])))


@workflow("outer")
def outer(order: flowkit.Ref[Order]) -> WorkflowResponse[Any]:
    """A step, a parallel pair, a nested workflow, a last step."""
    first(order)
    parallelize(left(order), right(order))
    nested = inner.as_step(order, "nested")
    return WorkflowResponse(third(transform((order, nested), lambda v: v[0])))


@step("reserve")
def reserve(order: Order, ctx: StepContext) -> StepResponse[str, str]:
    """Starts work that finishes later; its compensate input is the reservation id."""
    ctx.resolve(Ledger).record("invoke", "reserve", ctx.idempotency_key)
    return StepResponse("reserved", compensate_input=f"res-{order.order_id}")


@reserve.compensate
def _release(reservation: str, ctx: StepContext) -> None:
    ctx.resolve(Ledger).record("compensate", "reserve", reservation)


wait_for_bank = step("wait-for-bank", async_completion=True)(
    lambda order, ctx: StepResponse(None, compensate_input=f"hold-{order.order_id}")
)


@wait_for_bank.compensate
def _release_hold(hold: Any, ctx: StepContext) -> None:
    ctx.resolve(Ledger).record("compensate", "wait-for-bank", repr(hold))


@workflow("with-wait")
def with_wait(order: flowkit.Ref[Order]) -> WorkflowResponse[Any]:
    """Reserve, wait for a signal, then a last step."""
    reserve(order)
    answer = wait_for_bank(order)
    last = third(order)
    return WorkflowResponse({"answer": answer, "last": last})


def ledger_registry(ledger: Ledger) -> flowkit.Registry:
    """A registry holding `ledger`."""
    registry = flowkit.Registry()
    registry.register_value(Ledger, ledger)
    return registry


ALL: list[flowkit.Workflow[Any, Any]] = [three_steps, outer, with_wait]


@step("ask-bank", async_completion=True)
def ask_bank(order: Order, ctx: StepContext) -> dict[str, str]:
    """Starts a bank check; its output says where the customer goes meanwhile."""
    return {"redirect": f"https://bank.test/{order.order_id}"}


@workflow("bank-check")
def bank_check(order: flowkit.Ref[Order]) -> WorkflowResponse[Any]:
    """A nested workflow that waits for the bank."""
    return WorkflowResponse(ask_bank(order))


@workflow("with-nested-wait")
def with_nested_wait(order: flowkit.Ref[Order]) -> WorkflowResponse[Any]:
    """Reserve, then a nested workflow that waits, then a last step."""
    reserve(order)
    answer = bank_check.as_step(order, "check")
    third(order)
    return WorkflowResponse(answer)


ALL.append(with_nested_wait)
