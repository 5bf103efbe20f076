"""One term of leadership: what the operator runs while it reconciles. The three controllers
(flowruns.py, cronflowruns.py, flows.py) over the runtime's watch caches, the threads their passes
run in, their long-lived tasks (a CronFlowRun's schedule, a Flow's validation, the orphan sweep).

Without leader election the process runs one term from the moment its caches are filled to its
end. With it (election.py), a term begins each time the replica takes the Lease, over caches that
are filled and warm already, and ends when it stops leading; nothing of a term outlives it: the
next one starts from the caches as a restarted process would (every decision is derived from the
objects, so nothing is lost), with threads of its own, so that a pass of an ended term that is
still running can write nothing (the fence, election.py).
"""

from __future__ import annotations

from flowrun import metrics
from flowrun.controller.caches import Body, Caches
from flowrun.controller.cronflowruns import CronFlowRunController
from flowrun.controller.election import term_threads
from flowrun.controller.flow_check import FlowCheck
from flowrun.controller.flowruns import FlowRunController
from flowrun.controller.flows import FlowController
from flowrun.controller.informer import Entry
from flowrun.controller.settings import Settings
from flowrun.controller.tasks import Tasks
from flowrun.kube import Kube
from flowrun.observed import ChildKey, ObservedChild

# Threads for CronFlowRun passes and Flow checks (FlowRun passes have `--workers` of their own).
OTHER_THREADS = 4


class Term:
    def __init__(self, number: int, settings: Settings, kube: Kube, caches: Caches) -> None:
        self.number, self.settings, self.caches = number, settings, caches
        self.pool = term_threads(settings.workers, f"pass-{number}", number)
        self.threads = term_threads(OTHER_THREADS, f"work-{number}", number)
        self.tasks = Tasks()
        self.flowruns = FlowRunController(settings, kube, caches, self.pool)
        self.crons = CronFlowRunController(kube, caches, self.tasks, self.threads)
        check = FlowCheck(kube, self.flowruns.passes)
        self.flows = FlowController(check, self.tasks, self.flowruns.flow_appeared, self.threads)

    def start(self) -> None:
        """Every object the caches hold goes to its controller as a fresh process's first lists
        would hand it (running runs get a pass at once, finished ones spread over a minute); then
        passes, schedules and the orphan sweep start."""
        for entry in self.caches.cron_entries():
            self.crons.cron_event("LISTED", entry, None)
        for entry in self.caches.flow_entries():
            self.flows.flow_event("LISTED", entry, None)
        for entry in self.caches.flowrun_entries():
            self.flowrun_event("LISTED", entry, None)
        self.flowruns.queue.start()
        self.crons.start()
        self.tasks.ensure("orphans", lambda: self.flowruns.sweep_orphans(self.settings.orphans))

    async def stop(self) -> None:
        """No new pass starts; a pass running in a thread is left to end (with leader election its
        writes are refused already)."""
        await self.flowruns.queue.stop()
        await self.tasks.stop()
        for pool in (self.pool, self.threads):
            pool.shutdown(wait=False, cancel_futures=True)
        # What only the replica that reconciles reports.
        metrics.PASSES_QUEUED.set(0)
        metrics.ORPHANED_OBJECTS.clear()

    # --- the caches' events, routed by the runtime (on the event loop) ---------------------------

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
