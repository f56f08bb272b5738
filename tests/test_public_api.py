"""The public surface of `flowkit`: `__all__` pinned, every public name documented."""

from __future__ import annotations

import inspect

import pytest

import flowkit

EXPECTED = [
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

# the public names spec sections 1-5 use
SPEC_NAMES = {
    "CompensationFailed",
    "DefinitionError",
    "Engine",
    "PermanentFailure",
    "Ref",
    "Registry",
    "RetryPolicy",
    "RunResult",
    "ServiceNotFound",
    "StepContext",
    "StepError",
    "StepResponse",
    "StepState",
    "StepTimeout",
    "TransactionState",
    "WorkflowResponse",
    "create_hook",
    "parallelize",
    "step",
    "transform",
    "when",
    "workflow",
}


def test_all_is_exactly_the_pinned_list() -> None:
    """`flowkit.__all__` is exactly the pinned list: adding or removing a name is deliberate."""
    assert flowkit.__all__ == EXPECTED


def test_all_is_sorted() -> None:
    """`flowkit.__all__` is kept sorted."""
    assert flowkit.__all__ == sorted(flowkit.__all__)


def test_every_exported_name_exists() -> None:
    """Every name in `__all__` is an attribute of the package."""
    missing = [name for name in flowkit.__all__ if not hasattr(flowkit, name)]
    assert missing == []


def test_spec_names_are_exported() -> None:
    """Every public name the spec's sections 1-5 use is exported."""
    assert set(flowkit.__all__) >= SPEC_NAMES


def test_star_import_gives_exactly_all() -> None:
    """`from flowkit import *` binds exactly the names of `__all__`."""
    namespace: dict[str, object] = {}
    exec("from flowkit import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_public_name_has_its_own_docstring(name: str) -> None:
    """Every public name has a docstring of its own (not one inherited from a base class)."""
    obj = getattr(flowkit, name)
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    assert doc, f"flowkit.{name} has no docstring"
    assert doc.strip(), f"flowkit.{name} has an empty docstring"


def test_package_has_a_docstring() -> None:
    """The package itself is documented."""
    assert inspect.getdoc(flowkit)
