"""The Flow controller: validates each Flow whenever its spec is new to the operator (created,
changed, or changed while the operator was down), in a task of its own (flow_check.py), and tells
the FlowRun controller when a Flow appears, so that runs waiting for it (FlowNotFound) go on.

Driven by tasks of this process, not by kopf daemons: those would put a finalizer on every Flow,
which would block its deletion whenever the operator is down. The operator writes a Flow's status
only, so Git stays the only writer of the rest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor

from flowrun.controller.caches import Body
from flowrun.controller.failures import MAX_RETRY_SECONDS, RETRY_SECONDS, Backoff
from flowrun.controller.flow_check import FlowCheck, checked
from flowrun.controller.informer import Entry
from flowrun.controller.tasks import Tasks

logger = logging.getLogger(__name__)


class FlowController:
    def __init__(self, check: FlowCheck, tasks: Tasks, appeared: Callable[[str, str], None], threads: Executor) -> None:
        self.check, self.tasks, self.appeared, self.threads = check, tasks, appeared, threads

    def flow_event(self, type_: str, entry: Entry[Body], _: Entry[Body] | None) -> None:
        if type_ == "DELETED":
            return
        namespace, name = entry.namespace, entry.name
        self.appeared(namespace, name)
        if not checked(entry.value):
            self.tasks.ensure(f"flow/{namespace}/{name}", lambda: self.validate(namespace, name))

    async def validate(self, namespace: str, name: str) -> None:
        """Validate until the Flow's status reflects its latest generation (or it is gone)."""
        backoff = Backoff(RETRY_SECONDS, MAX_RETRY_SECONDS)
        while True:
            try:
                loop = asyncio.get_running_loop()
                if await loop.run_in_executor(self.threads, self.check.check, namespace, name):
                    return
                backoff.reset()
            except Exception:
                delay = backoff.next()
                logger.exception("validating Flow %s/%s failed; trying again in %.0fs", namespace, name, delay)
                await asyncio.sleep(delay)
