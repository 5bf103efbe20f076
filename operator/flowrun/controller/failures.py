"""What every loop of the controllers does with a failure: wait before trying again (Backoff), report
it once while it lasts (ReportOnce) or once in a while (ThrottledLog), in one short line (short). A
failure repeated on every pass is then neither a hot loop nor a flood of events and log lines."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field

# A controller's own task that failed (an API error: a Flow's validation, a CronFlowRun's pass) is
# tried again after this, doubling up to the maximum: never a hot loop, never given up.
RETRY_SECONDS, MAX_RETRY_SECONDS = 5.0, 60.0
# A transient failure of a FlowRun's or a CronFlowRun's pass (or a refused delete) is retried by the
# next pass, this soon.
FAILURE_REQUEUE_SECONDS = 5.0


@dataclass
class Backoff:
    """Exponential backoff: `initial` seconds after the first failure, doubling up to `maximum`.
    With `jitter`, each delay is drawn from [delay/2, delay] (so that many clients, or a restarted
    operator, do not retry in step). `reset()` after a success."""

    initial: float
    maximum: float
    jitter: bool = False
    failures: int = 0
    _random: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def next(self) -> float:
        """The delay before the next try, counting one more failure."""
        # The exponent stops at 1023: 2.0**1024 raises OverflowError, and the delay is at its
        # maximum long before.
        delay = min(self.initial * 2.0 ** min(self.failures, 1023), self.maximum)
        self.failures += 1
        return self._random(delay / 2, delay) if self.jitter else delay

    def reset(self) -> None:
        self.failures = 0


class Backoffs:
    """One Backoff per key (a run's UID): a key's delay grows with its own consecutive failures."""

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial, self.maximum = initial, maximum
        self._by_key: dict[Hashable, Backoff] = {}

    def next(self, key: Hashable) -> float:
        return self._by_key.setdefault(key, Backoff(self.initial, self.maximum)).next()

    def failures(self, key: Hashable) -> int:
        backoff = self._by_key.get(key)
        return backoff.failures if backoff is not None else 0

    def reset(self, key: Hashable) -> None:
        self._by_key.pop(key, None)


class ReportOnce:
    """Per key (a run's UID): which failures have been reported. A failure is reported once while
    it persists, and again only after a pass without it."""

    def __init__(self) -> None:
        self._reported: dict[Hashable, frozenset[str]] = {}

    def fresh(self, key: Hashable, failures: Iterable[str]) -> list[str]:
        """Of this pass's `failures`, those to report now (in order, each once); remembers this
        pass's failures as the ones reported."""
        current = list(dict.fromkeys(failures))
        before = self._reported.get(key, frozenset())
        if current:
            self._reported[key] = frozenset(current)
        else:
            self._reported.pop(key, None)
        return [failure for failure in current if failure not in before]

    def forget(self, key: Hashable) -> None:
        self._reported.pop(key, None)


class ThrottledLog:
    """At most one WARNING (or ERROR) every `every` seconds for all the loops that share it, the
    others at DEBUG and counted in the next WARNING or ERROR: the watches of every kind and namespace
    share one, so an outage of the API server is a line a minute, not a line per watch. Any thread
    may call it."""

    def __init__(self, log: logging.Logger, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._log, self._every, self._clock = log, every, clock
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._unlogged = 0

    def warning(self, message: str) -> None:
        self._emit(logging.WARNING, message)

    def error(self, message: str) -> None:
        """As warning(), at ERROR: a failure that will not pass by itself."""
        self._emit(logging.ERROR, message)

    def _emit(self, level: int, message: str) -> None:
        with self._lock:
            now = self._clock()
            quiet = now - self._last < self._every
            if quiet:
                self._unlogged += 1
            else:
                unlogged, self._last, self._unlogged = self._unlogged, now, 0
        if quiet:
            self._log.debug(message)
            return
        also = f" ({unlogged} more failures since the last message)" if unlogged else ""
        self._log.log(level, "%s%s", message, also)


def short(error: BaseException) -> str:
    """The first line of an error's text (at most 200 characters), or its type's name."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:200]
