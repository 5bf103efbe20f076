"""Where each task and block is drawn: blocks as containers of the tasks inside them, a block
nested in the block it uses. Shared by the status tree and the graph.

A task inside several blocks is drawn in the innermost one (the most deeply nested; the first
listed on a tie); the others are named beside it (`also_in`). A block that uses several blocks is
nested in the deepest of them. Items are in dependency order, a block where its first task is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowrun.model import FlowSpec, ResourceSpec, TaskSpec


@dataclass
class BlockNode:
    resource: ResourceSpec
    items: list[BlockNode | TaskSpec] = field(default_factory=list)


@dataclass(frozen=True)
class Layout:
    items: list[BlockNode | TaskSpec]  # the top level
    also_in: dict[str, tuple[str, ...]]  # task -> blocks it is also inside, not drawn around it
    parent: dict[str, str | None]  # block -> the block it is drawn in
    home: dict[str, str | None]  # task -> the block it is drawn in


def layout(spec: FlowSpec) -> Layout:
    resources = {r.name: r for r in spec.resources}
    depth: dict[str, int] = {}

    def depth_of(name: str) -> int:
        # `uses` is acyclic (parse_spec refuses cycles), so this ends.
        if name not in depth:
            used = resources[name].uses
            depth[name] = 1 + max((depth_of(u) for u in used), default=-1)
        return depth[name]

    def deepest(names: tuple[str, ...]) -> str | None:
        best: str | None = None
        for name in names:
            if best is None or depth_of(name) > depth_of(best):
                best = name
        return best

    parent = {r.name: deepest(r.uses) for r in spec.resources}

    def enclosing(block: str | None) -> set[str]:
        chain: set[str] = set()
        while block is not None:
            chain.add(block)
            block = parent[block]
        return chain

    nodes = {r.name: BlockNode(r) for r in spec.resources}
    top: list[BlockNode | TaskSpec] = []
    home: dict[str, str | None] = {}
    also_in: dict[str, tuple[str, ...]] = {}
    position: dict[str, int] = {}  # block -> position of its first task in dependency order
    order = spec.task_order()
    index_of = {t.name: i for i, t in enumerate(order)}
    for index, task in enumerate(order):
        block = deepest(task.resources)
        home[task.name] = block
        others = tuple(r for r in task.resources if r not in enclosing(block))
        if others:
            also_in[task.name] = others
        (nodes[block].items if block is not None else top).append(task)
        for name in enclosing(block):
            position.setdefault(name, index)
    for resource in spec.resources:
        container = parent[resource.name]
        (nodes[container].items if container is not None else top).append(nodes[resource.name])

    def key(item: BlockNode | TaskSpec) -> int:
        if isinstance(item, BlockNode):
            return position.get(item.resource.name, len(spec.tasks))
        return index_of[item.name]

    def arrange(items: list[BlockNode | TaskSpec]) -> None:
        # A block goes right before its first task; sorted() is stable, so ties keep spec order.
        items.sort(key=lambda item: (key(item), 0 if isinstance(item, BlockNode) else 1))
        for item in items:
            if isinstance(item, BlockNode):
                arrange(item.items)

    arrange(top)
    return Layout(top, also_in, parent, home)
