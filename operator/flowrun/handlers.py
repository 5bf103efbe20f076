"""kopf wiring, kept thin. The operator's own informers fill the watch caches; its own work queue
drives the passes; kopf runs the process and watches Flows and CronFlowRuns.

- FlowRuns and their children (Pods, Jobs, Deployments, Services labelled as the operator's) are
  kept in the watch caches every pass reads, never a LIST per pass. They are fed by informers
  (informer.py: one LIST, then a WATCH, per kind and namespace), not by kopf indexes: kopf makes
  each object of an indexed kind hold up its start, at a cost that grows with the square of
  their number. Passes start once every informer has delivered its first list, so a pass after a
  restart sees every child. A child is cached as what the engine sees of it (observed.py),
  computed once per event.
- Every event of a FlowRun or of one of its children asks the work queue (workqueue.py) for a pass
  of that run; the queue runs passes of different runs concurrently on a bounded pool of threads,
  never two of one run at once, and pauses them all while the API server cannot be reached.
- The operator keeps its finalizer itself (the reconciler puts it on and takes it off); kopf does
  not watch FlowRuns at all, so it never patches them.
- A finished run costs nothing: no pass unless something about it changes, or its TTL timer fires.

Flows are kept in a kopf index. Flows and CronFlowRuns are watched with `@kopf.on.event` only, and
driven by tasks of this process, not by kopf daemons or timers: those would put a finalizer on
every Flow and CronFlowRun (and need the right to patch them), which would block their deletion
whenever the operator is down. A CronFlowRun's task wakes at its next scheduled time, when it
changes and when one of its runs changes; a Flow's task validates it once per generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import random
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kopf
import urllib3.exceptions
import urllib3.util
from kubernetes import client, config

from flowrun import api, cron, metrics, names
from flowrun.cron import CRON_PLURAL, LABEL_CRON, OwnedRun
from flowrun.cron_reconciler import CronReconciler, Owned
from flowrun.engine.phases import RUN_FINAL
from flowrun.expectations import Expectations
from flowrun.flow_checker import FlowChecker, checked
from flowrun.flows import FLOW_PLURAL
from flowrun.informer import Informer
from flowrun.kind_watches import KindWatches
from flowrun.kube import CHILD_KINDS, REQUEST_TIMEOUT, Kube
from flowrun.observed import ChildKey, ObservedChild, child_key, observe
from flowrun.orphans import Child, SweepState, sweep
from flowrun.reconciler import PassResult, Reconciler
from flowrun.workqueue import WorkQueue

logger = logging.getLogger(__name__)

RESYNC_SECONDS = 30.0  # the longest a running run goes without a pass, whatever happens
MANAGED = {api.LABEL_MANAGED_BY: api.MANAGED_BY}
MANAGED_SELECTOR = f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}"
# kopf's own finalizer: no handler of this operator needs one, and kopf removes its finalizer from
# objects with no handler needing it. A name nothing carries keeps kopf away from the operator's.
KOPF_FINALIZER = "kopf.flowrun.dev/unused"
# After a restart the finished runs are looked at again (level-triggered: a TTL may have passed),
# spread over this long and behind the running ones, which resume at once.
STARTUP_SPREAD_SECONDS = 60.0
# Passes of different runs at once (the threads of the pool, and the HTTP connections they use):
# `flowrun run --workers`, set by the CLI before kopf starts.
WORKERS = 16
# A pass of a Flow or CronFlowRun that failed (an API error) is tried again after this, doubling
# up to the maximum: never a hot loop, never given up.
RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 60.0
# The longest a CronFlowRun goes without a pass (its next time may be days away): a missed event
# costs at most this.
CRON_RESYNC_SECONDS = 600.0

Key = tuple[str, str]  # (namespace, name)
CachedChild = tuple[str, ObservedChild]  # (namespace, what the engine sees of it)
ORPHAN_SWEEP_SECONDS = 30.0


@dataclass(frozen=True)
class OrphanPolicy:
    grace: float = 60.0  # seconds an object whose FlowRun is gone waits before it is reported
    delete_after: float | None = None  # then deleted this much later; None: report only


# Set by the CLI before kopf starts.
ORPHANS = OrphanPolicy()
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


class Runtime:
    """Per-process state: the reconcilers, the work queue and its pool; the watch caches (kopf
    indexes) and what this process wrote that they do not show yet; the runs waiting for a Flow;
    the tasks driving Flows and CronFlowRuns."""

    def __init__(self, kube: Kube, indexes: Mapping[str, Any], workers: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.kube = kube
        # The watch caches (informer.py): UID -> the FlowRun (trimmed); run UID -> its children of
        # the watched kinds; (namespace, flowrun.dev/cron label) -> UID -> a CronFlowRun's run.
        self.flowruns: dict[str, Mapping[str, Any]] = {}
        self.children: dict[str, dict[ChildKey, CachedChild]] = {}
        self.cron_runs: dict[Key, dict[str, Owned]] = {}
        self.informers: list[Informer] = []
        self._unsynced = 0
        self.flows_by_name: kopf.Index[Key, Any] = indexes["flows_by_name"]
        self.expectations = Expectations()
        self.seen_during_pass: dict[str, set[ChildKey]] = {}  # UID -> children seen while its pass runs
        self.kind_watches = KindWatches(kube, self.other_child_seen)
        self.reconciler = Reconciler(kube, flows=self.lookup_flow, other_children=self.kind_watches.children)
        self.crons = CronReconciler(kube)
        self.flow_checker = FlowChecker(kube, self.reconciler)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pass")
        self.queue = WorkQueue(self.reconcile, self.probe, workers, is_unreachable)
        self.wakeups: dict[str, asyncio.Event] = {}  # of CronFlowRuns
        self.flow_waiters: dict[Key, set[str]] = {}  # Flow -> UIDs of the runs waiting for it
        self.cron_labels: dict[Key, str] = {}  # (namespace, flowrun.dev/cron label value) -> CronFlowRun name
        self.owned_seen: dict[str, OwnedRun] = {}  # UID -> a CronFlowRun's run, as last seen
        self.tasks: dict[str, asyncio.Task[None]] = {}  # "flow/<ns>/<name>", "cron/<ns>/<name>"

    def wake(self, key: str | None) -> None:
        if key and key in self.wakeups:
            self.wakeups[key].set()

    # --- FlowRuns ------------------------------------------------------------------------------

    # --- the watch caches --------------------------------------------------------------------

    def start_informers(self, namespaces: list[str | None]) -> None:
        """FlowRuns and their children, in each namespace served (None: all). Passes start once
        every informer has delivered its first list: a pass never decides from a partial cache."""
        feeds: list[tuple[str, str, str | None, Callable[[str | None, dict[str, Any]], None]]] = [
            (api.API_VERSION, api.KIND, None, self._from_thread(self.flowrun_event)),
            *(
                (api_version, kind, MANAGED_SELECTOR, self._from_thread(self.child_event))
                for api_version, kind in CHILD_KINDS
            ),
        ]
        for namespace in namespaces:
            for api_version, kind, selector, on_event in feeds:
                informer = Informer(
                    self.kube, api_version, kind, namespace, selector, on_event, self._from_thread(self._synced)
                )
                self.informers.append(informer)
        self._unsynced = len(self.informers)
        for informer in self.informers:
            informer.start()

    def _from_thread(self, handler: Callable[..., None]) -> Callable[..., None]:
        """`handler`, called on the event loop from an informer's thread (in the order called)."""

        def call(*args: Any) -> None:
            self.loop.call_soon_threadsafe(handler, *args)

        return call

    def _synced(self) -> None:
        self._unsynced -= 1
        if self._unsynced == 0:
            for informer in self.informers:
                if informer.error is not None:
                    logger.error("cannot watch: %s; runs of that namespace cannot be driven", informer.error)
            logger.info("watch caches filled: %d FlowRuns; passes start", len(self.flowruns))
            self.queue.start()
            self.ensure_task("orphans", lambda: self.sweep_orphans(ORPHANS))

    def flowrun_event(self, type_: str | None, raw: dict[str, Any]) -> None:
        metadata = raw.get("metadata") or {}
        uid = str(metadata.get("uid") or "")
        namespace = str(metadata.get("namespace") or "")
        cron_label = (metadata.get("labels") or {}).get(LABEL_CRON)
        if cron_label is not None:
            self.cron_run_event(type_, uid, namespace, cron_label, raw)
        if type_ == "DELETED":
            self.flowruns.pop(uid, None)
            self.forget(uid)
            return
        body = self.flowruns[uid] = trimmed(raw)
        if self.expectations.flowrun_seen(uid, body):
            return  # the echo of this process's own write: the pass that wrote it decided already
        status = body.get("status") or {}
        finished = status.get("phase") in RUN_FINAL and not body["metadata"].get("deletionTimestamp")
        if type_ is None and finished:
            self.queue.add_after(uid, random.uniform(1.0, STARTUP_SPREAD_SECONDS))
        else:
            self.queue.add(uid)

    def cron_run_event(self, type_: str | None, uid: str, namespace: str, label: str, raw: dict[str, Any]) -> None:
        """A run of a CronFlowRun: kept by (namespace, label) as (controlling owner, run as
        observed); its CronFlowRun is woken only by what it decides from (phase, cancel,
        deletion), not by every status write."""
        runs = self.cron_runs.setdefault((namespace, label), {})
        if type_ == "DELETED":
            runs.pop(uid, None)
            if not runs:
                del self.cron_runs[(namespace, label)]
            self.owned_seen.pop(uid, None)
            self.wake_cron_of_run(namespace, label)
            return
        owner = next(
            (ref.get("uid", "") for ref in (raw["metadata"].get("ownerReferences") or []) if ref.get("controller")), ""
        )
        seen = cron.owned_run_from_object(raw)
        runs[uid] = (str(owner), seen)
        if self.owned_seen.get(uid) != seen:
            self.owned_seen[uid] = seen
            self.wake_cron_of_run(namespace, label)

    def child_event(self, type_: str | None, raw: dict[str, Any]) -> None:
        metadata = raw.get("metadata") or {}
        uid = (metadata.get("labels") or {}).get(api.LABEL_UID)
        child = observe(raw)
        if not uid or child is None:
            return
        key = child_key(child)
        if type_ == "DELETED":
            entries = self.children.get(uid)
            if entries is not None:
                entries.pop(key, None)
                if not entries:
                    del self.children[uid]
        else:
            self.children.setdefault(uid, {})[key] = (str(metadata.get("namespace") or ""), child)
        self.child_seen(uid, key)
        if type_ is not None:  # the initial listing: the run's own listing asks for its pass
            self.queue.add(uid)

    def child_seen(self, uid: str, key: ChildKey) -> None:
        self.expectations.child_seen(uid, key)
        seen = self.seen_during_pass.get(uid)
        if seen is not None:
            seen.add(key)

    def other_child_seen(self, uid: str, key: ChildKey) -> None:
        """An event of a child of another kind (kind_watches.py), from its watch's thread."""
        self.loop.call_soon_threadsafe(self._other_child_seen, uid, key)

    def _other_child_seen(self, uid: str, key: ChildKey) -> None:
        self.child_seen(uid, key)
        self.queue.add(uid)

    def current(self, uid: str) -> tuple[Mapping[str, Any] | None, list[ObservedChild]]:
        """The run and its children as this process knows them now (read on the event loop)."""
        body = self.expectations.flowrun(uid, self.flowruns.get(uid))
        children = [child for _, child in self.children.get(uid, {}).values()]
        return body, self.expectations.children(uid, children)

    async def reconcile(self, uid: str) -> float | None:
        """One pass of the run; the delay after which the next one is wanted (None: only when
        something changes)."""
        body, children = self.current(uid)
        if body is None:
            self.forget(uid)
            return None
        self.seen_during_pass[uid] = set()
        try:
            with metrics.RECONCILE_DURATION.time():
                result = await self.loop.run_in_executor(self.pool, self.reconciler.run_pass, body, children)
        finally:
            seen = self.seen_during_pass.pop(uid, set())
        if result.gone or uid not in self.flowruns:
            # Gone (maybe deleted while the pass ran): nothing of it is kept.
            self.forget(uid)
            return None
        self.record(uid, result, seen)
        namespace = body["metadata"]["namespace"]
        if result.waiting_for_flow is not None:
            self.flow_waiters.setdefault((namespace, result.waiting_for_flow), set()).add(uid)
        return next_pass_after(result)

    def record(self, uid: str, result: PassResult, seen: set[ChildKey]) -> None:
        """What the pass wrote, as expectations, but for the children whose events arrived while
        it ran: the caches show those already (or later: a pod created, run and deleted within
        the pass must not come back as a created one)."""
        if result.written is not None:
            self.expectations.written(uid, trimmed(result.written))
        self.expectations.created(uid, [child for child in result.created if child_key(child) not in seen])
        self.expectations.deleted(uid, [key for key in result.deleted if key not in seen])

    # --- orphans -----------------------------------------------------------------------------

    async def sweep_orphans(self, policy: OrphanPolicy) -> None:
        """Every ORPHAN_SWEEP_SECONDS: find orphans in the caches, report and maybe delete them."""
        state = SweepState()
        # A short grace is swept often enough to honour it.
        interval = min(ORPHAN_SWEEP_SECONDS, max(policy.grace / 2, 1.0))
        while True:
            await asyncio.sleep(interval)
            found = sweep(
                list(self.flowruns), self.cached_children(), state, self.loop.time(), policy.grace, policy.delete_after
            )
            state = found.state
            for api_version, kind in CHILD_KINDS:
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
        return [
            Child((api_version, kind, namespace, name), uid)
            for uid, entries in self.children.items()
            for (api_version, kind, name), (namespace, _) in entries.items()
        ]

    async def probe(self) -> None:
        await self.loop.run_in_executor(self.pool, self.kube.probe)

    def forget(self, uid: str) -> None:
        self.queue.forget(uid)
        self.expectations.forget(uid)
        self.reconciler.forget(uid)
        metrics.forget_run(uid)
        for waiting in self.flow_waiters.values():
            waiting.discard(uid)

    # --- Flows -----------------------------------------------------------------------------------

    def lookup_flow(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The Flow from the index; called by the reconciler in its worker thread, so the index
        (which kopf changes on the event loop) is read on the event loop."""
        future = asyncio.run_coroutine_threadsafe(self._flow(namespace, name), self.loop)
        return future.result(timeout=REQUEST_TIMEOUT)

    async def _flow(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        for body in self.flows_by_name.get((namespace, name), ()):
            return copy.deepcopy(body)  # type: ignore[no-any-return]
        return None

    def flow_appeared(self, namespace: str, name: str) -> None:
        """Pass the runs waiting for it (they register again if they still wait)."""
        for uid in self.flow_waiters.pop((namespace, name), set()):
            self.queue.add(uid)

    # --- CronFlowRuns ----------------------------------------------------------------------------

    def cron_key(self, namespace: str, name: str) -> str:
        return f"cron/{namespace}/{name}"

    def wake_cron_of_run(self, namespace: str, label: str) -> None:
        name = self.cron_labels.get((namespace, label))
        if name is not None:
            self.wake(self.cron_key(namespace, name))

    def owned_runs(self, namespace: str, name: str) -> list[Owned]:
        return list(self.cron_runs.get((namespace, names.label_value(name)), {}).values())

    # --- tasks of Flows and CronFlowRuns ---------------------------------------------------------

    def ensure_task(self, key: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start `work` as the task of `key` unless it runs already."""
        running = self.tasks.get(key)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(work(), name=key)
        self.tasks[key] = task
        task.add_done_callback(lambda done: self.tasks.pop(key, None) if self.tasks.get(key) is done else None)

    async def wait(self, key: str, timeout: float) -> None:
        """Until something about the CronFlowRun changed, or `timeout` passed."""
        event = self.wakeups.setdefault(key, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(timeout, 0.0))

    async def stop(self) -> None:
        for informer in self.informers:
            informer.stop()
        self.kind_watches.stop()
        await self.queue.stop()
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.pool.shutdown(wait=False, cancel_futures=True)


def next_pass_after(result: PassResult) -> float | None:
    """When the run wants its next pass, events aside."""
    if result.released:
        return None  # the FlowRun goes; its DELETED event ends it
    if result.done and not result.deleting:
        # Nothing left to drive: only a change (an event) or its TTL matters, so thousands of
        # finished runs cost nothing.
        return result.requeue_after
    if result.requeue_after is None:
        return RESYNC_SECONDS
    return min(result.requeue_after, RESYNC_SECONDS)


def trimmed(body: Mapping[str, Any]) -> dict[str, Any]:
    """A FlowRun as cached: without managedFields and kubectl's last-applied copy of the spec,
    which no pass reads and which would double what thousands of cached runs cost."""
    metadata = dict(body.get("metadata") or {})
    metadata.pop("managedFields", None)
    annotations = metadata.get("annotations")
    if isinstance(annotations, Mapping) and LAST_APPLIED in annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    return {**body, "metadata": metadata}


LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

_runtime: Runtime | None = None


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the operator has not started")
    return _runtime


def _namespace_of(name: str, namespace: str | None) -> str:
    if namespace is None:  # the CRD is Namespaced: kopf always passes the namespace
        raise RuntimeError(f"FlowRun {name} has no namespace")
    return namespace


# Set by the CLI before kopf starts: whether the operator watches every namespace, else which.
CLUSTERWIDE = True
NAMESPACES: tuple[str, ...] = ()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    global _runtime
    settings.persistence.finalizer = KOPF_FINALIZER
    # Namespace-scoped, the operator has no right to list namespaces or CRDs cluster-wide; kopf's
    # scan for them would be refused and retried for about a minute before anything is handled.
    settings.scanning.disabled = not CLUSTERWIDE
    # The operator posts its own events, one per transition; kopf's per-handler events are noise.
    settings.posting.enabled = False
    # Watches that stall silently are restarted (kopf issues 204, 585, 847).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # A watch that lost the API server tries again within 10 s (kopf's default backoffs reach 21 s):
    # after an outage, events flow again soon after the API server is back.
    settings.networking.error_backoffs = (1, 2, 5, 10, 10, 10)
    try:
        configuration = client.Configuration()
        config.load_kube_config(client_configuration=configuration)
    except config.ConfigException:
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
    # One connection per worker; one attempt per request (a failed pass is retried by the queue,
    # and an unreachable API server is probed by one request, not by every request three times).
    configuration.connection_pool_maxsize = WORKERS + 4
    configuration.retries = urllib3.util.Retry(total=1, connect=0, status=0, redirect=0)
    # kopf hands every handler, this one included, its indexes by the names of their functions.
    _runtime = Runtime(Kube(client.ApiClient(configuration)), kwargs, WORKERS)
    _runtime.start_informers([None] if CLUSTERWIDE else list(NAMESPACES))


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    if _runtime is not None:
        await _runtime.stop()


@kopf.on.probe(id="apiServer")
async def api_server(**_: Any) -> str:
    """Reported in the liveness endpoint's answer. An outage does not fail liveness: restarting the
    operator would not bring the API server back."""
    rt = _runtime
    if rt is None or rt.queue.outage_started is None:
        return "reachable"
    return f"unreachable for {rt.loop.time() - rt.queue.outage_started:.0f}s"


# --- Flows -----------------------------------------------------------------------------------------


@kopf.index(api.GROUP, api.VERSION, FLOW_PLURAL)
async def flows_by_name(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, Any]:
    """(namespace, name) -> the Flow, as the API returns it: what a run with flowRef resolves."""
    return {(_namespace_of(name, namespace), name): copy.deepcopy(dict(body))}


@kopf.on.event(api.GROUP, api.VERSION, FLOW_PLURAL)
async def flow_changed(type: str | None, name: str, namespace: str | None, body: kopf.Body, **_: Any) -> None:
    rt = runtime()
    namespace = _namespace_of(name, namespace)
    if type == "DELETED":
        return
    rt.flow_appeared(namespace, name)
    if not checked(body):
        rt.ensure_task(f"flow/{namespace}/{name}", lambda: _check_flow(rt, namespace, name))


async def _check_flow(rt: Runtime, namespace: str, name: str) -> None:
    """Validate until the Flow's status reflects its latest generation (or it is gone)."""
    delay = RETRY_SECONDS
    while True:
        try:
            if await asyncio.to_thread(rt.flow_checker.check, namespace, name):
                return
            delay = RETRY_SECONDS
        except Exception:
            logger.exception("validating Flow %s/%s failed; trying again in %.0fs", namespace, name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)


# --- CronFlowRuns ----------------------------------------------------------------------------------


@kopf.on.event(api.GROUP, api.VERSION, CRON_PLURAL)
async def cron_changed(type: str | None, name: str, namespace: str | None, **_: Any) -> None:
    rt = runtime()
    namespace = _namespace_of(name, namespace)
    key = rt.cron_key(namespace, name)
    if type == "DELETED":
        rt.cron_labels.pop((namespace, names.label_value(name)), None)
        task = rt.tasks.get(key)
        if task is not None:
            task.cancel()
        return
    rt.cron_labels[(namespace, names.label_value(name))] = name
    rt.wake(key)
    rt.ensure_task(key, lambda: _drive_cron(rt, namespace, name))


async def _drive_cron(rt: Runtime, namespace: str, name: str) -> None:
    """Passes of one CronFlowRun, one at a time, until it is gone."""
    key = rt.cron_key(namespace, name)
    delay = RETRY_SECONDS
    try:
        while True:
            rt.wakeups.setdefault(key, asyncio.Event()).clear()
            try:
                result = await asyncio.to_thread(rt.crons.run_pass, namespace, name, rt.owned_runs(namespace, name))
            except Exception:
                logger.exception("pass of CronFlowRun %s/%s failed; trying again in %.0fs", namespace, name, delay)
                await rt.wait(key, delay)
                delay = min(delay * 2, MAX_RETRY_SECONDS)
                continue
            delay = RETRY_SECONDS
            if result.gone:
                return
            # Without a next time (suspended, invalid) only a change wakes it, or the resync.
            await rt.wait(key, min(result.requeue_after or CRON_RESYNC_SECONDS, CRON_RESYNC_SECONDS))
    finally:
        rt.wakeups.pop(key, None)
