"""`parse_spec`: a raw FlowRun spec, checked, into a FlowSpec. The first problem found is raised
as a SpecError naming the offending field, e.g. `spec.tasks[2].runAfter[0]: unknown task 'lod'`
(docs/semantics.md, "Bad input").

Each field's own checks (type, bounds, enum, format, unique names; defaults filled in) come from
its declaration (flowrun.schema); what is left here is what no single field's declaration can say:
references between fields, names the run's children would share, what the CRD's CEL rules say,
and what its schema leaves to the API server (pod templates beyond their outline, manifests)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from flowrun.model import checks
from flowrun.model.fanout import check_for_each
from flowrun.model.graph import check_references
from flowrun.model.spec import (
    Cleanup,
    DeploymentSpec,
    FlowSpec,
    Lock,
    Param,
    Port,
    ResourceSpec,
    Retries,
    Setup,
    SetupJob,
    TaskSpec,
)
from flowrun.references import ReferenceSyntaxError, find_references
from flowrun.schema import kinds
from flowrun.schema.common import REPLICAS
from flowrun.schema.flowrun import LOCK_WITH_FOR_EACH, MAX_FOR_EACH_NAME
from flowrun.schema.nodes import SpecError

# Specs parsed lately, by their JSON text: a run's spec is read by each of its passes (and by more
# than one step of a pass) and rarely changes; parsing it is most of a small pass's CPU. Bounded by
# the bytes of the texts kept: a parsed spec takes about 8 times its text's bytes, so at most about
# 8 MiB (the specs of a thousand runs of ten tasks in flight fit in a quarter of it).
PARSED_CACHE_BYTES = 1024 * 1024
_parsed: OrderedDict[tuple[str, str | None, tuple[str, ...]], FlowSpec] = OrderedDict()
_parsed_bytes = 0
_parsed_lock = threading.Lock()  # passes run in a pool of threads


def parse_spec(spec: object, namespace: str | None = None, placeholders: Collection[str] = ()) -> FlowSpec:
    """Parse and validate a FlowRun spec; raises SpecError naming the first offending field.

    `namespace` is the FlowRun's namespace: when given, manifests may not name another one.
    `placeholders` are params whose values stand in for values not known yet (a Flow's params
    without default): what is checked of a param's value before the run starts skips them.
    A spec equal to one parsed lately gives the same (immutable) FlowSpec without a parse.
    """
    global _parsed_bytes
    try:
        text = json.dumps(spec, separators=(",", ":"))
    except (TypeError, ValueError):  # not JSON (a caller's own objects): parsed, not kept
        return _parse_spec(spec, namespace, placeholders)
    key = (text, namespace, tuple(sorted(placeholders)))
    with _parsed_lock:
        found = _parsed.get(key)
        if found is not None:
            _parsed.move_to_end(key)
            return found
    parsed = _parse_spec(spec, namespace, placeholders)
    with _parsed_lock:
        if key not in _parsed and len(text) <= PARSED_CACHE_BYTES:
            _parsed[key] = parsed
            _parsed_bytes += len(text)
            while _parsed_bytes > PARSED_CACHE_BYTES:
                (evicted, _, _), _ = _parsed.popitem(last=False)
                _parsed_bytes -= len(evicted)
    return parsed


def _parse_spec(spec: object, namespace: str | None, placeholders: Collection[str]) -> FlowSpec:
    raw = kinds.SCHEMAS.run_spec.check(spec, "spec")
    task_names = [t["name"] for t in raw["tasks"]]
    resource_names = [r["name"] for r in raw.get("resources", [])]
    tasks = tuple(_task(t, f"spec.tasks[{i}]", task_names, resource_names) for i, t in enumerate(raw["tasks"]))
    resources = tuple(
        _resource(r, f"spec.resources[{i}]", task_names, namespace) for i, r in enumerate(raw.get("resources", []))
    )
    _unique_children(resources)
    own_lock = _lock(raw.get("synchronization"), "spec.synchronization")
    _lock_once(own_lock, tasks)
    flow = FlowSpec(
        tasks=tasks,
        params=tuple(Param(p["name"], p["value"]) for p in raw.get("params", [])),
        resources=resources,
        service_account_name=raw.get("serviceAccountName"),
        parallelism=raw.get("parallelism"),
        active_deadline_seconds=raw.get("activeDeadlineSeconds"),
        pending_timeout_seconds=raw.get("pendingTimeoutSeconds"),
        ttl_seconds_after_finished=raw.get("ttlSecondsAfterFinished"),
        cancel=raw.get("cancel", False),
        synchronization=own_lock,
    )
    checked = check_references(flow, namespace)
    check_for_each(checked, placeholders)
    return checked


def _lock(raw: Mapping[str, Any] | None, path: str) -> Lock | None:
    """A synchronization (its fields checked by its declaration): exactly one of mutex or semaphore."""
    if raw is None:
        return None
    if ("mutex" in raw) == ("semaphore" in raw):
        raise SpecError(path, "needs exactly one of mutex or semaphore")
    if "mutex" in raw:
        return Lock.mutex(raw["mutex"]["name"])
    ref = raw["semaphore"]["configMapKeyRef"]
    return Lock.semaphore(ref["name"], ref["key"])


def _lock_once(own: Lock | None, tasks: Sequence[TaskSpec]) -> None:
    """A task cannot wait for the lock its run holds: it would wait for ever (its run releases it
    only once the task is done)."""
    for i, task in enumerate(tasks):
        if own is not None and task.synchronization == own:
            raise SpecError(
                f"spec.tasks[{i}].synchronization",
                f"{own} is the run's own lock (spec.synchronization): the run holds it already, the task would wait "
                "for ever",
            )


def _name_refs(
    names: Sequence[str], path: str, known: list[str], what: str, self_name: str | None = None
) -> tuple[str, ...]:
    for j, name in enumerate(names):
        if name not in known:
            raise SpecError(f"{path}[{j}]", f"unknown {what} {name!r}")
        if name == self_name:
            raise SpecError(f"{path}[{j}]", f"{what} {name!r} cannot refer to itself")
    return tuple(names)


def _task(raw: Mapping[str, Any], path: str, tasks: list[str], resources: list[str]) -> TaskSpec:
    name = raw["name"]
    retries = raw.get("retries")
    return TaskSpec(
        name=name,
        template=checks.pod_template(raw["template"], f"{path}.template", needs_main=True),
        run_after=_name_refs(raw.get("runAfter", []), f"{path}.runAfter", tasks, "task", name),
        trigger=raw["trigger"],
        resources=_name_refs(raw.get("resources", []), f"{path}.resources", resources, "resource"),
        retries=Retries(retries["limit"], retries["backoffSeconds"]) if retries else Retries(),
        active_deadline_seconds=raw.get("activeDeadlineSeconds"),
        pending_timeout_seconds=raw.get("pendingTimeoutSeconds"),
        synchronization=_lock(raw.get("synchronization"), f"{path}.synchronization"),
        when=tuple(raw.get("when", [])),
        for_each=raw.get("forEach"),
        parallelism=_task_parallelism(raw, path),
    )


def _task_parallelism(raw: Mapping[str, Any], path: str) -> int | None:
    """What the CRD's rules on a task say of forEach: parallelism only with it, no lock with it, and
    a name short enough for its instances' names."""
    if "forEach" in raw and len(raw["name"]) > MAX_FOR_EACH_NAME:
        raise SpecError(
            f"{path}.name",
            f"the name of a forEach task may have at most {MAX_FOR_EACH_NAME} characters (its instances are named "
            f"NAME-INDEX), not {len(raw['name'])}",
        )
    if "synchronization" in raw and "forEach" in raw:
        raise SpecError(f"{path}.synchronization", LOCK_WITH_FOR_EACH)
    if "parallelism" in raw and "forEach" not in raw:
        raise SpecError(
            f"{path}.parallelism",
            "parallelism bounds the instances of a forEach task: set forEach, or use spec.parallelism",
        )
    parallelism: int | None = raw.get("parallelism")
    return parallelism


