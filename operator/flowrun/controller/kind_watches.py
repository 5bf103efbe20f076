"""Watch caches of the kinds of setup manifests (ConfigMaps, PersistentVolumeClaims, custom
resources...), known only once a run names them.

Each such kind gets, in each namespace where a run names it, an informer of its own (informer.py)
of the objects labelled as the operator's, started by the first pass that needs it and indexed by
the run they belong to. A pass reads the kind from that cache, waiting for its first list if it
has just been started; every event of an object wakes its run. It lives as long as the operator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from flowrun import api
from flowrun.controller.informer import Entry, Informer, WatchFailures
from flowrun.kube import REQUEST_TIMEOUT, Kube, UnknownKind
from flowrun.observed import ChildKey, ObservedChild, child_key, observe, run_of

SELECTOR = f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}"

# Called for every event of an object: (the run's UID, the object's key).
Notify = Callable[[str, ChildKey], None]


class KindWatches:
    """Every watch of a setup manifest's kind, started on first use."""

    def __init__(self, kube: Kube, notify: Notify, failures: WatchFailures) -> None:
        self.kube = kube
        self.notify = notify
        self.failures = failures  # shared by the operator's watches
        self._watches: dict[tuple[str, str, str], Informer[ObservedChild]] = {}
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
            found.extend(entry.value for entry in watch.indexed(uid))
        return found

    def _watch(self, api_version: str, kind: str, namespace: str) -> Informer[ObservedChild]:
        key = (api_version, kind, namespace)
        with self._lock:
            watch = self._watches.get(key)
            if watch is None:
                watch = self._watches[key] = Informer(
                    self.kube.with_own_pool(),
                    api_version,
                    kind,
                    namespace,
                    SELECTOR,
                    observe,
                    index_of=run_of,
                    on_event=self._event,
                    failures=self.failures,
                )
                watch.start()
            return watch

    def _event(self, _: str, entry: Entry[ObservedChild], previous: Entry[ObservedChild] | None) -> None:
        for owner in {entry.key, previous.key if previous is not None else None} - {None}:
            assert owner is not None
            self.notify(owner, child_key(entry.value))

    def stop(self) -> None:
        with self._lock:
            for watch in self._watches.values():
                watch.stop()
