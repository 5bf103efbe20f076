"""Where each task and block is drawn: blocks as containers of the tasks inside them, a block
nested in the block it uses. Shared by the status tree and the graph.

A task inside several blocks is drawn in the innermost one (the most deeply nested; the first
listed on a tie); the others are named beside it (`also_in`). A block that uses several blocks is
nested in the deepest of them. Items are in dependency order, a block where its first task is.
"""

from __future__ import annotations

from collections.abc import Callable
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
    nesting = _Nesting(spec)
    nodes = {r.name: BlockNode(r) for r in spec.resources}
    top: list[BlockNode | TaskSpec] = []

    def items_of(block: str | None) -> list[BlockNode | TaskSpec]:
        return nodes[block].items if block is not None else top

    order = spec.task_order()
    tasks = _place_tasks(order, nesting)
    for task in order:
        items_of(tasks.home[task.name]).append(task)
    for resource in spec.resources:
        items_of(nesting.parent[resource.name]).append(nodes[resource.name])
    _arrange(top, _position_in(order, tasks.first_task, len(spec.tasks)))
    return Layout(top, tasks.also_in, nesting.parent, tasks.home)


class _Nesting:
    """How deeply each block is nested (through `uses`) and the block each is drawn in."""

    def __init__(self, spec: FlowSpec) -> None:
        self._resources = {r.name: r for r in spec.resources}
        self._depth: dict[str, int] = {}
        self.parent = {r.name: self.deepest(r.uses) for r in spec.resources}

    def depth_of(self, name: str) -> int:
        # `uses` is acyclic (parse_spec refuses cycles), so this ends.
        if name not in self._depth:
            used = self._resources[name].uses
            self._depth[name] = 1 + max((self.depth_of(u) for u in used), default=-1)
        return self._depth[name]

    def deepest(self, names: tuple[str, ...]) -> str | None:
        """The most deeply nested of `names`, the first listed on a tie (None if there is none)."""
        best: str | None = None
        for name in names:
            if best is None or self.depth_of(name) > self.depth_of(best):
                best = name
        return best

    def enclosing(self, block: str | None) -> set[str]:
        """`block` and every block it is drawn in."""
        chain: set[str] = set()
        while block is not None:
            chain.add(block)
            block = self.parent[block]
        return chain


@dataclass(frozen=True)
class _TaskPlaces:
    home: dict[str, str | None]  # task -> the block it is drawn in
    also_in: dict[str, tuple[str, ...]]  # task -> blocks it is also inside, not drawn around it
    first_task: dict[str, int]  # block -> position of its first task in dependency order


def _place_tasks(order: list[TaskSpec], nesting: _Nesting) -> _TaskPlaces:
    """Where each task of `order` (dependency order) is drawn, and where each block's first task is."""
    home: dict[str, str | None] = {}
    also_in: dict[str, tuple[str, ...]] = {}
    first_task: dict[str, int] = {}
    for index, task in enumerate(order):
        block = nesting.deepest(task.resources)
        home[task.name] = block
        enclosing = nesting.enclosing(block)
        others = tuple(r for r in task.resources if r not in enclosing)
        if others:
            also_in[task.name] = others
        for name in enclosing:
            first_task.setdefault(name, index)
    return _TaskPlaces(home, also_in, first_task)


def _position_in(
    order: list[TaskSpec], first_task: dict[str, int], task_count: int
) -> Callable[[BlockNode | TaskSpec], int]:
    """An item's position in dependency order: a block's is its first task's (after every task if it has none)."""
    index_of = {t.name: i for i, t in enumerate(order)}

    def position(item: BlockNode | TaskSpec) -> int:
        if isinstance(item, BlockNode):
            return first_task.get(item.resource.name, task_count)
        return index_of[item.name]

    return position


def _arrange(items: list[BlockNode | TaskSpec], position: Callable[[BlockNode | TaskSpec], int]) -> None:
    # A block goes right before its first task; sorted() is stable, so ties keep spec order.
    items.sort(key=lambda item: (position(item), 0 if isinstance(item, BlockNode) else 1))
    for item in items:
        if isinstance(item, BlockNode):
            _arrange(item.items, position)
