"""Workflows: a composition function recorded once into a graph of steps, and run.

`Workflow` is the user's object: it sits above the definition layer (what it records and
compiles) and the execution layer (`run()` drives its plan in memory). A durable run goes
through an engine handed in as `engine=`, which `Workflow` knows only as `WorkflowEngine`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, Protocol, TypeVar, overload

from flowkit.container import Registry, Scope
from flowkit.exceptions import DefinitionError
from flowkit.fingerprint import fingerprint_of
from flowkit.graph import WorkflowGraph, build_graph
from flowkit.plan import Plan
from flowkit.recording import Definition, current_builder, recording
from flowkit.refs import Ref
from flowkit.runner import run_plan, run_plan_async
from flowkit.state import RunResult
from flowkit.step import Step, StepContext, check_name, check_timeout, step

__all__ = ["Workflow", "WorkflowEngine", "WorkflowResponse", "check_version", "workflow"]

InT = TypeVar("InT")
OutT = TypeVar("OutT")
T = TypeVar("T")


class WorkflowEngine(Protocol):
    """What `Workflow.run(engine=...)` needs of an engine (`flowkit.Engine` is one)."""

    def run(
        self,
        workflow: Workflow[Any, T],
        input: Any,
        *,
        container: Registry | Scope | None = ...,
        transaction_id: str | None = ...,
        throw_on_error: bool = ...,
        event_group_id: str | None = ...,
    ) -> RunResult[T]:
        """Run `workflow` durably."""
        ...

    async def run_async(
        self,
        workflow: Workflow[Any, T],
        input: Any,
        *,
        container: Registry | Scope | None = ...,
        transaction_id: str | None = ...,
        throw_on_error: bool = ...,
        event_group_id: str | None = ...,
    ) -> RunResult[T]:
        """`run`, awaited on the running loop."""
        ...


class WorkflowResponse(Generic[OutT]):
    """What a composition function returns: the run's result (a ref or a structure of refs)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"WorkflowResponse({self.value!r})"


class Workflow(Generic[InT, OutT]):
    """A recorded workflow. Build one with the `workflow` decorator; run it with `run`.

    Attributes:
        name: The workflow's durable name.
        version: Its version (a positive int; an engine may hold several versions of a name).
        timeout: Seconds a run may take (checked between steps), or None.
        definition: The recorded graph.
        hooks: Handlers attached with `with_hooks`, by hook name.
    """

    def __init__(
        self,
        name: str,
        definition: Definition,
        *,
        timeout: float | None = None,
        hooks: Mapping[str, Step[Any, Any]] | None = None,
        fn: Callable[..., Any] | None = None,
        version: int = 1,
    ) -> None:
        self.name = name
        self.version = check_version(version, name)
        self.definition = definition
        self.timeout = timeout
        self.hooks: Mapping[str, Step[Any, Any]] = dict(hooks or {})
        self.fn = fn
        self._plan: Plan | None = None
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """A stable hex digest of the compiled graph (see `flowkit.fingerprint`).

        Step names, kinds, order and edges, nested workflows' fingerprints and the options that
        change execution go into it; code bodies do not, so fixing a bug inside a step keeps it.
        Every durable run records it, and is only ever continued on a definition that has it.
        """
        found = self._fingerprint
        if found is None:
            found = self._fingerprint = fingerprint_of(self)
        return found

    @property
    def plan(self) -> Plan:
        """The compiled run plan (built on first use, then reused by every run)."""
        plan = self._plan
        if plan is None:
            plan = self._plan = Plan(self)
        return plan

    @property
    def hook_names(self) -> tuple[str, ...]:
        """The names of the hooks this workflow declares."""
        return tuple(n.name for n in self.definition.nodes if n.kind == "hook")

    def run(
        self,
        input: InT,
        *,
        container: Registry | Scope | None = None,
        transaction_id: str | None = None,
        throw_on_error: bool = True,
        event_group_id: str | None = None,
        engine: WorkflowEngine | None = None,
    ) -> RunResult[OutT]:
        """Run the workflow to its end and return the outcome.

        Without an engine the run is in memory and nothing is kept. Async steps are driven on a
        private event loop.

        Args:
            input: The workflow's input.
            container: A `Registry` or `Scope`; the run gets its own child scope of it.
            transaction_id: The run's id (default: a fresh uuid4 hex). No `:` allowed.
            throw_on_error: Re-raise the original error when the run is reverted, or raise
                `CompensationFailed` when it failed.
            event_group_id: An id shared by related runs, passed to every step's context.
            engine: Run through this engine (durable when it has a store).

        Returns:
            The `RunResult`.

        Raises:
            Exception: the first step error (with a note naming workflow, step and transaction)
                when the run is reverted and `throw_on_error` is true.
            CompensationFailed: the run failed (a compensation failed too).
            RuntimeError: called inside a running event loop for a workflow with async steps.
        """
        if engine is not None:
            return engine.run(
                self,
                input,
                container=container,
                transaction_id=transaction_id,
                throw_on_error=throw_on_error,
                event_group_id=event_group_id,
            )
        return run_plan(self.plan, input, container, transaction_id, throw_on_error, event_group_id)

    async def run_async(
        self,
        input: InT,
        *,
        container: Registry | Scope | None = None,
        transaction_id: str | None = None,
        throw_on_error: bool = True,
        event_group_id: str | None = None,
        engine: WorkflowEngine | None = None,
    ) -> RunResult[OutT]:
        """Like `run`, awaited on the running loop (sync steps run inline, siblings in threads)."""
        if engine is not None:
            return await engine.run_async(
                self,
                input,
                container=container,
                transaction_id=transaction_id,
                throw_on_error=throw_on_error,
                event_group_id=event_group_id,
            )
        return await run_plan_async(
            self.plan, input, container, transaction_id, throw_on_error, event_group_id
        )

    def with_hooks(
        self, **handlers: Step[Any, Any] | Callable[[Any, StepContext], Any]
    ) -> Workflow[InT, OutT]:
        """A new workflow with handlers attached to hooks; this one is left unchanged.

        Args:
            handlers: By hook name, a `@step` (it may carry a compensation, retry, timeout) or a
                plain function `(input, ctx)`. The handler runs as a step named by the hook.

        Raises:
            DefinitionError: an unknown hook name, a hook that already has a handler, or a
                handler that is not callable with `(input, ctx)`.
        """
        declared = self.hook_names
        attached = dict(self.hooks)
        for name, handler in handlers.items():
            if name not in declared:
                raise DefinitionError(
                    f"workflow {self.name!r} has no hook {name!r}; its hooks: {list(declared)}"
                )
            if name in attached:
                raise DefinitionError(
                    f"workflow {self.name!r}: hook {name!r} already has a handler"
                )
            attached[name] = _as_hook_step(self.name, name, handler)
        return Workflow(
            self.name,
            self.definition,
            timeout=self.timeout,
            hooks=attached,
            fn=self.fn,
            version=self.version,
        )

    def as_step(self, input: Any, name: str | None = None) -> Ref[OutT]:
        """Use this workflow as one step of the workflow being defined.

        Args:
            input: The child's input (a ref or a structure of refs).
            name: The step's name (default: this workflow's name).

        Returns:
            A ref to the child's result. Compensating the step compensates the child's steps.
        """
        step_name = name or self.name
        check_name(step_name, "step")
        builder = current_builder(f"workflow {self.name!r}.as_step()")
        return builder.add(step_name, "child", input, child=self)

    def graph(self) -> WorkflowGraph:
        """The static graph of steps, for display and for `flowkit.testing`."""
        return build_graph(self)

    def to_mermaid(self) -> str:
        """The graph as Mermaid flowchart text."""
        return self.graph().to_mermaid()

    def step_names(self) -> list[str]:
        """Every step name a run of this workflow can record, nested ones as `"child/step"`."""
        return self.graph().step_names()

    def __repr__(self) -> str:
        return f"<Workflow {self.name!r} v{self.version}>"


