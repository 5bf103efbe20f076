"""A fake API server below the Kubernetes client's real ApiClient interface (param_serialize,
call_api) and its real DynamicClient, so that the client's own discovery code and the operator's
requests run unchanged, and every request is recorded.

It serves discovery (GET /version, /api/v1, /apis, /apis/<group>/<version>) for `kinds`; POSTs
(a create, its dry run) echo the body; and, for objects put in it with `add`, `modify` and
`delete` (or created by POSTs with `store_creates`), GETs, PUTs that carry the resourceVersion
they read (409 Conflict otherwise), paginated LISTs and WATCHes with a label selector of
`key=value` terms, as the real API server does: a watch from a version older than the compacted
one gets an ERROR 410 event, an object that leaves the selector is sent as DELETED and one that
enters it as ADDED. Tests can make the next requests fail (`fail`), fail or hang requests by
method and path (`intercept`), and end every watch now (`end_watches`).
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlencode

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient


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

    def collection(self, namespace: str | None) -> str:
        prefix = f"/apis/{self.group_version}" if self.group else "/api/v1"
        return f"{prefix}/namespaces/{namespace}/{self.plural}" if namespace else f"{prefix}/{self.plural}"


LEASE_KIND = ServedKind("coordination.k8s.io", "v1", "Lease", "leases")
# The kinds of children every run has (kube.CHILD_KINDS).
CORE_KINDS = (
    ServedKind("", "v1", "Pod", "pods"),
    ServedKind("", "v1", "Service", "services"),
    ServedKind("batch", "v1", "Job", "jobs"),
    ServedKind("apps", "v1", "Deployment", "deployments"),
    ServedKind("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    LEASE_KIND,  # the slots of locks across runs (and the election's Lease)
)
# Everything an operator process watches or writes, and a kind of setup manifest.
OPERATOR_KINDS = (
    *CORE_KINDS,
    ServedKind("", "v1", "Event", "events"),
    ServedKind("", "v1", "ConfigMap", "configmaps"),
    ServedKind("flowrun.dev", "v1alpha1", "FlowRun", "flowruns"),
    ServedKind("flowrun.dev", "v1alpha1", "Flow", "flows"),
    ServedKind("flowrun.dev", "v1alpha1", "CronFlowRun", "cronflowruns"),
)


@dataclass
class _Event:
    version: int
    type: str
    obj: dict[str, Any]
    previous: dict[str, Any] | None


class _Answer:
    """What ApiClient.call_api returns (a RESTResponse) and its urllib3 response in one."""

    def __init__(self, status: int, data: bytes = b"", chunks: Iterator[bytes] | None = None) -> None:
        self.status, self.reason, self.data = status, "OK" if status < 300 else "Error", data
        self.response = self
        self._chunks = chunks
        self.closed = False

    def read(self) -> bytes:
        return self.data

    def stream(self, amt: Any = None, decode_content: Any = None) -> Iterator[bytes]:
        yield from self._chunks if self._chunks is not None else iter([self.data])

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


def _matches(obj: dict[str, Any] | None, selector: str | None, fields: str | None = None) -> bool:
    """Whether the object is selected by a label selector and a field selector (`metadata.name=`
    terms only) of `key=value` terms."""
    if obj is None:
        return False
    for term in (fields or "").split(","):
        key, _, value = term.partition("=")
        if key == "metadata.name" and (obj.get("metadata") or {}).get("name") != value:
            return False
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in (selector or "").split(","):
        if not term:
            continue
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


@dataclass
class FakeApiServer:
    kinds: list[ServedKind] = field(default_factory=lambda: list(CORE_KINDS))
    requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path), in order
    configuration: Any = field(default_factory=lambda: SimpleNamespace(host="https://127.0.0.1:6443"))
    watch_seconds: float = 5.0  # a watch request ends after this (or its timeoutSeconds) at most
    # POSTs create objects (AlreadyExists for a name taken; a dry run stores nothing); else echoed.
    store_creates: bool = False

    def __post_init__(self) -> None:
        # Called with (method, path) before every request is served: it may raise (the request
        # fails) or block (the request hangs).
        self.intercept: Callable[[str, str], None] = lambda method, path: None
        self.version = 100
        self.compacted = 0  # a watch from a version below this is Gone (410)
        self.failures: list[BaseException] = []  # raised by the next requests, in order
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (collection, namespace, name) -> object
        self.events: list[tuple[str, str, _Event]] = []  # (plural path, namespace, event)
        self.changed = threading.Condition()
        self.watch_generation = 0  # end_watches() ends every watch open before it

    def discovery_fetches(self) -> int:
        """How often the whole discovery (the list of API groups) was fetched."""
        return self.requests.count(("GET", "/apis"))

    def dynamic_client(self, tmp_path: Path) -> DynamicClient:
        return DynamicClient(self, cache_file=str(tmp_path / "discovery-cache.json"))

    # --- objects -------------------------------------------------------------------------------

    def _kind(self, obj: dict[str, Any]) -> ServedKind:
        api_version, kind = obj["apiVersion"], obj["kind"]
        return next(k for k in self.kinds if (k.group_version, k.kind) == (api_version, kind))

    def _store(self, type_: str, obj: dict[str, Any]) -> dict[str, Any]:
        served = self._kind(obj)
        metadata = obj.setdefault("metadata", {})
        namespace, name = metadata.get("namespace", ""), metadata["name"]
        key = (served.plural, namespace, name)
        with self.changed:
            self.version += 1
            previous = self.objects.get(key)
            if previous is not None:  # the same object: its UID and creation time stay
                metadata.setdefault("uid", previous["metadata"]["uid"])
                metadata.setdefault("creationTimestamp", previous["metadata"].get("creationTimestamp"))
            metadata.setdefault("uid", f"uid-{name}-{self.version}")
            metadata["resourceVersion"] = str(self.version)
            if type_ == "DELETED":
                self.objects.pop(key, None)
            else:
                self.objects[key] = copy.deepcopy(obj)
            self.events.append((served.plural, namespace, _Event(self.version, type_, copy.deepcopy(obj), previous)))
            self.changed.notify_all()
        return copy.deepcopy(obj)

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self._store("ADDED", copy.deepcopy(obj))

    def modify(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self._store("MODIFIED", copy.deepcopy(obj))

    def delete(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self._store("DELETED", copy.deepcopy(obj))

    def compact(self) -> None:
        """Forget every event so far: a watch from an older version is Gone."""
        with self.changed:
            self.compacted = self.version
            self.changed.notify_all()

    def fail(self, *errors: BaseException) -> None:
        self.failures.extend(errors)

    def end_watches(self) -> None:
        with self.changed:
            self.watch_generation += 1
            self.changed.notify_all()

    # --- what the clients call on their ApiClient -------------------------------------------------

    def select_header_accept(self, accepts: list[str]) -> str:
        return accepts[0]

    def param_serialize(
        self, method: str, path: str = "", query_params: Any = None, body: Any = None, **more: Any
    ) -> tuple[str, str, Any]:
        path = path or more.get("resource_path", "")  # the generated clients name it so
        for key, value in (more.get("path_params") or {}).items():
            path = path.replace("{" + key + "}", str(value))
        query = f"?{urlencode(query_params)}" if query_params else ""
        return method, path + query, body

    def call_api(self, method: str, url: str, body: Any, _request_timeout: Any = None) -> Any:
        path, _, query_text = url.partition("?")
        query = dict(parse_qsl(query_text))
        self.requests.append((method, path))
        self.intercept(method, path)
        if self.failures and not self._discovery(path):
            raise self.failures.pop(0)
        if method == "GET" and query.get("watch") == "true":
            return self._watch(path, query)
        collection = self._collection(path)
        if collection is not None:
            if method == "GET":
                return self._list(path, query)
            if method == "POST" and self.store_creates:
                return self._create(collection, body, query)
        item = self._item(path)
        if item is not None:
            return self._on_object(method, *item, body)
        if path in ("/readyz", "/livez", "/healthz"):
            return _Answer(200, b"ok")  # text, as the API server answers them
        answer = self._answer(method, path, body)
        if answer is None:
            return _status(404, "NotFound", "not found")
        return _Answer(200, json.dumps(answer).encode())

    def response_deserialize(self, response: Any, types: Any) -> None:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = response.data.decode() if isinstance(response.data, bytes) else response.data
        raise error

    # --- objects through the API ------------------------------------------------------------------

    def _item(self, path: str) -> tuple[ServedKind, str, str, str] | None:
        """(kind, namespace, name, subresource) of an object's path."""
        parts = path.rstrip("/").split("/")
        for subresource in ("", "status"):
            trimmed = parts[:-1] if subresource else parts
            if subresource and parts[-1] != subresource:
                continue
            found = self._collection("/".join(trimmed[:-1]))
            if found is not None and found[1] is not None:
                return found[0], found[1], trimmed[-1], subresource
        return None

    def _create(self, collection: tuple[ServedKind, str | None], body: Any, query: dict[str, str]) -> Any:
        served, namespace = collection
        obj = copy.deepcopy(body)
        obj.setdefault("metadata", {})["namespace"] = namespace
        if (served.plural, namespace, obj["metadata"]["name"]) in self.objects:
            return _status(409, "AlreadyExists", f'{served.plural} "{obj["metadata"]["name"]}" already exists')
        if query.get("dryRun"):
            return _Answer(201, json.dumps(obj).encode())
        return _Answer(201, json.dumps(self.add(obj)).encode())

    def _on_object(self, method: str, served: ServedKind, namespace: str, name: str, sub: str, body: Any) -> Any:
        with self.changed:
            current = copy.deepcopy(self.objects.get((served.plural, namespace, name)))
        if current is None:
            return _status(404, "NotFound", f'{served.plural} "{name}" not found')
        if method == "GET":
            return _Answer(200, json.dumps(current).encode())
        if method == "DELETE":
            finalizers = (current.get("metadata") or {}).get("finalizers")
            if finalizers:
                current["metadata"].setdefault("deletionTimestamp", "2026-01-01T00:00:00Z")
                return _Answer(200, json.dumps(self.modify(current)).encode())
            return _Answer(200, json.dumps(self.delete(current)).encode())
        if method == "PUT":
            return self._replace(current, body)
        if method == "PATCH" and isinstance(body, list):  # a JSON patch: test and remove
            return self._json_patch(current, body)
        if method == "PATCH":
            return self._merge_patch(current, body, sub)
        return _status(405, "MethodNotAllowed", method)

    def _merge_patch(self, current: dict[str, Any], body: Any, sub: str) -> Any:
        patch = body if not sub else {"status": (body or {}).get("status")}
        if not sub:
            patch = {k: v for k, v in patch.items() if k != "status"}
        version = ((patch.get("metadata") or {}).get("resourceVersion")) if isinstance(patch, dict) else None
        if version is not None and version != current["metadata"]["resourceVersion"]:
            return _status(409, "Conflict", "the object has been modified")
        merged = merge(current, patch)
        stored = self.modify(merged)
        if not stored["metadata"].get("finalizers") and stored["metadata"].get("deletionTimestamp"):
            stored = self.delete(stored)
        return _Answer(200, json.dumps(stored).encode())

    def _replace(self, current: dict[str, Any], body: Any) -> Any:
        """A PUT: only of the version it was read at."""
        if (body.get("metadata") or {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return _status(409, "Conflict", "the object has been modified")
        replaced = copy.deepcopy(body)
        replaced["metadata"]["namespace"] = current["metadata"].get("namespace", "")
        return _Answer(200, json.dumps(self.modify(replaced)).encode())

    def _json_patch(self, current: dict[str, Any], operations: list[dict[str, Any]]) -> Any:
        for operation in operations:
            keys = operation["path"].strip("/").split("/")
            parent: Any = current
            for key in keys[:-1]:
                parent = parent[int(key)] if isinstance(parent, list) else parent[key]
            last: Any = int(keys[-1]) if isinstance(parent, list) else keys[-1]
            if (
                operation["op"] == "test"
                and (parent[last] if isinstance(parent, list) else parent.get(last)) != operation["value"]
            ):
                return _status(422, "Invalid", "the test operation failed")
            if operation["op"] == "remove":
                del parent[last]
        stored = self.modify(current)
        if not stored["metadata"].get("finalizers") and stored["metadata"].get("deletionTimestamp"):
            stored = self.delete(stored)
        return _Answer(200, json.dumps(stored).encode())

    # --- answers -------------------------------------------------------------------------------

    def _discovery(self, path: str) -> bool:
        return path in ("/version", "/api", "/apis") or (path.count("/") <= 3 and path.startswith(("/api/", "/apis/")))

    def _collection(self, path: str) -> tuple[ServedKind, str | None] | None:
        for served in self.kinds:
            if path == served.collection(None):
                return served, None
            prefix = served.collection("\0").split("\0")[0]
            if path.startswith(prefix) and path.endswith("/" + served.plural):
                namespace = path[len(prefix) :].split("/")[0]
                if path == served.collection(namespace):
                    return served, namespace
        return None

    def _list(self, path: str, query: dict[str, str]) -> Any:
        found = self._collection(path)
        assert found is not None
        served, namespace = found
        selector, fields = query.get("labelSelector"), query.get("fieldSelector")
        with self.changed:
            items = [
                copy.deepcopy(obj)
                for (plural, ns, _), obj in sorted(self.objects.items())
                if plural == served.plural and namespace in (None, ns) and _matches(obj, selector, fields)
            ]
            version = self.version
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or len(items) or 1)
        page = items[start : start + limit]
        token = str(start + limit) if start + limit < len(items) else None
        for item in page:
            item.pop("apiVersion", None)  # list items carry neither
            item.pop("kind", None)
        metadata: dict[str, Any] = {"resourceVersion": str(version)}
        if token:
            metadata["continue"] = token
        return _Answer(200, json.dumps({"kind": f"{served.kind}List", "metadata": metadata, "items": page}).encode())

    def _watch(self, path: str, query: dict[str, str]) -> Any:
        found = self._collection(path)
        assert found is not None
        served, namespace = found
        since = int(query.get("resourceVersion") or 0)
        selector, fields = query.get("labelSelector"), query.get("fieldSelector")
        timeout = min(float(query.get("timeoutSeconds") or self.watch_seconds), self.watch_seconds)
        return _Answer(200, chunks=self._events(served, namespace, selector, since, timeout, fields))

    def _events(
        self,
        served: ServedKind,
        namespace: str | None,
        selector: str | None,
        since: int,
        timeout: float,
        fields: str | None = None,
    ) -> Iterator[bytes]:
        deadline = time.monotonic() + timeout
        generation = self.watch_generation
        if since < self.compacted:
            gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version"}
            yield json.dumps({"type": "ERROR", "object": gone}).encode() + b"\n"
            return
        sent = since
        while time.monotonic() < deadline:
            with self.changed:
                if self.watch_generation != generation:
                    return
                pending = [
                    e
                    for plural, ns, e in self.events
                    if e.version > sent and plural == served.plural and namespace in (None, ns)
                ]
                if not pending:
                    self.changed.wait(min(0.05, max(deadline - time.monotonic(), 0)))
                    continue
            for event in pending:
                sent = event.version
                line = self._seen_as(event, selector, fields)
                if line is not None:
                    yield json.dumps(line).encode() + b"\n"

    @staticmethod
    def _seen_as(event: _Event, selector: str | None, fields: str | None = None) -> dict[str, Any] | None:
        """The event as a watch with `selector` sees it (the API server's watch cache rules)."""
        now = event.type != "DELETED" and _matches(event.obj, selector, fields)
        before = _matches(event.previous, selector, fields)
        if now and not before:
            return {"type": "ADDED", "object": event.obj}
        if now:
            return {"type": "MODIFIED", "object": event.obj}
        if before:
            return {"type": "DELETED", "object": event.obj}
        return None

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
                                "name": k.plural + suffix,
                                "kind": k.kind,
                                "namespaced": k.namespaced,
                                "verbs": ["create", "get", "list", "watch", "delete", "patch"],
                            }
                            for k in served
                            for suffix in ("", "/status")
                        ],
                    }
        return None


def _status(code: int, reason: str, message: str) -> _Answer:
    answer = _Answer(code, json.dumps({"kind": "Status", "code": code, "reason": reason, "message": message}).encode())
    answer.reason = reason
    return answer


def merge(current: Any, patch: Any) -> Any:
    """A JSON merge patch (RFC 7386)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = dict(current) if isinstance(current, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge(merged.get(key), value)
    return merged
