"""The CronFlowRun controller: one asyncio task per CronFlowRun syncs it by passes (cron_pass.py),
one at a time, until it is gone; passes run in the threads it is given (its term's: term.py). Its
task wakes at the next scheduled time, when the CronFlowRun changes, when one of its runs changes
in what its decisions read (phase, cancel, deletion; not every status write), and at least every
CRON_RESYNC_SECONDS.

Driven by tasks of this process, not by kopf daemons or timers: those would put a finalizer on
every CronFlowRun (and need the right to patch it), which would block its deletion whenever the
operator is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import Any

from flowrun import api, cron, names
from flowrun.controller.caches import Body, Caches
from flowrun.controller.cron_pass import CronPass, Owned
from flowrun.controller.failures import MAX_RETRY_SECONDS, RETRY_SECONDS, Backoff
from flowrun.controller.informer import Entry
from flowrun.controller.tasks import Tasks
from flowrun.kube import Kube

logger = logging.getLogger(__name__)

# The longest a CronFlowRun goes without a pass (its next time may be days away): a missed event
# costs at most this.
CRON_RESYNC_SECONDS = 600.0


def task_key(namespace: str, name: str) -> str:
    return f"cron/{namespace}/{name}"


class CronFlowRunController:
    def __init__(self, kube: Kube, caches: Caches, tasks: Tasks, threads: Executor) -> None:
        self.caches, self.tasks, self.threads = caches, tasks, threads
        self.passes = CronPass(kube)
        self.wakeups: dict[str, asyncio.Event] = {}  # task key -> set when something changed
        self.labels: dict[tuple[str, str], str] = {}  # (namespace, flowrun.dev/cron label) -> name
        # Passes start once the caches are filled: a pass that saw only some of a CronFlowRun's
        # runs could start one that its concurrency policy forbids.
        self.started = False

    def start(self) -> None:
        self.started = True
        for (namespace, _), name in self.labels.items():
            self.tasks.ensure(task_key(namespace, name), self._driver(namespace, name))

    # --- events (on the event loop) ------------------------------------------------------------

    def cron_event(self, type_: str, entry: Entry[Body], _: Entry[Body] | None) -> None:
        namespace, name = entry.namespace, entry.name
        key = task_key(namespace, name)
        if type_ == "DELETED":
            self.labels.pop((namespace, names.label_value(name)), None)
            self.tasks.cancel(key)
            self.passes.forget(entry.uid)
            return
        self.labels[(namespace, names.label_value(name))] = name
        self.wake(key)
        if self.started:
            self.tasks.ensure(key, self._driver(namespace, name))

    def run_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None:
        """A FlowRun labelled flowrun.dev/cron changed: wake its CronFlowRun if what it decides
        from changed."""
        before = cron.owned_run_from_object(previous.value) if previous is not None else None
        after = None if type_ == "DELETED" else cron.owned_run_from_object(entry.value)
        if before == after:
            return
        label = str(((entry.value.get("metadata") or {}).get("labels") or {}).get(api.LABEL_CRON) or "")
        name = self.labels.get((entry.namespace, label))
        if name is not None:
            self.wake(task_key(entry.namespace, name))

    def wake(self, key: str) -> None:
        if key in self.wakeups:
            self.wakeups[key].set()

    # --- passes --------------------------------------------------------------------------------

    def owned_runs(self, namespace: str, name: str) -> list[Owned]:
        """(controlling owner's UID, the run) of every FlowRun labelled as this CronFlowRun's."""
        owned: list[Owned] = []
        for body in self.caches.cron_runs(namespace, names.label_value(name)):
            refs = (body.get("metadata") or {}).get("ownerReferences") or []
            owner = next((str(ref.get("uid") or "") for ref in refs if ref.get("controller")), "")
            owned.append((owner, cron.owned_run_from_object(body)))
        return owned

    def _driver(self, namespace: str, name: str) -> Callable[[], Coroutine[Any, Any, None]]:
        return lambda: self.drive(namespace, name)

    async def drive(self, namespace: str, name: str) -> None:
        """Passes of one CronFlowRun, one at a time, until it is gone."""
        key = task_key(namespace, name)
        backoff = Backoff(RETRY_SECONDS, MAX_RETRY_SECONDS)
        try:
            while True:
                self.wakeups.setdefault(key, asyncio.Event()).clear()
                try:
                    owned = self.owned_runs(namespace, name)
                    loop = asyncio.get_running_loop()
                    result = await loop.run_in_executor(self.threads, self.passes.run, namespace, name, owned)
                except Exception:
                    delay = backoff.next()
                    logger.exception("pass of CronFlowRun %s/%s failed; trying again in %.0fs", namespace, name, delay)
                    await self.wait(key, delay)
                    continue
                backoff.reset()
                if result.gone:
                    return
                # Without a next time (suspended, invalid) only a change wakes it, or the resync.
                await self.wait(key, min(result.requeue_after or CRON_RESYNC_SECONDS, CRON_RESYNC_SECONDS))
        finally:
            self.wakeups.pop(key, None)

    async def wait(self, key: str, timeout: float) -> None:
        """Until something about the CronFlowRun changed, or `timeout` passed."""
        event = self.wakeups.setdefault(key, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=max(timeout, 0.0))