def check_version(version: object, workflow: str) -> int:
    """`version` checked: a positive int (not a bool).

    Raises:
        DefinitionError: it is not one, naming the workflow.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DefinitionError(
            f"workflow {workflow!r}: version must be a positive int, not {version!r}"
        )
    return version


def _as_hook_step(workflow: str, hook: str, handler: object) -> Step[Any, Any]:
    if isinstance(handler, Step):
        return handler.with_name(hook)
    if not callable(handler):
        raise DefinitionError(f"workflow {workflow!r}: handler of hook {hook!r} is not callable")
    try:
        return step(hook)(handler)
    except DefinitionError as exc:
        raise DefinitionError(f"workflow {workflow!r}: hook {hook!r}: {exc}") from None


@overload
def workflow(name: Callable[[Ref[Any]], Any], /) -> Workflow[Any, Any]: ...
@overload
def workflow(
    name: str | None = None, *, version: int = 1, timeout: float | None = None
) -> Callable[[Callable[[Ref[Any]], Any]], Workflow[Any, Any]]: ...
def workflow(
    name: str | Callable[[Ref[Any]], Any] | None = None,
    *,
    version: int = 1,
    timeout: float | None = None,
) -> Workflow[Any, Any] | Callable[[Callable[[Ref[Any]], Any]], Workflow[Any, Any]]:
    """Record a composition function `fn(input: Ref[I]) -> WorkflowResponse[O]` as a workflow.

    The function runs once, now, with a placeholder input: step calls record the graph.

    Args:
        name: The durable name (default: the function's name). No `:` allowed.
        version: The definition's version, a positive int. An engine may hold several
            versions of one name; new runs start on the highest, and every run is continued
            on the definition it started on (see `Workflow.fingerprint`).
        timeout: Seconds a run may take, checked between steps; async steps are cancelled.

    Raises:
        DefinitionError: any definition mistake in the function, naming workflow and step;
            a version that is not a positive int.
    """
    if callable(name):
        return _define(name, None, None, 1)

    def decorate(fn: Callable[[Ref[Any]], Any]) -> Workflow[Any, Any]:
        return _define(fn, name, timeout, version)

    return decorate


def _define(
    fn: Callable[[Ref[Any]], Any], name: str | None, timeout: float | None, version: int
) -> Workflow[Any, Any]:
    workflow_name = name if name is not None else getattr(fn, "__name__", repr(fn))
    check_name(workflow_name, "workflow")
    check_version(version, workflow_name)
    check_timeout(timeout, f"workflow {workflow_name!r}")
    _check_composition(fn, workflow_name)
    with recording(workflow_name) as builder:
        returned = fn(builder.input_ref())
        value = returned.value if isinstance(returned, WorkflowResponse) else returned
        builder.check_value(value, "the workflow's response")
    definition = Definition(tuple(builder.nodes), builder.conditions, value)
    return Workflow(workflow_name, definition, timeout=timeout, fn=fn, version=version)


def _check_composition(fn: object, name: str) -> None:
    if not callable(fn):
        raise DefinitionError(f"workflow {name!r}: {fn!r} is not callable")
    if inspect.iscoroutinefunction(fn):
        raise DefinitionError(
            f"workflow {name!r}: the composition function must be a plain def (it only records "
            "steps); make the steps async instead"
        )
    try:
        inspect.signature(fn).bind(None)
    except TypeError:
        raise DefinitionError(
            f"workflow {name!r}: the composition function must take one argument (the input)"
        ) from None
