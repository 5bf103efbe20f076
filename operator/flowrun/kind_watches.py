"""Watch caches of the kinds of children kopf does not watch: the kinds of setup manifests
(ConfigMaps, PersistentVolumeClaims, custom resources...), known only once a run names them.

kopf's watches are fixed when the operator starts, so each such kind gets, in each namespace
where a run names it, a watch of its own, started by the first pass that needs it: one LIST, then
a WATCH from that list's resourceVersion (listed again after a 410 Gone), of the objects labelled
as the operator's. A pass reads the kind from that cache, waiting for its first list if it has
just been started; every event of an object wakes its run. Each watch runs in a thread of its
own (passes are synchronous too) and lives as long as the operator.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from kubernetes.client.exceptions import ApiException

from flowrun import api
from flowrun.kube import REQUEST_TIMEOUT, ChildrenUnreadable, Kube, UnknownKind, api_message
from flowrun.observed import ChildKey, ObservedChild, child_key, observe

logger = logging.getLogger(__name__)

SELECTOR = f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}"
WATCH_SECONDS = 300  # the server ends each watch request after this; the next goes on from there
RETRY_SECONDS = 5.0  # after a failed list or watch
REFUSED_RETRY_SECONDS = 60.0  # after a list refused for good (403, 404), tried again this much later

# Called for every event of an object: (the run's UID, the object's key).
Notify = Callable[[str, ChildKey], None]


class KindWatch(threading.Thread):
    """The objects of one kind in one namespace that carry the operator's label, by run UID."""

    def __init__(self, kube: Kube, api_version: str, kind: str, namespace: str, notify: Notify) -> None:
        super().__init__(name=f"watch-{kind}-{namespace}", daemon=True)
        self.kube, self.api_version, self.kind, self.namespace = kube, api_version, kind, namespace
        self.notify = notify
        self.synced = threading.Event()  # the first list is in (or it was refused: `error`)
        self.error: ChildrenUnreadable | None = None
        self._objects: dict[str, tuple[str, ObservedChild]] = {}  # name -> (run UID, child)
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def children(self, uid: str) -> list[ObservedChild]:
        with self._lock:
            return [child for owner, child in self._objects.values() if owner == uid]

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                resource_version: str | None = self._list()
                self.error = None
                self.synced.set()
                while not self._stopped.is_set() and resource_version is not None:
                    resource_version = self._watch(resource_version)
            except ApiException as error:
                if error.status in (403, 404):
                    self.error = ChildrenUnreadable(
                        f"listing {self.kind} in {self.api_version}: {error.status} {api_message(error)}"
                    )
                    self.synced.set()
                    self._stopped.wait(REFUSED_RETRY_SECONDS)
                else:
                    self._stopped.wait(RETRY_SECONDS)
            except Exception as error:  # a dropped connection, an unreachable API server
                logger.debug("watch of %s in %s failed: %s", self.kind, self.namespace, error)
                self._stopped.wait(RETRY_SECONDS)

    def _list(self) -> str:
        resource = self.kube.resource(self.api_version, self.kind)
        listed = json.loads(
            resource.get(
                namespace=self.namespace, label_selector=SELECTOR, serialize=False, _request_timeout=REQUEST_TIMEOUT
            ).data
        )
        seen: dict[str, tuple[str, ObservedChild]] = {}
        for item in listed.get("items") or []:
            item.setdefault("apiVersion", self.api_version)
            item.setdefault("kind", self.kind)
            entry = _entry(item)
            if entry is not None:
                seen[entry[1].name] = entry
        with self._lock:
            changed = {name for name in self._objects.keys() | seen.keys() if self._objects.get(name) != seen.get(name)}
            before = dict(self._objects)
            self._objects = seen
        for name in changed:
            owner, child = seen.get(name) or before[name]
            self.notify(owner, child_key(child))
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self, resource_version: str) -> str | None:
        """Events from `resource_version` on, until the server ends the request: the version to go
        on from, or None when it is too old (410 Gone: list again)."""
        resource = self.kube.resource(self.api_version, self.kind)
        for event in self.kube.dynamic.watch(
            resource,
            namespace=self.namespace,
            label_selector=SELECTOR,
            resource_version=resource_version,
            timeout=WATCH_SECONDS,
            allow_watch_bookmarks=True,
        ):
            if self._stopped.is_set():
                return None
            raw: dict[str, Any] = event["raw_object"]
            if event["type"] == "ERROR":
                return None  # 410 Gone, the only error a watch sends: list again
            resource_version = str(raw["metadata"]["resourceVersion"])
            if event["type"] == "BOOKMARK":
                continue
            entry = _entry(raw)
            if entry is None:
                continue
            owner, child = entry
            with self._lock:
                if event["type"] == "DELETED":
                    self._objects.pop(child.name, None)
                else:
                    self._objects[child.name] = entry
            self.notify(owner, child_key(child))
        return resource_version


def _entry(raw: dict[str, Any]) -> tuple[str, ObservedChild] | None:
    uid = ((raw.get("metadata") or {}).get("labels") or {}).get(api.LABEL_UID)
    child = observe(raw)
    return (uid, child) if uid and child is not None else None


class KindWatches:
    """Every KindWatch of the operator, started on first use."""

    def __init__(self, kube: Kube, notify: Notify) -> None:
        self.kube = kube
        self.notify = notify
        self._watches: dict[tuple[str, str, str], KindWatch] = {}
        self._lock = threading.Lock()

    def children(self, namespace: str, uid: str, kinds: Iterable[tuple[str, str]]) -> list[ObservedChild]:
        """The run's children of these kinds. Waits for a watch's first list (a transient
        TimeoutError if it takes longer than a request may); ChildrenUnreadable if the kind
        cannot be listed or watched; a kind the API server does not serve has no children."""
        found: list[ObservedChild] = []
        for api_version, kind in dict.fromkeys(kinds):
            try:
                self.kube.resource(api_version, kind)
            except UnknownKind:
                continue  # the dry run reports it as a spec error; nothing of that kind exists
            watch = self._watch(api_version, kind, namespace)
            if not watch.synced.wait(REQUEST_TIMEOUT):
                raise TimeoutError(f"the first list of {kind} in {namespace} takes longer than {REQUEST_TIMEOUT}s")
            if watch.error is not None:
                raise watch.error
            found.extend(watch.children(uid))
        return found

    def _watch(self, api_version: str, kind: str, namespace: str) -> KindWatch:
        key = (api_version, kind, namespace)
        with self._lock:
            watch = self._watches.get(key)
            if watch is None:
                watch = self._watches[key] = KindWatch(self.kube, api_version, kind, namespace, self.notify)
                watch.start()
            return watch

    def stop(self) -> None:
        with self._lock:
            for watch in self._watches.values():
                watch.stop()
