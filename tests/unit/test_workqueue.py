"""The work queue of passes: one pass of a run at a time, however many events ask; bounded
concurrency; requeues; and an unreachable API server pausing every pass behind one probe."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from flowrun.controller import workqueue
from flowrun.controller.failures import Backoff
from flowrun.controller.workqueue import WorkQueue


class Unreachable(ConnectionError):
    pass


class Passes:
    """Records passes; `hold` makes a pass wait until released; `down` makes passes and the probe
    fail as an unreachable API server would."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.running: set[str] = set()
        self.most_at_once = 0
        self.hold = asyncio.Event()
        self.hold.set()
        self.down = False
        self.probes = 0
        self.delay: float | None = None

    async def process(self, key: str) -> float | None:
        assert key not in self.running, f"two passes of {key} at once"
        self.started.append(key)
        self.running.add(key)
        self.most_at_once = max(self.most_at_once, len(self.running))
        try:
            await self.hold.wait()
            if self.down:
                raise Unreachable("connection refused")
            await asyncio.sleep(0)
        finally:
            self.running.discard(key)
        return self.delay

    async def probe(self) -> None:
        self.probes += 1
        if self.down:
            raise Unreachable("connection refused")


async def until(check: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.001)


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Runs an async test in a fresh event loop (the project needs no async test plugin)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def queue_of(passes: Passes, workers: int = 2) -> WorkQueue:
    return WorkQueue(passes.process, passes.probe, workers, lambda error: isinstance(error, ConnectionError))


@in_loop
async def test_events_during_a_pass_give_exactly_one_more_pass_never_two_at_once() -> None:
    passes = Passes()
    queue = queue_of(passes, workers=4)
    queue.start()
    passes.hold.clear()
    queue.add("a")
    await until(lambda: passes.running == {"a"})
    for _ in range(10):
        queue.add("a")  # events while the pass runs
    passes.hold.set()
    await until(lambda: len(passes.started) == 2 and not passes.running)
    await asyncio.sleep(0.01)
    assert passes.started == ["a", "a"]
    await queue.stop()


@in_loop
async def test_passes_of_different_runs_run_at_once_up_to_the_number_of_workers() -> None:
    passes = Passes()
    queue = queue_of(passes, workers=3)
    queue.start()
    passes.hold.clear()
    for key in "abcdef":
        queue.add(key)
    await until(lambda: len(passes.running) == 3)
    await asyncio.sleep(0.01)
    assert len(passes.running) == 3 and len(queue) == 3
    passes.hold.set()
    await until(lambda: len(passes.started) == 6 and not passes.running)
    assert passes.most_at_once == 3
    await queue.stop()


@in_loop
async def test_a_requeue_comes_after_its_delay_and_a_sooner_request_wins() -> None:
    passes = Passes()
    queue = queue_of(passes)
    queue.start()
    queue.add_after("a", 60.0)
    queue.add_after("a", 0.01)
    await until(lambda: passes.started == ["a"])
    await queue.stop()


@in_loop
async def test_an_unreachable_api_server_pauses_every_pass_behind_one_probe_and_logs_it_twice(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(workqueue, "PROBE_SECONDS", 0.002)
    monkeypatch.setattr(workqueue, "MAX_PROBE_SECONDS", 0.004)
    passes = Passes()
    queue = queue_of(passes, workers=4)
    queue.start()
    passes.down = True
    caplog.set_level(logging.INFO, logger="flowrun.controller.workqueue")
    for key in [f"run-{i}" for i in range(50)]:
        queue.add(key)
    await until(lambda: passes.probes >= 20)
    # At most one pass per worker met the outage; then only the probe asks.
    assert len(passes.started) <= 4 and queue.outage_started is not None
    passes.down = False
    await until(lambda: len(set(passes.started)) == 50 and not passes.running)
    assert passes.most_at_once <= 4  # no thundering herd when it is back
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # the outage began; it ended
    assert "cannot be reached" in lines[0] and "answers again" in lines[1]
    await queue.stop()


@in_loop
async def test_a_failing_pass_is_retried_with_a_growing_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workqueue, "RETRY_SECONDS", 0.01)
    passes = Passes()
    failures = 0

    async def failing(key: str) -> float | None:
        nonlocal failures
        failures += 1
        raise RuntimeError("a bug")

    queue = WorkQueue(failing, passes.probe, 1, lambda error: False)
    queue.start()
    queue.add("a")
    await until(lambda: failures >= 3)
    assert queue._retries.failures("a") >= 3 and passes.probes == 0  # not an outage: no probe
    await queue.stop()


@in_loop
async def test_passes_due_with_none_finishing_count_as_stalled_and_a_finished_pass_or_an_empty_queue_does_not() -> None:
    passes = Passes()
    queue = queue_of(passes, workers=1)
    assert queue.stalled_for() == 0.0  # nothing due
    passes.hold.clear()  # the pass that starts now hangs
    queue.start()
    queue.add("a")
    queue.add("b")
    await until(lambda: passes.running == {"a"})
    await asyncio.sleep(0.05)
    assert queue.stalled_for() >= 0.05  # a runs, b waits, nothing finishes
    passes.hold.set()
    await until(lambda: not passes.running and len(queue) == 0)
    assert queue.stalled_for() == 0.0
    await queue.stop()


def test_an_outage_of_any_length_is_probed_at_most_five_seconds_apart() -> None:
    """So that passes resume within seconds of the API server answering again."""
    backoff = Backoff(workqueue.PROBE_SECONDS, workqueue.MAX_PROBE_SECONDS, jitter=True)
    assert max(backoff.next() for _ in range(100)) <= 5.0
