"""Small builders for FlowRun specs and a fake cluster the engine's actions are applied to.

The fake cluster stores raw API-shaped dicts (camelCase), so every test also goes through
`observed_from_objects` exactly as the controller does.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from flowrun import api
from flowrun.engine import (
    CaptureLogs,
    CreateObject,
    DeleteFlowRun,
    DeleteObject,
    Event,
    Outcome,
    RunInput,
    ValidateObjects,
    decide,
)
from flowrun.observed import Observed, observed_from_objects
from flowrun.timestamps import format_time

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
RUN, NS, UID = "demo", "team", "uid-1234"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- spec builders ------------------------------------------------------------------------------


def container(name: str = "main", *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"name": name, "image": "example/image"}
    if args:
        c["args"] = list(args)
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return c


def template(*containers: dict[str, Any], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    tpl: dict[str, Any] = {"spec": {"containers": list(containers) or [container()]}}
    if annotations:
        tpl["metadata"] = {"annotations": annotations}
    return tpl


def task(name: str, *run_after: str, **fields: Any) -> dict[str, Any]:
    """A task; `args` sets the main container's args, other keyword args are spec fields."""
    args = fields.pop("args", ())
    out: dict[str, Any] = {"name": name, "template": fields.pop("template", template(container("main", *args)))}
    if run_after:
        out["runAfter"] = list(run_after)
    out.update(fields)
    return out


def resource(name: str, **fields: Any) -> dict[str, Any]:
    """A resource block; default setup is one deployment `db` with a port (so a Service)."""
    setup = fields.pop("setup", None)
    if setup is None:
        setup = {"deployments": [deployment("db")]}
    out: dict[str, Any] = {"name": name, "setup": setup}
    out.update(fields)
    return out


def deployment(name: str, replicas: int | str = 1, ports: bool = True, *args: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name, "replicas": replicas, "template": template(container(name, *args))}
    if ports:
        d["ports"] = [{"name": "tcp", "port": 5432}]
    return d


def job(*args: str) -> dict[str, Any]:
    return {"template": template(container("main", *args))}


def flow(*tasks: dict[str, Any], resources: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"tasks": list(tasks)}
    if resources:
        spec["resources"] = resources
    spec.update(fields)
    return spec


# -- fake cluster -------------------------------------------------------------------------------


def pod_name(task_name: str, attempt: int = 1) -> str:
    return f"{RUN}-{task_name}-{attempt}"


def slice_name(service: str) -> str:
    """The name of a Service's (one) EndpointSlice: the controller's generateName, made fixed."""
    return f"{service}-x7k2p"


READY_ENDPOINT = {"ready": True, "serving": True, "terminating": False}


