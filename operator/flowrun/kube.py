"""The operator's only code that talks to the Kubernetes API (kopf's discovery at start-up aside;
the plugin has a client of its own, plugin/client.py, and uses this one for its dry runs): connect;
list and watch for the informers (on connections of their own); create and delete children and
dry-run them, read logs, write status and finalizers, post and read events; read Flows and
CronFlowRuns and write their status; create, cancel and delete the FlowRuns of a CronFlowRun; and
what an error of the API server means (a refusal for good, or try again); the Lease of leader
election, and the fence that keeps a replica that does not lead from writing. Synchronous: the
controllers call it from worker threads.

Requests go through the dynamic client's discovery (for the paths) but answers are plain dicts
parsed from the JSON once (`serialize=False`): the client's object wrapping costs more than the
request on the hot path. Every request but a watch is counted in `flowrun_api_requests_total`."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3.util
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError
from kubernetes.dynamic.resource import Resource

from flowrun import api, metrics
from flowrun.ratelimit import TokenBucket

logger = logging.getLogger(__name__)

# Children of every run, whatever its spec says, kept in the operator's watch caches;
# setup.manifests may add other kinds. EndpointSlices are not the operator's: the EndpointSlice
# controller makes them for the Services of setup Deployments, with the Services' labels (so the
# same selector and index find them), and deletes them with their Service. They are watched
# because a block is Ready only once each of its Services has a ready endpoint; they are never
# created, deleted or swept as orphans (their Service is). The Leases of the lock slots runs hold
# (docs/semantics.md, "Locks") are children too: a pass reads every lock's Leases from that cache.
CHILD_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "Pod"),
    ("batch/v1", "Job"),
    ("apps/v1", "Deployment"),
    ("v1", "Service"),
    api.ENDPOINT_SLICE,
    api.LEASE,
)
REQUEST_TIMEOUT = 30  # seconds: no request may hang a pass, or the plugin, for ever
# A watch's connection that stays silent this much longer than the watch's own timeout is broken
# (half-open): it is given up and the watch goes on from the last version on a new one.
WATCH_SILENCE_SECONDS = 30
# HTTP statuses of a create (or its dry run) that mean "this object is refused", not "try again
# later": Bad Request, Forbidden (RBAC, a quota, an admission policy), Not Found (no such
# namespace or resource), Invalid. 409 AlreadyExists is success (or a ForeignObject); 429, 5xx
# and timeouts are transient: the create is simply sent again on the next pass.
PERMANENT_REJECTIONS = (400, 403, 404, 422)
# A kind discovery did not find is not looked up again for this long: every pass of a run naming it
# would otherwise fetch the whole discovery again. Not forever: a CRD installed later is found.
UNKNOWN_KIND_RECHECK_SECONDS = 60.0


def _json(response: Any) -> dict[str, Any]:
    """The body of a raw (serialize=False) answer as a dict. Reading it to the end is also what
    gives its connection back to the pool: an answer left unread costs the next request a new
    TLS connection."""
    data = getattr(response, "data", None)
    parsed = json.loads(data) if data else {}
    return parsed if isinstance(parsed, dict) else {}


LEASES = "leases"


def _leases(namespace: str) -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/{LEASES}"


def _count(verb: str, resource: Resource) -> None:
    metrics.API_REQUESTS.labels(verb=verb, resource=str(getattr(resource, "name", "") or "")).inc()


MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def _patch(resource: Resource, namespace: str, name: str, body: Any, content_type: str = MERGE_PATCH) -> dict[str, Any]:
    """One counted patch; the object as the API server stored it."""
    _count("patch", resource)
    return _json(
        resource.patch(
            name=name,
            namespace=namespace,
            body=body,
            content_type=content_type,
            serialize=False,
            _request_timeout=REQUEST_TIMEOUT,
        )
    )


def connect(pool_size: int) -> client.ApiClient:
    """A client of the cluster KUBECONFIG (or ~/.kube/config) names, else of the one the process
    runs in. One attempt per request: a failed pass is retried by the work queue, and an
    unreachable API server is probed by one request, not by every request three times."""
    configuration = client.Configuration()
    try:
        config.load_kube_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_incluster_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = pool_size
    configuration.retries = urllib3.util.Retry(total=1, connect=0, status=0, redirect=0)
    return client.ApiClient(configuration)


class NotLeading(RuntimeError):
    """A write refused before it was sent: the code that asked for it may not write now (with leader
    election: it works for a term of leadership that has ended, or for none)."""


class Fence:
    """Whether the calling thread may write now: asked by FencedApiClient before every write. Open
    until leader election sets `may_write` (controller/election.py)."""

    def __init__(self) -> None:
        self.may_write: Callable[[], bool] = lambda: True


class FencedApiClient:
    """An ApiClient whose requests other than GET are sent only while its fence says so at the
    moment of sending; else they raise NotLeading and never leave the process. Every request of
    the controllers goes through it: with leader election, a replica that is not, or no longer,
    the leader creates, patches and deletes nothing, whatever a thread of an ended term is still
    doing. Every other attribute is the wrapped client's."""

    def __init__(self, inner: Any, fence: Fence) -> None:
        self._inner = inner
        self._fence = fence

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if method.upper() != "GET" and not self._fence.may_write():
            raise NotLeading(f"{method.upper()} {url.split('?')[0]} not sent: this replica does not lead")
        return self._inner.call_api(method, url, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ThrottledApiClient:
    """An ApiClient whose every request first takes a token of the operator's rate limit
    (`--qps`/`--burst`, ratelimit.py), waiting for one if need be: the controllers' requests and
    discovery's (through the fence), the informers' lists and watches (on their own pools). A
    watch takes one token when it is sent, as in client-go, and none for the events it streams
    afterwards. The Lease's requests take none (Kube.with_own_pool(throttled=False)): as client-go's
    leader election has a client of its own, a renewal never waits behind the passes' requests.
    Every other attribute is the wrapped client's."""

    def __init__(self, inner: Any, limit: TokenBucket) -> None:
        self._inner = inner
        self.limit = limit

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        waited = self.limit.wait()
        if waited > 0:
            metrics.API_THROTTLED.inc(waited)
        return self._inner.call_api(method, url, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ForeignObject(RuntimeError):
    """A child name is taken by an object that does not belong to this run."""


class UnknownKind(RuntimeError):
    """A kind the operator makes no child of: the API server serves no such apiVersion/kind."""


class ClusterScopedKind(UnknownKind):
    """The kind is served but cluster-scoped. Children live in the FlowRun's namespace: an object
    outside every namespace (a Namespace, a ClusterRole) is never created for a run, whatever
    the operator's own RBAC would allow."""


class ChildrenUnreadable(RuntimeError):
    """Listing a kind of the run's children is refused for good (403, or 404: say the CRD of a
    manifest's kind was deleted while the operator runs): nothing can be decided about the run,
    whose children may still exist."""


class Discovery:
    """Which API resource serves each kind, found once through the dynamic client's discovery and
    shared by every Kube of the process (the informers' included)."""

    def __init__(
        self,
        api_client: client.ApiClient,
        dynamic: DynamicClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_client = api_client
        self._dynamic = dynamic
        self._clock = clock
        self._resources: dict[tuple[str, str], Resource] = {}
        self._unknown: dict[tuple[str, str], float] = {}  # (apiVersion, kind) -> when discovery missed it
        # The client's discovery cache is not safe for concurrent use, and passes run in threads.
        self._lock = threading.Lock()

    @property
    def dynamic(self) -> DynamicClient:
        if self._dynamic is None:
            self._dynamic = DynamicClient(self._api_client)
        return self._dynamic

    def resource(self, api_version: str, kind: str) -> Resource:
        """The API resource serving that kind; UnknownKind if the API server serves none."""
        key = (api_version, kind)
        found = self._resources.get(key)
        if found is not None:
            return found
        with self._lock:
            return self._discover(key)

    def _discover(self, key: tuple[str, str]) -> Resource:
        api_version, kind = key
        if key in self._resources:
            return self._resources[key]
        missed = self._unknown.get(key)
        if missed is not None and self._clock() - missed < UNKNOWN_KIND_RECHECK_SECONDS:
            raise UnknownKind(f"the API server serves no {kind} in {api_version}")
        try:
            # On a miss the client's discovery refreshes itself once (a CRD installed since the
            # last look) before it raises.
            found = self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError as error:
            self._unknown[key] = self._clock()
            raise UnknownKind(f"the API server serves no {kind} in {api_version}") from error
        self._unknown.pop(key, None)
        self._resources[key] = found
        return found


class Kube:
    def __init__(
        self,
        api_client: client.ApiClient,
        dynamic: DynamicClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        discovery: Discovery | None = None,
        new_pool: Callable[[], Any] | None = None,
        limit: TokenBucket | None = None,
    ) -> None:
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.discovery = discovery or Discovery(api_client, dynamic, clock)
        # Makes an ApiClient of the same cluster with connections of its own.
        self._new_pool = new_pool or (lambda: client.ApiClient(api_client.configuration))
        # The rate limit every pool of this Kube shares (its own api_client is wrapped by whoever
        # made it); None: none.
        self.limit = limit

    def with_own_pool(self, throttled: bool = True) -> Kube:
        """A Kube that shares this one's discovery but sends its requests on connections of its
        own: a watch then never holds a connection a pass is waiting for. Its requests take tokens
        of this Kube's rate limit unless `throttled` is False (the Lease's)."""
        pool = self._new_pool()
        if throttled and self.limit is not None:
            pool = ThrottledApiClient(pool, self.limit)
        return Kube(pool, discovery=self.discovery, new_pool=self._new_pool, limit=self.limit)

    @property
    def dynamic(self) -> DynamicClient:
        return self.discovery.dynamic

    def resource(self, api_version: str, kind: str) -> Resource:
        """The API resource serving that kind; UnknownKind if the API server serves none."""
        return self.discovery.resource(api_version, kind)

    def probe(self) -> None:
        """One cheap request: raises while the API server cannot be reached or is not ready (its
        storage is not), as an API server that has just started is for a few seconds."""
        metrics.API_REQUESTS.labels(verb="get", resource="readyz").inc()
        # The answer is the text `ok` (any non-2xx status raises): read to its end, never parsed.
        _ = self.dynamic.request("get", "/readyz", serialize=False, _request_timeout=REQUEST_TIMEOUT).data

    def flowruns(self) -> Resource:
        return self.resource(api.API_VERSION, api.KIND)

    # --- FlowRun, Flow, CronFlowRun ------------------------------------------------------------

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An object of one of the operator's own kinds (FlowRun, Flow, CronFlowRun), or None."""
        resource = self.resource(api.API_VERSION, kind)
        _count("get", resource)
        try:
            return _json(
                resource.get(name=name, namespace=namespace, serialize=False, _request_timeout=REQUEST_TIMEOUT)
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def get_flowrun(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get_object(api.KIND, namespace, name)

    def patch_object_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of the status: keys set to None are removed, `status.kopf` is left
        alone. Returns the object as the API server stored it."""
        return _patch(self.resource(api.API_VERSION, kind).status, namespace, name, {"status": dict(status)})

    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        """The FlowRun's status (see patch_object_status)."""
        return self.patch_object_status(api.KIND, namespace, name, status)

    def add_finalizer(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Put the operator's finalizer on a FlowRun, keeping the others. The patch carries the
        resourceVersion read: a FlowRun changed meanwhile answers 409 (the next pass tries again),
        so a finalizer someone else added at the same moment is never lost."""
        metadata = body["metadata"]
        finalizers = [*(metadata.get("finalizers") or []), api.FINALIZER]
        patch = {"metadata": {"finalizers": finalizers, "resourceVersion": metadata.get("resourceVersion")}}
        return _patch(self.flowruns(), metadata["namespace"], metadata["name"], patch)

    def remove_finalizer(self, body: Mapping[str, Any]) -> dict[str, Any] | None:
        """Take the operator's finalizer off a FlowRun: a JSON patch that tests the entry it removes,
        so another finalizer is never removed by mistake (a changed list answers 422; the next pass
        tries again). Returns the object as stored, or None if the FlowRun is gone."""
        metadata = body["metadata"]
        finalizers = list(metadata.get("finalizers") or [])
        if api.FINALIZER not in finalizers:
            return dict(body)
        index = finalizers.index(api.FINALIZER)
        patch = [
            {"op": "test", "path": f"/metadata/finalizers/{index}", "value": api.FINALIZER},
            {"op": "remove", "path": f"/metadata/finalizers/{index}"},
        ]
        try:
            return _patch(self.flowruns(), metadata["namespace"], metadata["name"], patch, JSON_PATCH)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def create_flowrun(self, manifest: Mapping[str, Any]) -> bool:
        """Create a FlowRun; False if one of that name exists already (its name is deterministic:
        the one created by an earlier pass)."""
        resource = self.flowruns()
        _count("create", resource)
        try:
            _json(
                resource.create(
                    body=dict(manifest),
                    namespace=manifest["metadata"]["namespace"],
                    serialize=False,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )
            return True
        except ApiException as error:
            if error.status != 409:
                raise
            return False

    def patch_flowrun(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """A JSON merge patch of a FlowRun (spec.cancel); NotFound is success (nothing left to change)."""
        try:
            _patch(self.flowruns(), namespace, name, dict(patch))
        except ApiException as error:
            if error.status != 404:
                raise

    def delete_flowrun(self, namespace: str, name: str) -> None:
        resource = self.flowruns()
        _count("delete", resource)
        try:
            _json(resource.delete(name=name, namespace=namespace, serialize=False, _request_timeout=REQUEST_TIMEOUT))
        except ApiException as error:
            if error.status != 404:
                raise

    # --- children ----------------------------------------------------------------------------

    def list_page(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        selector: str | None,
        limit: int,
        token: str | None,
        fields: str | None = None,
    ) -> dict[str, Any]:
        """One page of a LIST (a consistent read): the list object, its items given the apiVersion
        and kind that list items do not carry. `selector` selects by labels, `fields` by fields
        (metadata.name=NAME)."""
        resource = self.resource(api_version, kind)
        _count("list", resource)
        query: list[tuple[str, Any]] = [("limit", limit)]
        if selector:
            query.append(("labelSelector", selector))
        if fields:
            query.append(("fieldSelector", fields))
        if token:
            query.append(("continue", token))
        page = _json(self._get(resource.path(namespace=namespace), query, REQUEST_TIMEOUT))
        for item in page.get("items") or []:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return page

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        selector: str | None,
        resource_version: str,
        timeout_seconds: int,
        fields: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """The events of a WATCH from `resource_version` on, as sent ({"type", "object"}), until the
        server ends it after `timeout_seconds`. The request is sent (and refused or accepted) before
        this returns. The client gives up on a connection silent for WATCH_SILENCE_SECONDS longer
        than that (a half-open connection raises, never hangs)."""
        resource = self.resource(api_version, kind)
        query: list[tuple[str, Any]] = [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", timeout_seconds),
        ]
        if selector:
            query.append(("labelSelector", selector))
        if fields:
            query.append(("fieldSelector", fields))
        timeout = (REQUEST_TIMEOUT, timeout_seconds + WATCH_SILENCE_SECONDS)
        return _events(self._get(resource.path(namespace=namespace), query, timeout), api_version, kind)

    def _get(self, path: str, query: list[tuple[str, Any]], timeout: Any) -> Any:
        """A GET on this Kube's own connections: the raw answer (a stream), ApiException if it is
        not a success."""
        return self._send("GET", path, query, timeout)

    def _send(
        self, method: str, path: str, query: list[tuple[str, Any]], timeout: Any, body: Mapping[str, Any] | None = None
    ) -> Any:
        """A request on this Kube's own connections: the raw answer, ApiException if it is not a
        success."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = self.api_client.param_serialize(
            method, path, query_params=query, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        answer = self.api_client.call_api(*request, _request_timeout=timeout)
        if not 200 <= answer.status <= 299:
            data = answer.read()
            error = ApiException(status=answer.status, reason=getattr(answer, "reason", None))
            error.body = data.decode(errors="replace") if isinstance(data, bytes) else data
            raise error
        return answer.response

    # --- leader election (controller/election.py) --------------------------------------------

    def get_lease(self, namespace: str, name: str, timeout: float) -> dict[str, Any] | None:
        """The Lease, or None if there is none."""
        metrics.API_REQUESTS.labels(verb="get", resource=LEASES).inc()
        try:
            return _json(self._send("GET", f"{_leases(namespace)}/{name}", [], timeout))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def create_lease(self, lease: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """Create the Lease; ApiException 409 if another replica created it first."""
        metrics.API_REQUESTS.labels(verb="create", resource=LEASES).inc()
        namespace = lease["metadata"]["namespace"]
        return _json(self._send("POST", _leases(namespace), [], timeout, body=lease))

    def replace_lease(self, lease: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """Write the Lease as a whole, if it is still at the resourceVersion it carries
        (ApiException 409 if anyone wrote it since)."""
        metrics.API_REQUESTS.labels(verb="update", resource=LEASES).inc()
        metadata = lease["metadata"]
        return _json(self._send("PUT", f"{_leases(metadata['namespace'])}/{metadata['name']}", [], timeout, body=lease))

    def allowed(self, namespace: str, group: str, plural: str, verb: str) -> bool:
        """Whether the operator may `verb` the `plural` of `group` in `namespace`: a
        SelfSubjectAccessReview (every authenticated user may send one)."""
        resource = self.resource("authorization.k8s.io/v1", "SelfSubjectAccessReview")
        _count("create", resource)
        attributes = {"namespace": namespace, "group": group, "resource": plural, "verb": verb}
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes},
        }
        answer = _json(resource.create(body=review, serialize=False, _request_timeout=REQUEST_TIMEOUT))
        return bool((answer.get("status") or {}).get("allowed"))

    def get_child(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A child by name, as the API server has it now (None if it does not exist): for one the
        caches do not show but the run's status vouches for."""
        try:
            resource = self.resource(api_version, kind)
        except UnknownKind:
            return None
        _count("get", resource)
        try:
            found = _json(
                resource.get(name=name, namespace=namespace, serialize=False, _request_timeout=REQUEST_TIMEOUT)
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        found.setdefault("apiVersion", api_version)
        found.setdefault("kind", kind)
        return found

    def patch_labels(self, api_version: str, kind: str, namespace: str, name: str, labels: Mapping[str, str]) -> None:
        """Set these labels on a child (a merge patch; its other labels stay)."""
        _patch(self.resource(api_version, kind), namespace, name, {"metadata": {"labels": dict(labels)}})

    def child_resource(self, api_version: str, kind: str) -> Resource:
        """The API resource of a child's kind: UnknownKind if not served, ClusterScopedKind if not
        namespaced (the dynamic client would silently drop the namespace and make a cluster
        object)."""
        resource = self.resource(api_version, kind)
        if not resource.namespaced:
            raise ClusterScopedKind(f"{kind} in {api_version} is cluster-scoped: children must be namespaced")
        return resource

    def create(self, manifest: Mapping[str, Any], uid: str) -> dict[str, Any] | None:
        """Create if absent. Returns the object as created, or None if this run's object of that
        name exists already (created by an earlier pass)."""
        metadata = manifest["metadata"]
        resource = self.child_resource(manifest["apiVersion"], manifest["kind"])
        _count("create", resource)
        try:
            created = _json(
                resource.create(
                    body=dict(manifest),
                    namespace=metadata["namespace"],
                    serialize=False,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )
            created.setdefault("apiVersion", manifest["apiVersion"])
            created.setdefault("kind", manifest["kind"])
            return created
        except ApiException as error:
            if error.status != 409:
                raise
            conflict = error
        _count("get", resource)
        try:
            existing = _json(
                resource.get(
                    name=metadata["name"],
                    namespace=metadata["namespace"],
                    serialize=False,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )
        except ApiException as error:
            if error.status == 404:
                raise conflict from error  # gone meanwhile: a 409 is transient, the next pass creates it
            raise
        wanted = {**(metadata.get("labels") or {}), api.LABEL_UID: uid}
        differing = proof_missing(wanted, (existing.get("metadata") or {}).get("labels") or {})
        if differing:
            # The API server's own words, and why that is a refusal: the name is taken for good.
            raise ForeignObject(
                f"{conflict.status} {conflict.reason}: {api_message(conflict)}; the existing object was not"
                f" created as this child of this FlowRun ({', '.join(differing)}) and is left alone"
            )
        return None

    def take_lock(self, lease: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create the Lease of a lock's slot (engine.TakeLock). Returns it as created, or None if a
        lock's Lease of that name exists already: another run (or an earlier pass of this one) took
        the slot first, as the API server decides between two creates. ForeignObject if the name is
        taken by a Lease that is no lock's."""
        metadata = lease["metadata"]
        resource = self.child_resource(*api.LEASE)
        _count("create", resource)
        try:
            created = _json(
                resource.create(
                    body=dict(lease), namespace=metadata["namespace"], serialize=False, _request_timeout=REQUEST_TIMEOUT
                )
            )
            created.setdefault("apiVersion", api.LEASE[0])
            created.setdefault("kind", api.LEASE[1])
            return created
        except ApiException as error:
            if error.status != 409:
                raise
            conflict = error
        existing = self.get_child(*api.LEASE, metadata["namespace"], metadata["name"])
        if existing is None:
            raise conflict  # gone meanwhile: transient, the next pass takes it again
        labels = (existing.get("metadata") or {}).get("labels") or {}
        if labels.get(api.LABEL_ROLE) != api.ROLE_LOCK or labels.get(api.LABEL_MANAGED_BY) != api.MANAGED_BY:
            raise ForeignObject(
                f"{conflict.status} {conflict.reason}: {api_message(conflict)}; the existing Lease is not a lock's"
                f" ({api.LABEL_ROLE}={api.ROLE_LOCK}) and is left alone"
            )
        return None

    def namespace_terminating(self, namespace: str) -> bool:
        """Whether the namespace is being deleted: a dry-run create of an empty ConfigMap in it is
        refused with cause NamespaceTerminating (the operator may create ConfigMaps there, and need
        not read Namespaces, which are cluster-scoped). Any other failure says no."""
        manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "flowrun-probe-"}}
        resource = self.resource("v1", "ConfigMap")
        _count("create", resource)
        try:
            _json(
                resource.create(
                    body=manifest, namespace=namespace, dry_run="All", serialize=False, _request_timeout=REQUEST_TIMEOUT
                )
            )
        except ApiException as error:
            return refused_as_terminating(error)
        return False

    def dry_run_create(self, manifest: Mapping[str, Any]) -> None:
        """Server-side dry run with strict field validation (an unknown or duplicate field is
        refused, not dropped): raises ApiException (or UnknownKind, ClusterScopedKind) if the
        server would refuse it, or the operator would."""
        resource = self.child_resource(manifest["apiVersion"], manifest["kind"])
        _count("create", resource)
        _json(
            resource.create(
                body=dict(manifest),
                namespace=manifest["metadata"]["namespace"],
                dry_run="All",
                query_params=[("fieldValidation", "Strict")],
                serialize=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        )

    def delete(self, namespace: str, api_version: str, kind: str, name: str, propagation: str) -> None:
        """Delete; NotFound is success (the object is gone, which is what was asked)."""
        try:
            resource = self.resource(api_version, kind)
        except UnknownKind:
            return
        _count("delete", resource)
        try:
            _json(
                resource.delete(
                    name=name,
                    namespace=namespace,
                    body={"propagationPolicy": propagation},
                    serialize=False,
                    _request_timeout=REQUEST_TIMEOUT,
                )
            )
        except ApiException as error:
            if error.status != 404:
                raise

    def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str:
        metrics.API_REQUESTS.labels(verb="get", resource="pods/log").inc()
        try:
            log: str | None = self.core.read_namespaced_pod_log(
                pod, namespace, container=container, tail_lines=lines, _request_timeout=REQUEST_TIMEOUT
            )
            # None: no body, the answer for a pod that has no node (never scheduled), hence no log.
            return log or ""
        except ApiException as error:
            return f"(logs unavailable: {error.status} {error.reason})"

    # --- events ------------------------------------------------------------------------------

    def event_messages(self, namespace: str, field_selector: str) -> list[str]:
        """The messages of the Events the field selector selects, oldest first."""
        metrics.API_REQUESTS.labels(verb="list", resource="events").inc()
        listed = self.core.list_namespaced_event(namespace, field_selector=field_selector, _request_timeout=10)
        return [str(event.message) for event in listed.items or [] if event.message]

    def post_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event on one of the operator's objects (a FlowRun, Flow or CronFlowRun)."""
        metadata = involved["metadata"]
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{metadata['name']}.{secrets.token_hex(8)}", "namespace": metadata["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion") or api.API_VERSION,
                "kind": involved.get("kind") or api.KIND,
                "name": metadata["name"],
                "namespace": metadata["namespace"],
                "uid": metadata["uid"],
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": api.MANAGED_BY},
            "reportingComponent": api.MANAGED_BY,
            "reportingInstance": api.MANAGED_BY,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        resource = self.resource("v1", "Event")
        _count("create", resource)
        try:
            _json(
                resource.create(
                    body=event, namespace=metadata["namespace"], serialize=False, _request_timeout=REQUEST_TIMEOUT
                )
            )
        except ApiException as error:
            # An event is a courtesy: never let it fail a pass (the namespace may be terminating).
            logger.warning("could not post event %s on %s: %s", reason, metadata["name"], error.reason)


def refused_as_terminating(error: ApiException) -> bool:
    """The create was refused because its namespace is being deleted (the API server says so in
    a cause whose reason is NamespaceTerminating)."""
    try:
        causes = (json.loads(error.body).get("details") or {}).get("causes") or []
    except (TypeError, ValueError, AttributeError):
        return False
    return any(isinstance(c, dict) and c.get("reason") == "NamespaceTerminating" for c in causes)


def proof_missing(wanted: Mapping[str, str], existing: Mapping[str, str]) -> list[str]:
    """What an existing object lacks of the labels proving that this run created it as this child
    (the run's UID, the role, the task or block, the attempt): `label=value` for each differing one.
    Only such an object is adopted by a create that finds its name taken."""
    operator_keys = [k for k in wanted if k.startswith(f"{api.GROUP}/") or k == api.LABEL_MANAGED_BY]
    return [f"{k}={wanted[k]}" for k in sorted(operator_keys) if existing.get(k) != wanted[k]]


def api_message(error: ApiException) -> str:
    """The API server's message in an error (its Status body), else the HTTP reason."""
    try:
        return str(json.loads(error.body).get("message") or error.reason)
    except (TypeError, ValueError, AttributeError):
        return str(error.reason)


def manifest_fields(spec: object) -> list[tuple[str, str, str]]:
    """(field, apiVersion, kind) of every setup manifest, read leniently from a raw spec."""
    found: list[tuple[str, str, str]] = []
    resources = spec.get("resources") if isinstance(spec, Mapping) else None
    for i, resource in enumerate(resources if isinstance(resources, list) else []):
        setup = resource.get("setup") if isinstance(resource, Mapping) else None
        manifests = setup.get("manifests") if isinstance(setup, Mapping) else None
        for j, manifest in enumerate(manifests if isinstance(manifests, list) else []):
            if (
                isinstance(manifest, Mapping)
                and isinstance(manifest.get("apiVersion"), str)
                and isinstance(manifest.get("kind"), str)
            ):
                found.append((f"spec.resources[{i}].setup.manifests[{j}]", manifest["apiVersion"], manifest["kind"]))
    return found


def manifest_kinds(spec: object) -> list[tuple[str, str]]:
    """The (apiVersion, kind) of every setup manifest, read leniently from a raw spec."""
    return [(api_version, kind) for _, api_version, kind in manifest_fields(spec)]


def _events(response: Any, api_version: str, kind: str) -> Iterator[dict[str, Any]]:
    """The events of a watch's streamed answer, one JSON object a line; the connection is given
    back when the stream ends or is dropped."""
    try:
        for line in _lines(response):
            event = json.loads(line)
            if isinstance(event, dict) and isinstance(event.get("object"), dict):
                event["object"].setdefault("apiVersion", api_version)
                event["object"].setdefault("kind", kind)
                yield event
    finally:
        response.close()
        release = getattr(response, "release_conn", None)
        if release is not None:
            release()


def _lines(response: Any) -> Iterator[bytes]:
    """The lines of a streamed answer (a watch sends one JSON event a line)."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk if isinstance(chunk, bytes) else str(chunk).encode()
        *complete, buffer = buffer.split(b"\n")
        yield from (line for line in complete if line.strip())
    if buffer.strip():
        yield buffer


def refusal_message(error: ApiException) -> str | None:
    """`403 Forbidden: <the API server's message>` if the error refuses a create for good, else
    None (transient: sent again on the next pass)."""
    if error.status not in PERMANENT_REJECTIONS:
        return None
    return f"{error.status} {error.reason}: {api_message(error)}"
