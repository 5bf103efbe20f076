"""The operator's runtime over the fake API server, for unit tests of the code production runs (the
informers, the caches, the controllers, the passes): objects are put in the fake server, the
informers bring them to the caches, and tests wait for what follows with `until`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowrun import api
from flowrun.controller.caches import Body
from flowrun.controller.informer import Entry
from flowrun.kube import Kube
from flowrun.observed import ChildKey, ObservedChild
from tests.unit.fake_api_server import OPERATOR_KINDS, FakeApiServer

NS = "team"


def fake_server() -> FakeApiServer:
    return FakeApiServer(kinds=list(OPERATOR_KINDS), watch_seconds=0.5, store_creates=True)


def kube_over(server: FakeApiServer, tmp_path: Path) -> Kube:
    """A Kube whose every request, its informers' included, goes to `server`."""
    return Kube(server, dynamic=server.dynamic_client(tmp_path), new_pool=lambda: server)


async def until(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Poll `check` on the event loop (letting the informers' events in) until it holds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def flowrun(name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": "2026-12-01T12:00:00Z", **metadata},
        "spec": spec,
    }


def sim_pod(name: str, run_uid: str, phase: str = "Pending", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {api.LABEL_UID: run_uid, api.LABEL_MANAGED_BY: api.MANAGED_BY, **labels},
        },
        "status": {"phase": phase},
    }


class Recorded:
    """A caches.Listener that records every event and hands nothing on."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []  # (what, type, name)
        self.others: list[tuple[str, ChildKey]] = []
        self.woken: list[set[str]] = []  # the runs of each lock event
        self.filled = asyncio.Event()

    def flowrun_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None:
        self.events.append(("flowrun", type_, entry.name))

    def child_event(self, type_: str, entry: Entry[ObservedChild], previous: Entry[ObservedChild] | None) -> None:
        self.events.append(("child", type_, entry.name))

    def other_child_event(self, run: str, key: ChildKey) -> None:
        self.others.append((run, key))

    def flow_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None:
        self.events.append(("flow", type_, entry.name))

    def cron_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None:
        self.events.append(("cron", type_, entry.name))

    def lock_event(self, runs: set[str]) -> None:
        self.woken.append(runs)

    def synced(self) -> None:
        self.filled.set()
