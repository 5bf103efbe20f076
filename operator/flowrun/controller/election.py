"""Leader election among the operator's replicas, through a `coordination.k8s.io/v1` Lease in the
operator's namespace: lease.py decides, this module reads and writes the Lease (on connections of
its own, in a thread of its own) and keeps the time.

Every replica fills its watch caches; then it runs the election loop. A standby tries to take the
Lease every retry period; the leader renews it every retry period. The replica that holds the
Lease leads a *term*: the runtime starts its controllers over its warm caches (runtime.py). The
term ends

- when the leader has not renewed the Lease for renew_deadline_seconds (the API server does not
  answer, or refuses): before any standby may take it, which takes lease_seconds without a
  renewal counted from when the standby saw the last one, so from after the leader sent it;
- at once when the leader reads the Lease held by another replica (taken over, or written by
  hand);
- when the process stops: the leader then gives the Lease up, so a standby takes it at its next
  try instead of after lease_seconds.

A term's end takes effect at once, without waiting for any thread: every write of the controllers
goes through kube.FencedApiClient, which sends it only if `may_write()` says so at that moment:
in a thread of the current term's pools (term_threads), before valid_until (the send time of the
last successful renewal plus renew_deadline_seconds). A pass of an ended term still running in a
thread can then create, patch or delete nothing, even once this process leads again.

Why not kubernetes.leaderelection (the client library's port of client-go): it blocks in threads
of its own on the library's global configuration, its leader keeps acting until the renew
deadline after it read the Lease held by another, its requests have no timeout (a hung renewal
outlasts the deadline), and it offers neither a fence for writes already under way nor a measure
of progress for the liveness probe. The rules are client-go's; the code is this module.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException

from flowrun import lease, metrics
from flowrun.controller.failures import ThrottledLog, short
from flowrun.controller.settings import LeaderElection
from flowrun.kube import Kube, api_message
from flowrun.lease import Record, Step

logger = logging.getLogger(__name__)

LOG_EVERY_SECONDS = 60.0  # failures to read or write the Lease are logged at most this often
RELEASE_SECONDS = 5.0  # the longest a stopping leader waits to give the Lease up
# Answers that say the Lease cannot be had whatever is tried (no right to leases, no such
# namespace): logged as errors, and not a wedge that a restart would cure.
REFUSED = (401, 403, 404)

T = TypeVar("T")

_thread = threading.local()
# Term numbers, unique in the process: a thread of one term never passes the fence of another.
_TERMS = itertools.count(1)


def term_threads(workers: int, prefix: str, term: int) -> ThreadPoolExecutor:
    """A pool whose threads belong to `term`: their writes pass the fence while that term lasts."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=prefix, initializer=_belong, initargs=(term,))


def _belong(term: int) -> None:
    _thread.term = term


def thread_term() -> int | None:
    """The term the calling thread belongs to (None: none, e.g. the event loop's thread)."""
    term: int | None = getattr(_thread, "term", None)
    return term


