"""`parse_spec`: a raw FlowRun spec, checked field by field, into a FlowSpec. The first problem
found is raised as a SpecError naming the offending field, e.g.
`spec.tasks[2].runAfter[0]: unknown task 'lod'` (docs/semantics.md, "Bad input")."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from flowrun.model import checks
from flowrun.model.graph import check_references
from flowrun.model.spec import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_CLEANUP_RETRIES,
    DEFAULT_CLEANUP_TIMEOUT,
    DEFAULT_SETUP_TIMEOUT,
    MAX_COUNT,
    MAX_PARAM_VALUE,
    MAX_RETRIES,
    MAX_SECONDS,
    PROTOCOLS,
    TRIGGERS,
    Cleanup,
    DeploymentSpec,
    FlowSpec,
    Param,
    Port,
    ResourceSpec,
    Retries,
    Setup,
    SetupJob,
    SpecError,
    TaskSpec,
)
from flowrun.references import ReferenceSyntaxError, find_references

_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")


def parse_spec(spec: object, namespace: str | None = None) -> FlowSpec:
    """Parse and validate a FlowRun spec; raises SpecError naming the first offending field.

    `namespace` is the FlowRun's namespace: when given, manifests may not name another one.
    """
    spec = checks.mapping(spec, "spec")
    checks.known_keys(
        spec,
        "spec",
        (
            "params",
            "serviceAccountName",
            "parallelism",
            "activeDeadlineSeconds",
            "pendingTimeoutSeconds",
            "ttlSecondsAfterFinished",
            "cancel",
            "resources",
            "tasks",
        ),
    )
    params = _params(spec.get("params") or [])
    raw_tasks = checks.sequence(spec.get("tasks"), "spec.tasks")
    if not raw_tasks:
        raise SpecError("spec.tasks", "must list at least one task")
    raw_resources = checks.sequence(spec.get("resources") or [], "spec.resources")
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
        service_account_name=(
            None if service_account is None else checks.string(service_account, "spec.serviceAccountName")
        ),
        parallelism=checks.optional_int(spec, "parallelism", "spec", 1, MAX_COUNT),
        active_deadline_seconds=checks.optional_int(spec, "activeDeadlineSeconds", "spec", 1, MAX_SECONDS),
        pending_timeout_seconds=checks.optional_int(spec, "pendingTimeoutSeconds", "spec", 1, MAX_SECONDS),
        ttl_seconds_after_finished=checks.optional_int(spec, "ttlSecondsAfterFinished", "spec", 0, MAX_SECONDS),
        cancel=_cancel(spec.get("cancel", False)),
    )
    return check_references(flow, namespace)


def _cancel(value: object) -> bool:
    if not isinstance(value, bool):
        raise SpecError("spec.cancel", f"must be a boolean, not {checks.type_name(value)}")
    return value


def _params(raw: object) -> tuple[Param, ...]:
    params: list[Param] = []
    for i, item in enumerate(checks.sequence(raw, "spec.params")):
        path = f"spec.params[{i}]"
        item = checks.mapping(item, path)
        checks.known_keys(item, path, ("name", "value"))
        name = checks.param_name(item.get("name"), f"{path}.name", [p.name for p in params])
        value = checks.string(item.get("value"), f"{path}.value")
        if len(value) > MAX_PARAM_VALUE:
            raise SpecError(f"{path}.value", f"may have at most {MAX_PARAM_VALUE} characters, not {len(value)}")
        params.append(Param(name, value))
    return tuple(params)


def _unique_names(items: Sequence[Any], path: str, what: str) -> list[str]:
    names: list[str] = []
    for i, item in enumerate(items):
        name = checks.name(checks.mapping(item, f"{path}[{i}]").get("name"), f"{path}[{i}].name")
        if name in names:
            raise SpecError(f"{path}[{i}].name", f"duplicate {what} name {name!r}")
        names.append(name)
    return names


def _name_refs(raw: object, path: str, known: list[str], what: str, self_name: str | None = None) -> tuple[str, ...]:
    names = checks.string_list(raw, path)
    for j, name in enumerate(names):
        if name not in known:
            raise SpecError(f"{path}[{j}]", f"unknown {what} {name!r}")
        if name == self_name:
            raise SpecError(f"{path}[{j}]", f"{what} {name!r} cannot refer to itself")
        if name in names[:j]:
            raise SpecError(f"{path}[{j}]", f"{what} {name!r} is listed twice")
    return names


def _task(raw: Mapping[str, Any], path: str, tasks: list[str], resources: list[str]) -> TaskSpec:
    checks.known_keys(
        raw,
        path,
        (
            "name",
            "runAfter",
            "trigger",
            "resources",
            "template",
            "retries",
            "activeDeadlineSeconds",
            "pendingTimeoutSeconds",
        ),
    )
    name = raw["name"]
    trigger = checks.string(raw.get("trigger", "allSucceeded"), f"{path}.trigger")
    if trigger not in TRIGGERS:
        raise SpecError(f"{path}.trigger", f"unknown trigger {trigger!r} (one of {', '.join(TRIGGERS)})")
    run_after = _name_refs(raw.get("runAfter") or [], f"{path}.runAfter", tasks, "task", name)
    retries = checks.mapping(raw.get("retries") or {}, f"{path}.retries")
    checks.known_keys(retries, f"{path}.retries", ("limit", "backoffSeconds"))
    return TaskSpec(
        name=name,
        template=checks.pod_template(raw.get("template"), f"{path}.template", needs_main=True),
        run_after=run_after,
        trigger=trigger,
        resources=_name_refs(raw.get("resources") or [], f"{path}.resources", resources, "resource"),
        retries=Retries(
            limit=checks.integer(retries.get("limit", 0), f"{path}.retries.limit", 0, MAX_RETRIES),
            backoff_seconds=checks.integer(
                retries.get("backoffSeconds", DEFAULT_BACKOFF_SECONDS), f"{path}.retries.backoffSeconds", 0, MAX_SECONDS
            ),
        ),
        active_deadline_seconds=checks.optional_int(raw, "activeDeadlineSeconds", path, 1, MAX_SECONDS),
        pending_timeout_seconds=checks.optional_int(raw, "pendingTimeoutSeconds", path, 1, MAX_SECONDS),
    )


def _resource(raw: Mapping[str, Any], path: str, tasks: list[str], namespace: str | None) -> ResourceSpec:
    checks.known_keys(raw, path, ("name", "runAfter", "setup", "value", "cleanup"))
    value = raw.get("value")
    return ResourceSpec(
        name=raw["name"],
        run_after=_name_refs(raw.get("runAfter") or [], f"{path}.runAfter", tasks, "task"),
        setup=_setup(raw.get("setup"), f"{path}.setup", namespace),
        value=None if value is None else checks.string(value, f"{path}.value"),
        cleanup=_cleanup(raw.get("cleanup") or {}, f"{path}.cleanup"),
    )


def _setup(raw: object, path: str, namespace: str | None) -> Setup:
    raw = checks.mapping(raw, path)
    checks.known_keys(raw, path, ("job", "deployments", "manifests", "timeoutSeconds"))
    job = None
    if raw.get("job") is not None:
        job_raw = checks.mapping(raw["job"], f"{path}.job")
        checks.known_keys(job_raw, f"{path}.job", ("template", "backoffLimit"))
        job = SetupJob(
            template=checks.pod_template(job_raw.get("template"), f"{path}.job.template", needs_main=True),
            backoff_limit=checks.integer(job_raw.get("backoffLimit", 0), f"{path}.job.backoffLimit", 0, MAX_RETRIES),
        )
    deployments = _deployments(raw.get("deployments") or [], f"{path}.deployments")
    manifests = tuple(
        _manifest(m, f"{path}.manifests[{i}]", namespace)
        for i, m in enumerate(checks.sequence(raw.get("manifests") or [], f"{path}.manifests"))
    )
    if job is None and not deployments and not manifests:
        raise SpecError(path, "must have at least one of job, deployments, manifests")
    return Setup(
        job=job,
        deployments=deployments,
        manifests=manifests,
        timeout_seconds=checks.integer(
            raw.get("timeoutSeconds", DEFAULT_SETUP_TIMEOUT), f"{path}.timeoutSeconds", 1, MAX_SECONDS
        ),
    )


def _deployments(raw: object, path: str) -> tuple[DeploymentSpec, ...]:
    items = checks.sequence(raw, path)
    names = _unique_names(items, path, "deployment")
    deployments: list[DeploymentSpec] = []
    for i, item in enumerate(items):
        dpath = f"{path}[{i}]"
        checks.known_keys(item, dpath, ("name", "replicas", "template", "ports"))
        deployments.append(
            DeploymentSpec(
                name=names[i],
                template=checks.pod_template(item.get("template"), f"{dpath}.template", needs_main=False),
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
            return checks.integer(int(value), path, 0, MAX_COUNT)
        raise SpecError(path, f"must be an integer or a $(...) reference, not {value!r}")
    return checks.integer(value, path, 0, MAX_COUNT)


def _ports(raw: object, path: str) -> tuple[Port, ...]:
    ports: list[Port] = []
    for i, item in enumerate(checks.sequence(raw, path)):
        ppath = f"{path}[{i}]"
        item = checks.mapping(item, ppath)
        checks.known_keys(item, ppath, ("name", "port", "targetPort", "protocol"))
        name = checks.string(item.get("name"), f"{ppath}.name")
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
            target = checks.integer(target, f"{ppath}.targetPort", 1, 65535)
        protocol = checks.string(item.get("protocol", "TCP"), f"{ppath}.protocol")
        if protocol not in PROTOCOLS:
            raise SpecError(f"{ppath}.protocol", f"must be one of {', '.join(PROTOCOLS)}")
        port = checks.integer(item.get("port"), f"{ppath}.port", 1, 65535)
        ports.append(Port(name, port, target, protocol))
    return tuple(ports)


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


def _cleanup(raw: object, path: str) -> Cleanup:
    raw = checks.mapping(raw, path)
    checks.known_keys(raw, path, ("job", "timeoutSeconds", "retries"))
    template = None
    if raw.get("job") is not None:
        job = checks.mapping(raw["job"], f"{path}.job")
        checks.known_keys(job, f"{path}.job", ("template",))
        template = checks.pod_template(job.get("template"), f"{path}.job.template", needs_main=False)
    return Cleanup(
        job_template=template,
        timeout_seconds=checks.integer(
            raw.get("timeoutSeconds", DEFAULT_CLEANUP_TIMEOUT), f"{path}.timeoutSeconds", 1, MAX_SECONDS
        ),
        retries=checks.integer(raw.get("retries", DEFAULT_CLEANUP_RETRIES), f"{path}.retries", 0, MAX_RETRIES),
    )
