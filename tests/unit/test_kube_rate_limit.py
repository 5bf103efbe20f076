"""The operator's client-side rate limit (`--qps`, `--burst`) on the requests it sends, over the
fake API server with a Kube made as production makes it: the controllers' requests and the
informers' (on their own connections) share one bucket, and beyond the burst they reach the API
server 1/qps apart; a watch takes one token when it is sent and none for the events it streams;
the Lease's requests take none; a write the fence refuses takes none."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from flowrun import api
from flowrun.kube import Fence, NotLeading
from flowrun.ratelimit import TokenBucket
from tests.unit.runtime_harness import NS, Link, fake_server, flowrun, replica_kube

FLOWRUNS = f"/apis/{api.API_VERSION}/namespaces/{NS}/flowruns"


class Clock:
    """Real time (or a test's own), plus jumps forward: a jump refills the bucket without waiting."""

    def __init__(self, real: bool) -> None:
        self.real, self.base, self.slept = real, 0.0, list[float]()

    def __call__(self) -> float:
        return self.base + (time.monotonic() if self.real else 0.0)

    def refill(self) -> None:
        """Jump an hour ahead and forget the waits so far (discovery's)."""
        self.base += 3600
        self.slept.clear()

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.real:
            time.sleep(seconds)
        else:
            self.base += seconds


def test_requests_beyond_the_burst_reach_the_api_server_one_over_qps_apart(tmp_path: Path) -> None:
    """Eight requests at once, half a pass's (get a FlowRun), half an informer's (list FlowRuns):
    the first three (the burst) go at once, the fourth 1/qps later, the eighth 5/qps later. A
    Lease request sent meanwhile goes at once."""
    qps, burst = 5.0, 3
    server, clock = fake_server(), Clock(real=True)
    server.add(flowrun("chain", {"tasks": []}))
    link = Link(server)
    limit = TokenBucket(qps, burst, clock=clock, sleep=clock.sleep)
    kube = replica_kube(link, tmp_path, Fence(), limit)
    informer, lease = kube.with_own_pool(), kube.with_own_pool(throttled=False)
    kube.flowruns()  # discovery, done once, takes tokens too: the bucket is then filled again
    clock.refill()
    arrivals: list[float] = []
    link.intercept = lambda method, path: arrivals.append(time.monotonic()) if path.startswith(FLOWRUNS) else None
    go = threading.Barrier(9)

    def send(request: str) -> None:
        go.wait()
        if request == "pass":
            kube.get_flowrun(NS, "chain")
        else:
            informer.list_page(api.API_VERSION, api.KIND, NS, None, 100, None)

    threads = [threading.Thread(target=send, args=(request,)) for request in ["pass", "informer"] * 4]
    for thread in threads:
        thread.start()
    go.wait()
    start = time.monotonic()
    assert lease.get_lease(NS, "flowrun-operator", timeout=5) is None
    lease_answered = time.monotonic()
    for thread in threads:
        thread.join()
    arrivals.sort()
    assert len(arrivals) == 8
    assert arrivals[burst - 1] - start < 1 / qps  # the burst at once
    for beyond in range(1, 8 - burst + 1):  # each in its turn, none before
        assert arrivals[burst - 1 + beyond] - start >= beyond / qps - 0.01
    assert arrivals[-1] - start < (8 - burst) / qps + 0.5  # and none much later
    assert lease_answered < arrivals[-1]  # the Lease's request waited for none of them
    assert limit.burst == burst and clock.slept == pytest.approx([n / qps for n in range(1, 6)], abs=0.05)


def test_a_watch_takes_one_token_when_sent_and_none_for_its_events_and_the_lease_none(tmp_path: Path) -> None:
    server, clock = fake_server(), Clock(real=False)
    link = Link(server)
    limit = TokenBucket(1, 2, clock=clock, sleep=clock.sleep)
    kube = replica_kube(link, tmp_path, Fence(), limit)
    informer, lease = kube.with_own_pool(), kube.with_own_pool(throttled=False)
    kube.flowruns()
    clock.refill()  # full: two tokens
    events = informer.watch(api.API_VERSION, api.KIND, NS, None, "100", timeout_seconds=1)  # the first token
    for name in ("a", "b", "c"):
        server.add(flowrun(name, {"tasks": []}))
    assert [next(events)["object"]["metadata"]["name"] for _ in range(3)] == ["a", "b", "c"]
    for _ in range(5):
        lease.get_lease(NS, "flowrun-operator", timeout=5)
    assert clock.slept == []
    assert kube.get_flowrun(NS, "a") is not None  # the second token
    assert clock.slept == []
    informer.list_page(api.API_VERSION, api.KIND, NS, None, 100, None)  # none left: waits one second
    assert clock.slept == [1.0]


def test_a_write_the_fence_refuses_takes_no_token(tmp_path: Path) -> None:
    server, clock, fence = fake_server(), Clock(real=False), Fence()
    server.add(flowrun("a", {"tasks": []}))
    limit = TokenBucket(1, 1, clock=clock, sleep=clock.sleep)
    kube = replica_kube(Link(server), tmp_path, fence, limit)
    kube.flowruns()
    clock.refill()
    fence.may_write = lambda: False
    for _ in range(3):
        with pytest.raises(NotLeading):
            kube.patch_status(NS, "a", {"phase": "Running"})
    assert kube.get_flowrun(NS, "a") is not None
    assert clock.slept == []
