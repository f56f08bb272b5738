"""The static graph of a workflow, and its Mermaid and Graphviz renderings."""

from __future__ import annotations

import zlib
from typing import Literal

from attrs import frozen

from flowkit.recording import Composite, NodeDef

__all__ = ["GraphNode", "WorkflowGraph", "build_graph"]


@frozen
class GraphNode:
    """One node of a workflow's static graph.

    Attributes:
        name: The step's name (the hook's name for hooks).
        kind: `"step"`, `"hook"` or `"child"` (a nested workflow).
        group: The parallel group it belongs to, or None.
        conditional: True when it runs only under a `when`.
        compensated: True when it has a compensation (for a child: when some child step has).
        is_async: True for an `async def` step.
        async_completion: True when it waits for a signal.
        max_retries: Retries its policy allows.
        bound: For hooks, True when a handler is attached.
        children: For nested workflows, the child's own nodes.
    """

    name: str
    kind: Literal["step", "hook", "child"]
    group: int | None = None
    conditional: bool = False
    compensated: bool = False
    is_async: bool = False
    async_completion: bool = False
    max_retries: int = 0
    bound: bool = True
    children: tuple[GraphNode, ...] = ()


@frozen
class WorkflowGraph:
    """A workflow's nodes in call order, with parallel groups and conditions marked."""

    name: str
    nodes: tuple[GraphNode, ...]

    def step_names(self, prefix: str = "") -> list[str]:
        """Every step a run can record, nested ones as `"child/step"` (hooks without handler
        left out)."""
        names: list[str] = []
        for node in self.nodes:
            if node.kind == "hook" and not node.bound:
                continue
            names.append(prefix + node.name)
            if node.children:
                child = WorkflowGraph(node.name, node.children)
                names.extend(child.step_names(f"{prefix}{node.name}/"))
        return names

    def to_mermaid(self) -> str:
        """Render as a Mermaid `flowchart TD` (paste into GitHub markdown or mermaid.live)."""
        lines = ["flowchart TD", '    start(["start"])']
        last = _render(self.nodes, lines, [("start", False)], "", "mermaid")
        lines.append('    finish(["end"])')
        lines.extend(_edge(src, "finish", False, "mermaid", skip=skip) for src, skip in last)
        return "\n".join(lines) + "\n"

    def to_dot(self) -> str:
        """Render as Graphviz `digraph` text."""
        lines = [f'digraph "{self.name}" {{', "    rankdir=TB;", "    start [shape=oval];"]
        last = _render(self.nodes, lines, [("start", False)], "", "dot")
        lines.append('    finish [shape=oval, label="end"];')
        lines.extend(_edge(src, "finish", False, "dot", skip=skip) for src, skip in last)
        lines.append("}")
        return "\n".join(lines) + "\n"


def _stages(nodes: tuple[GraphNode, ...]) -> list[list[GraphNode]]:
    stages: list[list[GraphNode]] = []
    for node in nodes:
        if node.group is not None and stages and stages[-1][0].group == node.group:
            stages[-1].append(node)
        else:
            stages.append([node])
    return stages


Source = tuple[str, bool]  # a node id, and whether reaching on from it skips a `when` branch


def _render(
    nodes: tuple[GraphNode, ...], lines: list[str], sources: list[Source], prefix: str, fmt: str
) -> list[Source]:
    for stage in _stages(nodes):
        ends: list[Source] = []
        for node in stage:
            node_id = _node_id(prefix + node.name)
            lines.append(_declare(node_id, node, fmt))
            for src, skip in sources:
                lines.append(_edge(src, node_id, node.conditional, fmt, skip=skip))
            if node.children:
                child_prefix = f"{prefix}{node.name}/"
                ends.extend(_render(node.children, lines, [(node_id, False)], child_prefix, fmt))
            else:
                ends.append((node_id, False))
        if all(node.conditional for node in stage):  # when the branch is skipped, flow goes on
            ends.extend((src, True) for src, _ in sources)
        sources = ends
    return sources


def _node_id(name: str) -> str:
    # readable and stable across processes (str hashes are not)
    safe = "".join(c if c.isalnum() else "_" for c in name)
    return f"n_{safe}_{zlib.crc32(name.encode()) % 4096:03x}"


def _label(node: GraphNode) -> str:
    marks = []
    if node.kind == "hook":
        marks.append("hook" if node.bound else "hook, no handler")
    if node.kind == "child":
        marks.append("workflow")
    if node.is_async:
        marks.append("async")
    if node.async_completion:
        marks.append("waits for a signal")
    if node.max_retries:
        marks.append(f"retries {node.max_retries}")
    if node.compensated:
        marks.append("compensated")
    return node.name + (f" ({', '.join(marks)})" if marks else "")


def _declare(node_id: str, node: GraphNode, fmt: str) -> str:
    label = _label(node).replace('"', "'")
    if fmt == "dot":
        shape = {"hook": "hexagon", "child": "box3d"}.get(node.kind, "box")
        return f'    {node_id} [shape={shape}, label="{label}"];'
    open_, close = {"hook": ("{{", "}}"), "child": ("[[", "]]")}.get(node.kind, ("[", "]"))
    return f'    {node_id}{open_}"{label}"{close}'


def _edge(src: str, dst: str, conditional: bool, fmt: str, *, skip: bool = False) -> str:
    label = "skipped" if skip else "when" if conditional else ""
    if fmt == "dot":
        style = f' [style=dashed, label="{label}"]' if label else ""
        return f"    {src} -> {dst}{style};"
    return f"    {src} -.->|{label}| {dst}" if label else f"    {src} --> {dst}"


def build_graph(workflow: Composite) -> WorkflowGraph:
    """The static graph of `workflow` (hooks show whether a handler is attached)."""
    return WorkflowGraph(
        workflow.name, tuple(_graph_node(n, workflow) for n in workflow.definition.nodes)
    )


def _graph_node(node: NodeDef, workflow: Composite) -> GraphNode:
    step = workflow.hooks.get(node.name) if node.kind == "hook" else node.step
    children = build_graph(node.child).nodes if node.child is not None else ()
    return GraphNode(
        name=node.name,
        kind=node.kind,
        group=node.group,
        conditional=node.condition is not None,
        compensated=(step is not None and step.compensate_fn is not None)
        or any(c.compensated for c in children),
        is_async=step is not None and step.is_async,
        async_completion=step is not None and step.async_completion,
        max_retries=step.retry.max_retries if step is not None and step.retry else 0,
        bound=node.kind != "hook" or step is not None,
        children=children,
    )