class FakeCluster:
    """Objects by (kind, name). Deletion is immediate unless `graceful`: then it only marks the
    object, and `collect()` removes what is marked (as the kubelet and GC would)."""

    def __init__(self, graceful: bool = False) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.graceful = graceful
        self.created: list[str] = []  # "Kind/name" in creation order
        self.deleted: list[str] = []
        self.refusals: dict[str, str] = {}  # "Kind/name" prefix -> why the API server refuses it
        self.refused: list[str] = []  # "Kind/name" of every create refused, in order
        # Job name -> why the Job controller cannot create its pod (as its FailedCreate Event says)
        self.pod_create_failures: dict[str, str] = {}

    # applying engine actions
    def refuse(self, prefix: str, message: str) -> None:
        """Refuse for good every create whose "Kind/name" starts with `prefix` (a quota, a policy)."""
        self.refusals[prefix] = message

    def create(self, manifest: dict[str, Any], now: datetime | None = None) -> str | None:
        """Create if absent (with creationTimestamp `now`, when given); returns the refusal message
        if the create is refused."""
        key = (manifest["kind"], manifest["metadata"]["name"])
        ref = f"{key[0]}/{key[1]}"
        if key in self.objects:
            return None
        refusal = next((m for prefix, m in self.refusals.items() if ref.startswith(prefix)), None)
        if refusal is not None:
            self.refused.append(ref)
            return refusal
        self.objects[key] = copy.deepcopy(manifest)
        if now is not None:
            self.objects[key]["metadata"]["creationTimestamp"] = format_time(now)
        self.created.append(ref)
        return None

    def delete(self, kind: str, name: str) -> None:
        obj = self.objects.get((kind, name))
        if obj is None:
            return
        self.deleted.append(f"{kind}/{name}")
        if self.graceful:
            obj["metadata"]["deletionTimestamp"] = format_time(T0)
        else:
            self._remove(kind, name)

    def _remove(self, kind: str, name: str) -> None:
        obj = self.objects.pop((kind, name))
        # Background propagation: a Job's pods and a Deployment's pods go with it.
        if kind == "Job":
            for pod in self.job_pods(name):
                self.objects.pop(("Pod", pod["metadata"]["name"]), None)
        if kind == "Deployment":
            selector = obj["spec"]["selector"]["matchLabels"]
            for key, pod in list(self.objects.items()):
                labels = pod["metadata"]["labels"]
                if key[0] == "Pod" and all(labels.get(k) == v for k, v in selector.items()):
                    del self.objects[key]
        if kind == "Service":  # its EndpointSlices go with it (garbage collection)
            self.objects.pop(("EndpointSlice", slice_name(name)), None)

    def collect(self) -> None:
        for key, obj in list(self.objects.items()):
            if obj["metadata"].get("deletionTimestamp") and key in self.objects:
                self._remove(*key)

    def observed(self) -> Observed:
        return observed_from_objects(list(self.objects.values()), self.pod_create_failures)

    # reading
    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.objects[(kind, name)]

    def has(self, kind: str, name: str) -> bool:
        return (kind, name) in self.objects

    def names(self, kind: str) -> list[str]:
        return sorted(name for k, name in self.objects if k == kind)

    def job_pods(self, job_name: str) -> list[dict[str, Any]]:
        return [
            o
            for (k, _), o in self.objects.items()
            if k == "Pod" and o["metadata"]["labels"].get("job-name") == job_name
        ]

    # simulating the cluster
    def set_pod(
        self,
        name: str,
        phase: str,
        *,
        message: str = "",
        exit_code: int | None = None,
        reason: str = "",
        start: datetime | None = None,
        finish: datetime | None = None,
        container_name: str = "main",
    ) -> None:
        """Pod status as the kubelet reports it; times are left out unless given."""
        pod = self.objects[("Pod", name)]
        status: dict[str, Any] = {"phase": phase}
        if start is not None:
            status["startTime"] = format_time(start)
        if reason:
            status["reason"] = reason
        if phase in ("Succeeded", "Failed"):
            code = exit_code if exit_code is not None else (0 if phase == "Succeeded" else 1)
            terminated: dict[str, Any] = {
                "exitCode": code,
                "reason": "Completed" if code == 0 else "Error",
                "message": message,
            }
            if finish is not None:
                terminated["finishedAt"] = format_time(finish)
            status["containerStatuses"] = [{"name": container_name, "state": {"terminated": terminated}}]
        elif phase == "Running":
            status["containerStatuses"] = [{"name": container_name, "state": {"running": {}}}]
        pod["status"] = status

    def run_pod(self, name: str, start: datetime = T0) -> None:
        self.set_pod(name, "Running", start=start)

    def wait_pod(
        self,
        name: str,
        reason: str,
        message: str = "",
        *,
        container_name: str = "main",
        init: bool = False,
        phase: str = "Pending",
    ) -> None:
        """The kubelet reports a container of the pod waiting (ErrImagePull, ...); the pod's other
        reported containers keep their state."""
        status = self.objects[("Pod", name)].setdefault("status", {"phase": phase})
        status["phase"] = phase
        waiting = {"name": container_name, "state": {"waiting": {"reason": reason, "message": message}}}
        key = "initContainerStatuses" if init else "containerStatuses"
        others = [c for c in status.get(key, []) if c["name"] != container_name]
        status[key] = [*others, waiting]

    def unschedulable(self, name: str, message: str, reason: str = "Unschedulable") -> None:
        """The scheduler finds no node for the pod."""
        condition = {"type": "PodScheduled", "status": "False", "reason": reason, "message": message}
        self.objects[("Pod", name)]["status"] = {"phase": "Pending", "conditions": [condition]}

    def finish_job(self, name: str, *, succeeded: bool = True, message: str = "") -> None:
        """The Job controller ran the Job's pod to the end."""
        job = self.objects[("Job", name)]
        tpl = job["spec"]["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{name}-x1", "labels": {**tpl["metadata"]["labels"], "job-name": name}},
            "spec": tpl["spec"],
        }
        self.objects[("Pod", f"{name}-x1")] = pod
        main = tpl["spec"]["containers"][0]["name"]
        self.set_pod(f"{name}-x1", "Succeeded" if succeeded else "Failed", message=message, container_name=main)
        condition = {"type": "Complete" if succeeded else "Failed", "status": "True"}
        if not succeeded:
            condition.update(reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit")
        job["status"] = {"conditions": [condition], "succeeded" if succeeded else "failed": 1}

    def start_job(self, name: str) -> None:
        """The Job controller started the Job's pod, which is still running."""
        job = self.objects[("Job", name)]
        tpl = job["spec"]["template"]
        pod_name_ = f"{name}-x1"
        self.objects[("Pod", pod_name_)] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": pod_name_, "labels": {**tpl["metadata"]["labels"], "job-name": name}},
            "spec": tpl["spec"],
        }
        self.set_pod(pod_name_, "Running", container_name=tpl["spec"]["containers"][0]["name"])
        job["status"] = {"active": 1}

    def set_endpoints(self, service: str, *conditions: dict[str, bool]) -> None:
        """The Service's EndpointSlice as the EndpointSlice controller writes it: one endpoint per
        entry of `conditions` (e.g. {"ready": True, "serving": True, "terminating": False})."""
        labels = {**self.objects[("Service", service)]["metadata"]["labels"], api.LABEL_SERVICE_NAME: service}
        self.objects[("EndpointSlice", slice_name(service))] = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"name": slice_name(service), "labels": labels},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [f"10.0.0.{i + 1}"], "conditions": dict(c)} for i, c in enumerate(conditions)],
        }

    def make_available(self, name: str, *, endpoints: bool = True) -> None:
        """The Deployment's pods run and are Ready; its Service, if it has one, lists them as ready
        endpoints (unless `endpoints` is False: the EndpointSlice controller has not caught up)."""
        deployment = self.objects[("Deployment", name)]
        replicas = deployment["spec"]["replicas"]
        deployment["status"] = {"availableReplicas": replicas, "readyReplicas": replicas, "updatedReplicas": replicas}
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for i in range(replicas):
            pname = f"{name}-pod{i}"
            self.objects[("Pod", pname)] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pname, "labels": dict(labels)},
            }
            self.set_pod(pname, "Running", container_name="x")
        if endpoints and ("Service", name) in self.objects:
            self.set_endpoints(name, *[READY_ENDPOINT] * replicas)

    def add_other(self, manifest: dict[str, Any]) -> None:
        self.create(manifest)


