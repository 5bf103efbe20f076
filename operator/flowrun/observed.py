"""The children of a FlowRun as the engine sees them, built from raw API objects.

Each watch event of a child is turned into its observed form once (`observe`, from the raw dict
as the API returns it, camelCase keys); a pass sorts a run's observed children into `Observed`.
Parsing is lenient: a missing or malformed
field becomes an empty value, never an exception.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowrun import api
from flowrun.timestamps import parse_time

if TYPE_CHECKING:
    from flowrun.locks import LockView


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str = ""
    message: str = ""
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Waiting:
    """Why something has not started: a container's waiting state (ErrImagePull,
    CreateContainerConfigError, ...) or a pod's PodScheduled=False condition (Unschedulable)."""

    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class ContainerStatus:
    name: str
    terminated: Terminated | None = None
    running_started_at: datetime | None = None
    running: bool = False
    waiting: Waiting | None = None

    @property
    def started(self) -> bool:
        """Whether the container runs or has ended, as last reported (one waiting to be restarted
        counts as not started: a task pod's, with restartPolicy Never, never is)."""
        return self.running or self.terminated is not None


@dataclass(frozen=True)
class ObservedPod:
    name: str
    labels: Mapping[str, str]
    phase: str = "Pending"  # Pending | Running | Succeeded | Failed | Unknown
    deleting: bool = False
    run: str | None = None  # the UID of the FlowRun it belongs to (run_of)
    containers: tuple[ContainerStatus, ...] = ()
    start_time: datetime | None = None
    reason: str = ""  # e.g. DeadlineExceeded, Evicted
    message: str = ""
    created_at: datetime | None = None
    init_containers: tuple[ContainerStatus, ...] = ()
    not_scheduled: Waiting | None = None  # its PodScheduled condition is False (e.g. Unschedulable)

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True)
class JobCondition:
    type: str
    status: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class ObservedJob:
    name: str
    labels: Mapping[str, str]
    conditions: tuple[JobCondition, ...] = ()
    deleting: bool = False
    run: str | None = None  # the UID of the FlowRun it belongs to (run_of)
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    created_at: datetime | None = None
    # Why the Job controller could not create the Job's pod (a FailedCreate event, e.g. a missing
    # ServiceAccount or a quota): the Job's status says nothing of it. Empty when not known.
    pod_create_failure: str = ""

    def condition(self, kind: str) -> JobCondition | None:
        return next((c for c in self.conditions if c.type == kind and c.status == "True"), None)

    @property
    def complete(self) -> bool:
        return self.condition("Complete") is not None

    @property
    def failed_condition(self) -> JobCondition | None:
        return self.condition("Failed")

    @property
    def finished(self) -> bool:
        return self.complete or self.failed_condition is not None


@dataclass(frozen=True)
class DeploymentCondition:
    type: str
    status: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class ObservedDeployment:
    name: str
    labels: Mapping[str, str]
    replicas: int = 1
    available_replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    conditions: tuple[DeploymentCondition, ...] = ()
    deleting: bool = False
    run: str | None = None  # the UID of the FlowRun it belongs to (run_of)


@dataclass(frozen=True)
class ObservedService:
    name: str
    labels: Mapping[str, str]
    cluster_ip: str = ""
    deleting: bool = False
    run: str | None = None  # the UID of the FlowRun it belongs to (run_of)


@dataclass(frozen=True)
class ObservedEndpointSlice:
    """A slice of a Service's endpoints, made by the EndpointSlice controller for each Service with
    a selector. It carries the Service's labels (so it is watched and indexed as the run's child)
    and names its Service in the label kubernetes.io/service-name; a Service may have several."""

    name: str
    labels: Mapping[str, str]
    service: str = ""
    ready_endpoints: int = 0
    deleting: bool = False
    run: str | None = None  # the UID of the FlowRun it belongs to (run_of: its Service's UID label)


