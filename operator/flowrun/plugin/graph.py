"""A FlowRun's DAG as text, Graphviz DOT or Mermaid, with each resource block drawn as a cluster
holding the tasks inside it (a nested block inside the block it uses). Pure: a parsed spec in,
text out.

Edges are `runAfter`: `a -> b` means b runs after a. A task's conditions (`when`) and its list
(`forEach`: the task is drawn doubled, a stack of its instances) and the lock across runs it holds
(`synchronization`; the run's own lock beside the run's name in text) are written with its name. In
DOT and Mermaid each block's cluster also holds a node for the resource itself; a resource's own
`runAfter` points at it, and a task that is also inside a block drawn elsewhere gets a dashed edge
from that block's resource node.
"""

from __future__ import annotations

from collections.abc import Iterator

from rich.text import Text

from flowrun.model import FlowSpec, Lock, ResourceSpec, TaskSpec
from flowrun.plugin.layout import BlockNode, Layout, layout

FORMATS = ("text", "dot", "mermaid")
DEFAULT_TRIGGER = "allSucceeded"


def _task_label(task: TaskSpec) -> str:
    return task.name if task.trigger == DEFAULT_TRIGGER else f"{task.name} ({task.trigger})"


def _fan_out(task: TaskSpec) -> str:
    """`for each in LIST` (and its parallelism), for a forEach task; else empty."""
    if task.for_each is None:
        return ""
    limit = f", {task.parallelism} at a time" if task.parallelism else ""
    return f"for each in {task.for_each}{limit}"


def _holds(lock: Lock | None) -> str:
    """`holds mutex/NAME` (or the semaphore), for a run or task with a lock across runs; else empty."""
    return "" if lock is None else f"holds {lock}"


def _details(task: TaskSpec) -> list[str]:
    """What runs the task, under its name: its list, its lock, its conditions."""
    found = [_fan_out(task)] if task.for_each is not None else []
    found += [_holds(task.synchronization)] if task.synchronization is not None else []
    return found + [f"when {condition}" for condition in task.when]


def _setup_kinds(resource: ResourceSpec) -> str:
    setup = resource.setup
    parts = ["job"] if setup.job is not None else []
    if setup.deployments:
        parts.append("deployments " + ", ".join(d.name for d in setup.deployments))
    if setup.manifests:
        parts.append(f"{len(setup.manifests)} manifest{'s' if len(setup.manifests) > 1 else ''}")
    if resource.cleanup.job_template is not None:
        parts.append("cleanup job")
    return "; ".join(parts)


# --- text ----------------------------------------------------------------------------------


def text(name: str, spec: FlowSpec) -> Text:
    """The blocks as a tree, each task followed by what it runs after."""
    plan = layout(spec)
    out = Text.assemble(("FlowRun ", "bold"), (name, "bold"))
    if spec.synchronization is not None:
        out.append(f"  [{_holds(spec.synchronization)}]", style="magenta")
    out.append("\n")

    def walk(items: list[BlockNode | TaskSpec], prefix: str | None) -> None:
        for i, item in enumerate(items):
            last = i == len(items) - 1
            guide = "" if prefix is None else prefix + ("└── " if last else "├── ")
            inner = "" if prefix is None else prefix + ("    " if last else "│   ")
            out.append(guide, style="dim")
            if isinstance(item, BlockNode):
                resource = item.resource
                out.append("block ", style="dim")
                out.append(resource.name, style="bold cyan")
                out.append(f"  [{_setup_kinds(resource)}]", style="dim")
                if resource.run_after:
                    out.append("  ← " + ", ".join(resource.run_after), style="dim")
                out.append("\n")
                walk(item.items, inner)
            else:
                _task_line(out, item, plan)

    walk(plan.items, None)
    out.rstrip()
    return out


def _task_line(out: Text, task: TaskSpec, plan: Layout) -> None:
    """A task's line of the text graph: its name, list, lock, what it runs after, its conditions."""
    out.append(_task_label(task))
    if task.for_each is not None:
        out.append(f"  [{_fan_out(task)}]", style="magenta")
    if task.synchronization is not None:
        out.append(f"  [{_holds(task.synchronization)}]", style="magenta")
    if task.run_after:
        out.append("  ← " + ", ".join(task.run_after), style="dim")
    if task.name in plan.also_in:
        out.append(f"  (also in {', '.join(plan.also_in[task.name])})", style="dim")
    for condition in task.when:
        out.append(f"  when {condition}", style="yellow")
    out.append("\n")


