"""The app that `flowkit worker` processes load in the scale-out tests.

`engine()` builds an Engine on `FLOWKIT_SCALE_URL`. A run of `scale-job` records itself with
`ctx.session` (exactly once, with its checkpoint) and logs every execution of each step in a
separate autocommit connection, so a test can see a step executed twice.
"""

from __future__ import annotations

import os
import time
from typing import Any

from sqlalchemy import Column, Float, Integer, MetaData, String, Table, create_engine, insert

import flowkit
from flowkit import StepContext, WorkflowResponse, step, workflow
from flowkit.sqlalchemy import SqlStore

metadata = MetaData()
done = Table(
    "scale_done",
    metadata,
    Column("tx", String(64), primary_key=True),
    Column("worker", String(255)),
)
executions = Table(
    "scale_exec",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tx", String(64), nullable=False),
    Column("step", String(32), nullable=False),
    Column("worker", String(255), nullable=False),
    Column("at", Float, nullable=False),
)


class ExecutionLog:
    """Autocommit inserts into `scale_exec` (kept even if the step's transaction rolls back)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))

    def record(self, tx: str, step_name: str) -> None:
        """Log one execution of a step."""
        row = {"tx": tx, "step": step_name, "worker": str(os.getpid()), "at": time.time()}
        with self.engine.begin() as conn:
            conn.execute(insert(executions).values(**row))


@step("record")
def record(job: dict[str, Any], ctx: StepContext) -> str:
    """Insert the run's row in the step's unit of work (exactly once per run)."""
    ctx.resolve(ExecutionLog).record(ctx.transaction_id, "record")
    ctx.session.execute(insert(done).values(tx=ctx.transaction_id, worker=str(os.getpid())))
    return ctx.transaction_id


@step("finish")
def finish(job: dict[str, Any], ctx: StepContext) -> str:
    """Sleep as the job asks (to be caught mid-run), then return."""
    ctx.resolve(ExecutionLog).record(ctx.transaction_id, "finish")
    time.sleep(float(job.get("sleep", 0)))
    return "ok"


@workflow("scale-job")
def scale_job(job: Any) -> WorkflowResponse[Any]:
    """Record, then finish."""
    record(job)
    return WorkflowResponse(finish(job))


def engine() -> flowkit.Engine:
    """The app's engine (the `--app scale_app:engine` factory)."""
    url = os.environ["FLOWKIT_SCALE_URL"]
    registry = flowkit.Registry()
    registry.register_value(ExecutionLog, ExecutionLog(url))
    lease = float(os.environ.get("FLOWKIT_SCALE_LEASE", "30"))
    return flowkit.Engine(
        SqlStore(url),
        [scale_job],
        container=registry,
        lease_seconds=lease,
        queues=["default", "slow"],
    )


def prepare(url: str) -> None:
    """Create flowkit's and the app's tables."""
    store = SqlStore(url)
    store.create_all()
    with store.engine.begin() as conn:
        metadata.create_all(conn)
    store.close()