def _resource(raw: Mapping[str, Any], path: str, tasks: list[str], namespace: str | None) -> ResourceSpec:
    cleanup = raw["cleanup"]
    job = cleanup.get("job")
    return ResourceSpec(
        name=raw["name"],
        run_after=_name_refs(raw.get("runAfter", []), f"{path}.runAfter", tasks, "task"),
        setup=_setup(raw["setup"], f"{path}.setup", namespace),
        value=raw.get("value"),
        cleanup=Cleanup(
            job_template=(
                None
                if job is None
                else checks.pod_template(job["template"], f"{path}.cleanup.job.template", needs_main=False)
            ),
            timeout_seconds=cleanup["timeoutSeconds"],
            retries=cleanup["retries"],
        ),
    )


def _setup(raw: Mapping[str, Any], path: str, namespace: str | None) -> Setup:
    if not any(key in raw for key in ("job", "deployments", "manifests")):
        raise SpecError(path, "must have at least one of job, deployments, manifests")
    job = raw.get("job")
    return Setup(
        job=(
            None
            if job is None
            else SetupJob(
                template=checks.pod_template(job["template"], f"{path}.job.template", needs_main=True),
                backoff_limit=job["backoffLimit"],
            )
        ),
        deployments=tuple(_deployment(d, f"{path}.deployments[{i}]") for i, d in enumerate(raw.get("deployments", []))),
        manifests=tuple(
            _manifest(m, f"{path}.manifests[{i}]", namespace) for i, m in enumerate(raw.get("manifests", []))
        ),
        timeout_seconds=raw["timeoutSeconds"],
    )


