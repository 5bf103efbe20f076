"""Parse and validate a FlowRun `spec` into frozen dataclasses (DESIGN sections 2 and 6).

`parse_spec` checks everything the engine relies on, including what the CRD schema may have
missed, so the engine never meets input it cannot handle. The first problem found is raised as a
`SpecError` naming the offending field, e.g. `spec.tasks[2].runAfter[0]: unknown task 'lod'`.
Pod templates and manifests are kept as plain dicts: only the parts the operator reads or rewrites
are checked here; the API server's dry run judges the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from flowrun.references import (
    DNS1123_LABEL,
    PARAM_NAME,
    Context,
    Reference,
    ReferenceSyntaxError,
    RefKind,
    find_references,
    substitute,
)

TRIGGERS = ("allSucceeded", "allDone", "anyFailed")
PROTOCOLS = ("TCP", "UDP", "SCTP")
DEFAULT_SETUP_TIMEOUT = 600
DEFAULT_CLEANUP_TIMEOUT = 600
DEFAULT_CLEANUP_RETRIES = 3
DEFAULT_BACKOFF_SECONDS = 10
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")


class SpecError(ValueError):
    """An invalid spec: `field` is the path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RunIdentity:
    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class Param:
    name: str
    value: str


@dataclass(frozen=True)
class Retries:
    limit: int = 0
    backoff_seconds: int = DEFAULT_BACKOFF_SECONDS


@dataclass(frozen=True)
class TaskSpec:
    name: str
    template: dict[str, Any]
    run_after: tuple[str, ...] = ()
    trigger: str = "allSucceeded"
    resources: tuple[str, ...] = ()
    retries: Retries = Retries()
    active_deadline_seconds: int | None = None


@dataclass(frozen=True)
class Port:
    name: str
    port: int
    target_port: int | str | None = None
    protocol: str = "TCP"


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    template: dict[str, Any]
    # An int, or a string holding references that must resolve to a non-negative integer.
    replicas: int | str = 1
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True)
class SetupJob:
    template: dict[str, Any]
    backoff_limit: int = 0


@dataclass(frozen=True)
class Setup:
    job: SetupJob | None = None
    deployments: tuple[DeploymentSpec, ...] = ()
    manifests: tuple[dict[str, Any], ...] = ()
    timeout_seconds: int = DEFAULT_SETUP_TIMEOUT


@dataclass(frozen=True)
class Cleanup:
    job_template: dict[str, Any] | None = None
    timeout_seconds: int = DEFAULT_CLEANUP_TIMEOUT
    retries: int = DEFAULT_CLEANUP_RETRIES


@dataclass(frozen=True)
class ResourceSpec:
    name: str
    setup: Setup
    run_after: tuple[str, ...] = ()
    value: str | None = None
    cleanup: Cleanup = Cleanup()
    # Other resources this one references: they are Ready before its setup starts and are
    # cleaned up only after it.
    uses: tuple[str, ...] = ()


@dataclass(frozen=True)
class FlowSpec:
    tasks: tuple[TaskSpec, ...]
    params: tuple[Param, ...] = ()
    resources: tuple[ResourceSpec, ...] = ()
    service_account_name: str | None = None
    parallelism: int | None = None
    active_deadline_seconds: int | None = None
    ttl_seconds_after_finished: int | None = None
    cancel: bool = False

    def task(self, name: str) -> TaskSpec:
        return next(t for t in self.tasks if t.name == name)

    def resource(self, name: str) -> ResourceSpec:
        return next(r for r in self.resources if r.name == name)

    @property
    def param_values(self) -> dict[str, str]:
        return {p.name: p.value for p in self.params}

    def task_order(self) -> list[TaskSpec]:
        """Tasks in dependency order, spec order among independent ones."""
        done: set[str] = set()
        order: list[TaskSpec] = []
        while len(order) < len(self.tasks):
            for task in self.tasks:
                if task.name not in done and all(u in done for u in task.run_after):
                    done.add(task.name)
                    order.append(task)
                    break
        return order

    def users_of(self, resource: str) -> list[TaskSpec]:
        return [t for t in self.tasks if resource in t.resources]


