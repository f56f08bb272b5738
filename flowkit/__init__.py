"""flowkit: saga/step workflows with exact compensation, retries and durable checkpoints.

The public surface is re-exported here. Behind it the package is built in floors, each module
importing only from floors below its own (checked by the import-linter contract in
`pyproject.toml`), top first:

- tools: `ui` (the run console, `flowkit ui`, over the command line's reading helpers), then
  `cli` (the `flowkit` command), `testing` (rollback exploration, fault plans) and `otel`
  (OpenTelemetry spans and metrics from an engine's events; nothing imports it);
- the engine: `engine` (the `Engine` facade) over its rooms `worker` (queues), `queries`
  (reading runs back), `timers` (`tick()`: deadlines, sleeps, schedules), `starting` (new,
  known and delayed transaction ids), `continuations` (signals, recovery, cancel), all sharing
  a `runtime` (store, workflows, identity, clock, leases, driving a run through its store),
  which knows `schedule` (`Schedule`: cron or interval ticks);
- the user's workflow object: `workflow` (`Workflow.run()` drives its plan in memory; a
  durable run goes through an engine handed in);
- durability: `rebuild` (runs rebuilt from their step log, signals applied) and `journal`
  (each checkpoint out to a `Store`, fenced on the lease);
- execution, one run in memory: `runner` (stages, nested workflows, the outcome), `invoke`
  (one step: retries, timeouts), `compensation` (undo in reverse), `run` (a run's state),
  `leases` (keeping them alive);
- definition: `plan`, `graph` and `fingerprint` (compiled from the recording; the fingerprint
  is the digest a durable run records, see §11 of the spec), `sleeping` (`flowkit.sleep`,
  a step that parks until its deadline), `recording` (the builder and
  the DSL: `transform`, `when`, `parallelize`, `create_hook`), `step`, `refs` (`Ref`), `retry`;
- foundation: `sqlalchemy` and `memory` (stores), `sealing` (the one seam where values are
  encrypted on their way to a store and opened on their way back), `reading` (runs read
  back), `store` (the protocol and its records), `codec`, `container`, `events`, `outcome`,
  `encryption` (keys and AES-GCM blobs), `clock` (`Clock`, durations and instants checked),
  `state`, `exceptions`, `syncscope`, `emitting`,
  `loop`, `secret` (`Secret`).

Names without a leading underscore in those modules are the package's internal API; the names
re-exported here are the public one.
"""

from flowkit.clock import Clock, SystemClock
from flowkit.container import Registry, Scope
from flowkit.continuations import RecoveryReport, SkippedRun
from flowkit.encryption import Encryption
from flowkit.engine import Engine
from flowkit.events import Event
from flowkit.exceptions import (
    CompensationFailed,
    DefinitionError,
    EncryptionKeyMissing,
    FlowkitError,
    IncompatibleRun,
    InjectedFailure,
    InvalidTime,
    LeaseLost,
    NotSerializable,
    PermanentFailure,
    ProcessKilled,
    RunNotFound,
    SchemaMismatch,
    SecretNotProtected,
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
    UnknownStep,
    UnknownWorkflow,
    WorkflowTimeout,
)
from flowkit.memory import MemoryStore
from flowkit.recording import create_hook, parallelize, transform, when
from flowkit.refs import Ref
from flowkit.retry import RetryPolicy
from flowkit.schedule import Schedule
from flowkit.secret import Secret
from flowkit.sleeping import sleep
from flowkit.state import RunRecord, RunResult, StepError, StepRecord, StepState, TransactionState
from flowkit.step import Step, StepContext, StepResponse, step
from flowkit.timers import TickReport
from flowkit.worker import Queue, WorkReport
from flowkit.workflow import Workflow, WorkflowResponse, workflow

__all__ = [
    "Clock",
    "CompensationFailed",
    "DefinitionError",
    "Encryption",
    "EncryptionKeyMissing",
    "Engine",
    "Event",
    "FlowkitError",
    "IncompatibleRun",
    "InjectedFailure",
    "InvalidTime",
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
    "Schedule",
    "SchemaMismatch",
    "Scope",
    "Secret",
    "SecretNotProtected",
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
    "SystemClock",
    "TickReport",
    "TransactionConflict",
    "TransactionInProgress",
    "TransactionState",
    "UnknownQueue",
    "UnknownStep",
    "UnknownWorkflow",
    "WorkReport",
    "Workflow",
    "WorkflowResponse",
    "WorkflowTimeout",
    "create_hook",
    "parallelize",
    "sleep",
    "step",
    "transform",
    "when",
    "workflow",
]
