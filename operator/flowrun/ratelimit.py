"""The client-side rate limit of the operator's requests to the API server (`--qps`, `--burst`): a
token bucket like client-go's default (golang.org/x/time/rate behind `rest.Config.QPS`/`Burst`).
The bucket holds at most `burst` tokens, starts full, and gains `qps` tokens a second; every request
takes one before it is sent, and waits for it when the bucket is empty. `qps <= 0`: no limit.

A class of its own rather than a library: the well-kept Python rate limiters either count requests
in sliding time windows, which is not client-go's refill rate plus burst (pyrate-limiter, limits),
or are for asyncio only (aiolimiter), while the requests here are sent from threads. The whole of
client-go's semantics is the few lines of `reserve`, and a clock and a sleep given to the class
test every case without waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self,
        qps: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if qps > 0 and burst < 1:
            raise ValueError(f"a rate limit of {qps} requests a second needs a burst of at least 1, got {burst}")
        self.qps, self.burst = qps, burst
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)  # may go below 0: the tokens already promised to waiting callers
        self._counted_at = clock()
        # Requests are sent from the pass threads, the informers' and the event loop's at once.
        self._lock = threading.Lock()

    @property
    def unlimited(self) -> bool:
        return self.qps <= 0

    def reserve(self) -> float:
        """Take a token now: the seconds the caller must wait before it sends (0 if a token was
        there). A caller that finds the bucket empty takes the next token to come, not a later
        one: callers are served in the order they asked, each 1/qps after the one before, and none
        waits longer than (the callers ahead of it + 1) / qps."""
        if self.unlimited:
            return 0.0
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._counted_at)
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.qps)
            self._counted_at = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def wait(self) -> float:
        """Take a token, waiting (outside the lock) until it is there; the seconds waited."""
        delay = self.reserve()
        if delay > 0:
            self._sleep(delay)
        return delay
