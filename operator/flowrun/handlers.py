"""kopf wiring, kept thin: one daemon per FlowRun drives reconcile passes; events of the run and of
its labelled children wake it; the delete handler holds the finalizer until cleanup is done.

Children are watched with `@kopf.on.event` only (never on.field/on.update on pods, which would make
kopf patch every pod). A pass is level-triggered, so a missed event costs at most one resync.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kubernetes import config

from flowrun import api, metrics
from flowrun.kube import Kube
from flowrun.reconciler import PassResult, Reconciler

logger = logging.getLogger(__name__)

RESYNC_SECONDS = 30.0  # the longest a running run goes without a pass, whatever happens
FINISHED_RESYNC_SECONDS = 600.0
DELETE_HANDLER_SLICE = 20.0  # the delete handler hands back to kopf this often (a checkpoint)
MANAGED = {api.LABEL_MANAGED_BY: api.MANAGED_BY}


class Runtime:
    """Per-process state: the reconciler and, per FlowRun UID, a wake-up event and a lock."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.wakeups: dict[str, asyncio.Event] = {}
        self.locks: dict[str, asyncio.Lock] = {}

    def wake(self, uid: str | None) -> None:
        if uid and uid in self.wakeups:
            self.wakeups[uid].set()

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


def _namespace_of(name: str, namespace: str | None) -> str:
    if namespace is None:  # the CRD is Namespaced: kopf always passes the namespace
        raise RuntimeError(f"FlowRun {name} has no namespace")
    return namespace


# Set by the CLI before kopf starts: whether the operator watches every namespace.
CLUSTERWIDE = True


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _runtime
    settings.persistence.finalizer = api.FINALIZER
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
    _runtime = Runtime(Reconciler(Kube(api_client)))


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
            raise kopf.TemporaryError(f"waiting for cleanup: {result.message or result.phase}", delay=1.0)
        await rt.wait(uid, min(_next_wait(result), 2.0))


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def flowrun_changed(uid: str, **_: Any) -> None:
    runtime().wake(uid)


@kopf.on.event("v1", "pods", labels=MANAGED)
@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("v1", "services", labels=MANAGED)
async def child_changed(labels: kopf.Labels, **_: Any) -> None:
    runtime().wake(labels.get(api.LABEL_UID))
