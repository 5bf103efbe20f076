"""The observed children of one run, indexed for the engine's lookups, and what is read from a
finished container (its result)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from flowrun import api
from flowrun.api import RESULT_LIMIT
from flowrun.observed import Observed, ObservedChild, ObservedDeployment, ObservedLease, ObservedPod, Terminated


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


def _group(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def _label_int(labels: Mapping[str, str], key: str) -> int:
    value = labels.get(key, "")
    return int(value) if value.isascii() and value.isdigit() else 0


class Children:
    """The observed children of this run, indexed for lookups: those it controls (its owner
    reference) or that carry its UID label (the pods of its Jobs and Deployments), whatever else
    someone did to their labels. Read-only once built."""

    def __init__(self, observed: Observed, uid: str) -> None:
        def mine(child: ObservedChild) -> bool:
            return (child.run or child.labels.get(api.LABEL_UID)) == uid

        self.pods = [p for p in observed.pods if mine(p)]
        self.jobs = {j.name: j for j in observed.jobs if mine(j)}
        self._pods = {p.name: p for p in self.pods}
        self._deployments = {d.name: d for d in observed.deployments if mine(d)}
        self._services = {s.name: s for s in observed.services if mine(s)}
        # Service name -> its ready endpoints, over all its slices (a slice being deleted has none).
        self._ready_endpoints: Counter[str] = Counter()
        for piece in observed.endpoint_slices:
            if mine(piece) and not piece.deleting:
                self._ready_endpoints[piece.service] += piece.ready_endpoints
        # The Leases of the lock slots the run holds.
        self.leases: list[ObservedLease] = [lease for lease in observed.leases if mine(lease)]
        self._leases = {lease.name: lease for lease in self.leases}
        self._task_pods: dict[str, list[ObservedPod]] = {}
        for pod in self.pods:
            if pod.labels.get(api.LABEL_ROLE) == api.ROLE_TASK:
                self._task_pods.setdefault(pod.labels.get(api.LABEL_TASK, ""), []).append(pod)
        self._by_kind: dict[tuple[str, str], Mapping[str, ObservedChild]] = {
            ("", "Pod"): self._pods,
            ("batch", "Job"): self.jobs,
            ("apps", "Deployment"): self._deployments,
            ("", "Service"): self._services,
            ("coordination.k8s.io", "Lease"): self._leases,
        }
        self._others = {(_group(o.api_version), o.kind, o.name): o for o in observed.others if mine(o)}

    def exist(self) -> bool:
        """Whether the run has any child at all."""
        return bool(self.pods or self.jobs or self._deployments or self._services or self._others or self.leases)

    def find(self, ref: ObjectRef) -> ObservedChild | None:
        key = (_group(ref.api_version), ref.kind)
        if key in self._by_kind:
            return self._by_kind[key].get(ref.name)
        return self._others.get((key[0], ref.kind, ref.name))

    def pod(self, name: str | None) -> ObservedPod | None:
        return self._pods.get(name) if name else None

    def deployment(self, name: str) -> ObservedDeployment | None:
        return self._deployments.get(name)

    def ready_endpoints(self, service: str) -> int:
        """How many endpoints of Service `service` are ready, as its EndpointSlices say."""
        return self._ready_endpoints[service]

    def task_pods(self) -> list[ObservedPod]:
        return [p for pods in self._task_pods.values() for p in pods]

    def instance_pods(self, task: str) -> list[ObservedPod]:
        """The pods of the instances of forEach task `task`, every attempt."""
        return [p for p in self.task_pods() if p.labels.get(api.LABEL_INSTANCE_OF) == task]

    def max_attempt(self, task: str) -> int:
        return max((_label_int(p.labels, api.LABEL_ATTEMPT) for p in self._task_pods.get(task, ())), default=0)

    def max_cleanup_attempt(self, resource: str) -> int:
        return max(
            (
                _label_int(j.labels, api.LABEL_ATTEMPT)
                for j in self.jobs.values()
                if j.labels.get(api.LABEL_ROLE) == api.ROLE_CLEANUP and j.labels.get(api.LABEL_RESOURCE) == resource
            ),
            default=0,
        )

    def job_pods(self, job: str) -> list[ObservedPod]:
        return [p for p in self.pods if job in (p.labels.get("batch.kubernetes.io/job-name"), p.labels.get("job-name"))]

    def block_pods(self, resource: str) -> list[ObservedPod]:
        """Pods setup created for a block (setup job pods, deployment pods)."""
        return [
            p
            for p in self.pods
            if p.labels.get(api.LABEL_ROLE) == api.ROLE_SETUP and p.labels.get(api.LABEL_RESOURCE) == resource
        ]

    def has_block_objects(self, resource: str, role: str) -> bool:
        objects: list[ObservedChild] = [*self.pods, *self.jobs.values(), *self._deployments.values()]
        objects += [*self._services.values(), *self._others.values()]
        return any(
            o.labels.get(api.LABEL_ROLE) == role and o.labels.get(api.LABEL_RESOURCE) == resource for o in objects
        )


def termination(pod: ObservedPod, container: str) -> Terminated | None:
    """How `container` of `pod` ended (the first container if there is none of that name)."""
    status = next((c for c in pod.containers if c.name == container), None)
    if status is None and pod.containers:
        status = pod.containers[0]
    return None if status is None else status.terminated


def started(pod: ObservedPod, container: str) -> bool:
    """Whether `container` of `pod` runs or has run."""
    return any(c.started for c in pod.containers if c.name == container)


# Waiting reasons every pod goes through on its way to running: they say no more than its phase.
ROUTINE_WAITS = ("ContainerCreating", "PodInitializing")


def why_waiting(pod: ObservedPod, *, routine: bool = False) -> str:
    """Why `pod` has not started, from what the scheduler and the kubelet report, e.g.
    `unschedulable: 0/3 nodes are available: ...` or `container main: ErrImageNeverPull: Container
    image "x" is not present with pull policy of Never`; init containers first. Routine waits
    (ROUTINE_WAITS) only with `routine`. Empty when nothing waits."""
    parts = []
    if pod.not_scheduled is not None:
        reason = pod.not_scheduled.reason
        label = "unschedulable" if reason == "Unschedulable" else _join("not scheduled", reason)
        parts.append(_join(label, pod.not_scheduled.message))
    for kind, statuses in (("init container", pod.init_containers), ("container", pod.containers)):
        for status in statuses:
            waiting = status.waiting
            if waiting is not None and (routine or waiting.reason not in ROUTINE_WAITS):
                parts.append(_join(f"{kind} {status.name}", waiting.reason, waiting.message))
    return "; ".join(parts)


def _join(*parts: str) -> str:
    return ": ".join(p for p in parts if p)


def result(term: Terminated | None) -> tuple[str, str]:
    """(result, note) from a container's termination message, capped at the kubelet's 4 KiB."""
    message = term.message if term is not None else ""
    raw = message.encode()
    if len(raw) < RESULT_LIMIT:
        return message, ""
    capped = raw[:RESULT_LIMIT].decode(errors="ignore")
    return capped, "result reached the 4 KiB termination-message limit and may be truncated"
