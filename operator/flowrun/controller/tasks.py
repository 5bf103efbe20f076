"""The long-lived asyncio tasks of the controllers (a CronFlowRun's schedule, a Flow's validation,
the orphan sweep): at most one per key, cancelled together when the operator stops."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


class Tasks:
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Task[None]] = {}

    def ensure(self, key: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Start `work` as the task of `key` unless one runs already."""
        running = self._running.get(key)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(work(), name=key)
        self._running[key] = task
        task.add_done_callback(lambda done: self._running.pop(key, None) if self._running.get(key) is done else None)

    def cancel(self, key: str) -> None:
        task = self._running.get(key)
        if task is not None:
            task.cancel()

    async def stop(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