class Elector:
    """`lead(term)` is called (on the event loop) when this replica starts leading term `term`;
    `step_down(why)` is awaited when the term ends, after which the fence refuses its writes."""

    def __init__(
        self,
        config: LeaderElection,
        kube: Kube,
        lead: Callable[[int], None],
        step_down: Callable[[str], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config, self.kube = config, kube
        self._lead, self._step_down = lead, step_down
        self._clock, self._wall = clock, wall
        self.term: int | None = None  # the term this replica leads; None: a standby
        self.valid_until = float("-inf")  # clock time until which the leader may write
        self.holder = ""  # who holds the Lease, as last read
        self._record: Record | None = None  # the Lease as last read or written (None: there is none)
        self._last: Record | None = None  # the Lease as last seen when there was one
        self._since = 0.0  # clock time when the Lease was first seen as it is in _record
        self.failing_since: float | None = None  # clock time of the first of the failures going on now
        self.started_at: float | None = None
        self.round_ended: float | None = None  # clock time of the last round of the loop
        self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        self._task: asyncio.Task[None] | None = None
        self._ending: asyncio.Future[None] | None = None  # the step-down of the last term
        self._log = ThrottledLog(logger, LOG_EVERY_SECONDS, clock)

    # --- read from any thread ------------------------------------------------------------------

    def may_write(self) -> bool:
        """The fence (kube.FencedApiClient): whether the calling thread may write now."""
        term = self.term
        return term is not None and thread_term() == term and self._clock() < self.valid_until

    def stalled_for(self) -> float:
        """Seconds since the loop last finished a round (0 before it starts): each round ends
        within a few retry periods, whatever the API server does, unless the loop is stuck."""
        if self.started_at is None:
            return 0.0
        return self._clock() - (self.round_ended if self.round_ended is not None else self.started_at)

    def describe(self) -> str:
        if self.term is not None:
            return f"leading (term {self.term})"
        if self.started_at is None:
            return "standby: filling the watch caches"
        return f"standby: the Lease is held by {self.holder}" if self.holder else "standby: trying to take the Lease"

    # --- the loop ------------------------------------------------------------------------------

    def start(self) -> None:
        self.started_at = self._clock()
        metrics.LEADER.set(0)
        self._task = asyncio.create_task(self._run(), name="leader-election")

    async def stop(self) -> None:
        """Stop the loop; a leader ends its term, then gives the Lease up."""
        leading = self.term is not None
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._ending is not None:
            await self._ending  # a term that was ending when the loop stopped is stopped in full
        if self.term is not None:
            await self._end("the operator stops")
        if leading:
            await self._release()
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        while True:
            started = self._clock()
            try:
                await self._round(started)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a bug: the loop must go on, or a leader would act unchecked
                logger.exception("leader election: a round failed")
                self._failed(error)
            if self.term is not None and self._clock() >= self.valid_until:
                await self._end(
                    f"the Lease could not be renewed for {self.config.renew_deadline_seconds:.0f}s,"
                    " so another replica may take it soon"
                )
            self.round_ended = self._clock()
            await asyncio.sleep(self._pause())

    def _pause(self) -> float:
        retry = self.config.retry_period_seconds
        if self.term is not None:
            # A leader that cannot renew ends its term at the deadline, not a retry period later.
            return max(min(retry, self.valid_until - self._clock()), 0.0)
        return random.uniform(0.8 * retry, 1.2 * retry)  # standbys do not try in step

    async def _round(self, started: float) -> None:
        """Read the Lease; take or renew it, or note who holds it."""
        try:
            found = await self._call(self.kube.get_lease, self.config.namespace, self.config.lease_name)
            record = None if found is None else lease.record_of(found)
            self._saw(record, self._clock())
            step = lease.next_step(record, self.config.identity, self._since, self._clock(), self._last)
            if step is Step.WAIT:
                await self._held_by_another(record or self._last)
                return
            stored = await self._write(step, record)
        except ApiException as error:
            if error.status == 409:  # another replica wrote it between this read and write
                self._answered()
                logger.debug("leader election: the Lease changed while this replica wrote it")
                return
            self._failed(error)
            return
        except Exception as error:  # a timeout, an unreachable API server
            self._failed(error)
            return
        self._answered()
        self._saw(lease.record_of(stored), self._clock())
        self.holder = self.config.identity
        # Measured from before the read: every other replica saw this write later than that.
        self.valid_until = started + self.config.renew_deadline_seconds
        if self.term is None and self._clock() < self.valid_until:  # not if the round took too long
            self._begin()

    async def _write(self, step: Step, record: Record | None) -> dict[str, Any]:
        config = self.config
        body = lease.written(
            step, record, config.namespace, config.lease_name, config.identity, config.lease_seconds, self._wall()
        )
        if step is Step.CREATE:
            return await self._call(self.kube.create_lease, body)
        return await self._call(self.kube.replace_lease, body)

    async def _held_by_another(self, record: Record | None) -> None:
        self._answered()
        holder = record.holder if record is not None else ""
        if holder != self.holder:
            logger.info("leader election: the Lease %s is held by %s", self.config.lease_name, holder)
            self.holder = holder
        if self.term is not None:
            await self._end(f"the Lease is held by {holder} now")

    async def _call(self, request: Callable[..., T], *args: Any) -> T:
        """A request in the Lease's own thread, given at most the time left: until the deadline for
        a leader, a renew deadline for a standby. TimeoutError when it is up."""
        if self.term is not None:
            timeout = self.valid_until - self._clock()
            if timeout <= 0:
                raise TimeoutError("the renew deadline passed")
        else:
            timeout = self.config.renew_deadline_seconds
        loop = asyncio.get_running_loop()
        call = functools.partial(request, *args, timeout)
        return await asyncio.wait_for(loop.run_in_executor(self._threads, call), timeout)

    def _saw(self, record: Record | None, at: float) -> None:
        """Note when the Lease was first seen as it is now: it expires lease_seconds after that."""
        before = self._record.version() if self._record is not None else None
        if (record.version() if record is not None else None) != before:
            self._since = at
        self._record = record
        if record is not None:
            self._last = record

    # --- terms ---------------------------------------------------------------------------------

    def _begin(self) -> None:
        self.term = next(_TERMS)
        metrics.LEADER.set(1)
        logger.warning(
            "leader election: %s leads (term %d): it holds the Lease %s/%s",
            self.config.identity,
            self.term,
            self.config.namespace,
            self.config.lease_name,
        )
        self._lead(self.term)

    async def _end(self, why: str) -> None:
        self.term = None  # the fence refuses the term's writes from now on
        self.valid_until = float("-inf")
        metrics.LEADER.set(0)
        logger.warning("leader election: %s stops leading: %s", self.config.identity, why)
        # Shielded: stopping the loop meanwhile must not leave the term half stopped.
        self._ending = asyncio.ensure_future(self._step_down(why))
        await asyncio.shield(self._ending)

    async def _release(self) -> None:
        """Give the Lease up if this replica still holds it, read afresh (a renewal may have been
        under way when the loop stopped): at most RELEASE_SECONDS."""
        try:
            await asyncio.wait_for(self._give_up(), RELEASE_SECONDS)
        except Exception as error:  # it expires lease_seconds after the last renewal anyway
            logger.warning("leader election: could not give the Lease up (%s); it expires on its own", why(error))

    async def _give_up(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        read = functools.partial(self.kube.get_lease, config.namespace, config.lease_name, RELEASE_SECONDS)
        found = await loop.run_in_executor(self._threads, read)
        record = lease.record_of(found) if found is not None else None
        if record is None or record.holder != config.identity:
            return
        body = lease.released(record, config.namespace, config.lease_name, self._wall())
        await loop.run_in_executor(self._threads, functools.partial(self.kube.replace_lease, body, RELEASE_SECONDS))
        logger.info("leader election: gave the Lease up")

    # --- failures ------------------------------------------------------------------------------

    def _answered(self) -> None:
        self.failing_since = None

    def _failed(self, error: BaseException) -> None:
        """Note when failures began (the liveness answer reads it) unless the Lease is refused for
        good; log at most once per LOG_EVERY_SECONDS."""
        refused = isinstance(error, ApiException) and error.status in REFUSED
        if self.failing_since is None and not refused:
            self.failing_since = self._clock()
        where = f"{self.config.namespace}/{self.config.lease_name}"
        log = self._log.error if refused else self._log.warning
        log(f"leader election: the Lease {where} cannot be read or written: {why(error)}")


def why(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {api_message(error)}"
    return short(error)
