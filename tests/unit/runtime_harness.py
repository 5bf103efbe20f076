"""The operator's runtime over the fake API server, for unit tests of the code production runs (the
informers, the caches, the controllers, the passes): objects are put in the fake server, the
informers bring them to the caches, and tests wait for what follows with `until`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import urllib3.exceptions
from kubernetes.dynamic import DynamicClient

from flowrun import api
from flowrun.controller.caches import Body
from flowrun.controller.informer import Entry
from flowrun.kube import Fence, FencedApiClient, Kube, ThrottledApiClient
from flowrun.observed import ChildKey, ObservedChild
from flowrun.ratelimit import TokenBucket
from tests.unit.fake_api_server import OPERATOR_KINDS, FakeApiServer

NS = "team"


def fake_server() -> FakeApiServer:
    return FakeApiServer(kinds=list(OPERATOR_KINDS), watch_seconds=0.5, store_creates=True)


def kube_over(server: FakeApiServer, tmp_path: Path) -> Kube:
    """A Kube whose every request, its informers' included, goes to `server`."""
    return Kube(server, dynamic=server.dynamic_client(tmp_path), new_pool=lambda: server)


class Link:
    """One replica's connection to the fake API server: it records what the replica sends, and can
    be cut (every request then fails as if the network were down: a partition, or a process that
    is gone)."""

    def __init__(self, server: FakeApiServer) -> None:
        self.server = server
        self.cut = False
        self.sent: list[tuple[str, str]] = []  # (method, path) of what got through
        # Called with (method, path) before a request goes through: it may raise (the request fails).
        self.intercept: Callable[[str, str], None] | None = None

    def call_api(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self.cut:
            raise urllib3.exceptions.ProtocolError("connection refused (cut)")
        path = url.partition("?")[0]
        if self.intercept is not None:
            self.intercept(method, path)
        self.sent.append((method, path))
        return self.server.call_api(method, url, *args, **kwargs)

    def writes(self) -> list[tuple[str, str]]:
        """What it sent but reads (and the Lease's requests)."""
        return [(method, path) for method, path in self.sent if method != "GET" and "/leases" not in path]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)


def replica_kube(link: Link, tmp_path: Path, fence: Fence, limit: TokenBucket | None = None) -> Kube:
    """A Kube as production makes it (controller/wiring.py), over one replica's link: every request
    of its controllers through the fence, then the rate limit (none unless given); its informers'
    and its Lease's on connections of their own (the link), the informers' within the same limit."""
    limit = limit or TokenBucket(0, 0)
    fenced = FencedApiClient(ThrottledApiClient(link, limit), fence)
    dynamic = DynamicClient(fenced, cache_file=str(tmp_path / f"discovery-{id(link)}.json"))
    return Kube(fenced, dynamic=dynamic, new_pool=lambda: link, limit=limit)


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
