"""What the operator's process is made of, and how its parts are wired: the watch caches
(caches.py), the three controllers (flowruns.py, cronflowruns.py, flows.py), the pool of threads
passes run in, and the flowrun_runs metric. The kopf handlers (wiring.py) make one Runtime at
start-up and stop it at exit; this module knows nothing of kopf.

Every event of the caches arrives here on the event loop and goes to the controller it concerns.
Passes start once every informer has delivered its first list: a pass never decides from a
partial cache.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from flowrun import metrics
from flowrun.controller.caches import Body, Caches
from flowrun.controller.cronflowruns import CronFlowRunController
from flowrun.controller.flow_check import FlowCheck
from flowrun.controller.flowruns import FlowRunController
from flowrun.controller.flows import FlowController
from flowrun.controller.health import Health, judge
from flowrun.controller.informer import Entry
from flowrun.controller.settings import Settings
from flowrun.controller.tasks import Tasks
from flowrun.kube import Kube
from flowrun.observed import ChildKey, ObservedChild

logger = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings, kube: Kube) -> None:
        self.settings, self.kube = settings, kube
        self.pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="pass")
        self.tasks = Tasks()
        self.caches = Caches(kube, settings.watched, self)
        self.flowruns = FlowRunController(settings, kube, self.caches, self.pool)
        self.crons = CronFlowRunController(kube, self.caches, self.tasks)
        self.flows = FlowController(FlowCheck(kube, self.flowruns.passes), self.tasks, self.flowruns.flow_appeared)
        self.run_phases = metrics.RunPhases(self.flowruns.phases)
        self.lock_gauges = metrics.LockGauges(self.caches.lock_counts)

    def start(self) -> None:
        self.run_phases.register()
        self.lock_gauges.register()
        self.caches.start()

    async def stop(self) -> None:
        self.caches.stop()
        await self.flowruns.queue.stop()
        await self.tasks.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.run_phases.unregister()
        self.lock_gauges.unregister()

    async def health(self) -> Health:
        """The liveness answer (health.py): the API server is asked only when something is stalled."""
        now = self.flowruns.loop.time()
        stalled = self.flowruns.queue.stalled_for()
        failing = max((now - since for since in self.caches.failing_since() if since is not None), default=0.0)
        bound = self.settings.stall_seconds
        if stalled <= bound and failing <= bound:
            return judge(stalled, failing, bound, None)
        try:
            await asyncio.wait_for(self.flowruns.loop.run_in_executor(None, self.kube.probe), timeout=10)
            answers = True
        except Exception:
            answers = False
        return judge(stalled, failing, bound, answers)

    # --- the caches' events (caches.Listener), on the event loop ---------------------------------

    def flowrun_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None:
        if entry.key is not None or (previous is not None and previous.key is not None):
            self.crons.run_event(type_, entry, previous)  # a run of a CronFlowRun
        self.flowruns.flowrun_event(type_, entry, previous)

    def child_event(self, type_: str, entry: Entry[ObservedChild], previous: Entry[ObservedChild] | None) -> None:
        self.flowruns.child_event(type_, entry, previous)

    def other_child_event(self, run: str, key: ChildKey) -> None:
        self.flowruns.other_child_event(run, key)

    def flow_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None:
        self.flows.flow_event(type_, entry, previous)

    def cron_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None:
        self.crons.cron_event(type_, entry, previous)

    def lock_event(self, runs: set[str]) -> None:
        self.flowruns.lock_event(runs)

    def synced(self) -> None:
        for error in self.caches.errors():
            logger.error("cannot watch: %s; runs of that namespace cannot be driven", error)
        logger.info("watch caches filled: %d FlowRuns; passes start", len(self.flowruns.namespaces))
        self.flowruns.queue.start()
        self.crons.start()
        self.tasks.ensure("orphans", lambda: self.flowruns.sweep_orphans(self.settings.orphans))
