"""flowkit: saga/step workflows with exact compensation, retries and durable checkpoints.

The public surface is re-exported here; the modules behind it are private.
"""

from flowkit.container import Registry, Scope
from flowkit.continuations import RecoveryReport, SkippedRun
from flowkit.engine import Engine
from flowkit.events import Event
from flowkit.exceptions import (
    CompensationFailed,
    DefinitionError,
    FlowkitError,
    IncompatibleRun,
    InjectedFailure,
    LeaseLost,
    NotSerializable,
    PermanentFailure,
    ProcessKilled,
    RunNotFound,
    SchemaMismatch,
    ServiceNotFound,
    SignalledFailure,
    SimulatedCrash,
    StepNotWaiting,
    StepTimeout,
    StoredError,
    StoreError,
    TransactionConflict,
    TransactionInProgress,
    UnknownQueue,
    UnknownWorkflow,
    WorkflowTimeout,
)
from flowkit.refs import Ref, create_hook, parallelize, transform, when
from flowkit.retry import RetryPolicy
from flowkit.state import RunRecord, RunResult, StepError, StepRecord, StepState, TransactionState
from flowkit.step import Step, StepContext, StepResponse, step
from flowkit.store import MemoryStore
from flowkit.worker import Queue, WorkReport
from flowkit.workflow import Workflow, WorkflowResponse, workflow

__all__ = [
    "CompensationFailed",
    "DefinitionError",
    "Engine",
    "Event",
    "FlowkitError",
    "IncompatibleRun",
    "InjectedFailure",
    "LeaseLost",
    "MemoryStore",
    "NotSerializable",
    "PermanentFailure",
    "ProcessKilled",
    "Queue",
    "RecoveryReport",
    "Ref",
    "Registry",
    "RetryPolicy",
    "RunNotFound",
    "RunRecord",
    "RunResult",
    "SchemaMismatch",
    "Scope",
    "ServiceNotFound",
    "SignalledFailure",
    "SimulatedCrash",
    "SkippedRun",
    "Step",
    "StepContext",
    "StepError",
    "StepNotWaiting",
    "StepRecord",
    "StepResponse",
    "StepState",
    "StepTimeout",
    "StoreError",
    "StoredError",
    "TransactionConflict",
    "TransactionInProgress",
    "TransactionState",
    "UnknownQueue",
    "UnknownWorkflow",
    "WorkReport",
    "Workflow",
    "WorkflowResponse",
    "WorkflowTimeout",
    "create_hook",
    "parallelize",
    "step",
    "transform",
    "when",
    "workflow",
]
