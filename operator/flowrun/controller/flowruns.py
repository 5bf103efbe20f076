"""The FlowRun controller: it syncs each run by passes (flowrun_pass.py), driven by the work queue.

- Every event of a FlowRun or of one of its children (from the watch caches, caches.py) asks the
  work queue (workqueue.py) for a pass of that run; the queue runs passes of different runs
  concurrently on a bounded pool of threads, never two of one run at once, and pauses them all
  while the API server cannot be reached.
- A pass decides from the run and its children as the caches hold them, with what this process
  wrote and the caches do not show yet (expectations.py) applied on top.
- The operator keeps its finalizer itself (a pass puts it on and takes it off).
- A finished run costs nothing: no pass unless something about it changes, or its TTL timer fires.
- A run waiting for its Flow (FlowNotFound) is passed again as soon as the Flow appears.
- Objects labelled with the UID of a run that no longer exists are swept (orphans.py).
"""

from __future__ import annotations

import asyncio
import logging
import random
from concurrent.futures import ThreadPoolExecutor

import urllib3.exceptions

from flowrun import api, metrics
from flowrun.api import RUN_FINAL
from flowrun.controller.caches import FOREIGN_STATUS, OWN_STATUS, Body, Caches, trimmed
from flowrun.controller.expectations import Expectations
from flowrun.controller.flowrun_pass import FlowRunPass, PassResult
from flowrun.controller.informer import Entry
from flowrun.controller.orphans import Child, SweepState, sweep
from flowrun.controller.packed import phase_of, unpacked
from flowrun.controller.settings import OrphanPolicy, Settings
from flowrun.controller.workqueue import WorkQueue
from flowrun.kube import CHILD_KINDS, Kube
from flowrun.observed import ChildKey, ObservedChild, child_key

logger = logging.getLogger(__name__)

# After a restart the finished runs are looked at again (level-triggered: a TTL may have passed),
# spread over this long and behind the running ones, which resume at once.
STARTUP_SPREAD_SECONDS = 60.0
ORPHAN_SWEEP_SECONDS = 30.0
# The kinds of the operator's own children: an EndpointSlice goes with its Service.
SWEPT_KINDS = tuple(kind for kind in CHILD_KINDS if kind != api.ENDPOINT_SLICE)

Key = tuple[str, str]  # (namespace, name)

