"""A workflow's fingerprint: a stable digest of its compiled graph, not of its code.

Two definitions have the same fingerprint when a run checkpointed on one can be continued on
the other: the same workflow name, the same steps (names, kinds, call order, parallel groups,
the nodes each input and `when` depends on, where the response comes from), the same nested
workflows (by their own fingerprints), and the same options that change execution
(`async_completion`, `flowkit.sleep`, retries, `continue_on_permanent_failure`,
`skip_on_permanent_failure`, whether a hook has a handler). Code bodies, transforms,
predicates, compensations, timeouts and retry intervals are left out: fixing a bug inside a
step keeps the fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flowkit.recording import Composite, NodeDef
from flowkit.refs import dependencies_of

__all__ = ["FINGERPRINT_FORMAT", "fingerprint_of"]

FINGERPRINT_FORMAT = 1
"""Bumped if what goes into a fingerprint ever changes (it is part of the digest)."""


def fingerprint_of(workflow: Composite) -> str:
    """The fingerprint of a recorded workflow: 64 lowercase hex digits (SHA-256).

    Args:
        workflow: The workflow (a `flowkit.Workflow`, hooks included).

    Returns:
        The hex digest; equal for definitions whose graphs are equal.
    """
    text = json.dumps(_describe(workflow), separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _describe(workflow: Composite) -> dict[str, Any]:
    nodes = workflow.definition.nodes
    names = [n.name for n in nodes]
    return {
        "format": FINGERPRINT_FORMAT,
        "workflow": workflow.name,
        "nodes": [_node(n, workflow, names) for n in nodes],
        "response": _names(dependencies_of(workflow.definition.result), names),
    }


def _node(node: NodeDef, workflow: Composite, names: list[str]) -> dict[str, Any]:
    step = workflow.hooks.get(node.name) if node.kind == "hook" else node.step
    condition = node.condition
    described: dict[str, Any] = {
        "name": node.name,
        "kind": node.kind,
        "group": node.group,
        "inputs": _names(dependencies_of(node.arg), names),
        "when": None if condition is None else _names(condition.dependencies(), names),
        "when_block": None if condition is None else condition.index,
    }
    if node.kind == "hook":
        described["bound"] = step is not None
    if step is not None:
        described["async_completion"] = step.async_completion
        described["max_retries"] = step.retry.max_retries if step.retry else 0
        described["continue_on_permanent_failure"] = step.continue_on_permanent_failure
        described["skip_on_permanent_failure"] = step.skip_on_permanent_failure
        if step.sleeps:  # only when set, so the fingerprints of existing definitions hold
            described["sleep"] = True
    child = node.child
    if child is not None:
        described["child"] = fingerprint_of(child)
    return described


def _names(indices: frozenset[int], names: list[str]) -> list[str]:
    return sorted(names[i] for i in indices)