# --- DOT -----------------------------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot(name: str, spec: FlowSpec) -> str:
    plan = layout(spec)
    lines = [
        f"digraph {_quote(name)} {{",
        "  rankdir=LR;",
        "  node [shape=box, style=rounded];",
    ]

    def walk(items: list[BlockNode | TaskSpec], indent: str) -> None:
        for item in items:
            if isinstance(item, BlockNode):
                resource = item.resource
                lines.append(f"{indent}subgraph {_quote('cluster_' + resource.name)} {{")
                lines.append(f"{indent}  label={_quote('block ' + resource.name)};")
                lines.append(f"{indent}  style=dashed;")
                label = f"{resource.name}\n{_setup_kinds(resource)}"
                lines.append(
                    f"{indent}  {_quote('resource:' + resource.name)} [label={_quote(label)}, shape=cylinder];"
                )
                walk(item.items, indent + "  ")
                lines.append(f"{indent}}}")
            else:
                label = "\n".join([_task_label(item), *_details(item)])
                # A forEach task is drawn as a stack of boxes (one per instance).
                shape = ", peripheries=2" if item.for_each is not None else ""
                lines.append(f"{indent}{_quote('task:' + item.name)} [label={_quote(label)}{shape}];")

    walk(plan.items, "  ")
    for source, target, dashed in _edges(spec, plan):
        style = " [style=dashed]" if dashed else ""
        lines.append(f"  {_quote(source)} -> {_quote(target)}{style};")
    lines.append("}")
    return "\n".join(lines)


def _edges(spec: FlowSpec, plan: Layout) -> Iterator[tuple[str, str, bool]]:
    """(from, to, dashed) between node ids `task:NAME` and `resource:NAME`."""
    for resource in spec.resources:
        for upstream in resource.run_after:
            yield f"task:{upstream}", f"resource:{resource.name}", False
    for task in spec.tasks:
        for upstream in task.run_after:
            yield f"task:{upstream}", f"task:{task.name}", False
        for other in plan.also_in.get(task.name, ()):
            yield f"resource:{other}", f"task:{task.name}", True


# --- Mermaid -------------------------------------------------------------------------------


def _mermaid_id(node: str) -> str:
    """`task:load-data` -> `t_load_data`: task and resource names are DNS-1123 labels (no `_`),
    so this cannot collide."""
    kind, name = node.split(":", 1)
    return f"{kind[0]}_{name.replace('-', '_')}"


def _mermaid_label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def mermaid(name: str, spec: FlowSpec) -> str:
    plan = layout(spec)
    lines = ["flowchart LR"]

    def walk(items: list[BlockNode | TaskSpec], indent: str) -> None:
        for item in items:
            if isinstance(item, BlockNode):
                resource = item.resource
                block = "b_" + resource.name.replace("-", "_")
                lines.append(f"{indent}subgraph {block}[{_mermaid_label('block ' + resource.name)}]")
                node = _mermaid_id("resource:" + resource.name)
                label = f"{resource.name}: {_setup_kinds(resource)}"
                lines.append(f"{indent}  {node}[({_mermaid_label(label)})]")
                walk(item.items, indent + "  ")
                lines.append(f"{indent}end")
            else:
                label = _mermaid_label("<br/>".join([_task_label(item), *_details(item)]))
                node = _mermaid_id("task:" + item.name)
                # A forEach task is drawn as Mermaid's subroutine shape (a box with doubled sides).
                lines.append(f"{indent}{node}[[{label}]]" if item.for_each is not None else f"{indent}{node}[{label}]")

    walk(plan.items, "  ")
    for source, target, dashed in _edges(spec, plan):
        arrow = "-.->" if dashed else "-->"
        lines.append(f"  {_mermaid_id(source)} {arrow} {_mermaid_id(target)}")
    return "\n".join(lines)
