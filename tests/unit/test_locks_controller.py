"""Locks across runs in the operator as production runs it, over the fake API server (informers,
caches, work queue, passes): one Lease per held slot, owned by its run; the next run in line
starts when a slot is freed, woken by the Lease's watch event; a semaphore's limit is read from
its ConfigMap's watch (an edit lets waiters in at once); a restarted operator rebuilds who holds
and who waits from the cluster; the metrics count both."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from flowrun import api, manifests, names
from flowrun.controller.caches import Caches
from flowrun.controller.runtime import Runtime
from flowrun.controller.settings import Settings
from flowrun.model import Lock, RunIdentity
from tests.unit.fake_api_server import FakeApiServer
from tests.unit.fakes import pod_task
from tests.unit.runtime_harness import NS, Recorded, fake_server, flowrun, kube_over, until

LEASE = names.lock_lease("mutex/m", 0)
MUTEX = {"mutex": {"name": "m"}}


def add_runs(server: FakeApiServer, *names_: str, synchronization: dict[str, Any] = MUTEX) -> dict[str, str]:
    """Runs of one task holding `synchronization` as a whole, created a second apart: name -> UID."""
    uids = {}
    for second, name in enumerate(names_):
        spec = {"tasks": [pod_task("a")], "synchronization": synchronization}
        body = flowrun(name, spec, creationTimestamp=f"2026-12-01T12:00:0{second}Z")
        uids[name] = server.add(body)["metadata"]["uid"]
    return uids


def stored(server: FakeApiServer, plural: str, name: str) -> dict[str, Any] | None:
    return server.objects.get((plural, NS, name))


def pods(server: FakeApiServer) -> list[str]:
    return sorted(name for plural, _, name in server.objects if plural == "pods")


def leases(server: FakeApiServer) -> dict[str, str]:
    """Lease name -> holder."""
    return {
        name: obj["spec"]["holderIdentity"] for (plural, _, name), obj in server.objects.items() if plural == "leases"
    }


def task_of(server: FakeApiServer, run: str) -> dict[str, Any]:
    entry: dict[str, Any] = (((stored(server, "flowruns", run) or {}).get("status") or {}).get("tasks") or {}).get(
        "a"
    ) or {}
    return entry


def finish(server: FakeApiServer, pod: str) -> None:
    body = stored(server, "pods", pod)
    assert body is not None
    terminated = {"exitCode": 0, "message": ""}
    server.modify(
        {
            **body,
            "status": {
                "phase": "Succeeded",
                "containerStatuses": [{"name": "main", "state": {"terminated": terminated}}],
            },
        }
    )


def gauge(name: str, lock: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"namespace": NS, "lock": lock})


def runtime_over(server: FakeApiServer, tmp_path: Path) -> Runtime:
    runtime = Runtime(Settings(namespaces=(NS,), workers=2), kube_over(server, tmp_path))
    runtime.start()
    return runtime


def test_runs_on_a_mutex_take_turns_in_line_each_woken_by_the_lease(tmp_path: Path) -> None:
    server = fake_server()
    uids = add_runs(server, "a", "b", "c")

    async def scenario() -> None:
        runtime = runtime_over(server, tmp_path)
        try:
            await until("a started", lambda: pods(server) == ["a-a-1"])
            lease = stored(server, "leases", LEASE)
            assert lease is not None
            assert lease["metadata"]["labels"][api.LABEL_ROLE] == api.ROLE_LOCK
            assert [ref["uid"] for ref in lease["metadata"]["ownerReferences"]] == [uids["a"]]
            messages = {
                "b": "waiting for mutex/m, held by FlowRun a",
                "c": "waiting for mutex/m, held by FlowRun a; ahead in line: FlowRun b",
            }
            await until(
                "b and c waiting for a",
                lambda: all(task_of(server, run).get("message") == text for run, text in messages.items()),
            )
            assert task_of(server, "c")["reason"] == "WaitingForLock"
            await until("the gauges", lambda: gauge("flowrun_locks_held", "mutex/m") == 1)
            assert gauge("flowrun_locks_waiting", "mutex/m") == 2
            finish(server, "a-a-1")
            await until("b started once a finished", lambda: pods(server) == ["a-a-1", "b-a-1"])
            assert leases(server) == {LEASE: "b"}
            held_by_b = "waiting for mutex/m, held by FlowRun b"
            await until("c waiting for b", lambda: task_of(server, "c").get("message") == held_by_b)
        finally:
            await runtime.stop()
            server.end_watches()

    asyncio.run(scenario())


def test_a_restarted_operator_rebuilds_holders_and_waiters_from_the_cluster(tmp_path: Path) -> None:
    server = fake_server()
    add_runs(server, "a", "b")

    async def scenario() -> None:
        runtime = runtime_over(server, tmp_path)
        try:
            await until("a started, b waiting", lambda: pods(server) == ["a-a-1"] and task_of(server, "b"))
        finally:
            await runtime.stop()
            server.end_watches()
        creates = len(
            [r for r in server.requests if r == ("POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases")]
        )
        runtime = runtime_over(server, tmp_path)
        try:
            await until("b says who holds the lock", lambda: task_of(server, "b").get("reason") == "WaitingForLock")
            await asyncio.sleep(0.3)  # passes of both runs come and go
            assert pods(server) == ["a-a-1"] and leases(server) == {LEASE: "a"}
            again = [
                r for r in server.requests if r == ("POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases")
            ]
            assert len(again) == creates  # nobody took the held slot again
            finish(server, "a-a-1")
            await until("b started", lambda: "b-a-1" in pods(server))
        finally:
            await runtime.stop()
            server.end_watches()

    asyncio.run(scenario())


def test_a_semaphores_limit_comes_from_its_configmaps_watch(tmp_path: Path) -> None:
    server = fake_server()
    semaphore = {"semaphore": {"configMapKeyRef": {"name": "limits", "key": "db"}}}
    add_runs(server, "a", "b", "c", synchronization=semaphore)

    async def scenario() -> None:
        runtime = runtime_over(server, tmp_path)
        try:
            await until("a waiting", lambda: task_of(server, "a").get("reason") == "WaitingForLock")
            assert task_of(server, "a")["message"] == "waiting for semaphore/limits/db: ConfigMap limits not found"
            server.add(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "limits", "namespace": NS},
                    "data": {"db": "2"},
                }
            )
            # No run changed: the ConfigMap's own watch wakes those that want its semaphore.
            await until("two started", lambda: pods(server) == ["a-a-1", "b-a-1"])
            assert sorted(leases(server).values()) == ["a", "b"]
            watched = [p for m, p in server.requests if m == "GET" and p == f"/api/v1/namespaces/{NS}/configmaps"]
            assert watched  # listed and watched by name (a field selector), not every ConfigMap read per pass
        finally:
            await runtime.stop()
            server.end_watches()

    asyncio.run(scenario())


def test_a_task_takes_its_free_lock_once_its_claim_is_written(tmp_path: Path) -> None:
    server = fake_server()
    server.add(flowrun("t", {"tasks": [pod_task("a"), pod_task("b", runAfter=["a"], synchronization=MUTEX)]}))

    async def scenario() -> None:
        runtime = runtime_over(server, tmp_path)
        try:
            await until("a started", lambda: pods(server) == ["t-a-1"])
            finish(server, "t-a-1")
            # b's pass writes its claim; the write's own watch event (the echo of a write brings no
            # pass otherwise) brings the pass that takes the slot, and the Lease's the one that
            # starts the pod: no resync needed.
            await until("b started", lambda: pods(server) == ["t-a-1", "t-b-1"], timeout=5)
            assert leases(server) == {LEASE: "t/b"}
        finally:
            await runtime.stop()
            server.end_watches()

    asyncio.run(scenario())


def test_a_deleted_holder_releases_its_slot_as_its_finalizer_goes(tmp_path: Path) -> None:
    server = fake_server()
    add_runs(server, "a", "b")

    async def scenario() -> None:
        runtime = runtime_over(server, tmp_path)
        runtime.kube.pod_log_tail = lambda *_: ""  # type: ignore[method-assign]  # the fake serves no logs
        try:
            await until("a started", lambda: pods(server) == ["a-a-1"] and task_of(server, "b"))
            run = stored(server, "flowruns", "a")
            assert run is not None
            server.modify({**run, "metadata": {**run["metadata"], "deletionTimestamp": "2026-12-01T12:01:00Z"}})
            await until("a gone", lambda: stored(server, "flowruns", "a") is None)
            await until("b started", lambda: "b-a-1" in pods(server))
            assert leases(server) == {LEASE: "b"}
        finally:
            await runtime.stop()
            server.end_watches()

    asyncio.run(scenario())


def test_the_caches_wake_the_runs_a_lock_change_concerns(tmp_path: Path) -> None:
    """Who is woken (caches.Listener.lock_event) by what: a run making a new claim, itself; a run
    leaving a line, a Lease coming or going, a semaphore's ConfigMap changing, those in line."""
    server = fake_server()
    semaphore = {"semaphore": {"configMapKeyRef": {"name": "limits", "key": "db"}}}
    uids = add_runs(server, "a", "b")
    spec = {"tasks": [pod_task("x", synchronization=semaphore)]}
    uids["c"] = server.add(flowrun("c", spec, creationTimestamp="2026-12-01T12:00:05Z"))["metadata"]["uid"]

    async def scenario() -> None:
        listener = Recorded()
        caches = Caches(kube_over(server, tmp_path), [NS], listener)
        caches.start()
        await asyncio.wait_for(listener.filled.wait(), 10)
        try:
            assert listener.woken == []  # the first list wakes nobody: every run gets its pass anyway

            async def woken(what: str, runs: set[str], change: Callable[[], object]) -> None:
                before = len(listener.woken)
                change()
                await until(what, lambda: runs in listener.woken[before:])

            c = dict(server.objects[("flowruns", NS, "c")])
            claim = {"locks": [{"lock": "semaphore/limits/db", "task": "x", "state": "Waiting"}]}
            await woken("c by its own new claim", {uids["c"]}, lambda: server.modify({**c, "status": claim}))
            views = await asyncio.to_thread(caches.lock_views, NS, [Lock.semaphore("limits", "db")])
            assert [claim.task for claim in views["semaphore/limits/db"].claims] == ["x"]
            limits = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "limits", "namespace": NS}}
            await woken("c by its semaphore's ConfigMap", {uids["c"]}, lambda: server.add(limits))
            lease = manifests.build_lock_lease(RunIdentity("a", NS, uids["a"]), Lock.mutex("m"), 0, None, "x")
            await woken("a and b by the Lease", {uids["a"], uids["b"]}, lambda: server.add(lease))
            a = dict(server.objects[("flowruns", NS, "a")])
            await woken(
                "b as a leaves the line", {uids["b"]}, lambda: server.modify({**a, "status": {"phase": "Succeeded"}})
            )
            held, waiting = caches.lock_counts()
            assert held == {(NS, "mutex/m"): 1} and waiting == {(NS, "mutex/m"): 1, (NS, "semaphore/limits/db"): 1}
        finally:
            caches.stop()
            server.end_watches()

    asyncio.run(scenario())
