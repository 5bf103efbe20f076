"""A parsed FlowRun spec as frozen dataclasses. The fields are the users' contract: docs/api.md;
they are declared in flowrun.schema (with their bounds and defaults)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from flowrun import names
from flowrun.api import MUTEX, SEMAPHORE
from flowrun.schema.flowrun import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_CLEANUP_RETRIES,
    DEFAULT_CLEANUP_TIMEOUT,
    DEFAULT_SETUP_TIMEOUT,
)


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
class Lock:
    """A lock across the runs of a namespace (docs/semantics.md, "Locks"): a mutex by name, or a
    semaphore whose limit is the value of a key of a ConfigMap."""

    kind: str  # MUTEX or SEMAPHORE
    name: str  # the mutex's name, or the semaphore's ConfigMap
    key: str = ""  # the semaphore's key in its ConfigMap

    @staticmethod
    def mutex(name: str) -> Lock:
        return Lock(MUTEX, name)

    @staticmethod
    def semaphore(config_map: str, key: str) -> Lock:
        return Lock(SEMAPHORE, config_map, key)

    @property
    def id(self) -> str:
        """`mutex/NAME` or `semaphore/CONFIGMAP/KEY`: one lock of a namespace, as statuses, messages,
        Lease annotations and metrics name it."""
        return f"{self.kind}/{self.name}" + (f"/{self.key}" if self.kind == SEMAPHORE else "")

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class Instance:
    """What makes a task an instance of a forEach task: the task, the index of its item, the item."""

    of: str
    index: int
    item: Any  # a JSON value


@dataclass(frozen=True)
class TaskSpec:
    name: str
    template: dict[str, Any]
    run_after: tuple[str, ...] = ()
    trigger: str = "allSucceeded"
    resources: tuple[str, ...] = ()
    retries: Retries = Retries()
    active_deadline_seconds: int | None = None
    pending_timeout_seconds: int | None = None  # None: the run's spec.pendingTimeoutSeconds
    synchronization: Lock | None = None
    when: tuple[str, ...] = ()  # CEL conditions (flowrun.when), all must hold
    for_each: str | None = None  # text that resolves to the JSON list of items
    parallelism: int | None = None  # instances of a forEach task running at once
    # The tasks whose result (or results) the template, the conditions or forEach read: filled by
    # the model's reference check (model/graph.py).
    result_refs: tuple[str, ...] = ()
    instance: Instance | None = None  # set on the spec of an instance of a forEach task (engine)

    def pod_name(self, flowrun: str, attempt: int) -> str:
        """The name of the pod of `attempt` (from 1) of this task, or of this instance."""
        if self.instance is not None:
            return names.task_pod_name(flowrun, self.instance.of, attempt, self.instance.index)
        return names.task_pod_name(flowrun, self.name, attempt)

    def instance_spec(self, index: int, item: Any) -> TaskSpec:
        """The spec of instance `index` of this forEach task: the task itself, named NAME-INDEX,
        whose pod gets `item` for $(item)."""
        return replace(
            self,
            name=instance_name(self.name, index),
            when=(),
            for_each=None,
            parallelism=None,
            instance=Instance(self.name, index, item),
        )


def instance_name(task: str, index: int) -> str:
    """The name of instance `index` of forEach task `task` (its status entry, its pods' task label)."""
    return f"{task}-{index}"


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
    result_refs: tuple[str, ...] = ()  # the tasks whose result (or results) it reads


@dataclass(frozen=True)
class FlowSpec:
    tasks: tuple[TaskSpec, ...]
    params: tuple[Param, ...] = ()
    resources: tuple[ResourceSpec, ...] = ()
    service_account_name: str | None = None
    parallelism: int | None = None
    active_deadline_seconds: int | None = None
    pending_timeout_seconds: int | None = None  # the tasks' default; None: wait for ever
    ttl_seconds_after_finished: int | None = None
    cancel: bool = False
    synchronization: Lock | None = None  # the run's own lock

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

    def pending_timeout(self, task: TaskSpec) -> int | None:
        """Seconds an attempt's pod may take to start: the task's own pendingTimeoutSeconds, else
        the run's; None: no limit."""
        own = task.pending_timeout_seconds
        return own if own is not None else self.pending_timeout_seconds

    def users_of(self, resource: str) -> list[TaskSpec]:
        return [t for t in self.tasks if resource in t.resources]

    def locks(self) -> list[Lock]:
        """Every lock the run may take: its own, then its tasks', each once."""
        found = [self.synchronization, *(t.synchronization for t in self.tasks)]
        return list(dict.fromkeys(lock for lock in found if lock is not None))

    def for_each_tasks(self) -> list[TaskSpec]:
        return [t for t in self.tasks if t.for_each is not None]


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
            if isinstance(container.get("image"), str):
                yield f"{base}.image", container["image"]
            for key in ("command", "args"):
                for j, text in enumerate(container.get(key) or []):
                    yield f"{base}.{key}[{j}]", text
            for j, env in enumerate(container.get("env") or []):
                if "value" in env:
                    yield f"{base}.env[{j}].value", env["value"]
