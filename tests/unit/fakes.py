"""Fakes for unit tests of the operator's Kubernetes side. FakeKube: what a FlowRun pass asks of the
API (PassApi) and of the caches (PassCaches), in memory, and the watch caches' view of the run it
hands the pass (`run`)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from kubernetes.client.exceptions import ApiException

from flowrun import api
from flowrun.controller.flowrun_pass import FlowRunPass, PassResult
from flowrun.kube import CHILD_KINDS, ChildrenUnreadable
from flowrun.locks import Claim, LockView, lock_view, semaphore_limit
from flowrun.model import Lock
from flowrun.observed import ObservedChild, ObservedLease, observe
from tests.unit.fake_api_server import merge

NS, UID = "team", "uid-77"


def api_error(status: int, reason: str, message: str | None = None) -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = json.dumps({"kind": "Status", "message": message}) if message is not None else None
    return error


class FakeKube:
    """PassApi and PassCaches in memory. `errors` maps "Kind/name" to what its create raises;
    `flows` is the Flow cache's lookup."""

    def __init__(self, spec: dict[str, Any], errors: dict[str, Exception]) -> None:
        self.body: dict[str, Any] = {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {
                "name": "x",
                "namespace": NS,
                "uid": UID,
                "generation": 1,
                "creationTimestamp": "2024-05-01T12:00:00Z",
                "finalizers": [api.FINALIZER],
            },
            "spec": spec,
            "status": {},
        }
        self.errors = errors
        self.objects: list[dict[str, Any]] = []
        self.create_calls: list[str] = []
        self.events: list[tuple[str, str, str]] = []
        self.event_objects: list[str] = []  # "Kind/name" of the object of each event, in order
        # Other FlowRuns by name (the original of a rerun); get_flowrun finds the run itself too.
        self.others: dict[str, dict[str, Any]] = {}
        self.reads: list[str] = []  # names of the FlowRuns read, in order
        self.calls: list[str] = []  # "patch_status", "create Kind/name", in order
        self.list_error: Exception | None = None  # what reading children of other kinds raises
        self.watch_error: ChildrenUnreadable | None = None  # why a watched kind cannot be listed
        self.flows: Callable[[str, str], Mapping[str, Any] | None] = lambda namespace, name: None
        # The messages of a Job's FailedCreate Events (none unless a test adds some).
        self.job_events: list[str] = []
        self.denied: set[tuple[str, str]] = set()  # (plural, verb) the operator may not use
        self.logs = ""  # what every pod's log tail reads
        self.cluster_scoped: set[str] = set()  # kinds discovery says are not namespaced
        self.claims: list[Claim] = []  # what the runs of the namespace want of locks
        self.config_maps: dict[str, dict[str, str]] = {}  # the ConfigMaps of semaphores
        self.namespace_deleting = False  # whether the namespace is being deleted

    def passes(self, clock: Callable[[], float] | None = None) -> FlowRunPass:
        """The FlowRun passes, with this fake as their API and their caches; every status written
        at once, unless a clock is given (then a pods-started status is held back as in production)."""
        if clock is None:
            return FlowRunPass(self, self, hold_started=0.0)
        return FlowRunPass(self, self, clock=clock)

    def run(self, passes: FlowRunPass) -> PassResult:
        """A pass over the run and its children of the watched kinds, as the caches would hold them
        (those labelled as the operator's: its watches select them so)."""
        watched = [
            o
            for o in self.objects
            if (o["apiVersion"], o["kind"]) in CHILD_KINDS
            and (o["metadata"].get("labels") or {}).get(api.LABEL_MANAGED_BY) == api.MANAGED_BY
        ]
        children = [child for child in map(observe, copy.deepcopy(watched)) if child is not None]
        return passes.run(copy.deepcopy(self.body), children)

    # --- PassCaches ----------------------------------------------------------------------------

    def other_children(self, namespace: str, uid: str, kinds: Any) -> list[ObservedChild]:
        if self.list_error is not None:
            raise self.list_error
        wanted = set(kinds)
        listed = [copy.deepcopy(o) for o in self.objects if (o["apiVersion"], o["kind"]) in wanted]
        return [child for child in map(observe, listed) if child is not None]

    def children_unreadable(self, namespace: str) -> ChildrenUnreadable | None:
        return self.watch_error

    def flow(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.flows(namespace, name)

    def lock_views(self, namespace: str, locks: Sequence[Lock]) -> dict[str, LockView]:
        """Each lock with the Leases among `objects`, the claims of `claims` and its limit in
        `config_maps`."""
        leases = [c for c in map(observe, copy.deepcopy(self.objects)) if isinstance(c, ObservedLease)]
        return {
            lock.id: lock_view(lock, leases, self.claims, semaphore_limit(lock, self.config_maps.get(lock.name)))
            for lock in locks
        }

    # --- PassApi -------------------------------------------------------------------------------

    def event_messages(self, namespace: str, field_selector: str) -> list[str]:
        return list(self.job_events)

    def resource(self, api_version: str, kind: str) -> Any:
        return SimpleNamespace(name=kind.lower() + "s", namespaced=kind not in self.cluster_scoped)

    def allowed(self, namespace: str, group: str, plural: str, verb: str) -> bool:
        self.calls.append(f"allowed {verb} {plural}")
        return (plural, verb) not in self.denied

    def get_child(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.calls.append(f"get {kind}/{name}")
        found = next((o for o in self.objects if (o["kind"], o["metadata"]["name"]) == (kind, name)), None)
        return copy.deepcopy(found)

    def patch_labels(self, api_version: str, kind: str, namespace: str, name: str, labels: Mapping[str, str]) -> None:
        self.calls.append(f"patch_labels {kind}/{name}")
        for o in self.objects:
            if (o["kind"], o["metadata"]["name"]) == (kind, name):
                o["metadata"]["labels"] = {**(o["metadata"].get("labels") or {}), **labels}

    def get_flowrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(name)
        other = self.body if name == self.body["metadata"]["name"] else self.others.get(name)
        return copy.deepcopy(other) if other is not None else None

    def namespace_terminating(self, namespace: str) -> bool:
        self.calls.append("namespace_terminating")
        return self.namespace_deleting

    def dry_run_create(self, manifest: Mapping[str, Any]) -> None:
        self.calls.append(f"dry run {manifest['kind']}/{manifest['metadata']['name']}")

    def create(self, manifest: Mapping[str, Any], uid: str) -> dict[str, Any] | None:
        ref = f"{manifest['kind']}/{manifest['metadata']['name']}"
        self.create_calls.append(ref)
        self.calls.append(f"create {ref}")
        if ref in self.errors:
            raise self.errors[ref]
        self.objects.append(copy.deepcopy(dict(manifest)))
        return copy.deepcopy(dict(manifest))

    def take_lock(self, lease: Mapping[str, Any]) -> dict[str, Any] | None:
        ref = f"Lease/{lease['metadata']['name']}"
        self.calls.append(f"take {ref}")
        if ref in self.errors:
            raise self.errors[ref]
        if any((o["kind"], o["metadata"]["name"]) == ("Lease", lease["metadata"]["name"]) for o in self.objects):
            return None  # taken first by another run
        self.objects.append(copy.deepcopy(dict(lease)))
        return copy.deepcopy(dict(lease))

    def delete(self, namespace: str, api_version: str, kind: str, name: str, propagation: str) -> None:
        self.calls.append(f"delete {kind}/{name}")
        self.objects = [o for o in self.objects if (o["kind"], o["metadata"]["name"]) != (kind, name)]

    def pod_log_tail(self, *args: Any) -> str:
        return self.logs

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """A merge patch of the status, as the API server applies it."""
        self.calls.append("patch_status")
        self.body["status"] = merge(self.body.get("status") or {}, dict(status))
        return copy.deepcopy(self.body)

    def add_finalizer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append("add_finalizer")
        self.body["metadata"]["finalizers"] = [*(self.body["metadata"].get("finalizers") or []), api.FINALIZER]
        return copy.deepcopy(self.body)

    def remove_finalizer(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        self.calls.append("remove_finalizer")
        finalizers = [f for f in self.body["metadata"].get("finalizers") or [] if f != api.FINALIZER]
        self.body["metadata"]["finalizers"] = finalizers
        return copy.deepcopy(self.body)

    def post_event(self, flowrun: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))
        self.event_objects.append(f"{flowrun.get('kind', api.KIND)}/{flowrun['metadata']['name']}")

    def delete_flowrun(self, namespace: str, name: str) -> None:
        pass


def pod_task(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}, **fields}