def _deployment(raw: Mapping[str, Any], path: str) -> DeploymentSpec:
    return DeploymentSpec(
        name=raw["name"],
        template=checks.pod_template(raw["template"], f"{path}.template", needs_main=False),
        replicas=_replicas(raw["replicas"], f"{path}.replicas"),
        ports=tuple(Port(p["name"], p["port"], p.get("targetPort"), p["protocol"]) for p in raw.get("ports", [])),
    )


def _replicas(value: int | str, path: str) -> int | str:
    """An integer, or a string that the declaration's format let through: digits, or text with
    references (resolved to a count when the run needs it, model/graph.py)."""
    if isinstance(value, int):
        return value
    try:
        refs = find_references(value)
    except ReferenceSyntaxError as err:
        raise SpecError(path, str(err)) from None
    if refs:
        return value
    if value.isascii() and value.isdigit():
        return int(value)
    # The format's pattern takes `$$(params.x)`, an escaped `$`, for a reference.
    raise SpecError(path, REPLICAS.message.format(value=repr(value)))


def _manifest(raw: object, path: str, namespace: str | None) -> dict[str, Any]:
    manifest = checks.mapping(raw, path)
    for key in ("apiVersion", "kind"):
        if not checks.string(manifest.get(key), f"{path}.{key}"):
            raise SpecError(f"{path}.{key}", "must not be empty")
    if manifest["kind"] == "Event" and manifest["apiVersion"].split("/")[0] in ("v1", "events.k8s.io"):
        # An Event made by a run would speak for another component (the kubelet, a controller) and
        # could never be cleaned up: the operator may create Events, not delete them.
        raise SpecError(f"{path}.kind", "an Event is not a resource: setup manifests may not create Events")
    metadata = checks.mapping(manifest.get("metadata"), f"{path}.metadata")
    if not checks.string(metadata.get("name"), f"{path}.metadata.name"):
        raise SpecError(f"{path}.metadata.name", "must not be empty")
    own = metadata.get("namespace")
    if own is not None and namespace is not None and own != namespace:
        raise SpecError(
            f"{path}.metadata.namespace", f"must be the FlowRun's namespace {namespace!r} (or unset), not {own!r}"
        )
    for key in ("labels", "annotations"):
        checks.string_map(metadata.get(key) or {}, f"{path}.metadata.{key}")
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
