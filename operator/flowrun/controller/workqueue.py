"""The queue of FlowRuns waiting for a reconcile pass, and the workers that run the passes.

Like a Kubernetes controller's work queue: a key (a FlowRun's UID) is in the queue at most once,
however many events asked for it; a key being processed is never processed by a second worker at
the same time (an event meanwhile marks it to be processed again right after); a key may be asked
for later (a requeue, a TTL). A bounded number of workers run passes of different runs at once.

When the API server cannot be reached, one pass noticing it pauses every worker: the queue keeps
its keys, one probe asks the API server with a jittered exponential backoff (at most
MAX_PROBE_SECONDS apart, so passes resume within seconds of the API server answering again),
the outage is logged once when it starts, then at most every OUTAGE_LOG_SECONDS, and once when it
ends; nothing else sends a request meanwhile. When the probe succeeds the workers resume, still
at most `workers` passes at a time: no thundering herd.

`stalled_for()` says how long passes have been due without one finishing: the liveness answer
(health.py) fails when that lasts while the API server answers, whatever the cause.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from flowrun import metrics
from flowrun.controller.failures import Backoff, Backoffs, short

logger = logging.getLogger(__name__)

# A pass that raised is tried again after this, doubling per consecutive failure up to the maximum.
RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0
# The probe of an unreachable API server: first after this, doubling up to the maximum, jittered.
PROBE_SECONDS = 1.0
MAX_PROBE_SECONDS = 5.0
OUTAGE_LOG_SECONDS = 300.0

# A pass: the key's next pass is wanted after the returned delay (None: only when asked).
Process = Callable[[str], Awaitable[float | None]]
Probe = Callable[[], Awaitable[None]]  # raises while the API server cannot be reached


class WorkQueue:
    def __init__(
        self,
        process: Process,
        probe: Probe,
        workers: int,
        is_unreachable: Callable[[BaseException], bool],
    ) -> None:
        self._process = process
        self._probe = probe
        self._is_unreachable = is_unreachable
        self._workers = workers
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()  # in _ready
        self._active: set[str] = set()  # being processed
        self._again: set[str] = set()  # asked for while being processed
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._retries = Backoffs(RETRY_SECONDS, MAX_RETRY_SECONDS)
        self._reachable = asyncio.Event()
        self._reachable.set()
        self._tasks: list[asyncio.Task[None]] = []
        self.outage_started: float | None = None  # loop time, while the API server is unreachable
        self.outage_ended: float | None = None  # loop time the last outage ended
        self._progress_at: float | None = None  # loop time of the last pass that finished, or of no pass due

    # --- asking for passes -------------------------------------------------------------------

    def add(self, key: str) -> None:
        """A pass of `key` as soon as a worker is free (once, however often it is asked)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)
            metrics.PASSES_QUEUED.set(len(self._queued))

    def add_after(self, key: str, delay: float) -> None:
        """A pass of `key` in `delay` seconds, unless one is asked for sooner."""
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        timer = self._timers.get(key)
        if timer is not None:
            if timer.when() <= loop.time() + delay:
                return  # one comes sooner already
            timer.cancel()
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def forget(self, key: str) -> None:
        """The key is gone: no timer, no retry count (a pass already queued finds it gone)."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._retries.reset(key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def __len__(self) -> int:
        return len(self._queued)

    def stalled_for(self) -> float:
        """Seconds that passes have been due (queued or running) with none finishing; 0 when none
        is due. Called on the event loop."""
        now = asyncio.get_running_loop().time()
        if (not self._queued and not self._active) or self._progress_at is None:
            self._progress_at = now
            return 0.0
        return now - self._progress_at

    # --- workers -----------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"pass-worker-{i}") for i in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    async def _work(self) -> None:
        while True:
            await self._reachable.wait()
            key = await self._ready.get()
            self._queued.discard(key)
            metrics.PASSES_QUEUED.set(len(self._queued))
            if not self._reachable.is_set():
                self.add(key)  # taken as the outage began: processed when the API server is back
                continue
            self._active.add(key)
            try:
                delay = await self._process(key)
                self._retries.reset(key)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a failed pass is retried; the operator never crashes on one run
                delay = self._failed(key, error)
            finally:
                self._active.discard(key)
                self._progress_at = asyncio.get_running_loop().time()
            if key in self._again:
                self._again.discard(key)
                self.add(key)
            elif delay is not None:
                self.add_after(key, delay)

    def _failed(self, key: str, error: BaseException) -> float:
        if self._is_unreachable(error):
            self._outage(error)
            return 0.0  # queued again at once: it waits for the probe with everything else
        delay = self._retries.next(key)
        logger.error("reconcile pass of %s failed; trying again in %.0fs", key, delay, exc_info=error)
        metrics.RECONCILE_ERRORS.inc()
        return delay

    # --- an unreachable API server -----------------------------------------------------------

    def _outage(self, error: BaseException) -> None:
        if not self._reachable.is_set():
            return
        self._reachable.clear()
        loop = asyncio.get_running_loop()
        self.outage_started = loop.time()
        metrics.API_SERVER_REACHABLE.set(0)
        metrics.API_OUTAGES.inc()
        logger.warning(
            "the API server cannot be reached (%s); reconcile passes wait until one probe gets an answer",
            short(error),
        )
        self._tasks.append(asyncio.create_task(self._probe_until_reachable(), name="api-server-probe"))

    async def _probe_until_reachable(self) -> None:
        loop = asyncio.get_running_loop()
        # Jittered: several operators (or a restarted one) do not probe in step.
        backoff, probes = Backoff(PROBE_SECONDS, MAX_PROBE_SECONDS, jitter=True), 0
        last_log = loop.time()
        started = self.outage_started or loop.time()
        while True:
            await asyncio.sleep(backoff.next())
            probes += 1
            try:
                await self._probe()
                break
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if loop.time() - last_log >= OUTAGE_LOG_SECONDS:
                    last_log = loop.time()
                    logger.warning(
                        "the API server still cannot be reached after %.0fs (%d probes; %s)",
                        loop.time() - started,
                        probes,
                        short(error),
                    )
        logger.warning(
            "the API server answers again after %.0fs (%d probes); %d runs queued resume",
            loop.time() - started,
            probes,
            len(self._queued) + len(self._timers),
        )
        self.outage_started, self.outage_ended = None, loop.time()
        metrics.API_SERVER_REACHABLE.set(1)
        self._reachable.set()