# -- driving the engine -------------------------------------------------------------------------


class Sim:
    """A FlowRun being reconciled against a FakeCluster: keeps the status between passes,
    applies actions, and records events and outcomes."""

    def __init__(self, spec: dict[str, Any], cluster: FakeCluster | None = None, **run_fields: Any) -> None:
        self.cluster = cluster or FakeCluster()
        self.run = RunInput(name=RUN, namespace=NS, uid=UID, spec=spec, generation=1, created_at=T0, **run_fields)
        self.events: list[Event] = []
        self.outcome: Outcome | None = None
        self.dry_runs = 0

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.run.status  # RunInput.status is Any: it may be garbage
        return status

    def task(self, name: str) -> dict[str, Any]:
        task: dict[str, Any] = self.status["tasks"][name]
        return task

    def res(self, name: str) -> dict[str, Any]:
        resource: dict[str, Any] = self.status["resources"][name]
        return resource

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == kind)

    def update(self, **fields: Any) -> None:
        self.run = replace(self.run, **fields)

    def set_spec(self, **fields: Any) -> None:
        self.update(spec={**self.run.spec, **fields})

    def step(self, now: datetime = T0, *, apply: bool = True) -> Outcome:
        """One reconcile pass. Every pass is also checked for idempotency: repeating it with the
        status it wrote and the same children emits no event and creates nothing new."""
        observed = self.cluster.observed()
        outcome = decide(self.run, observed, now)
        assert_health_agrees(outcome.status)
        again = decide(replace(self.run, status=outcome.status), observed, now)
        assert again.events == (), again.events
        assert again.status == outcome.status
        assert set(creates(again)) <= set(creates(outcome)), creates(again)
        self.outcome = outcome
        self.events += outcome.events
        status = copy.deepcopy(outcome.status)
        # As a FlowRun pass does: this pass's refused creates go into the next pass only.
        refused: dict[str, str] = {}
        if apply:
            for action in outcome.actions:
                if isinstance(action, ValidateObjects):
                    self.dry_runs += 1
                elif isinstance(action, CreateObject):
                    refusal = self.cluster.create(action.manifest, now)
                    if refusal is not None:
                        refused[f"{action.manifest['kind']}/{action.manifest['metadata']['name']}"] = refusal
                elif isinstance(action, CaptureLogs):
                    status["tasks"][action.task]["logs"] = f"logs of {action.pod_name}"
                elif isinstance(action, DeleteObject):
                    self.cluster.delete(action.kind, action.name)
                elif isinstance(action, DeleteFlowRun):
                    self.update(deleting=True)
        self.run = replace(self.run, status=status, refused=refused)
        return outcome

    def event_reasons(self) -> list[str]:
        return [e[1] for e in self.events]


