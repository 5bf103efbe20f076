"""The client-side rate limit (ratelimit.TokenBucket), on a clock the test moves: a full bucket
lets `burst` requests through at once; beyond it each waits 1/qps after the one before, in the
order they asked; idle time refills it at qps a second up to `burst`, never beyond; qps <= 0 is no
limit; a burst below 1 with a limit is refused. Then many threads at once, which get their tokens
one each. Nothing here sleeps."""

from __future__ import annotations

import threading

import pytest

from flowrun.ratelimit import TokenBucket


class Clock:
    """The time, moved by the test; `sleep` records the waits and moves the time as a sleep would."""

    def __init__(self) -> None:
        self.now = 500.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def bucket(qps: float, burst: int, clock: Clock) -> TokenBucket:
    return TokenBucket(qps, burst, clock=clock, sleep=clock.sleep)


def test_a_full_bucket_lets_burst_requests_through_without_waiting() -> None:
    clock = Clock()
    limit = bucket(10, 5, clock)
    assert [limit.reserve() for _ in range(5)] == [0.0] * 5


@pytest.mark.parametrize(("qps", "burst"), [(10, 5), (50, 100), (20, 30), (5, 10), (0.5, 1), (3, 1)])
def test_beyond_the_burst_requests_are_spaced_one_over_qps_in_the_order_they_asked(qps: float, burst: int) -> None:
    clock = Clock()
    limit = bucket(qps, burst, clock)
    waits = [limit.reserve() for _ in range(burst + 4)]
    assert waits[:burst] == [0.0] * burst
    assert waits[burst:] == pytest.approx([n / qps for n in range(1, 5)])


def test_wait_sleeps_for_its_turn_and_says_how_long() -> None:
    clock = Clock()
    limit = bucket(4, 2, clock)
    assert [limit.wait() for _ in range(5)] == pytest.approx([0, 0, 0.25, 0.25, 0.25])
    assert clock.slept == pytest.approx([0.25, 0.25, 0.25])  # each sleep moved the clock: one token each
    assert clock.now == pytest.approx(500.75)


def test_idle_time_refills_at_qps_a_second() -> None:
    clock = Clock()
    limit = bucket(10, 5, clock)
    for _ in range(5):
        limit.reserve()
    clock.now += 0.3  # three tokens back
    assert [limit.reserve() for _ in range(4)] == pytest.approx([0, 0, 0, 0.1])


def test_idle_time_refills_no_more_than_the_burst() -> None:
    clock = Clock()
    limit = bucket(10, 5, clock)
    limit.reserve()
    clock.now += 3600
    waits = [limit.reserve() for _ in range(7)]
    assert waits == pytest.approx([0, 0, 0, 0, 0, 0.1, 0.2])


def test_a_caller_waiting_for_a_token_has_it_whatever_callers_come_later() -> None:
    """Tokens promised to waiting callers are spent: time passing pays them back first."""
    clock = Clock()
    limit = bucket(10, 1, clock)
    assert limit.reserve() == 0
    assert [limit.reserve() for _ in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    clock.now += 0.15  # the first waiter has sent; the second waits 0.05 more
    assert limit.reserve() == pytest.approx(0.25)  # after the third, whose turn is at 0.3


def test_a_clock_that_stands_still_adds_no_tokens_and_one_going_back_removes_none() -> None:
    clock = Clock()
    limit = bucket(10, 2, clock)
    limit.reserve()
    clock.now -= 5
    assert limit.reserve() == 0
    assert limit.reserve() == pytest.approx(0.1)


@pytest.mark.parametrize("qps", [0, -1, -0.5])
def test_qps_zero_or_less_is_no_limit(qps: float) -> None:
    clock = Clock()
    limit = bucket(qps, 0, clock)
    assert limit.unlimited
    assert [limit.wait() for _ in range(10_000)] == [0.0] * 10_000
    assert clock.slept == []


@pytest.mark.parametrize("burst", [0, -3])
def test_a_limit_needs_a_burst_of_at_least_one(burst: int) -> None:
    refusal = rf"^a rate limit of 5 requests a second needs a burst of at least 1, got {burst}$"
    with pytest.raises(ValueError, match=refusal):
        TokenBucket(5, burst)


def test_threads_at_once_each_take_one_token() -> None:
    """40 threads ask at once: 10 go at once, the 30 others wait 1/qps, 2/qps ... 30/qps, each its
    own turn (no two threads get the same token, none is lost)."""
    clock = Clock()
    limit = bucket(100, 10, clock)
    start = threading.Barrier(40)
    waits: list[float] = []
    lock = threading.Lock()

    def ask() -> None:
        start.wait()
        wait = limit.reserve()
        with lock:
            waits.append(wait)

    threads = [threading.Thread(target=ask) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(waits) == pytest.approx([0.0] * 10 + [n / 100 for n in range(1, 31)])
