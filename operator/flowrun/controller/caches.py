"""The operator's watch caches: every object a pass decides from, kept by its own informers
(informer.py), never a LIST per pass.

- FlowRuns (without managedFields and kubectl's last-applied copy), indexed by the CronFlowRun
  that made them;
- their children of the watched kinds (CHILD_KINDS: Pods, Jobs, Deployments, Services labelled as
  the operator's, and the EndpointSlices of those Services, which carry their labels), as the
  engine sees them (observed.py), indexed by their run;
- the children of a setup manifest's other kinds, in watches started on first use
  (kind_watches.py);
- Flows (by namespace and name) and CronFlowRuns;
- for locks across runs (locks.py): the claims of every run by lock (kept as each FlowRun is
  stored), the Leases of the held slots (a child kind), the ConfigMaps of semaphores (watched once
  a pass needs them). A change of a lock (a Lease, a run leaving its line, a semaphore's limit)
  wakes every run that wants it.

One informer per kind and namespace served (or one for all namespaces). Their events reach the
listener on the event loop, in the order they happened; the stores are read from any thread.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from flowrun import api
from flowrun.controller.informer import Entry, Informer, WatchFailures
from flowrun.controller.kind_watches import KindWatches
from flowrun.controller.locks import Limits, LockClaims, LockKey, held_slots, semaphores_of
from flowrun.controller.packed import PackedBody, packed_if_finished
from flowrun.engine.budget import size
from flowrun.kube import CHILD_KINDS, ChildrenUnreadable, Kube
from flowrun.locks import LockView, lock_view
from flowrun.model import Lock
from flowrun.observed import ChildKey, ObservedChild, ObservedLease, observe, run_of

MANAGED_SELECTOR = f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Beside a cached object: its size as the API server stores it, what it was trimmed of included
# (a FlowRun's status has a byte budget: engine/budget.py).
STORED_BYTES = "_storedBytes"
# Beside a FlowRun handed to a pass: the status this process wrote last (or was writing, when the
# pass that wrote it failed before the write returned), where the object shows another one
# (expectations.py, `own_status`). The pass goes on from it.
OWN_STATUS = "_ownStatus"
# Beside OWN_STATUS when the object's status was written by someone else (a Warning event says so).
FOREIGN_STATUS = "_foreignStatus"

Body = Mapping[str, Any]


class Listener(Protocol):
    """Who hears of every change in the caches (on the event loop)."""

    def flowrun_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None: ...
    def child_event(self, type_: str, entry: Entry[ObservedChild], previous: Entry[ObservedChild] | None) -> None: ...
    def other_child_event(self, run: str, key: ChildKey) -> None: ...
    def flow_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None: ...
    def cron_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None: ...
    def lock_event(self, runs: set[str]) -> None: ...
    def synced(self) -> None: ...


def trimmed(body: Mapping[str, Any]) -> dict[str, Any]:
    """An object as cached: without managedFields and kubectl's last-applied copy of the spec,
    which no pass reads and which would double what thousands of cached runs cost."""
    metadata = dict(body.get("metadata") or {})
    metadata.pop("managedFields", None)
    annotations = metadata.get("annotations")
    if isinstance(annotations, Mapping) and LAST_APPLIED in annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return {**body, "metadata": metadata, STORED_BYTES: size(body)}


def cached_flowrun(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """A FlowRun as its cache keeps it: trimmed, and packed once finished (packed.py)."""
    return packed_if_finished(trimmed(body))


def cron_key(namespace: str, label: str) -> str:
    """The index key of the runs of a CronFlowRun: its namespace and its flowrun.dev/cron label."""
    return f"{namespace}/{label}"


def _cron_of(raw: Mapping[str, Any]) -> str | None:
    metadata = raw.get("metadata") or {}
    label = (metadata.get("labels") or {}).get(api.LABEL_CRON)
    return None if label is None else cron_key(str(metadata.get("namespace") or ""), str(label))


def _name_of(raw: Mapping[str, Any]) -> str:
    metadata = raw.get("metadata") or {}
    return f"{metadata.get('namespace') or ''}/{metadata.get('name') or ''}"


class Caches:
    def __init__(self, kube: Kube, namespaces: Sequence[str | None], listener: Listener) -> None:
        self.loop = asyncio.get_running_loop()
        self.listener = listener
        # Shared by every watch: an outage is one line a minute and one probe at a time, not one per watch.
        failures = self.watch_failures = WatchFailures()
        self.kind_watches = KindWatches(kube, self._on_loop(listener.other_child_event), failures)
        self.lock_claims = LockClaims()
        self.limits = Limits(kube, self._limit_changed, failures)
        self._lock_event = self._on_loop(listener.lock_event)
        self._flowrun_event = self._on_loop(listener.flowrun_event)
        self._child_event = self._on_loop(listener.child_event)
        self.flowruns: dict[str | None, Informer[Body]] = {}
        self.children: dict[str | None, list[Informer[ObservedChild]]] = {}
        self.flows: dict[str | None, Informer[Body]] = {}
        self.crons: dict[str | None, Informer[Body]] = {}
        for namespace in namespaces:
            feed = kube.with_own_pool
            self.flowruns[namespace] = Informer(
                feed(),
                api.API_VERSION,
                api.KIND,
                namespace,
                None,
                cached_flowrun,
                index_of=_cron_of,
                on_event=self._on_flowrun,
                failures=failures,
            )
            self.children[namespace] = [
                Informer(
                    feed(),
                    api_version,
                    kind,
                    namespace,
                    MANAGED_SELECTOR,
                    observe,
                    index_of=run_of,
                    on_event=self._on_lease if (api_version, kind) == api.LEASE else self._child_event,
                    failures=failures,
                )
                for api_version, kind in CHILD_KINDS
            ]
            self.flows[namespace] = Informer(
                feed(),
                api.API_VERSION,
                api.FLOW_KIND,
                namespace,
                None,
                trimmed,
                index_of=_name_of,
                on_event=self._on_loop(listener.flow_event),
                failures=failures,
            )
            self.crons[namespace] = Informer(
                feed(),
                api.API_VERSION,
                api.CRON_KIND,
                namespace,
                None,
                trimmed,
                on_event=self._on_loop(listener.cron_event),
                failures=failures,
            )
        self._unsynced = len(self.informers())
        for informer in self.informers():
            informer.on_synced = self._on_loop(self._synced)

    def informers(self) -> list[Informer[Any]]:
        found: list[Informer[Any]] = [*self.flowruns.values(), *self.flows.values(), *self.crons.values()]
        for of_namespace in self.children.values():
            found.extend(of_namespace)
        return found

    def start(self) -> None:
        for informer in self.informers():
            informer.start()

    def stop(self) -> None:
        for informer in self.informers():
            informer.stop()
        self.kind_watches.stop()
        self.limits.stop()

    def _on_loop(self, handler: Callable[..., None]) -> Callable[..., None]:
        """`handler`, called on the event loop from an informer's thread (in the order called)."""

        def call(*args: Any) -> None:
            self.loop.call_soon_threadsafe(handler, *args)

        return call

    # --- locks (in the informers' threads) ---------------------------------------------------------

    def _on_flowrun(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None:
        """A run stored: its claims indexed before anyone hears of it; the runs that want a lock it
        left the line of are woken (one ahead of them may have been in the way), and so is the run
        itself when it made a new claim (the echo of its own status write brings no pass, but its
        task takes a free slot only once its claim is there for the others to see)."""
        # A finished run (packed) wants no lock: it is not unpacked to be asked.
        wants = None if type_ == "DELETED" or isinstance(entry.value, PackedBody) else entry.value
        left, joined = self.lock_claims.update(entry.uid, entry.namespace, wants)
        self._flowrun_event(type_, entry, previous)
        self._wake(left)
        if joined and type_ != "LISTED":
            self._lock_event({entry.uid})

    def _on_lease(self, type_: str, entry: Entry[ObservedChild], previous: Entry[ObservedChild] | None) -> None:
        """A lock's Lease changed: its holder hears of it as of any child, and every run that wants
        its lock is woken (a slot was freed, or its holder changed)."""
        self._child_event(type_, entry, previous)
        if isinstance(entry.value, ObservedLease) and type_ != "LISTED":
            self._wake({(entry.namespace, entry.value.lock)})

    def _limit_changed(self, namespace: str, config_map: str) -> None:
        runs = self.lock_claims.claimers(namespace, semaphores_of(config_map))
        if runs:
            self._lock_event(runs)

    def _wake(self, locks: set[LockKey]) -> None:
        runs = self.lock_claims.runs_of(locks)
        if runs:
            self._lock_event(runs)

    def _synced(self) -> None:
        self._unsynced -= 1
        if self._unsynced == 0:
            self.listener.synced()

    def failing_since(self) -> list[float | None]:
        """When each informer's current run of failures began (None: it is not failing)."""
        return [informer.failing_since for informer in self.informers()]

    def unanswered_at(self) -> float | None:
        """When the watches' probe last found the API server not answering (None: never)."""
        return self.watch_failures.unanswered_at

    def errors(self) -> list[ChildrenUnreadable]:
        """Why some kind cannot be listed (a namespace whose runs cannot be driven)."""
        return [informer.error for informer in self.informers() if informer.error is not None]

    # --- reading -------------------------------------------------------------------------------

    def _serving(self, table: Mapping[str | None, Any], namespace: str) -> Any:
        return table.get(namespace) if namespace in table else table.get(None)

    def flowrun(self, namespace: str, uid: str) -> Body | None:
        informer = self._serving(self.flowruns, namespace)
        entry = informer.get(uid) if informer is not None else None
        return entry.value if entry is not None else None

    def flowrun_entries(self) -> list[Entry[Body]]:
        return [entry for informer in self.flowruns.values() for entry in informer.entries()]

    def flow_entries(self) -> list[Entry[Body]]:
        return [entry for informer in self.flows.values() for entry in informer.entries()]

    def cron_entries(self) -> list[Entry[Body]]:
        return [entry for informer in self.crons.values() for entry in informer.entries()]

    def run_children(self, namespace: str, uid: str) -> list[ObservedChild]:
        """The run's children of the watched kinds."""
        informers: Iterable[Informer[ObservedChild]] = self._serving(self.children, namespace) or ()
        return [entry.value for informer in informers for entry in informer.indexed(uid)]

    def children_unreadable(self, namespace: str) -> ChildrenUnreadable | None:
        """Why a watched kind of child cannot be listed in `namespace` (refused for good, e.g. by
        RBAC), if one cannot: a pass must not decide without it."""
        informers: Iterable[Informer[ObservedChild]] = self._serving(self.children, namespace) or ()
        return next((informer.error for informer in informers if informer.error is not None), None)

    def all_children(self) -> list[Entry[ObservedChild]]:
        return [entry for informers in self.children.values() for i in informers for entry in i.entries()]

    def other_children(self, namespace: str, uid: str, kinds: Sequence[tuple[str, str]]) -> list[ObservedChild]:
        """The run's children of a setup manifest's other kinds (see KindWatches.children)."""
        return self.kind_watches.children(namespace, uid, kinds)

    def lock_leases(self, namespace: str | None = None) -> list[Entry[ObservedChild]]:
        """The Leases of the held slots of every lock (of one namespace)."""
        found = []
        for where, informers in self.children.items():
            if namespace is not None and where not in (namespace, None):
                continue
            for informer in informers:
                if (informer.api_version, informer.kind) == api.LEASE:
                    found += [e for e in informer.entries() if namespace in (None, e.namespace)]
        return found

    def lock_views(self, namespace: str, locks: Sequence[Lock]) -> dict[str, LockView]:
        """Each lock as the namespace shows it: its Leases, the claims of every run, and (for a
        semaphore) its limit."""
        leases = [e.value for e in self.lock_leases(namespace) if isinstance(e.value, ObservedLease)]
        return {
            lock.id: lock_view(
                lock, leases, self.lock_claims.claims(namespace, lock.id), self.limits.limit(namespace, lock)
            )
            for lock in locks
        }

    def lock_counts(self) -> tuple[Counter[LockKey], Counter[LockKey]]:
        """(held, waiting): slots held and claims waiting, by (namespace, lock); for the metrics."""
        leases = [
            (e.namespace, e.value.lock, e.value.run or "", e.value.task)
            for e in self.lock_leases()
            if isinstance(e.value, ObservedLease) and not e.value.deleting
        ]
        held, holders = held_slots(leases)
        return held, self.lock_claims.waiting(holders)

    def flow(self, namespace: str, name: str) -> Body | None:
        informer = self._serving(self.flows, namespace)
        found = informer.indexed(f"{namespace}/{name}") if informer is not None else []
        return found[0].value if found else None

    def cron_runs(self, namespace: str, label: str) -> list[Body]:
        informer = self._serving(self.flowruns, namespace)
        return [entry.value for entry in informer.indexed(cron_key(namespace, label))] if informer is not None else []