def health_of(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Ready, Reconciling and Stalled of a status: type -> (status, reason)."""
    kinds = (api.CONDITION_READY, api.CONDITION_RECONCILING, api.CONDITION_STALLED)
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"] if c["type"] in kinds}


def assert_health_agrees(status: dict[str, Any]) -> None:
    """Every status the engine writes: exactly one of Ready, Reconciling and Stalled is True, and
    it is the one the phase says (Ready: Succeeded; Stalled: Failed, Cancelled, or a failed cleanup
    holding the finalizer; Reconciling: Pending or Running)."""
    health = health_of(status)
    assert sorted(health) == ["Ready", "Reconciling", "Stalled"], health
    true = [kind for kind, (value, _) in health.items() if value == "True"]
    released = next(c for c in status["conditions"] if c["type"] == "ResourcesReleased")
    by_phase = {"Succeeded": "Ready", "Failed": "Stalled", "Cancelled": "Stalled"}
    expected = "Stalled" if released["reason"] == api.CLEANUP_BLOCKED else by_phase.get(status["phase"], "Reconciling")
    assert true == [expected], (status["phase"], health)
    assert len({reason for _, reason in health.values()}) == 1, health


def creates(outcome: Outcome) -> list[str]:
    """`Kind/name` of every CreateObject."""
    return [
        f"{a.manifest['kind']}/{a.manifest['metadata']['name']}" for a in outcome.actions if isinstance(a, CreateObject)
    ]


def deletes(outcome: Outcome) -> list[str]:
    return [f"{a.kind}/{a.name}" for a in outcome.actions if isinstance(a, DeleteObject)]


def phases(sim: Sim) -> dict[str, str]:
    return {name: t["phase"] for name, t in sim.status["tasks"].items()}


def succeed(sim: Sim, task_name: str, message: str = "", attempt: int = 1) -> None:
    sim.cluster.set_pod(pod_name(task_name, attempt), "Succeeded", message=message)


def fail(sim: Sim, task_name: str, attempt: int = 1, **kwargs: Any) -> None:
    sim.cluster.set_pod(pod_name(task_name, attempt), "Failed", **kwargs)


def assert_restart_safe(sim: Sim, now: datetime) -> Outcome:
    """A pass with the status lost (an empty status) creates nothing that exists or ever existed."""
    fresh = replace(sim.run, status={})
    outcome = decide(fresh, sim.cluster.observed(), now)
    assert not set(creates(outcome)) & set(sim.cluster.created), creates(outcome)
    return outcome
