"""kopf wiring, kept thin: one daemon per FlowRun drives reconcile passes; events of the run and of
its labelled children wake it; the delete handler holds the finalizer until cleanup is done.

Children are watched with `@kopf.on.event` only (never on.field/on.update on pods, which would make
kopf patch every pod). A pass is level-triggered, so a missed event costs at most one resync.

Flows and the FlowRuns of CronFlowRuns are kept in kopf indexes (kopf fills them from its watches
before any handler runs, so a pass after a restart sees every one). Flows and CronFlowRuns are
watched with `@kopf.on.event` only, and driven by tasks of this process, not by kopf daemons or
timers: those would put a finalizer on every Flow and CronFlowRun (and need the right to patch
them), which would block their deletion whenever the operator is down. A CronFlowRun's task wakes
at its next scheduled time, when it changes and when one of its runs changes; a Flow's task
validates it once per generation.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import kopf
from kubernetes import config

from flowrun import api, cron, metrics, names
from flowrun.cron import CRON_PLURAL, LABEL_CRON, OwnedRun
from flowrun.cron_reconciler import CronReconciler, Owned
from flowrun.flow_checker import FlowChecker, checked
from flowrun.flows import FLOW_PLURAL
from flowrun.kube import REQUEST_TIMEOUT, Kube
from flowrun.reconciler import PassResult, Reconciler

logger = logging.getLogger(__name__)

RESYNC_SECONDS = 30.0  # the longest a running run goes without a pass, whatever happens
FINISHED_RESYNC_SECONDS = 600.0
DELETE_HANDLER_SLICE = 20.0  # the delete handler hands back to kopf this often (a checkpoint)
WAITING_FOR_CLEANUP = "waiting for cleanup"  # what the delete handler's designed wait says
MANAGED = {api.LABEL_MANAGED_BY: api.MANAGED_BY}
# A pass of a Flow or CronFlowRun that failed (an API error) is tried again after this, doubling
# up to the maximum: never a hot loop, never given up.
RETRY_SECONDS = 5.0
MAX_RETRY_SECONDS = 60.0
# The longest a CronFlowRun goes without a pass (its next time may be days away): a missed event
# costs at most this.
CRON_RESYNC_SECONDS = 600.0

Key = tuple[str, str]  # (namespace, name)


class Runtime:
    """Per-process state: the reconcilers; per FlowRun UID (and per CronFlowRun), a wake-up event
    and a lock; the runs waiting for a Flow; the tasks driving Flows and CronFlowRuns."""

    def __init__(self, kube: Kube, flows_by_name: kopf.Index[Key, Any], cron_runs: kopf.Index[Key, Owned]) -> None:
        self.loop = asyncio.get_running_loop()
        self.flows_by_name = flows_by_name
        self.cron_runs = cron_runs
        self.reconciler = Reconciler(kube, flows=self.lookup_flow)
        self.crons = CronReconciler(kube)
        self.flow_checker = FlowChecker(kube, self.reconciler)
        self.wakeups: dict[str, asyncio.Event] = {}
        self.locks: dict[str, asyncio.Lock] = {}
        self.flow_waiters: dict[Key, set[str]] = {}  # Flow -> UIDs of the runs waiting for it
        self.cron_labels: dict[Key, str] = {}  # (namespace, flowrun.dev/cron label value) -> CronFlowRun name
        self.owned_seen: dict[str, OwnedRun] = {}  # UID -> a CronFlowRun's run, as last seen
        self.tasks: dict[str, asyncio.Task[None]] = {}  # "flow/<ns>/<name>", "cron/<ns>/<name>"

    def wake(self, uid: str | None) -> None:
        if uid and uid in self.wakeups:
            self.wakeups[uid].set()

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

    def wait_for_flow(self, uid: str, namespace: str, flow: str | None) -> None:
        if flow is not None:
            self.flow_waiters.setdefault((namespace, flow), set()).add(uid)

    def flow_appeared(self, namespace: str, name: str) -> None:
        """Wake the runs waiting for it (they register again if they still wait)."""
        for uid in self.flow_waiters.pop((namespace, name), set()):
            self.wake(uid)

    # --- CronFlowRuns ----------------------------------------------------------------------------

    def cron_key(self, namespace: str, name: str) -> str:
        return f"cron/{namespace}/{name}"

    def wake_cron_of_run(self, namespace: str, label: str) -> None:
        name = self.cron_labels.get((namespace, label))
        if name is not None:
            self.wake(self.cron_key(namespace, name))

    def owned_runs(self, namespace: str, name: str) -> list[Owned]:
        return list(self.cron_runs.get((namespace, names.label_value(name)), ()))

    # --- tasks of Flows and CronFlowRuns ---------------------------------------------------------

    def ensure_task(self, key: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start `work` as the task of `key` unless it runs already."""
        running = self.tasks.get(key)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(work(), name=key)
        self.tasks[key] = task
        task.add_done_callback(lambda done: self.tasks.pop(key, None) if self.tasks.get(key) is done else None)

    async def stop_tasks(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def run_pass(self, uid: str, namespace: str, name: str) -> PassResult:
        # One pass at a time per run: the daemon and the delete handler may overlap briefly.
        async with self.locks.setdefault(uid, asyncio.Lock()):
            self.wakeups.setdefault(uid, asyncio.Event()).clear()
            try:
                with metrics.RECONCILE_DURATION.time():
                    result = await asyncio.to_thread(self.reconciler.run_pass, namespace, name)
            except Exception:
                metrics.RECONCILE_ERRORS.inc()
                raise
        if result.gone:
            self.forget(uid)
        else:
            self.wait_for_flow(uid, namespace, result.waiting_for_flow)
        return result

    async def wait(self, uid: str, timeout: float, stopped: kopf.DaemonStopped | None = None) -> None:
        """Until something about the run changed, `timeout` passed, or the daemon is stopped."""
        waiters: set[asyncio.Future[Any]] = {
            asyncio.ensure_future(self.wakeups.setdefault(uid, asyncio.Event()).wait())
        }
        if stopped is not None:
            waiters.add(asyncio.ensure_future(_until_stopped(stopped)))
        try:
            await asyncio.wait(waiters, timeout=max(timeout, 0.0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    def forget(self, uid: str) -> None:
        self.wakeups.pop(uid, None)
        self.locks.pop(uid, None)
        self.reconciler.forget(uid)
        metrics.forget_run(uid)
        for waiting in self.flow_waiters.values():
            waiting.discard(uid)


async def _until_stopped(stopped: kopf.DaemonStopped) -> None:
    # An async daemon's `stopped.wait()` is awaitable, though its declared type is not a coroutine.
    await stopped.wait()


_runtime: Runtime | None = None


def runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("the operator has not started")
    return _runtime


def _next_wait(result: PassResult) -> float:
    if result.waiting_for_finalizer:
        return 1.0
    # A finished run has nothing left to drive: only a change (an event) or its TTL matters, so
    # thousands of finished runs do not cost a pass each every resync period.
    resync = FINISHED_RESYNC_SECONDS if result.done else RESYNC_SECONDS
    return min(result.requeue_after if result.requeue_after is not None else resync, resync)


class DesignedWaitsAtInfo(logging.Filter):
    """Logs kopf's report of the delete handler's designed wait at INFO, not ERROR.

    While a cleanup keeps failing the finalizer is held on purpose (a Warning event says why and
    how to release it). kopf's only way for a delete handler to keep its finalizer is to raise
    TemporaryError, and kopf logs every TemporaryError as "Handler ... failed temporarily" at
    ERROR: an ERROR every DELETE_HANDLER_SLICE seconds for what is no error. The alternatives are
    worse: a handler that never returns blocks kopf's worker for the object (and is cancelled
    with a warning at every shutdown), and taking the finalizer out of kopf's hands means
    reimplementing its deletion handling. So the record is lowered here, matched exactly: kopf's
    logger of objects, ERROR, and the text the handler raises with. Any other error stays one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and f"failed temporarily: {WAITING_FOR_CLEANUP}:" in record.getMessage():
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


def _namespace_of(name: str, namespace: str | None) -> str:
    if namespace is None:  # the CRD is Namespaced: kopf always passes the namespace
        raise RuntimeError(f"FlowRun {name} has no namespace")
    return namespace


DESIGNED_WAITS = DesignedWaitsAtInfo()

# Set by the CLI before kopf starts: whether the operator watches every namespace.
CLUSTERWIDE = True


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
    global _runtime
    settings.persistence.finalizer = api.FINALIZER
    logging.getLogger("kopf.objects").addFilter(DESIGNED_WAITS)
    # Namespace-scoped, the operator has no right to list namespaces or CRDs cluster-wide; kopf's
    # scan for them would be refused and retried for about a minute before anything is handled.
    settings.scanning.disabled = not CLUSTERWIDE
    # The operator posts its own events, one per transition; kopf's per-handler events are noise.
    settings.posting.enabled = False
    # Watches that stall silently are restarted (kopf issues 204, 585, 847).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    try:
        api_client = config.new_client_from_config()
    except config.ConfigException:
        config.load_incluster_config()
        from kubernetes import client

        api_client = client.ApiClient()
    # kopf hands every handler, this one included, its indexes by the names of their functions.
    _runtime = Runtime(Kube(api_client), kwargs["flows_by_name"], kwargs["cron_runs"])


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    if _runtime is not None:
        await _runtime.stop_tasks()


# Stopped gracefully: the daemon notices `stopped` between passes within a second.
@kopf.daemon(api.GROUP, api.VERSION, api.PLURAL, cancellation_backoff=2.0, cancellation_timeout=5.0)
async def drive(uid: str, name: str, namespace: str | None, stopped: kopf.DaemonStopped, **_: Any) -> None:
    """Reconcile the run until it is deleted (then the delete handler takes over)."""
    rt = runtime()
    namespace = _namespace_of(name, namespace)
    while not stopped:
        try:
            result = await rt.run_pass(uid, namespace, name)
        except Exception:  # a failed pass is retried; the operator never crashes on one run
            logger.exception("reconcile pass of %s/%s failed", namespace, name)
            await rt.wait(uid, 5.0, stopped)
            continue
        if result.gone or result.deleting:
            return
        await rt.wait(uid, _next_wait(result), stopped)


@kopf.on.delete(api.GROUP, api.VERSION, api.PLURAL)
async def release(uid: str, name: str, namespace: str | None, **_: Any) -> None:
    """Hold the finalizer until every started block is cleaned up (or skip-cleanup is set).

    Never a PermanentError: that would release the finalizer with cleanup undone."""
    rt = runtime()
    namespace = _namespace_of(name, namespace)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DELETE_HANDLER_SLICE
    while True:
        result = await rt.run_pass(uid, namespace, name)
        if result.gone or result.finalizer_releasable:
            rt.forget(uid)
            return
        if loop.time() > deadline:
            # Logged at INFO, not as kopf's ERROR: see DesignedWaitsAtInfo.
            raise kopf.TemporaryError(f"{WAITING_FOR_CLEANUP}: {result.message or result.phase}", delay=1.0)
        await rt.wait(uid, min(_next_wait(result), 2.0))


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def flowrun_changed(
    type: str | None, uid: str, labels: kopf.Labels, namespace: str | None, body: kopf.Body, **_: Any
) -> None:
    rt = runtime()
    rt.wake(uid)
    cron_label = labels.get(LABEL_CRON)
    if cron_label is not None and namespace is not None:
        # Only what its CronFlowRun decides from (phase, cancel, deletion), not every status write.
        if type == "DELETED":
            rt.owned_seen.pop(uid, None)
            rt.wake_cron_of_run(namespace, cron_label)
        else:
            seen = cron.owned_run_from_object(body)
            if rt.owned_seen.get(uid) != seen:
                rt.owned_seen[uid] = seen
                rt.wake_cron_of_run(namespace, cron_label)


@kopf.on.event("v1", "pods", labels=MANAGED)
@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("v1", "services", labels=MANAGED)
async def child_changed(labels: kopf.Labels, **_: Any) -> None:
    runtime().wake(labels.get(api.LABEL_UID))


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


@kopf.index(api.GROUP, api.VERSION, api.PLURAL, labels={LABEL_CRON: kopf.PRESENT})
async def cron_runs(
    namespace: str | None, name: str, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[Key, Owned]:
    """(namespace, flowrun.dev/cron label) -> (the controlling owner's UID, the run as observed)."""
    owner = next((ref.get("uid", "") for ref in body.metadata.get("ownerReferences", []) if ref.get("controller")), "")
    key = (_namespace_of(name, namespace), labels[LABEL_CRON])
    return {key: (str(owner), cron.owned_run_from_object(body))}


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
