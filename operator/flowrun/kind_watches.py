"""Watch caches of the kinds of setup manifests (ConfigMaps, PersistentVolumeClaims, custom
resources...), known only once a run names them.

Each such kind gets, in each namespace where a run names it, an informer of its own (informer.py)
of the objects labelled as the operator's, started by the first pass that needs it. A pass reads
the kind from that cache, waiting for its first list if it has just been started; every event of
an object wakes its run. It lives as long as the operator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from flowrun import api
from flowrun.informer import Informer
from flowrun.kube import REQUEST_TIMEOUT, ChildrenUnreadable, Kube, UnknownKind
from flowrun.observed import ChildKey, ObservedChild, child_key, observe

SELECTOR = f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}"

# Called for every event of an object: (the run's UID, the object's key).
Notify = Callable[[str, ChildKey], None]


class KindWatch:
    """The objects of one kind in one namespace that carry the operator's label, by run UID, kept
    by an Informer (its events arrive in the informer's thread; passes read from theirs)."""

    def __init__(self, kube: Kube, api_version: str, kind: str, namespace: str, notify: Notify) -> None:
        self.notify = notify
        self._objects: dict[str, tuple[str, ObservedChild]] = {}  # name -> (run UID, child)
        self._lock = threading.Lock()
        self.informer = Informer(kube, api_version, kind, namespace, SELECTOR, self._event)

    @property
    def synced(self) -> threading.Event:
        return self.informer.synced

    @property
    def error(self) -> ChildrenUnreadable | None:
        return self.informer.error

    def start(self) -> None:
        self.informer.start()

    def stop(self) -> None:
        self.informer.stop()

    def children(self, uid: str) -> list[ObservedChild]:
        with self._lock:
            return [child for owner, child in self._objects.values() if owner == uid]

    def _event(self, type_: str | None, raw: dict[str, Any]) -> None:
        owner = ((raw.get("metadata") or {}).get("labels") or {}).get(api.LABEL_UID)
        child = observe(raw)
        if not owner or child is None:
            return
        with self._lock:
            if type_ == "DELETED":
                self._objects.pop(child.name, None)
            else:
                self._objects[child.name] = (owner, child)
        self.notify(owner, child_key(child))


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
