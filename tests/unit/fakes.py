"""Fakes for unit tests of the operator's Kubernetes side. FakeKube: just what Reconciler.run_pass
calls on a Kube, in memory, and the watch caches' view of the run it hands the pass (`run`).
FakeApiServer: a fake API server's discovery endpoints below the
Kubernetes client's real DynamicClient, so the client's own discovery code runs unchanged and
every request it sends is recorded."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from flowrun import api
from flowrun.kube import CHILD_KINDS
from flowrun.observed import observe
from flowrun.reconciler import PassResult, Reconciler

NS, UID = "team", "uid-77"


def api_error(status: int, reason: str, message: str | None = None) -> ApiException:
    error = ApiException(status=status, reason=reason)
    error.body = json.dumps({"kind": "Status", "message": message}) if message is not None else None
    return error


class FakeKube:
    """Just what Reconciler.run_pass calls. `errors` maps "Kind/name" to what its create raises."""

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
        self.others: dict[str, dict[str, Any]] = {}  # other FlowRuns by name (the original of a rerun)
        self.reads: list[str] = []  # names of the FlowRuns read, in order
        self.calls: list[str] = []  # "patch_status", "create Kind/name", in order
        self.list_error: Exception | None = None  # what listing children of other kinds raises
        # The core API as PodRefusals reads it: the Events of a Job (none unless a test adds some).
        self.job_events: list[SimpleNamespace] = []
        self.core = SimpleNamespace(list_namespaced_event=lambda namespace, **_: SimpleNamespace(items=self.job_events))

    def run(self, reconciler: Reconciler) -> PassResult:
        """A pass over the run and its children of the watched kinds, as the caches would hold them."""
        watched = [o for o in self.objects if (o["apiVersion"], o["kind"]) in CHILD_KINDS]
        children = [child for child in map(observe, copy.deepcopy(watched)) if child is not None]
        return reconciler.run_pass(copy.deepcopy(self.body), children)

    def get_flowrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(name)
        other = self.others.get(name)
        return copy.deepcopy(other) if other is not None else None

    def list_children(self, namespace: str, uid: str, kinds: Any) -> list[dict[str, Any]]:
        if self.list_error is not None:
            raise self.list_error
        wanted = set(kinds)
        return [copy.deepcopy(o) for o in self.objects if (o["apiVersion"], o["kind"]) in wanted]

    def dry_run_create(self, manifest: Mapping[str, Any]) -> None:
        pass

    def create(self, manifest: Mapping[str, Any], uid: str) -> dict[str, Any] | None:
        ref = f"{manifest['kind']}/{manifest['metadata']['name']}"
        self.create_calls.append(ref)
        self.calls.append(f"create {ref}")
        if ref in self.errors:
            raise self.errors[ref]
        self.objects.append(copy.deepcopy(dict(manifest)))
        return copy.deepcopy(dict(manifest))

    def delete(self, *args: Any) -> None:
        pass

    def pod_log_tail(self, *args: Any) -> str:
        return ""

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """A merge patch of the top-level keys (what the reconciler's patches need)."""
        self.calls.append("patch_status")
        merged = {**self.body.get("status", {}), **status}
        self.body["status"] = {k: v for k, v in merged.items() if v is not None}
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


@dataclass
class ServedKind:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


CORE_KINDS = (
    ServedKind("", "v1", "Pod", "pods"),
    ServedKind("", "v1", "Service", "services"),
    ServedKind("batch", "v1", "Job", "jobs"),
    ServedKind("apps", "v1", "Deployment", "deployments"),
)


@dataclass
class FakeApiServer:
    """Answers GET /version, /api/v1, /apis and /apis/<group>/<version> from `kinds`; a POST (a
    create or its dry run) echoes the body back. Stands in for an ApiClient."""

    kinds: list[ServedKind] = field(default_factory=lambda: list(CORE_KINDS))
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path), in order
    configuration: Any = field(default_factory=lambda: SimpleNamespace(host="https://127.0.0.1:6443"))

    def discovery_fetches(self) -> int:
        """How often the whole discovery (the list of API groups) was fetched."""
        return self.requests.count(("GET", "/apis"))

    def dynamic_client(self, tmp_path: Path) -> DynamicClient:
        return DynamicClient(self, cache_file=str(tmp_path / "discovery-cache.json"))

    # --- what DynamicClient calls on its ApiClient ----------------------------------------------

    def select_header_accept(self, accepts: list[str]) -> str:
        return accepts[0]

    def param_serialize(self, method: str, path: str, body: Any = None, **_: Any) -> tuple[str, str, Any]:
        return method, path, body

    def call_api(self, method: str, path: str, body: Any, _request_timeout: Any = None) -> Any:
        self.requests.append((method, path))
        answer = self._answer(method, path, body)
        data = json.dumps(answer).encode() if answer is not None else b'{"kind": "Status", "code": 404}'
        return SimpleNamespace(status=200 if answer is not None else 404, response=SimpleNamespace(data=data))

    def response_deserialize(self, response: Any, types: Any) -> None:
        raise AssertionError(f"unexpected request in a unit test: {self.requests[-1]}")

    def _answer(self, method: str, path: str, body: Any) -> Any:
        if method == "POST":
            return body
        if path == "/version":
            return {"major": "1", "minor": "33", "gitVersion": "v1.33.0"}
        if path == "/apis":
            groups = sorted({(k.group, k.version) for k in self.kinds if k.group})
            return {
                "kind": "APIGroupList",
                "groups": [
                    {
                        "name": group,
                        "versions": [{"groupVersion": f"{group}/{version}", "version": version}],
                        "preferredVersion": {"groupVersion": f"{group}/{version}", "version": version},
                    }
                    for group, version in groups
                ],
            }
        for prefix in ("/api/", "/apis/"):
            if path.startswith(prefix):
                group_version = path.removeprefix(prefix)
                served = [k for k in self.kinds if k.group_version == group_version]
                if served or group_version == "v1":
                    return {
                        "kind": "APIResourceList",
                        "groupVersion": group_version,
                        "resources": [
                            {
                                "name": k.plural,
                                "kind": k.kind,
                                "namespaced": k.namespaced,
                                "verbs": ["create", "get", "list"],
                            }
                            for k in served
                        ],
                    }
        return None