UNREACHABLE = (
    urllib3.exceptions.MaxRetryError,
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.ProtocolError,
    urllib3.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


def is_unreachable(error: BaseException) -> bool:
    """Whether the error says the API server cannot be reached (not that it refused something)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, UNREACHABLE):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class FlowRunController:
    def __init__(self, settings: Settings, kube: Kube, caches: Caches, pool: ThreadPoolExecutor) -> None:
        self.loop = asyncio.get_running_loop()
        self.settings, self.kube, self.caches, self.pool = settings, kube, caches, pool
        self.passes = FlowRunPass(kube, caches)
        self.expectations = Expectations()
        self.queue = WorkQueue(self.sync, self.probe, settings.workers, is_unreachable)
        self.namespaces: dict[str, str] = {}  # UID -> namespace, of every run known
        self.seen_during_pass: dict[str, set[ChildKey]] = {}  # UID -> children seen while its pass runs
        self.flow_waiters: dict[Key, set[str]] = {}  # Flow -> UIDs of the runs waiting for it
        # UIDs of the runs a pass released (their finalizer off), until their DELETED event: no pass
        # of them may run again, whatever a stale cache still shows.
        self.released: set[str] = set()

    # --- events (on the event loop) ------------------------------------------------------------

    def flowrun_event(self, type_: str, entry: Entry[Body], _: Entry[Body] | None) -> None:
        uid, body = entry.uid, entry.value
        if type_ == "DELETED":
            self.forget(uid)
            self.namespaces.pop(uid, None)
            self.released.discard(uid)
            return
        self.namespaces[uid] = entry.namespace
        if self.expectations.flowrun_seen(uid, body):
            return  # the echo of this process's own write: the pass that wrote it decided already
        finished = phase_of(body) in RUN_FINAL and not body["metadata"].get("deletionTimestamp")
        if type_ == "LISTED" and finished:
            self.queue.add_after(uid, random.uniform(1.0, STARTUP_SPREAD_SECONDS))
        else:
            self.queue.add(uid)

    def child_event(self, type_: str, entry: Entry[ObservedChild], previous: Entry[ObservedChild] | None) -> None:
        key = child_key(entry.value)
        # A child whose labels moved it to another run (or away) concerns both.
        for run in {entry.key, previous.key if previous is not None else None}:
            if run is None:
                continue
            self.child_seen(run, key)
            if type_ != "LISTED":  # the initial listing: the run's own listing asks for its pass
                self.queue.add(run)

    def other_child_event(self, run: str, key: ChildKey) -> None:
        """An event of a child of a setup manifest's kind (kind_watches.py)."""
        self.child_seen(run, key)
        self.queue.add(run)

    def child_seen(self, uid: str, key: ChildKey) -> None:
        self.expectations.child_seen(uid, key)
        seen = self.seen_during_pass.get(uid)
        if seen is not None:
            seen.add(key)

    def lock_event(self, runs: set[str]) -> None:
        """A lock changed (a slot freed or taken, a run left its line, a semaphore's limit): a pass
        of every run that wants it (the first in line takes a free slot; the others say who holds it)."""
        for uid in runs:
            if uid in self.namespaces:
                self.queue.add(uid)

    def flow_appeared(self, namespace: str, name: str) -> None:
        """Pass the runs waiting for it (they register again if they still wait)."""
        for uid in self.flow_waiters.pop((namespace, name), set()):
            self.queue.add(uid)

    # --- passes --------------------------------------------------------------------------------

    def current(self, uid: str) -> tuple[Body | None, list[ObservedChild]]:
        """The run and its children as this process knows them now (read on the event loop)."""
        namespace = self.namespaces.get(uid)
        if namespace is None:
            return None, []
        cached = self.caches.flowrun(namespace, uid)
        body = self.expectations.flowrun(uid, unpacked(cached) if cached is not None else None)
        own, foreign = self.expectations.own_status(uid, body) if body is not None else (None, False)
        if body is not None and foreign:
            # Read between passes (the queue runs one pass of a run at a time), so the status differs
            # from the last one this process wrote only by someone else's write: not by the echo of
            # a write of a pass still running, whose expectations are recorded when it ends.
            metadata = body["metadata"]
            logger.warning(
                "FlowRun %s/%s: its status was written by someone else (resourceVersion %s): overruled,"
                " the operator's own is written back",
                metadata.get("namespace"),
                metadata.get("name"),
                metadata.get("resourceVersion"),
            )
            body = {**body, FOREIGN_STATUS: True}
        if body is not None and own is not None:
            body = {**body, OWN_STATUS: own}
        children = self.caches.run_children(namespace, uid)
        return body, self.expectations.children(uid, children)

    async def sync(self, uid: str) -> float | None:
        """One pass of the run; the delay after which the next one is wanted (None: only when
        something changes)."""
        body, children = self.current(uid)
        if body is None or uid in self.released:
            self.forget(uid)
            return None
        self.seen_during_pass[uid] = set()
        try:
            with metrics.RECONCILE_DURATION.time():
                result = await self.loop.run_in_executor(self.pool, self.passes.run, body, children)
        except BaseException:
            self.expectations.unsure(uid, self.passes.attempted.pop(uid, None))
            raise
        finally:
            seen = self.seen_during_pass.pop(uid, set())
        self.passes.attempted.pop(uid, None)  # the pass ended: what it wrote is in `result`
        if result.gone or uid not in self.namespaces:
            # Gone (maybe deleted while the pass ran): nothing of it is kept.
            self.forget(uid)
            return None
        if result.released:
            # Its finalizer is off: the cache may show it with it for a moment, and a pass from that
            # stale view could create a child for a run that is gone. Its DELETED event ends it.
            self.released.add(uid)
            self.forget(uid)
            return None
        self.record(uid, result, seen)
        if result.waiting_for_flow is not None:
            waiting = (body["metadata"]["namespace"], result.waiting_for_flow)
            self.flow_waiters.setdefault(waiting, set()).add(uid)
        return next_pass_after(result, self.settings.resync_seconds)

    def record(self, uid: str, result: PassResult, seen: set[ChildKey]) -> None:
        """What the pass wrote, as expectations, but for the children whose events arrived while
        it ran: the caches show those already (or later: a pod created, run and deleted within
        the pass must not come back as a created one)."""
        if result.written is not None:
            self.expectations.written(uid, trimmed(result.written))
        self.expectations.created(uid, [child for child in result.created if child_key(child) not in seen])
        self.expectations.deleted(uid, [key for key in result.deleted if key not in seen])

    async def probe(self) -> None:
        await self.loop.run_in_executor(self.pool, self.kube.probe)

    def forget(self, uid: str) -> None:
        self.queue.forget(uid)
        self.expectations.forget(uid)
        self.passes.forget(uid)
        for waiting in self.flow_waiters.values():
            waiting.discard(uid)

    # --- orphans -------------------------------------------------------------------------------

    async def sweep_orphans(self, policy: OrphanPolicy) -> None:
        """Every ORPHAN_SWEEP_SECONDS: find orphans in the caches, report and maybe delete them."""
        state = SweepState()
        # A short grace is swept often enough to honour it.
        interval = min(ORPHAN_SWEEP_SECONDS, max(policy.grace / 2, 1.0))
        while True:
            await asyncio.sleep(interval)
            found = sweep(
                list(self.namespaces),
                self.cached_children(),
                state,
                self.loop.time(),
                policy.grace,
                policy.delete_after,
            )
            state = found.state
            for api_version, kind in SWEPT_KINDS:
                count = sum(1 for ref in found.orphans if ref[:2] == (api_version, kind))
                metrics.ORPHANED_OBJECTS.labels(kind=kind).set(count)
            for _, kind, namespace, name in found.newly_reported:
                logger.warning(
                    "orphaned %s %s/%s: labelled with the UID of a FlowRun that no longer exists%s",
                    kind,
                    namespace,
                    name,
                    "" if policy.delete_after is None else f"; deleted in {policy.delete_after:.0f}s",
                )
            for api_version, kind, namespace, name in found.delete:
                try:
                    await self.loop.run_in_executor(
                        self.pool, self.kube.delete, namespace, api_version, kind, name, "Background"
                    )
                    logger.warning("deleted orphaned %s %s/%s", kind, namespace, name)
                except Exception as error:  # tried again at the next sweep
                    logger.warning("could not delete orphaned %s %s/%s: %s", kind, namespace, name, error)

    def cached_children(self) -> list[Child]:
        found = []
        for entry in self.caches.all_children():
            api_version, kind, name = child_key(entry.value)
            if entry.key is not None and (api_version, kind) in SWEPT_KINDS:
                found.append(Child((api_version, kind, entry.namespace, name), entry.key))
        return found


def next_pass_after(result: PassResult, resync: float) -> float | None:
    """When the run wants its next pass, events aside (`resync`: at the latest, while it runs)."""
    if result.released:
        return None  # the FlowRun goes; its DELETED event ends it
    if result.done and not result.deleting:
        # Nothing left to drive: only a change (an event) or its TTL matters, so thousands of
        # finished runs cost nothing.
        return result.requeue_after
    if result.requeue_after is None:
        return resync
    return min(result.requeue_after, resync)
