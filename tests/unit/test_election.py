"""Leader election against the fake API server (its Leases: GET, POST, PUT with the resourceVersion
read), with short timings (a lease of 2 s, a renew deadline of 1 s, a retry every 0.1 s): one
replica leads; a leader that cannot renew stops acting before its Lease can expire for others; a
standby takes over once it has; a Lease written by someone else makes the leader step down at
once; a stopping leader gives the Lease up; and the fence refuses every write of a replica that
does not lead, a thread of an ended term included. Then two whole runtimes on one namespace: one
reconciles, the other writes nothing with warm caches, and takes over when the leader is cut off."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from flowrun import api, metrics
from flowrun.controller.election import Elector, term_threads
from flowrun.controller.runtime import Runtime
from flowrun.controller.settings import LeaderElection, Settings
from flowrun.kube import Fence, Kube, NotLeading
from tests.unit.fake_api_server import FakeApiServer
from tests.unit.fakes import pod_task
from tests.unit.runtime_harness import NS, Link, fake_server, flowrun, replica_kube, until

LEASE = "flowrun-operator"
LEASE_SECONDS, RENEW_DEADLINE, RETRY = 2, 1.0, 0.1


def election(identity: str) -> LeaderElection:
    return LeaderElection(NS, LEASE, identity, LEASE_SECONDS, RENEW_DEADLINE, RETRY)


def stored_lease(server: FakeApiServer) -> dict[str, Any]:
    return server.objects[("leases", NS, LEASE)]


class Candidate:
    """An Elector over a link of its own to the fake API server; records when it led and stepped
    down (time.monotonic())."""

    def __init__(self, server: FakeApiServer, identity: str) -> None:
        self.link = Link(server)
        self.led: list[tuple[float, int]] = []
        self.stepped: list[tuple[float, str]] = []
        self.elector = Elector(election(identity), Kube(self.link, new_pool=lambda: self.link), self.lead, self.down)

    def lead(self, term: int) -> None:
        self.led.append((time.monotonic(), term))

    async def down(self, why: str) -> None:
        self.stepped.append((time.monotonic(), why))

    def last_write_allowed(self, term: int) -> Future[float]:
        """When a thread of `term` was last allowed to write: polled until the fence closes."""

        def poll() -> float:
            last = time.monotonic()
            while self.elector.may_write():
                last = time.monotonic()
                time.sleep(0.002)
            return last

        return term_threads(1, "probe", term).submit(poll)


def run(scenario: Any) -> None:
    asyncio.run(asyncio.wait_for(scenario, 60))


def test_one_replica_leads_and_the_other_waits_while_the_lease_is_renewed() -> None:
    server = fake_server()

    async def scenario() -> None:
        a, b = Candidate(server, "a"), Candidate(server, "b")
        a.elector.start()
        await until("a leads", lambda: a.led)
        b.elector.start()
        await until("b sees a hold the Lease", lambda: b.elector.holder == "a")
        # Longer than a lease: b never takes a Lease that a renews.
        await asyncio.sleep(LEASE_SECONDS * 1.5)
        assert (b.led, a.stepped) == ([], [])
        spec = stored_lease(server)["spec"]
        assert (spec["holderIdentity"], spec["leaseDurationSeconds"], spec["leaseTransitions"]) == ("a", 2, 0)
        assert a.elector.describe() == f"leading (term {a.led[0][1]})"
        assert b.elector.describe() == "standby: the Lease is held by a"
        await a.elector.stop()
        await b.elector.stop()

    run(scenario())


def test_replicas_starting_together_elect_one() -> None:
    server = fake_server()

    async def scenario() -> None:
        candidates = [Candidate(server, name) for name in "abc"]
        for candidate in candidates:
            candidate.elector.start()
        await until("one leads", lambda: any(c.led for c in candidates))
        await asyncio.sleep(LEASE_SECONDS * 1.5)
        leaders = [c for c in candidates if c.led]
        assert len(leaders) == 1 and not leaders[0].stepped
        assert stored_lease(server)["spec"]["holderIdentity"] == leaders[0].elector.config.identity
        for candidate in candidates:
            await candidate.elector.stop()

    run(scenario())


def test_a_leader_that_cannot_renew_stops_acting_before_a_standby_may_take_over() -> None:
    server = fake_server()

    async def scenario() -> None:
        a, b = Candidate(server, "a"), Candidate(server, "b")
        a.elector.start()
        await until("a leads", lambda: a.led)
        b.elector.start()
        await until("b sees a hold the Lease", lambda: b.elector.holder == "a")
        last_write = a.last_write_allowed(a.led[0][1])
        cut = time.monotonic()
        a.link.cut = True  # every renewal fails from now on
        await until("b leads", lambda: b.led, timeout=10)
        taken = b.led[0][0]
        stepped, why = a.stepped[0]
        assert why.startswith("the Lease could not be renewed for 1s")
        # a stopped at its renew deadline, counted from its last renewal (at most a retry before the cut)...
        assert stepped - cut <= RENEW_DEADLINE + 0.2
        # ... and could write nothing after it: its fence closed at the deadline, whatever its loop did.
        assert last_write.result(5) <= cut + RENEW_DEADLINE
        # b took the Lease once it had not changed for a lease, well after a stopped.
        assert taken - cut >= LEASE_SECONDS - 2 * RETRY
        assert taken - last_write.result() >= (LEASE_SECONDS - RENEW_DEADLINE) - 2 * RETRY
        spec = stored_lease(server)["spec"]
        assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("b", 1)
        assert not a.elector.may_write() and a.elector.term is None
        await a.elector.stop()
        await b.elector.stop()

    run(scenario())


def test_a_standby_takes_over_a_lease_whose_holder_is_gone_after_it_expires() -> None:
    server = fake_server()
    server.add(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE, "namespace": NS},
            "spec": {"holderIdentity": "gone", "leaseDurationSeconds": LEASE_SECONDS, "leaseTransitions": 4},
        }
    )

    async def scenario() -> None:
        a, b = Candidate(server, "a"), Candidate(server, "b")
        started = time.monotonic()
        a.elector.start()
        b.elector.start()
        await until("one takes the Lease over", lambda: a.led or b.led, timeout=10)
        assert time.monotonic() - started >= LEASE_SECONDS  # never before it expired
        await asyncio.sleep(LEASE_SECONDS * 1.5)
        assert len(a.led) + len(b.led) == 1, "both standbys took the expired Lease"
        spec = stored_lease(server)["spec"]
        assert spec["holderIdentity"] == ("a" if a.led else "b") and spec["leaseTransitions"] == 5
        await a.elector.stop()
        await b.elector.stop()

    run(scenario())


def test_a_lease_written_by_someone_else_makes_the_leader_step_down_at_once() -> None:
    server = fake_server()

    async def scenario() -> None:
        a = Candidate(server, "a")
        a.elector.start()
        await until("a leads", lambda: a.led)
        last_write = a.last_write_allowed(a.led[0][1])
        stolen = stored_lease(server)
        stolen["spec"]["holderIdentity"] = "intruder"
        written = time.monotonic()
        server.modify(stolen)
        await until("a steps down", lambda: a.stepped, timeout=RENEW_DEADLINE)
        assert a.stepped[0][1] == "the Lease is held by intruder now"
        assert a.stepped[0][0] - written <= 3 * RETRY
        assert last_write.result(5) - written <= 3 * RETRY
        # The intruder's Lease is respected as any holder's: a waits for it to expire.
        await asyncio.sleep(LEASE_SECONDS / 2)
        assert len(a.led) == 1 and a.elector.describe() == "standby: the Lease is held by intruder"
        await until("a takes the intruder's expired Lease", lambda: len(a.led) == 2, timeout=10)
        assert stored_lease(server)["spec"]["leaseTransitions"] == 1
        await a.elector.stop()

    run(scenario())


def test_a_stopping_leader_gives_the_lease_up_and_a_standby_takes_it_at_once() -> None:
    server = fake_server()

    async def scenario() -> None:
        a, b = Candidate(server, "a"), Candidate(server, "b")
        a.elector.start()
        await until("a leads", lambda: a.led)
        b.elector.start()
        await until("b sees a hold the Lease", lambda: b.elector.holder == "a")
        stopped = time.monotonic()
        await a.elector.stop()
        assert a.stepped[0][1] == "the operator stops"
        await until("b leads", lambda: b.led, timeout=LEASE_SECONDS)
        assert b.led[0][0] - stopped < LEASE_SECONDS / 2  # not after the lease: at b's next try
        assert stored_lease(server)["spec"]["holderIdentity"] == "b"
        await b.elector.stop()

    run(scenario())


def test_a_lease_deleted_under_its_leader_is_created_again_by_it_and_not_by_a_standby() -> None:
    server = fake_server()

    async def scenario() -> None:
        a, b = Candidate(server, "a"), Candidate(server, "b")
        a.elector.start()
        await until("a leads", lambda: a.led)
        b.elector.start()
        await until("b sees a hold the Lease", lambda: b.elector.holder == "a")
        server.delete(stored_lease(server))
        await until("the Lease created again", lambda: ("leases", NS, LEASE) in server.objects)
        await asyncio.sleep(LEASE_SECONDS * 1.5)
        assert (a.stepped, b.led) == ([], [])
        assert stored_lease(server)["spec"]["holderIdentity"] == "a"
        await a.elector.stop()
        await b.elector.stop()

    run(scenario())


# --- the fence -----------------------------------------------------------------------------------


def create_pod(kube: Kube, name: str) -> Any:
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS}, "spec": {}}
    return kube.create(manifest, "uid-x")


def test_only_threads_of_the_current_term_may_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = fake_server()
    monkeypatch.setattr(metrics.RunPhases, "register", lambda self: None)
    monkeypatch.setattr(metrics.RunPhases, "unregister", lambda self: None)
    monkeypatch.setattr(metrics.LockGauges, "register", lambda self: None)
    monkeypatch.setattr(metrics.LockGauges, "unregister", lambda self: None)
    link, fence = Link(server), Fence()
    settings = Settings(namespaces=(NS,), workers=1, leader_election=election("a"))

    async def scenario() -> None:
        runtime = Runtime(settings, replica_kube(link, tmp_path, fence), fence)

        async def create_in(term: int | None, name: str) -> Any:
            pool = term_threads(1, "test", term) if term is not None else None
            return await asyncio.get_running_loop().run_in_executor(pool, create_pod, runtime.kube, name)

        runtime.start()
        try:
            elector = runtime.elector
            assert elector is not None
            first = await until("a leads", lambda: elector.term)
            await create_in(first, "written-in-term")
            for term, name in ((None, "from-no-term"), (first + 1000, "from-another-term")):
                with pytest.raises(NotLeading):
                    await create_in(term, name)
            stolen = stored_lease(server)
            stolen["spec"]["holderIdentity"] = "intruder"
            server.modify(stolen)
            await until("a steps down", lambda: elector.term is None)
            assert runtime.term is None
            with pytest.raises(NotLeading):
                await create_in(first, "after-the-term")
            second = await until("a leads again", lambda: elector.term, timeout=10)
            assert second != first
            with pytest.raises(NotLeading):  # a pass of the ended term, still running, is refused
                await create_in(first, "from-the-ended-term")
            await create_in(second, "written-in-the-new-term")
            posted = [path for method, path in link.sent if method == "POST" and path.endswith("/pods")]
            assert len(posted) == 2, "a refused write was sent"
            pods = sorted(name for (plural, _, name) in server.objects if plural == "pods")
            assert pods == ["written-in-term", "written-in-the-new-term"]
        finally:
            await runtime.stop()
            server.end_watches()

    run(scenario())


# --- two runtimes on one namespace --------------------------------------------------------------


class Replica:
    def __init__(self, server: FakeApiServer, tmp_path: Path, identity: str, stall_seconds: float = 300) -> None:
        self.link = Link(server)
        fence = Fence()
        settings = Settings(
            namespaces=(NS,), workers=2, leader_election=election(identity), stall_seconds=stall_seconds
        )
        self.runtime = Runtime(settings, replica_kube(self.link, tmp_path, fence), fence)

    def leads(self) -> bool:
        return self.runtime.term is not None


def pods_created(server: FakeApiServer) -> list[str]:
    """Every pod the server stored, once per creation (a name created twice appears twice)."""
    return [
        event.obj["metadata"]["name"]
        for plural, _, event in server.events
        if plural == "pods" and event.type == "ADDED"
    ]


def finish(server: FakeApiServer, name: str) -> None:
    pod = server.objects[("pods", NS, name)]
    done = {"phase": "Succeeded", "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 0}}}]}
    server.modify({**pod, "status": done})


def test_the_standby_writes_nothing_and_takes_over_over_warm_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fake_server()
    monkeypatch.setattr(metrics.RunPhases, "register", lambda self: None)
    monkeypatch.setattr(metrics.RunPhases, "unregister", lambda self: None)
    monkeypatch.setattr(metrics.LockGauges, "register", lambda self: None)
    monkeypatch.setattr(metrics.LockGauges, "unregister", lambda self: None)
    tasks = [pod_task("a"), pod_task("b", runAfter=["a"]), pod_task("c", runAfter=["b"])]
    uid = server.add(flowrun("x", {"tasks": tasks}))["metadata"]["uid"]

    async def scenario() -> None:
        first, second = Replica(server, tmp_path, "first"), Replica(server, tmp_path, "second")
        first.runtime.start()
        await until("first leads", first.leads)
        second.runtime.start()
        try:
            await until("pod a created", lambda: ("pods", NS, "x-a-1") in server.objects)
            await until(
                "second stands by", lambda: second.runtime.leadership() == "standby: the Lease is held by first"
            )
            finish(server, "x-a-1")
            await until("pod b created", lambda: ("pods", NS, "x-b-1") in server.objects)
            # The standby's caches hold the run and its pods as they are, its health is good, and it
            # wrote nothing at all.
            await until("second's caches warm", lambda: len(second.runtime.caches.run_children(NS, uid)) == 2)
            assert second.runtime.caches.flowrun(NS, uid) is not None
            assert (await second.runtime.health()).ok
            assert second.link.writes() == [] and first.link.writes()

            # The leader is cut off (a partition, or its process killed): the standby takes over after
            # the lease, and drives the run on from what its caches show.
            first.link.cut = True
            server.end_watches()
            finish(server, "x-b-1")
            await until("second leads", second.leads, timeout=10)
            await until("pod c created", lambda: ("pods", NS, "x-c-1") in server.objects)
            assert not first.leads()
            finish(server, "x-c-1")
            await until(
                "the run Succeeded",
                lambda: ((server.objects[("flowruns", NS, "x")].get("status") or {}).get("phase")) == "Succeeded",
            )
            assert pods_created(server) == ["x-a-1", "x-b-1", "x-c-1"], "a pod was created twice"
            status = server.objects[("flowruns", NS, "x")]["status"]
            assert {name: task["attempts"] for name, task in status["tasks"].items()} == {"a": 1, "b": 1, "c": 1}
        finally:
            await first.runtime.stop()
            await second.runtime.stop()
            server.end_watches()

    run(scenario())


def test_a_cron_run_whose_leader_died_before_its_status_write_is_not_created_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fake_server()
    monkeypatch.setattr(metrics.RunPhases, "register", lambda self: None)
    monkeypatch.setattr(metrics.RunPhases, "unregister", lambda self: None)
    monkeypatch.setattr(metrics.LockGauges, "register", lambda self: None)
    monkeypatch.setattr(metrics.LockGauges, "unregister", lambda self: None)
    server.add(
        {
            "apiVersion": api.API_VERSION,
            "kind": api.CRON_KIND,
            "metadata": {"name": "yearly", "namespace": NS, "creationTimestamp": "2024-06-01T00:00:00Z"},
            # Due once (the last 1st of January), and not again for months.
            "spec": {"schedule": "0 0 1 1 *", "flowRunTemplate": {"spec": {"tasks": [pod_task("a")]}}},
        }
    )

    async def scenario() -> None:
        first, second = Replica(server, tmp_path, "first"), Replica(server, tmp_path, "second")

        def dies_before_the_status_write(method: str, path: str) -> None:
            if method == "PATCH" and path.endswith("/cronflowruns/yearly/status"):
                first.link.cut = True  # the run is created; the record of it is never written
                raise ConnectionResetError("killed")

        first.link.intercept = dies_before_the_status_write
        first.runtime.start()
        await until("first leads", first.leads)
        second.runtime.start()
        try:
            await until("first cut off after creating the run", lambda: first.link.cut)
            server.end_watches()
            await until("second leads", second.leads, timeout=10)
            cron = await until(
                "the schedule recorded",
                lambda: (server.objects[("cronflowruns", NS, "yearly")].get("status") or {}).get("lastScheduleTime"),
            )
            await asyncio.sleep(1.0)  # more passes of the CronFlowRun, which must create nothing
            created = [e.obj["metadata"]["name"] for p, _, e in server.events if p == "flowruns" and e.type == "ADDED"]
            assert len(created) == 1 and created[0].startswith("yearly-"), created
            assert cron.endswith("-01-01T00:00:00Z")
        finally:
            await first.runtime.stop()
            await second.runtime.stop()
            server.end_watches()

    run(scenario())


# --- liveness of a standby -----------------------------------------------------------------------


def test_a_standby_is_live_while_its_caches_and_its_election_make_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = fake_server()
    monkeypatch.setattr(metrics.RunPhases, "register", lambda self: None)
    monkeypatch.setattr(metrics.RunPhases, "unregister", lambda self: None)
    monkeypatch.setattr(metrics.LockGauges, "register", lambda self: None)
    monkeypatch.setattr(metrics.LockGauges, "unregister", lambda self: None)

    async def scenario() -> None:
        leader, standby = Replica(server, tmp_path, "leader"), Replica(server, tmp_path, "standby", stall_seconds=0.5)
        leader.runtime.start()
        await until("the leader leads", leader.leads)
        standby.runtime.start()
        elector = standby.runtime.elector
        assert elector is not None
        try:
            await until("the standby stands by", lambda: elector.holder == "leader")
            await asyncio.sleep(1.0)  # past the bound
            health = await standby.runtime.health()
            assert health == type(health)(True, "making progress")

            # Its Lease requests fail (the API server answers otherwise): not live after the bound.
            def no_leases(method: str, path: str) -> None:
                if "/leases/" in path:
                    raise ConnectionResetError("reset")

            standby.link.intercept = no_leases
            await asyncio.sleep(1.0)
            health = await standby.runtime.health()
            assert not health.ok and health.message.startswith("the Lease could not be read or written for"), health
            standby.link.intercept = None
            await until("the Lease read again", lambda: elector.failing_since is None)
            assert (await standby.runtime.health()).ok

            # Its election loop stuck (a round that never ends): not live after the bound.
            stuck = asyncio.Event()

            async def hangs(started: float) -> None:
                await stuck.wait()

            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(elector, "_round", hangs)
                await asyncio.sleep(1.0)
                health = await standby.runtime.health()
                assert not health.ok and health.message.startswith("the leader election has finished no round"), health
                stuck.set()
            await until("rounds again", lambda: elector.stalled_for() < 0.5)
            assert (await standby.runtime.health()).ok

            # A watch of its caches failing: not live after the bound, as for the leader.
            def no_pods(method: str, path: str) -> None:
                if path.endswith("/pods"):
                    raise ConnectionResetError("reset")

            standby.link.intercept = no_pods
            server.end_watches()
            await asyncio.sleep(1.0)
            health = await standby.runtime.health()
            assert not health.ok and health.message.startswith("a watch has been failing"), health
            assert standby.runtime.term is None and leader.leads()
        finally:
            await standby.runtime.stop()
            await leader.runtime.stop()
            server.end_watches()

    run(scenario())
