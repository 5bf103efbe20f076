"""What the caches know of locks across runs (docs/semantics.md, "Locks"), for the passes and the
metrics: who wants each lock (the claims of every cached FlowRun, indexed by lock, kept as the
FlowRun informer stores each run) and each semaphore's limit (its ConfigMap, in a watch of that one
ConfigMap started by the first pass that needs it). Who holds a lock is the Lease informer's (a
child kind). Nothing here is remembered beyond what the watches show: a restarted operator lists
it all again.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flowrun.api import SEMAPHORE
from flowrun.controller.informer import Entry, Informer, WatchFailures
from flowrun.kube import REQUEST_TIMEOUT, Kube
from flowrun.locks import Claim, claims_of, semaphore_limit
from flowrun.model import Lock

LockKey = tuple[str, str]  # (namespace, lock id)


class LockClaims:
    """The claims of every cached FlowRun, by lock. Updated in the FlowRun informer's thread as
    each run is stored, read by passes in theirs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._of_run: dict[str, tuple[str, tuple[Claim, ...]]] = {}  # run UID -> (namespace, claims)
        self._of_lock: dict[LockKey, dict[str, tuple[Claim, ...]]] = {}  # lock -> run UID -> its claims

    def update(self, uid: str, namespace: str, body: Mapping[str, Any] | None) -> tuple[set[LockKey], bool]:
        """The run as now stored (None: gone). Returns the locks it left the line of, and whether
        it made a claim it had not made before."""
        claims = claims_of(body) if body is not None else ()
        with self._lock:
            _, before = self._of_run.pop(uid, (namespace, ()))
            for key in {(namespace, c.lock) for c in before}:
                self._forget(key, uid)
            if claims:
                self._of_run[uid] = (namespace, claims)
                for lock in {c.lock for c in claims}:
                    self._of_lock.setdefault((namespace, lock), {})[uid] = tuple(c for c in claims if c.lock == lock)
        left = {(namespace, c.lock) for c in before} - {(namespace, c.lock) for c in claims}
        return left, bool({(*c.holder, c.lock) for c in claims} - {(*c.holder, c.lock) for c in before})

    def _forget(self, key: LockKey, uid: str) -> None:
        of_lock = self._of_lock.get(key, {})
        of_lock.pop(uid, None)
        if not of_lock:
            self._of_lock.pop(key, None)

    def claims(self, namespace: str, lock: str) -> list[Claim]:
        with self._lock:
            return [c for claims in self._of_lock.get((namespace, lock), {}).values() for c in claims]

    def runs_of(self, locks: Iterable[LockKey]) -> set[str]:
        """The runs that want one of `locks`."""
        with self._lock:
            return {uid for key in locks for uid in self._of_lock.get(key, {})}

    def claimers(self, namespace: str, wanted: Callable[[str], bool]) -> set[str]:
        """The runs of `namespace` that want a lock for which `wanted(lock id)` holds."""
        with self._lock:
            return {
                uid
                for (where, lock), runs in self._of_lock.items()
                if where == namespace and wanted(lock)
                for uid in runs
            }

    def waiting(self, holders: set[tuple[str, str, str]]) -> Counter[LockKey]:
        """Claims by lock, but those of `holders` ((namespace, run UID, task) of each lock's Leases)."""
        with self._lock:
            return Counter(
                (namespace, lock)
                for (namespace, lock), runs in self._of_lock.items()
                for claims in runs.values()
                for claim in claims
                if (namespace, claim.uid, claim.task) not in holders
            )


def config_map_data(raw: Mapping[str, Any]) -> dict[str, str]:
    """What is kept of a semaphore's ConfigMap: its data's text values."""
    data = raw.get("data")
    return {str(k): v for k, v in data.items() if isinstance(v, str)} if isinstance(data, Mapping) else {}


class Limits:
    """The ConfigMaps of semaphores: one watch per ConfigMap (a field selector on its name), started
    by the first pass that needs it; every event of it calls `changed(namespace, name)`."""

    def __init__(self, kube: Kube, changed: Callable[[str, str], None], failures: WatchFailures | None = None) -> None:
        self.kube = kube
        self.changed = changed
        self.failures = failures  # shared by the caches' watches
        self._watches: dict[tuple[str, str], Informer[dict[str, str]]] = {}
        self._lock = threading.Lock()

    def limit(self, namespace: str, lock: Lock) -> tuple[int | None, str]:
        """(limit, problem) of a semaphore as its ConfigMap says now. Waits for a watch's first list
        (a transient TimeoutError if it takes longer than a request may)."""
        if lock.kind != SEMAPHORE:
            return 1, ""
        watch = self._watch(namespace, lock.name)
        if not watch.synced.wait(REQUEST_TIMEOUT):
            raise TimeoutError(f"the first list of ConfigMap {lock.name} takes longer than {REQUEST_TIMEOUT}s")
        if watch.error is not None:
            return semaphore_limit(lock, None, str(watch.error))
        entries = watch.entries()
        return semaphore_limit(lock, entries[0].value if entries else None)

    def _watch(self, namespace: str, name: str) -> Informer[dict[str, str]]:
        with self._lock:
            watch = self._watches.get((namespace, name))
            if watch is None:
                watch = self._watches[(namespace, name)] = Informer(
                    self.kube.with_own_pool(),
                    "v1",
                    "ConfigMap",
                    namespace,
                    None,
                    config_map_data,
                    on_event=lambda _type, entry, _previous: self._event(entry),
                    fields=f"metadata.name={name}",
                    failures=self.failures,
                )
                watch.start()
            return watch

    def _event(self, entry: Entry[dict[str, str]]) -> None:
        self.changed(entry.namespace, entry.name)

    def stop(self) -> None:
        with self._lock:
            for watch in self._watches.values():
                watch.stop()


def semaphores_of(config_map: str) -> Callable[[str], bool]:
    """Whether a lock id is a semaphore of that ConfigMap."""
    prefix = f"{SEMAPHORE}/{config_map}/"
    return lambda lock: lock.startswith(prefix)


def held_slots(leases: Iterable[tuple[str, str, str, str]]) -> tuple[Counter[LockKey], set[tuple[str, str, str]]]:
    """From (namespace, lock, run UID, task) of each lock Lease: the slots held by lock, and the
    holders as LockClaims.waiting wants them."""
    found = list(leases)
    return Counter((ns, lock) for ns, lock, _, _ in found), {(ns, uid, task) for ns, _, uid, task in found}
