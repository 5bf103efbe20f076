"""What the operator's process is made of, and how its parts are wired: the watch caches
(caches.py), the term that reconciles over them (term.py: the three controllers and their
threads), leader election (election.py) when replicas share the work, and the flowrun_runs
metric. The kopf handlers (wiring.py) make one Runtime at start-up and stop it at exit; this module
knows nothing of kopf.

The caches fill first: a pass never decides from a partial cache. Then, alone, the process leads
one term until it stops; with leader election it campaigns, and leads a term each time it holds
the Lease. A standby keeps its caches filled and its watches going, so that it starts over a warm
cache when it takes over. Every event of the caches arrives here on the event loop and goes to the
term, if there is one.
"""

from __future__ import annotations

import asyncio
import logging

from flowrun import metrics
from flowrun.controller.caches import Body, Caches
from flowrun.controller.election import Elector
from flowrun.controller.health import Health, Progress, judge, since_answering, stalled
from flowrun.controller.informer import Entry
from flowrun.controller.packed import phase_of
from flowrun.controller.settings import Settings
from flowrun.controller.term import Term
from flowrun.kube import Fence, Kube
from flowrun.observed import ChildKey, ObservedChild

logger = logging.getLogger(__name__)

PROBE_SECONDS = 10  # the liveness answer waits this long at most for the API server's


class Runtime:
    def __init__(self, settings: Settings, kube: Kube, fence: Fence | None = None) -> None:
        self.settings, self.kube = settings, kube
        self.loop = asyncio.get_running_loop()
        self.caches = Caches(kube, settings.watched, self)
        self.term: Term | None = None
        self.elector: Elector | None = None
        self._unanswered_at: float | None = None  # loop time a probe of the liveness answer last failed
        if settings.leader_election is not None:
            if fence is None:
                raise ValueError("leader election needs the fence of the Kube's API client")
            # The Lease on connections of its own, outside the rate limit: a renewal never waits
            # behind the passes.
            lease_kube = kube.with_own_pool(throttled=False)
            self.elector = Elector(settings.leader_election, lease_kube, self._lead, self._step_down)
            fence.may_write = self.elector.may_write
        self.run_phases = metrics.RunPhases(self.phases)
        # From the caches, which a standby keeps warm too: what the namespace shows of its locks.
        self.lock_gauges = metrics.LockGauges(self.caches.lock_counts)

    def start(self) -> None:
        self.run_phases.register()
        self.lock_gauges.register()
        metrics.LEADER.set(0)
        self.caches.start()

    async def stop(self) -> None:
        if self.elector is not None:
            await self.elector.stop()  # ends the term, then gives the Lease up
        await self._step_down("the operator stops")
        self.caches.stop()
        self.run_phases.unregister()
        self.lock_gauges.unregister()

    # --- terms ---------------------------------------------------------------------------------

    def _lead(self, number: int) -> None:
        self.term = Term(number, self.settings, self.kube, self.caches)
        self.term.start()

    async def _step_down(self, _: str) -> None:
        term, self.term = self.term, None
        if term is not None:
            await term.stop()

    def leadership(self) -> str:
        """What the liveness answer says of this replica's part."""
        if self.elector is not None:
            return self.elector.describe()
        return "leading (no leader election)" if self.term is not None else "filling the watch caches"

    def outage_started(self) -> float | None:
        """Loop time when the leader's passes noticed the API server unreachable (None: they did
        not, or this replica does not lead)."""
        return self.term.flowruns.queue.outage_started if self.term is not None else None

    # --- liveness ------------------------------------------------------------------------------

    def progress(self) -> Progress:
        """Time without progress of each part, counted from the last moment the API server was
        seen not to answer (health.since_answering)."""
        now = self.loop.time()
        failing = max((now - since for since in self.caches.failing_since() if since is not None), default=0.0)
        elector = self.elector
        lease_since = elector.failing_since if elector is not None else None
        progress = Progress(
            passes_stalled_for=self.term.flowruns.queue.stalled_for() if self.term is not None else 0.0,
            watch_failing_for=failing,
            election_stalled_for=elector.stalled_for() if elector is not None else 0.0,
            lease_failing_for=now - lease_since if lease_since is not None else 0.0,
        )
        unanswered = self._last_unanswered()
        return since_answering(progress, now - unanswered if unanswered is not None else None)

    def _last_unanswered(self) -> float | None:
        """Loop time the API server was last seen not to answer: by a probe of the liveness answer,
        by the watches' probe, or by the leader's passes (now, while they wait for it; or when their
        outage ended). The loop's clock is the watches' (time.monotonic)."""
        seen = [self._unanswered_at, self.caches.unanswered_at()]
        if self.term is not None:
            queue = self.term.flowruns.queue
            seen += [self.loop.time() if queue.outage_started is not None else None, queue.outage_ended]
        return max((at for at in seen if at is not None), default=None)

    async def health(self) -> Health:
        """The liveness answer (health.py): the API server is asked only when something is stalled."""
        progress, bound = self.progress(), self.settings.stall_seconds
        if not stalled(progress, bound):
            return judge(progress, bound, None)
        try:
            await asyncio.wait_for(self.loop.run_in_executor(None, self.kube.probe), timeout=PROBE_SECONDS)
        except Exception:
            self._unanswered_at = self.loop.time()
            return judge(progress, bound, False)
        return judge(progress, bound, True)

    # --- metrics -------------------------------------------------------------------------------

    def phases(self) -> list[str]:
        """The phase of every run cached (read at scrape time by the metrics)."""
        entries = self.caches.flowrun_entries()
        return [phase_of(entry.value) for entry in entries]

    # --- the caches' events (caches.Listener), on the event loop ---------------------------------

    def flowrun_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None:
        if self.term is not None:
            self.term.flowrun_event(type_, entry, previous)

    def child_event(self, type_: str, entry: Entry[ObservedChild], previous: Entry[ObservedChild] | None) -> None:
        if self.term is not None:
            self.term.child_event(type_, entry, previous)

    def other_child_event(self, run: str, key: ChildKey) -> None:
        if self.term is not None:
            self.term.other_child_event(run, key)

    def flow_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None:
        if self.term is not None:
            self.term.flow_event(type_, entry, previous)

    def cron_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None:
        if self.term is not None:
            self.term.cron_event(type_, entry, previous)

    def lock_event(self, runs: set[str]) -> None:
        if self.term is not None:
            self.term.lock_event(runs)

    def synced(self) -> None:
        for error in self.caches.errors():
            logger.error("cannot watch: %s; runs of that namespace cannot be driven", error)
        logger.info("watch caches filled: %d FlowRuns", len(self.caches.flowrun_entries()))
        if self.elector is not None:
            self.elector.start()
            return
        metrics.LEADER.set(1)
        self._lead(0)