@dataclass(frozen=True)
class ObservedObject:
    """Any other child (a manifest): identified by apiVersion, kind and name."""

    api_version: str
    kind: str
    name: str
    labels: Mapping[str, str]
    deleting: bool = False
    run: str | None = None  # the UID of the FlowRun it belongs to (run_of)
    # The data of a ConfigMap holding a task's result (role `result`); empty for anything else.
    data: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class ObservedLease:
    """A Lease holding one slot of a lock across runs (role `lock`, docs/semantics.md "Locks"):
    which lock and slot (its annotations), and who holds it: its run (its owner) and, for a task's
    lock, the task (its label). Any other Lease is no child of a run."""

    name: str
    labels: Mapping[str, str]
    lock: str = ""  # e.g. mutex/nightly
    slot: int = -1  # -1: unreadable (the slot is taken all the same: its name is)
    holder: str = ""  # spec.holderIdentity: the run's name, with /TASK for a task's lock
    deleting: bool = False
    run: str | None = None  # the UID of the FlowRun it belongs to (run_of)

    @property
    def task(self) -> str:
        """The task holding it; empty for the run's own lock."""
        return self.labels.get(api.LABEL_TASK, "")


@dataclass(frozen=True)
class Observed:
    pods: tuple[ObservedPod, ...] = ()
    jobs: tuple[ObservedJob, ...] = ()
    deployments: tuple[ObservedDeployment, ...] = ()
    services: tuple[ObservedService, ...] = ()
    endpoint_slices: tuple[ObservedEndpointSlice, ...] = ()
    others: tuple[ObservedObject, ...] = ()
    leases: tuple[ObservedLease, ...] = ()
    # Lock (its id) -> what the namespace shows of it: every holder and every run waiting, and a
    # semaphore's limit (flowrun.locks). Only the locks the run's spec names; not children.
    locks: Mapping[str, LockView] = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------------------------------------


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _count(value: object, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _items(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _labels(metadata: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): v for k, v in _map(metadata.get("labels")).items() if isinstance(v, str)}


def _container(raw: Mapping[str, Any]) -> ContainerStatus:
    state = _map(raw.get("state"))
    terminated = None
    if "terminated" in state:
        term = _map(state["terminated"])
        terminated = Terminated(
            exit_code=_count(term.get("exitCode")),
            reason=_text(term.get("reason")),
            message=_text(term.get("message")),
            started_at=parse_time(term.get("startedAt")),
            finished_at=parse_time(term.get("finishedAt")),
        )
    running = _map(state.get("running"))
    waiting = None
    if "waiting" in state:
        raw_waiting = _map(state["waiting"])
        waiting = Waiting(_text(raw_waiting.get("reason")), _text(raw_waiting.get("message")))
    return ContainerStatus(
        name=_text(raw.get("name")),
        terminated=terminated,
        running_started_at=parse_time(running.get("startedAt")) if "running" in state else None,
        running="running" in state,
        waiting=waiting,
    )


def _not_scheduled(status: Mapping[str, Any]) -> Waiting | None:
    for cond in _items(status.get("conditions")):
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return Waiting(_text(cond.get("reason")), _text(cond.get("message")))
    return None


def _pod(obj: Mapping[str, Any], metadata: Mapping[str, Any], deleting: bool) -> ObservedPod:
    status = _map(obj.get("status"))
    return ObservedPod(
        run=run_of(obj),
        name=_text(metadata.get("name")),
        labels=_labels(metadata),
        phase=_text(status.get("phase")) or "Pending",
        deleting=deleting,
        containers=tuple(_container(c) for c in _items(status.get("containerStatuses"))),
        start_time=parse_time(status.get("startTime")),
        reason=_text(status.get("reason")),
        message=_text(status.get("message")),
        created_at=parse_time(metadata.get("creationTimestamp")),
        init_containers=tuple(_container(c) for c in _items(status.get("initContainerStatuses"))),
        not_scheduled=_not_scheduled(status),
    )


def _job(obj: Mapping[str, Any], metadata: Mapping[str, Any], deleting: bool, pod_create_failure: str) -> ObservedJob:
    status = _map(obj.get("status"))
    return ObservedJob(
        run=run_of(obj),
        name=_text(metadata.get("name")),
        labels=_labels(metadata),
        conditions=tuple(
            JobCondition(_text(c.get("type")), _text(c.get("status")), _text(c.get("reason")), _text(c.get("message")))
            for c in _items(status.get("conditions"))
        ),
        deleting=deleting,
        active=_count(status.get("active")),
        succeeded=_count(status.get("succeeded")),
        failed=_count(status.get("failed")),
        created_at=parse_time(metadata.get("creationTimestamp")),
        pod_create_failure=pod_create_failure,
    )


def _deployment(obj: Mapping[str, Any], metadata: Mapping[str, Any], deleting: bool) -> ObservedDeployment:
    status = _map(obj.get("status"))
    return ObservedDeployment(
        run=run_of(obj),
        name=_text(metadata.get("name")),
        labels=_labels(metadata),
        # The API defaults spec.replicas to 1 when it is unset.
        replicas=_count(_map(obj.get("spec")).get("replicas"), 1),
        available_replicas=_count(status.get("availableReplicas")),
        ready_replicas=_count(status.get("readyReplicas")),
        updated_replicas=_count(status.get("updatedReplicas")),
        conditions=tuple(
            DeploymentCondition(
                _text(c.get("type")), _text(c.get("status")), _text(c.get("reason")), _text(c.get("message"))
            )
            for c in _items(status.get("conditions"))
        ),
        deleting=deleting,
    )


def endpoint_ready(endpoint: Mapping[str, Any]) -> bool:
    """Whether one endpoint of a slice is ready to receive traffic: its condition `ready` says so;
    where that is absent, `serving` does; where both are, it is ready (the API: an absent
    condition is to be read as true). A value that is not a boolean is not true."""
    conditions = _map(endpoint.get("conditions"))
    for condition in ("ready", "serving"):
        value = conditions.get(condition)
        if value is not None:
            return value is True
    return True


def _endpoint_slice(obj: Mapping[str, Any], metadata: Mapping[str, Any], deleting: bool) -> ObservedEndpointSlice:
    labels = _labels(metadata)
    return ObservedEndpointSlice(
        name=_text(metadata.get("name")),
        labels=labels,
        service=labels.get(api.LABEL_SERVICE_NAME, ""),
        ready_endpoints=sum(1 for endpoint in _items(obj.get("endpoints")) if endpoint_ready(endpoint)),
        deleting=deleting,
        run=run_of(obj),
    )


def _lease(obj: Mapping[str, Any], metadata: Mapping[str, Any], deleting: bool) -> ObservedLease | None:
    labels = _labels(metadata)
    if labels.get(api.LABEL_ROLE) != api.ROLE_LOCK:
        return None
    annotations = _map(metadata.get("annotations"))
    slot = _text(annotations.get(api.SLOT_ANNOTATION))
    return ObservedLease(
        name=_text(metadata.get("name")),
        labels=labels,
        lock=_text(annotations.get(api.LOCK_ANNOTATION)),
        slot=int(slot) if slot.isascii() and slot.isdigit() else -1,
        holder=_text(_map(obj.get("spec")).get("holderIdentity")),
        deleting=deleting,
        run=run_of(obj),
    )


ObservedChild = (
    ObservedPod
    | ObservedJob
    | ObservedDeployment
    | ObservedService
    | ObservedEndpointSlice
    | ObservedObject
    | ObservedLease
)
# (apiVersion, kind, name): a child's identity within its run (and its namespace).
ChildKey = tuple[str, str, str]


def observe(obj: object) -> ObservedChild | None:
    """What the engine sees of one raw API object (a Pod, Job, Deployment, Service, EndpointSlice,
    a lock's Lease or anything else); None if it is not an object, or is a Lease that is not a
    lock's. Computed once per watch event, not per pass."""
    if not isinstance(obj, Mapping):
        return None
    metadata = _map(obj.get("metadata"))
    deleting = bool(metadata.get("deletionTimestamp"))
    api_version, kind = _text(obj.get("apiVersion")), _text(obj.get("kind"))
    if (api_version, kind) == ("v1", "Pod"):
        return _pod(obj, metadata, deleting)
    if (api_version, kind) == ("batch/v1", "Job"):
        return _job(obj, metadata, deleting, "")
    if (api_version, kind) == ("apps/v1", "Deployment"):
        return _deployment(obj, metadata, deleting)
    if (api_version, kind) == ("v1", "Service"):
        cluster_ip = _text(_map(obj.get("spec")).get("clusterIP"))
        return ObservedService(_text(metadata.get("name")), _labels(metadata), cluster_ip, deleting, run_of(obj))
    if (api_version, kind) == api.ENDPOINT_SLICE:
        return _endpoint_slice(obj, metadata, deleting)
    if (api_version, kind) == api.LEASE:
        return _lease(obj, metadata, deleting)
    labels = _labels(metadata)
    data = _map(obj.get("data")) if (kind, labels.get(api.LABEL_ROLE)) == ("ConfigMap", api.ROLE_RESULT) else {}
    texts = {str(k): v for k, v in data.items() if isinstance(v, str)}
    return ObservedObject(api_version, kind, _text(metadata.get("name")), labels, deleting, run_of(obj), texts)


def run_of(obj: Mapping[str, Any]) -> str | None:
    """The UID of the FlowRun a raw object belongs to: its controlling owner, if that is a
    FlowRun, else its flowrun.dev/flowrun-uid label (pods of a setup Job or Deployment are owned by
    those, and carry the label); None if neither says."""
    metadata = _map(obj.get("metadata"))
    for ref in _items(metadata.get("ownerReferences")):
        if (
            ref.get("controller")
            and ref.get("kind") == api.KIND
            and _text(ref.get("apiVersion")).startswith(api.GROUP + "/")
        ):
            return _text(ref.get("uid")) or None
    return _labels(metadata).get(api.LABEL_UID) or None


def child_key(child: ObservedChild) -> ChildKey:
    if isinstance(child, ObservedObject):
        return (child.api_version, child.kind, child.name)
    return (*_KINDS[type(child)], child.name)


_KINDS: dict[type, tuple[str, str]] = {
    ObservedPod: ("v1", "Pod"),
    ObservedJob: ("batch/v1", "Job"),
    ObservedDeployment: ("apps/v1", "Deployment"),
    ObservedService: ("v1", "Service"),
    ObservedEndpointSlice: api.ENDPOINT_SLICE,
    ObservedLease: api.LEASE,
}


def observed_from_children(children: Iterable[ObservedChild]) -> Observed:
    """Sort observed children by kind, in a stable order (by name), whatever order they came in."""
    ordered = sorted(children, key=child_key)
    return Observed(
        pods=tuple(c for c in ordered if isinstance(c, ObservedPod)),
        jobs=tuple(c for c in ordered if isinstance(c, ObservedJob)),
        deployments=tuple(c for c in ordered if isinstance(c, ObservedDeployment)),
        services=tuple(c for c in ordered if isinstance(c, ObservedService)),
        endpoint_slices=tuple(c for c in ordered if isinstance(c, ObservedEndpointSlice)),
        others=tuple(c for c in ordered if isinstance(c, ObservedObject)),
        leases=tuple(c for c in ordered if isinstance(c, ObservedLease)),
    )


def with_pod_create_failures(observed: Observed, pod_create_failures: Mapping[str, str]) -> Observed:
    """`pod_create_failures`: Job name -> why its pod could not be created (see pod_refusals.py)."""
    if not pod_create_failures:
        return observed
    jobs = tuple(
        dataclasses.replace(job, pod_create_failure=pod_create_failures[job.name])
        if job.name in pod_create_failures
        else job
        for job in observed.jobs
    )
    return dataclasses.replace(observed, jobs=jobs)


def observed_from_objects(objects: Iterable[object], pod_create_failures: Mapping[str, str] | None = None) -> Observed:
    """Sort raw API objects (Pods, Jobs, Deployments, Services, anything else) into Observed."""
    observed = observed_from_children(child for child in map(observe, objects) if child is not None)
    return with_pod_create_failures(observed, pod_create_failures or {})