def main_container_name(template: Mapping[str, Any]) -> str:
    """The container whose termination message is the result: `main`, or the only one."""
    containers = template["spec"]["containers"]
    names = [c["name"] for c in containers]
    return "main" if "main" in names else names[0]


def pod_template_strings(template: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(path inside the template, text) of every field where references are substituted."""
    spec = template.get("spec") or {}
    for group in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(group) or []):
            base = f"spec.{group}[{i}]"
            for key in ("command", "args"):
                for j, text in enumerate(container.get(key) or []):
                    yield f"{base}.{key}[{j}]", text
            for j, env in enumerate(container.get("env") or []):
                if "value" in env:
                    yield f"{base}.env[{j}].value", env["value"]


# ---------------------------------------------------------------------------------------------
# Type checks: each returns the value or raises SpecError naming `path`.


def _type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else "null"
    )


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(path, f"must be an object, not {_type_name(value)}")
    return value


def _list(value: object, path: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise SpecError(path, f"must be a list, not {_type_name(value)}")
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise SpecError(path, f"must be a string, not {_type_name(value)}")
    return value


def _int(value: object, path: str, minimum: int) -> int:
    # bool is an int in Python, but `true` is never a valid count.
    if not isinstance(value, int) or isinstance(value, bool):
        raise SpecError(path, f"must be an integer, not {_type_name(value)}")
    if value < minimum:
        raise SpecError(path, f"must be >= {minimum}, not {value}")
    return value


def _optional_int(obj: Mapping[str, Any], key: str, path: str, minimum: int) -> int | None:
    return None if obj.get(key) is None else _int(obj[key], f"{path}.{key}", minimum)


def _name(value: object, path: str) -> str:
    name = _string(value, path)
    if not DNS1123_LABEL.fullmatch(name):
        raise SpecError(path, f"{name!r} is not a DNS-1123 label (lower-case letters, digits, '-', at most 63)")
    return name


def _known_keys(obj: Mapping[str, Any], path: str, allowed: Sequence[str]) -> None:
    for key in obj:
        if key not in allowed:
            raise SpecError(f"{path}.{key}", f"unknown field (allowed: {', '.join(allowed)})")


def _string_list(value: object, path: str) -> tuple[str, ...]:
    return tuple(_string(item, f"{path}[{i}]") for i, item in enumerate(_list(value, path)))


def _string_map(value: object, path: str) -> None:
    for key, item in _mapping(value, path).items():
        _string(item, f"{path}.{key}")


def _pod_template(value: object, path: str, *, needs_main: bool) -> dict[str, Any]:
    template = _mapping(value, path)
    metadata = _mapping(template.get("metadata") or {}, f"{path}.metadata")
    for key in ("labels", "annotations"):
        _string_map(metadata.get(key) or {}, f"{path}.metadata.{key}")
    spec = _mapping(template.get("spec"), f"{path}.spec")
    containers = _list(spec.get("containers"), f"{path}.spec.containers")
    if not containers:
        raise SpecError(f"{path}.spec.containers", "must list at least one container")
    for group in ("initContainers", "containers"):
        for i, container in enumerate(_list(spec.get(group) or [], f"{path}.spec.{group}")):
            cpath = f"{path}.spec.{group}[{i}]"
            container = _mapping(container, cpath)
            _string(container.get("name"), f"{cpath}.name")
            for key in ("command", "args"):
                _string_list(container.get(key) or [], f"{cpath}.{key}")
            for j, env in enumerate(_list(container.get("env") or [], f"{cpath}.env")):
                env = _mapping(env, f"{cpath}.env[{j}]")
                _string(env.get("name"), f"{cpath}.env[{j}].name")
                if "value" in env:
                    _string(env["value"], f"{cpath}.env[{j}].value")
    names = [c["name"] for c in containers]
    if needs_main and len(names) > 1 and "main" not in names:
        raise SpecError(
            f"{path}.spec.containers",
            "with several containers, one must be named 'main' (its termination message is the result)",
        )
    return dict(template)


# ---------------------------------------------------------------------------------------------


def parse_spec(spec: object, namespace: str | None = None) -> FlowSpec:
    """Parse and validate a FlowRun spec; raises SpecError naming the first offending field.

    `namespace` is the FlowRun's namespace: when given, manifests may not name another one.
    """
    spec = _mapping(spec, "spec")
    _known_keys(
        spec,
        "spec",
        (
            "params",
            "serviceAccountName",
            "parallelism",
            "activeDeadlineSeconds",
            "ttlSecondsAfterFinished",
            "cancel",
            "resources",
            "tasks",
        ),
    )
    params = _params(spec.get("params") or [])
    raw_tasks = _list(spec.get("tasks"), "spec.tasks")
    if not raw_tasks:
        raise SpecError("spec.tasks", "must list at least one task")
    raw_resources = _list(spec.get("resources") or [], "spec.resources")
    task_names = _unique_names(raw_tasks, "spec.tasks", "task")
    resource_names = _unique_names(raw_resources, "spec.resources", "resource")

    tasks = tuple(_task(t, f"spec.tasks[{i}]", task_names, resource_names) for i, t in enumerate(raw_tasks))
    resources = tuple(_resource(r, f"spec.resources[{i}]", task_names, namespace) for i, r in enumerate(raw_resources))
    _unique_children(resources)
    service_account = spec.get("serviceAccountName")
    flow = FlowSpec(
        tasks=tasks,
        params=params,
        resources=resources,
        service_account_name=None if service_account is None else _string(service_account, "spec.serviceAccountName"),
        parallelism=_optional_int(spec, "parallelism", "spec", 1),
        active_deadline_seconds=_optional_int(spec, "activeDeadlineSeconds", "spec", 1),
        ttl_seconds_after_finished=_optional_int(spec, "ttlSecondsAfterFinished", "spec", 0),
        cancel=_cancel(spec.get("cancel", False)),
    )
    return _References(flow, namespace).check()


def _cancel(value: object) -> bool:
    if not isinstance(value, bool):
        raise SpecError("spec.cancel", f"must be a boolean, not {_type_name(value)}")
    return value


def _params(raw: object) -> tuple[Param, ...]:
    params: list[Param] = []
    for i, item in enumerate(_list(raw, "spec.params")):
        path = f"spec.params[{i}]"
        item = _mapping(item, path)
        _known_keys(item, path, ("name", "value"))
        name = _string(item.get("name"), f"{path}.name")
        if not PARAM_NAME.fullmatch(name):
            raise SpecError(
                f"{path}.name",
                f"{name!r} is not a valid param name (a letter or '_', then letters, digits, '_' or '-')",
            )
        if any(p.name == name for p in params):
            raise SpecError(f"{path}.name", f"duplicate param name {name!r}")
        params.append(Param(name, _string(item.get("value"), f"{path}.value")))
    return tuple(params)


def _unique_names(items: Sequence[Any], path: str, what: str) -> list[str]:
    names: list[str] = []
    for i, item in enumerate(items):
        name = _name(_mapping(item, f"{path}[{i}]").get("name"), f"{path}[{i}].name")
        if name in names:
            raise SpecError(f"{path}[{i}].name", f"duplicate {what} name {name!r}")
        names.append(name)
    return names


def _name_refs(raw: object, path: str, known: list[str], what: str, self_name: str | None = None) -> tuple[str, ...]:
    names = _string_list(raw, path)
    for j, name in enumerate(names):
        if name not in known:
            raise SpecError(f"{path}[{j}]", f"unknown {what} {name!r}")
        if name == self_name:
            raise SpecError(f"{path}[{j}]", f"{what} {name!r} cannot refer to itself")
        if name in names[:j]:
            raise SpecError(f"{path}[{j}]", f"{what} {name!r} is listed twice")
    return names


def _task(raw: Mapping[str, Any], path: str, tasks: list[str], resources: list[str]) -> TaskSpec:
    _known_keys(raw, path, ("name", "runAfter", "trigger", "resources", "template", "retries", "activeDeadlineSeconds"))
    name = raw["name"]
    trigger = _string(raw.get("trigger", "allSucceeded"), f"{path}.trigger")
    if trigger not in TRIGGERS:
        raise SpecError(f"{path}.trigger", f"unknown trigger {trigger!r} (one of {', '.join(TRIGGERS)})")
    run_after = _name_refs(raw.get("runAfter") or [], f"{path}.runAfter", tasks, "task", name)
    retries = _mapping(raw.get("retries") or {}, f"{path}.retries")
    _known_keys(retries, f"{path}.retries", ("limit", "backoffSeconds"))
    return TaskSpec(
        name=name,
        template=_pod_template(raw.get("template"), f"{path}.template", needs_main=True),
        run_after=run_after,
        trigger=trigger,
        resources=_name_refs(raw.get("resources") or [], f"{path}.resources", resources, "resource"),
        retries=Retries(
            limit=_int(retries.get("limit", 0), f"{path}.retries.limit", 0),
            backoff_seconds=_int(
                retries.get("backoffSeconds", DEFAULT_BACKOFF_SECONDS), f"{path}.retries.backoffSeconds", 0
            ),
        ),
        active_deadline_seconds=_optional_int(raw, "activeDeadlineSeconds", path, 1),
    )


def _resource(raw: Mapping[str, Any], path: str, tasks: list[str], namespace: str | None) -> ResourceSpec:
    _known_keys(raw, path, ("name", "runAfter", "setup", "value", "cleanup"))
    value = raw.get("value")
    return ResourceSpec(
        name=raw["name"],
        run_after=_name_refs(raw.get("runAfter") or [], f"{path}.runAfter", tasks, "task"),
        setup=_setup(raw.get("setup"), f"{path}.setup", namespace),
        value=None if value is None else _string(value, f"{path}.value"),
        cleanup=_cleanup(raw.get("cleanup") or {}, f"{path}.cleanup"),
    )


def _setup(raw: object, path: str, namespace: str | None) -> Setup:
    raw = _mapping(raw, path)
    _known_keys(raw, path, ("job", "deployments", "manifests", "timeoutSeconds"))
    job = None
    if raw.get("job") is not None:
        job_raw = _mapping(raw["job"], f"{path}.job")
        _known_keys(job_raw, f"{path}.job", ("template", "backoffLimit"))
        job = SetupJob(
            template=_pod_template(job_raw.get("template"), f"{path}.job.template", needs_main=True),
            backoff_limit=_int(job_raw.get("backoffLimit", 0), f"{path}.job.backoffLimit", 0),
        )
    deployments = _deployments(raw.get("deployments") or [], f"{path}.deployments")
    manifests = tuple(
        _manifest(m, f"{path}.manifests[{i}]", namespace)
        for i, m in enumerate(_list(raw.get("manifests") or [], f"{path}.manifests"))
    )
    if job is None and not deployments and not manifests:
        raise SpecError(path, "must have at least one of job, deployments, manifests")
    return Setup(
        job=job,
        deployments=deployments,
        manifests=manifests,
        timeout_seconds=_int(raw.get("timeoutSeconds", DEFAULT_SETUP_TIMEOUT), f"{path}.timeoutSeconds", 1),
    )


def _deployments(raw: object, path: str) -> tuple[DeploymentSpec, ...]:
    items = _list(raw, path)
    names = _unique_names(items, path, "deployment")
    deployments: list[DeploymentSpec] = []
    for i, item in enumerate(items):
        dpath = f"{path}[{i}]"
        _known_keys(item, dpath, ("name", "replicas", "template", "ports"))
        deployments.append(
            DeploymentSpec(
                name=names[i],
                template=_pod_template(item.get("template"), f"{dpath}.template", needs_main=False),
                replicas=_replicas(item.get("replicas", 1), f"{dpath}.replicas"),
                ports=_ports(item.get("ports") or [], f"{dpath}.ports"),
            )
        )
    return tuple(deployments)


def _replicas(value: object, path: str) -> int | str:
    if isinstance(value, str):
        try:
            refs = find_references(value)
        except ReferenceSyntaxError as err:
            raise SpecError(path, str(err)) from None
        if refs:
            return value
        if value.isascii() and value.isdigit():
            return int(value)
        raise SpecError(path, f"must be an integer or a $(...) reference, not {value!r}")
    return _int(value, path, 0)


def _ports(raw: object, path: str) -> tuple[Port, ...]:
    ports: list[Port] = []
    for i, item in enumerate(_list(raw, path)):
        ppath = f"{path}[{i}]"
        item = _mapping(item, ppath)
        _known_keys(item, ppath, ("name", "port", "targetPort", "protocol"))
        name = _string(item.get("name"), f"{ppath}.name")
        if not _PORT_NAME.fullmatch(name):
            raise SpecError(
                f"{ppath}.name", f"{name!r} is not a port name (at most 15 lower-case letters, digits, '-')"
            )
        if any(p.name == name for p in ports):
            raise SpecError(f"{ppath}.name", f"duplicate port name {name!r}")
        target = item.get("targetPort")
        if isinstance(target, str):
            if not target:
                raise SpecError(f"{ppath}.targetPort", "must not be empty")
        elif target is not None:
            target = _int(target, f"{ppath}.targetPort", 1)
        protocol = _string(item.get("protocol", "TCP"), f"{ppath}.protocol")
        if protocol not in PROTOCOLS:
            raise SpecError(f"{ppath}.protocol", f"must be one of {', '.join(PROTOCOLS)}")
        port = _int(item.get("port"), f"{ppath}.port", 1)
        if port > 65535:
            raise SpecError(f"{ppath}.port", f"must be <= 65535, not {port}")
        ports.append(Port(name, port, target, protocol))
    return tuple(ports)


def _manifest(raw: object, path: str, namespace: str | None) -> dict[str, Any]:
    manifest = _mapping(raw, path)
    for key in ("apiVersion", "kind"):
        if not _string(manifest.get(key), f"{path}.{key}"):
            raise SpecError(f"{path}.{key}", "must not be empty")
    metadata = _mapping(manifest.get("metadata"), f"{path}.metadata")
    if not _string(metadata.get("name"), f"{path}.metadata.name"):
        raise SpecError(f"{path}.metadata.name", "must not be empty")
    own = metadata.get("namespace")
    if own is not None and namespace is not None and own != namespace:
        raise SpecError(
            f"{path}.metadata.namespace", f"must be the FlowRun's namespace {namespace!r} (or unset), not {own!r}"
        )
    for key in ("labels", "annotations"):
        _string_map(metadata.get(key) or {}, f"{path}.metadata.{key}")
    return dict(manifest)


def _unique_children(resources: Sequence[ResourceSpec]) -> None:
    """No two objects of the run get the same name: manifests are named by their authors, and
    Deployments/Services `<flowrun>-<resource>-<deployment>` could collide across resources
    (resource `a-b` with deployment `c`, resource `a` with deployment `b-c`)."""
    manifests: dict[tuple[str, str, str], str] = {}
    deployments: dict[str, str] = {}
    for i, resource in enumerate(resources):
        for j, deployment in enumerate(resource.setup.deployments):
            path, suffix = f"spec.resources[{i}].setup.deployments[{j}]", f"{resource.name}-{deployment.name}"
            if suffix in deployments:
                raise SpecError(
                    f"{path}.name", f"Deployment and Service <flowrun>-{suffix} are also made by {deployments[suffix]}"
                )
            deployments[suffix] = path
        for j, manifest in enumerate(resource.setup.manifests):
            path = f"spec.resources[{i}].setup.manifests[{j}]"
            key = (manifest["apiVersion"].split("/")[0], manifest["kind"], manifest["metadata"]["name"])
            if key in manifests:
                raise SpecError(path, f"{key[1]}/{key[2]} is also made by {manifests[key]}")
            manifests[key] = path


def _cleanup(raw: object, path: str) -> Cleanup:
    raw = _mapping(raw, path)
    _known_keys(raw, path, ("job", "timeoutSeconds", "retries"))
    template = None
    if raw.get("job") is not None:
        job = _mapping(raw["job"], f"{path}.job")
        _known_keys(job, f"{path}.job", ("template",))
        template = _pod_template(job.get("template"), f"{path}.job.template", needs_main=False)
    return Cleanup(
        job_template=template,
        timeout_seconds=_int(raw.get("timeoutSeconds", DEFAULT_CLEANUP_TIMEOUT), f"{path}.timeoutSeconds", 1),
        retries=_int(raw.get("retries", DEFAULT_CLEANUP_RETRIES), f"{path}.retries", 0),
    )


# ---------------------------------------------------------------------------------------------
# Cross-references: the dependency graph and every $(...) reference.


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
        for i, task in enumerate(self.flow.tasks):
            self._check_task(task, f"spec.tasks[{i}]")
        resources = tuple(
            self._check_resource(resource, resource_refs[resource.name], f"spec.resources[{k}]")
            for k, resource in enumerate(self.flow.resources)
        )
        return replace(self.flow, resources=resources)

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
            yield from self._text_references(text, f"{path}.{sub}")

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
        setup = resource.setup
        if setup.job is not None:
            for field, ref in self._references(setup.job.template, f"{path}.setup.job.template"):
                yield field, ref, "setup"
        for i, deployment in enumerate(setup.deployments):
            dpath = f"{path}.setup.deployments[{i}]"
            for field, ref in self._references(deployment.template, f"{dpath}.template"):
                yield field, ref, "setup"
            if isinstance(deployment.replicas, str):
                for field, ref in self._text_references(deployment.replicas, f"{dpath}.replicas"):
                    yield field, ref, "setup"
        if resource.value is not None:
            for field, ref in self._text_references(resource.value, f"{path}.value"):
                yield field, ref, "value"
        if resource.cleanup.job_template is not None:
            for field, ref in self._references(resource.cleanup.job_template, f"{path}.cleanup.job.template"):
                yield field, ref, "cleanup"

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
        if ref.kind is RefKind.TASK_RESULT and ref.name not in self.tasks:
            raise SpecError(path, f"{ref.text} refers to unknown task {ref.name!r}")

    def _check_task(self, task: TaskSpec, path: str) -> None:
        upstream = self._upstream(task.run_after)
        for field, ref in self._references(task.template, f"{path}.template"):
            self._common(ref, field)
            if ref.kind is RefKind.TASK_RESULT and ref.name not in upstream:
                raise SpecError(
                    field,
                    f"{ref.text}: task {ref.name!r} is not upstream of {task.name!r} (add it to runAfter), "
                    "so its result would not exist yet",
                )
            if ref.kind in (RefKind.RESOURCE_VALUE, RefKind.SERVICE):
                self._known_resource(ref, field)
                if ref.name not in task.resources:
                    raise SpecError(
                        field,
                        f"{ref.text}: task {task.name!r} must list resource {ref.name!r} in its resources to use it",
                    )

    def _check_resource(
        self, resource: ResourceSpec, refs: list[tuple[str, Reference, str]], path: str
    ) -> ResourceSpec:
        upstream = self._upstream(resource.run_after)
        uses: list[str] = []
        for field, ref, where in refs:
            self._common(ref, field)
            if ref.kind is RefKind.TASK_RESULT and ref.name not in upstream:
                raise SpecError(
                    field,
                    f"{ref.text}: task {ref.name!r} is not in the runAfter of resource {resource.name!r} "
                    "(directly or transitively), so its result would not exist yet",
                )
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
                if not (value.isascii() and value.isdigit()):
                    raise SpecError(
                        f"{path}.setup.deployments[{i}].replicas",
                        f"{deployment.replicas!r} resolves to {value!r}, not a non-negative integer",
                    )
        return replace(resource, uses=tuple(uses))
