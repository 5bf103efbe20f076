"""Cross-references of a parsed spec: the dependency graph of tasks and resources (acyclic,
the edge that closes a cycle named) and every `$(...)` reference (known, and allowed where it
is: a task's template, its conditions, its forEach; a resource). Also fills ResourceSpec.uses
(the resources a resource references) and the tasks whose results each task and resource read
(`result_refs`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from flowrun import when
from flowrun.model.spec import FlowSpec, ResourceSpec, Setup, TaskSpec, pod_template_strings
from flowrun.references import Context, Reference, ReferenceSyntaxError, RefKind, find_references, substitute
from flowrun.schema.common import MAX_COUNT
from flowrun.schema.nodes import SpecError


def check_references(flow: FlowSpec, namespace: str | None) -> FlowSpec:
    """`flow` with ResourceSpec.uses filled in; raises SpecError on the first bad reference or cycle."""
    return _References(flow, namespace).check()


@dataclass(frozen=True)
class _Node:
    kind: str  # "task" | "resource"
    name: str

    def __str__(self) -> str:
        return self.name if self.kind == "task" else f"resource {self.name}"


class _References:
    """Checks references and the dependency graph of tasks and resources; fills ResourceSpec.uses."""

    def __init__(self, flow: FlowSpec, namespace: str | None) -> None:
        self.flow = flow
        self.namespace = namespace
        self.tasks = {t.name: t for t in flow.tasks}
        self.resources = {r.name: r for r in flow.resources}
        # node -> [(dependency, field that declares the edge)]
        self.edges: dict[_Node, list[tuple[_Node, str]]] = {}

    def check(self) -> FlowSpec:
        for i, task in enumerate(self.flow.tasks):
            node = _Node("task", task.name)
            self.edges[node] = [
                (_Node("task", u), f"spec.tasks[{i}].runAfter[{j}]") for j, u in enumerate(task.run_after)
            ]
            self.edges[node] += [
                (_Node("resource", r), f"spec.tasks[{i}].resources[{j}]") for j, r in enumerate(task.resources)
            ]
        resource_refs: dict[str, list[tuple[str, Reference, str]]] = {}
        for k, resource in enumerate(self.flow.resources):
            node = _Node("resource", resource.name)
            self.edges[node] = [
                (_Node("task", u), f"spec.resources[{k}].runAfter[{j}]") for j, u in enumerate(resource.run_after)
            ]
            resource_refs[resource.name] = refs = list(self._resource_references(resource, f"spec.resources[{k}]"))
            for path, ref, _ in refs:
                if ref.kind in (RefKind.RESOURCE_VALUE, RefKind.SERVICE):
                    self._known_resource(ref, path)
                    if ref.name != resource.name:
                        self.edges[node].append((_Node("resource", ref.name), path))
        self._acyclic()
        tasks = tuple(self._check_task(task, f"spec.tasks[{i}]") for i, task in enumerate(self.flow.tasks))
        resources = tuple(
            self._check_resource(resource, resource_refs[resource.name], f"spec.resources[{k}]")
            for k, resource in enumerate(self.flow.resources)
        )
        return replace(self.flow, tasks=tasks, resources=resources)

    def _acyclic(self) -> None:
        """Raise on the first dependency cycle, naming the edge that closes it. Iterative, so a
        long chain of tasks cannot exhaust the interpreter's recursion limit."""
        state: dict[_Node, str] = {}  # "visiting" | "done"
        for root in self.edges:
            if root in state:
                continue
            state[root] = "visiting"
            path = [root]
            pending = [iter(self.edges[root])]
            while pending:
                step = next(pending[-1], None)
                if step is None:
                    state[path.pop()] = "done"
                    pending.pop()
                    continue
                dep, field = step
                if state.get(dep) == "visiting":
                    cycle = [*path[path.index(dep) :], dep]
                    raise SpecError(field, "dependency cycle: " + " -> ".join(str(n) for n in cycle))
                if dep not in state:
                    state[dep] = "visiting"
                    path.append(dep)
                    pending.append(iter(self.edges[dep]))

    def _upstream(self, names: Sequence[str]) -> set[str]:
        """`names` and every task they (transitively) run after."""
        seen: set[str] = set()
        todo = list(names)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.tasks[name].run_after)
        return seen

    def _references(self, template: Mapping[str, Any], path: str) -> Iterator[tuple[str, Reference]]:
        for sub, text in pod_template_strings(template):
            for field, ref in self._text_references(text, f"{path}.{sub}"):
                if sub.endswith(".image") and ref.kind is not RefKind.PARAM:
                    # The image is checked by the dry run before the run starts, so it can only
                    # depend on what is known then.
                    raise SpecError(field, f"{ref.text}: an image may only use $(params.NAME)")
                yield field, ref

    @staticmethod
    def _text_references(text: str, path: str) -> Iterator[tuple[str, Reference]]:
        try:
            refs = find_references(text)
        except ReferenceSyntaxError as err:
            raise SpecError(path, str(err)) from None
        for ref in refs:
            yield path, ref

    def _resource_references(self, resource: ResourceSpec, path: str) -> Iterator[tuple[str, Reference, str]]:
        """(field, reference, where) with `where` one of setup | value | cleanup."""
        for field, ref in self._setup_references(resource.setup, f"{path}.setup"):
            yield field, ref, "setup"
        if resource.value is not None:
            for field, ref in self._text_references(resource.value, f"{path}.value"):
                yield field, ref, "value"
        if resource.cleanup.job_template is not None:
            for field, ref in self._references(resource.cleanup.job_template, f"{path}.cleanup.job.template"):
                yield field, ref, "cleanup"

    def _setup_references(self, setup: Setup, path: str) -> Iterator[tuple[str, Reference]]:
        """The references of a resource's setup: its job's template, its deployments' templates and replicas."""
        if setup.job is not None:
            yield from self._references(setup.job.template, f"{path}.job.template")
        for i, deployment in enumerate(setup.deployments):
            dpath = f"{path}.deployments[{i}]"
            yield from self._references(deployment.template, f"{dpath}.template")
            if isinstance(deployment.replicas, str):
                yield from self._text_references(deployment.replicas, f"{dpath}.replicas")

    def _known_resource(self, ref: Reference, path: str) -> ResourceSpec:
        if ref.name not in self.resources:
            raise SpecError(path, f"{ref.text} refers to unknown resource {ref.name!r}")
        resource = self.resources[ref.name]
        if ref.kind is RefKind.SERVICE:
            deployment = next((d for d in resource.setup.deployments if d.name == ref.deployment), None)
            if deployment is None:
                raise SpecError(path, f"{ref.text}: resource {ref.name!r} has no deployment {ref.deployment!r}")
            if not deployment.ports:
                raise SpecError(path, f"{ref.text}: deployment {ref.deployment!r} has no ports, so no Service")
        return resource

    def _common(self, ref: Reference, path: str) -> None:
        if ref.kind is RefKind.PARAM and ref.name not in self.flow.param_values:
            raise SpecError(path, f"{ref.text} refers to unknown param {ref.name!r}")
        if ref.kind in _TASK_REFS and ref.name not in self.tasks:
            raise SpecError(path, f"{ref.text} refers to unknown task {ref.name!r}")
        if ref.kind is RefKind.TASK_RESULT and self.tasks[ref.name].for_each is not None:
            plural = f"$(tasks.{ref.name}.results)"
            raise SpecError(path, f"{ref.text}: task {ref.name!r} has forEach: its instances' results are {plural}")
        if ref.kind is RefKind.TASK_RESULTS and self.tasks[ref.name].for_each is None:
            single = f"$(tasks.{ref.name}.result)"
            raise SpecError(path, f"{ref.text}: task {ref.name!r} has no forEach: its result is {single}")

    def _task_references(self, task: TaskSpec, path: str) -> Iterator[tuple[str, Reference, str]]:
        """(field, reference, where) of a task, `where` one of template | when | forEach; each
        condition's CEL is checked on the way."""
        for field, ref in self._references(task.template, f"{path}.template"):
            yield field, ref, "template"
        for j, text in enumerate(task.when):
            field = f"{path}.when[{j}]"
            problem = when.problem(text)
            if problem is not None:
                raise SpecError(field, problem)
            for _, ref in self._text_references(text, field):
                yield field, ref, "when"
        if task.for_each is not None:
            for field, ref in self._text_references(task.for_each, f"{path}.forEach"):
                yield field, ref, "forEach"

    def _check_task(self, task: TaskSpec, path: str) -> TaskSpec:
        upstream = self._upstream(task.run_after)
        results: list[str] = []
        for field, ref, where in self._task_references(task, path):
            self._common(ref, field)
            refused = _refused_in_task(task, ref, where)
            if refused is not None:
                raise SpecError(field, f"{ref.text}: {refused}")
            if ref.kind in _TASK_REFS and ref.name not in upstream:
                raise SpecError(
                    field,
                    f"{ref.text}: task {ref.name!r} is not upstream of {task.name!r} (add it to runAfter), "
                    f"so its {_what(ref)} would not exist yet",
                )
            if ref.kind in (RefKind.TASK_RESULT, RefKind.TASK_RESULTS) and ref.name not in results:
                results.append(ref.name)
            if ref.kind in (RefKind.RESOURCE_VALUE, RefKind.SERVICE):
                self._known_resource(ref, field)
                if ref.name not in task.resources:
                    raise SpecError(
                        field,
                        f"{ref.text}: task {task.name!r} must list resource {ref.name!r} in its resources to use it",
                    )
        return replace(task, result_refs=tuple(results)) if results else task

    def _check_resource(
        self, resource: ResourceSpec, refs: list[tuple[str, Reference, str]], path: str
    ) -> ResourceSpec:
        upstream = self._upstream(resource.run_after)
        uses: list[str] = []
        results: list[str] = []
        for field, ref, where in refs:
            self._common(ref, field)
            if ref.kind in (RefKind.TASK_PHASE, RefKind.ITEM):
                raise SpecError(field, f"{ref.text}: only a task may use it (a resource's runAfter tasks succeeded)")
            if ref.kind in _TASK_REFS and ref.name not in upstream:
                raise SpecError(
                    field,
                    f"{ref.text}: task {ref.name!r} is not in the runAfter of resource {resource.name!r} "
                    "(directly or transitively), so its result would not exist yet",
                )
            if ref.kind in _TASK_REFS and ref.name not in results:
                results.append(ref.name)
            if ref.kind is RefKind.RESOURCE_VALUE and ref.name == resource.name and where != "cleanup":
                raise SpecError(field, f"{ref.text}: a resource's own value is only known in its cleanup")
            if (
                ref.kind in (RefKind.RESOURCE_VALUE, RefKind.SERVICE)
                and ref.name != resource.name
                and ref.name not in uses
            ):
                uses.append(ref.name)
        for i, deployment in enumerate(resource.setup.deployments):
            # Replicas that only reference params are checked now rather than when setup starts.
            if isinstance(deployment.replicas, str) and all(
                r.kind is RefKind.PARAM for r in find_references(deployment.replicas)
            ):
                value = substitute(deployment.replicas, Context(params=self.flow.param_values))
                if not (value.isascii() and value.isdigit()) or int(value) > MAX_COUNT:
                    raise SpecError(
                        f"{path}.setup.deployments[{i}].replicas",
                        f"{deployment.replicas!r} resolves to {value!r}, not an integer from 0 to {MAX_COUNT}",
                    )
        return replace(resource, uses=tuple(uses), result_refs=tuple(results)) if uses or results else resource


_TASK_REFS = (RefKind.TASK_RESULT, RefKind.TASK_RESULTS, RefKind.TASK_PHASE)


def _what(ref: Reference) -> str:
    return {RefKind.TASK_RESULTS: "results", RefKind.TASK_PHASE: "phase"}.get(ref.kind, "result")


def _refused_in_task(task: TaskSpec, ref: Reference, where: str) -> str | None:
    """Why `ref` may not stand where it does in `task` (template, when or forEach); None if it may."""
    if ref.kind is RefKind.ITEM:
        if where == "when":
            return "a condition is checked once for the task, before its instances: it has no item"
        if where == "forEach":
            return "the list cannot use its own items"
        if task.for_each is None:
            return f"task {task.name!r} has no forEach, so no item"
    if ref.kind in (RefKind.RESOURCE_VALUE, RefKind.SERVICE) and where != "template":
        return f"a task's {where} is resolved before its resources are set up"
    if ref.kind is RefKind.TASK_PHASE and where == "forEach":
        return "a phase is not a list"
    return None
