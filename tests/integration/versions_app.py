"""Workflow `vwf` in the versions the deploy scenarios need (steps a, wait, c in version 1).

Each version 2 is one of the issue's changes: a step inserted after the wait, the waiting
step renamed, a step removed. Steps append to `CALLS`, so tests see what ran. The `engine_*`
factories serve `flowkit ... --app versions_app:engine_v1_v2`; they read the database URL from
`FLOWKIT_VERSIONS_TEST_URL`.
"""

from __future__ import annotations

import os
from typing import Any

from flowkit import Engine, RetryPolicy, StepContext, StepResponse, WorkflowResponse, step, workflow
from flowkit.sqlalchemy import SqlStore

URL_ENV = "FLOWKIT_VERSIONS_TEST_URL"
CALLS: list[str] = []


@step("a")
def a(value: Any, ctx: StepContext) -> str:
    """The first step."""
    CALLS.append("a")
    return "a-out"


@step("wait", async_completion=True)
def wait(value: Any, ctx: StepContext) -> StepResponse[str, str]:
    """Starts work a signal finishes (a 3-D Secure challenge, say)."""
    CALLS.append("wait")
    return StepResponse("challenge", compensate_input="hold")


@wait.compensate
def release(hold: Any, ctx: StepContext) -> None:
    """Undo what the wait started."""
    CALLS.append(f"undo-wait:{hold}")


b_wait = wait.with_name("b-wait")


@step("b2")
def b2(value: Any, ctx: StepContext) -> str:
    """The step version 2 inserts after the wait."""
    CALLS.append("b2")
    return "b2-out"


@step("c")
def c(value: Any, ctx: StepContext) -> str:
    """The last step of version 1."""
    CALLS.append("c")
    return "c-out"


@workflow("vwf", version=1)
def vwf_v1(inp: Any) -> WorkflowResponse[Any]:
    """Version 1: a, wait, c."""
    a(inp)
    answer = wait(inp)
    return WorkflowResponse({"answer": answer, "last": c(inp)})


@workflow("vwf", version=2)
def vwf_inserted(inp: Any) -> WorkflowResponse[Any]:
    """Version 2: a step inserted after the wait."""
    a(inp)
    answer = wait(inp)
    b2(inp)
    return WorkflowResponse({"answer": answer, "last": c(inp)})


@workflow("vwf", version=2)
def vwf_renamed(inp: Any) -> WorkflowResponse[Any]:
    """Version 2: the waiting step renamed."""
    a(inp)
    answer = b_wait(inp)
    return WorkflowResponse({"answer": answer, "last": c(inp)})


@workflow("vwf", version=2)
def vwf_removed(inp: Any) -> WorkflowResponse[Any]:
    """Version 2: the last step removed."""
    a(inp)
    return WorkflowResponse({"answer": wait(inp)})


def _a_fixed(value: Any, ctx: StepContext) -> str:
    CALLS.append("a-fixed")
    return "a-out"


@workflow("vwf", version=1)
def vwf_v1_bugfix(inp: Any) -> WorkflowResponse[Any]:
    """Version 1 again with a step body fixed: the same graph, so the same fingerprint."""
    step("a")(_a_fixed)(inp)
    answer = wait(inp)
    return WorkflowResponse({"answer": answer, "last": c(inp)})


c_retrying = step("c", retry=RetryPolicy(max_retries=2))(c.fn)


@workflow("vwf", version=1)
def vwf_v1_retrying(inp: Any) -> WorkflowResponse[Any]:
    """Version 1 with retries on `c`: an option that changes execution, so another graph."""
    a(inp)
    answer = wait(inp)
    return WorkflowResponse({"answer": answer, "last": c_retrying(inp)})


def _engine(*workflows: Any) -> Engine:
    return Engine(SqlStore(os.environ[URL_ENV]), workflows)


def engine_v1_v2() -> Engine:
    """An app engine holding versions 1 and 2 (a step inserted)."""
    return _engine(vwf_v1, vwf_inserted)


def engine_v2() -> Engine:
    """An app engine after version 1 was removed too early."""
    return _engine(vwf_inserted)
