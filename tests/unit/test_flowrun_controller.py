"""The FlowRun controller over the fake API server, as production runs it (informers, caches, the
work queue, passes): a run is driven from its creation to Succeeded by the events of its pod; and
around a pass, what the pass created counts as created until the cache shows it, except a child
whose events arrived while the pass ran, which the cache already shows as it is now (even gone)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from flowrun import api
from flowrun.controller.caches import Body, Caches
from flowrun.controller.flowrun_pass import PassResult
from flowrun.controller.flowruns import FlowRunController, next_pass_after
from flowrun.controller.informer import Entry
from flowrun.controller.orphans import Child
from flowrun.controller.runtime import Runtime
from flowrun.controller.settings import Settings
from flowrun.observed import ObservedChild, observe
from tests.unit.fake_api_server import FakeApiServer
from tests.unit.fakes import pod_task
from tests.unit.runtime_harness import NS, Recorded, fake_server, flowrun, kube_over, sim_pod, until


def test_a_run_goes_from_created_to_succeeded_by_the_events_of_its_pod(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = fake_server()
    uid = server.add(flowrun("x", {"tasks": [pod_task("a")]}))["metadata"]["uid"]

    def stored(plural: str, name: str) -> dict[str, Any] | None:
        return server.objects.get((plural, NS, name))

    async def scenario() -> None:
        runtime = Runtime(Settings(namespaces=(NS,), workers=2), kube_over(server, tmp_path))
        runtime.start()
        try:
            pod = await until("the pod created", lambda: stored("pods", "x-a-1"))
            assert pod["metadata"]["labels"][api.LABEL_UID] == uid
            run = await until(
                "the run Running",
                lambda: (
                    ((stored("flowruns", "x") or {}).get("status") or {}).get("phase") == "Running"
                    and stored("flowruns", "x")
                ),
            )
            assert api.FINALIZER in run["metadata"]["finalizers"]
            done = {
                "phase": "Succeeded",
                "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 0, "message": "42"}}}],
            }
            server.modify({**pod, "status": done})
            run = await until(
                "the run Succeeded",
                lambda: (
                    ((stored("flowruns", "x") or {}).get("status") or {}).get("phase") == "Succeeded"
                    and stored("flowruns", "x")
                ),
            )
            assert run["status"]["tasks"]["a"]["result"] == "42"
        finally:
            await runtime.stop()
            server.end_watches()

    asyncio.run(scenario())
    # The echoes of its own writes, arriving while the pass that wrote them runs, are not foreign.
    assert "written by someone else" not in caplog.text


class ToController(Recorded):
    """Hands the events of runs and their children to the controller, as the runtime does; its work
    queue never starts, so no pass runs."""

    controller: FlowRunController

    def flowrun_event(self, type_: str, entry: Entry[Body], previous: Entry[Body] | None) -> None:
        self.controller.flowrun_event(type_, entry, previous)

    def child_event(self, type_: str, entry: Entry[ObservedChild], previous: Entry[ObservedChild] | None) -> None:
        self.events.append(("child", type_, entry.name))
        self.controller.child_event(type_, entry, previous)


def children_after(
    server: FakeApiServer, tmp_path: Path, changes: list[tuple[str, str]], during_pass: bool
) -> list[str]:
    """Names of the run's children a pass would see, after a pass that created pod x-a-1 and these
    changes of that pod in the API server (arriving while that pass ran, or after it)."""
    uid = server.add(flowrun("x", {"tasks": []}))["metadata"]["uid"]
    created = observe(sim_pod("x-a-1", uid))
    assert created is not None
    result = PassResult(created=(created,))

    async def scenario() -> list[str]:
        listener = ToController()
        kube = kube_over(server, tmp_path)
        caches = Caches(kube, [NS], listener)
        controller = listener.controller = FlowRunController(
            Settings(namespaces=(NS,)), kube, caches, ThreadPoolExecutor(1)
        )
        caches.start()
        await asyncio.wait_for(listener.filled.wait(), 10)
        await until("the run known", lambda: uid in controller.namespaces)

        async def change() -> None:
            for type_, phase in changes:
                getattr(server, type_)(sim_pod("x-a-1", uid, phase))
            await until("every change handed to the controller", lambda: len(listener.events) == len(changes))

        try:
            if during_pass:
                controller.seen_during_pass[uid] = set()
                await change()
                controller.record(uid, result, controller.seen_during_pass.pop(uid))
            else:
                controller.record(uid, result, set())
                if changes:
                    await change()
            return [child.name for child in controller.current(uid)[1]]
        finally:
            caches.stop()
            server.end_watches()

    return asyncio.run(scenario())


def test_a_created_child_the_cache_does_not_show_yet_counts_as_created(tmp_path: Path) -> None:
    assert children_after(fake_server(), tmp_path, [], during_pass=False) == ["x-a-1"]


def test_a_child_created_and_deleted_while_its_pass_ran_does_not_come_back(tmp_path: Path) -> None:
    changes = [("add", "Pending"), ("modify", "Running"), ("delete", "Running")]
    assert children_after(fake_server(), tmp_path, changes, during_pass=True) == []


def test_a_child_deleted_after_its_pass_is_gone(tmp_path: Path) -> None:
    changes = [("add", "Pending"), ("delete", "Pending")]
    assert children_after(fake_server(), tmp_path, changes, during_pass=False) == []


def test_a_block_becomes_ready_on_the_event_of_its_services_endpoint_slice(tmp_path: Path) -> None:
    """The slice is the EndpointSlice controller's (owned by the Service, not the run): the watch
    finds it by the Service's labels it carries, and its event wakes the run long before a resync."""
    server = fake_server()
    container = {"name": "db", "image": "example/db"}
    db = {
        "name": "db",
        "replicas": 1,
        "ports": [{"name": "tcp", "port": 5432}],
        "template": {"spec": {"containers": [container]}},
    }
    spec = {"tasks": [pod_task("use", resources=["r"])], "resources": [{"name": "r", "setup": {"deployments": [db]}}]}
    server.add(flowrun("x", spec))

    def stored(plural: str, name: str) -> dict[str, Any] | None:
        return server.objects.get((plural, NS, name))

    def block() -> dict[str, Any]:
        return dict((((stored("flowruns", "x") or {}).get("status") or {}).get("resources") or {}).get("r") or {})

    async def scenario() -> None:
        runtime = Runtime(Settings(namespaces=(NS,), workers=2), kube_over(server, tmp_path))
        runtime.start()
        try:
            deployment = await until("the Deployment created", lambda: stored("deployments", "x-r-db"))
            service = await until("the Service created", lambda: stored("services", "x-r-db"))
            server.modify({**deployment, "status": {"availableReplicas": 1, "readyReplicas": 1, "updatedReplicas": 1}})
            await until("the block waiting for endpoints", lambda: "endpoints" in block().get("message", ""))
            assert block()["message"] == "waiting for ready endpoints of Service x-r-db"
            assert stored("pods", "x-use-1") is None
            owner = {"apiVersion": "v1", "kind": "Service", "name": "x-r-db", "uid": service["metadata"]["uid"]}
            labels = {**service["metadata"]["labels"], api.LABEL_SERVICE_NAME: "x-r-db"}
            labels["endpointslice.kubernetes.io/managed-by"] = "endpointslice-controller.k8s.io"
            server.add(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": "x-r-db-x7k2p",
                        "namespace": NS,
                        "labels": labels,
                        "ownerReferences": [{**owner, "controller": True, "blockOwnerDeletion": True}],
                    },
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}],
                }
            )
            await until("the task's pod created", lambda: stored("pods", "x-use-1"), timeout=5)
            assert block()["phase"] == "Ready" and block()["message"] == ""
        finally:
            await runtime.stop()
            server.end_watches()

    asyncio.run(scenario())


def test_the_orphan_sweep_leaves_endpoint_slices_to_their_service(tmp_path: Path) -> None:
    """An orphaned Service's slices go with it (garbage collection); the operator may not delete them."""
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x-r-db", "labels": {}}}
    piece = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "x-r-db-x7k2p"}}

    class Cached:
        def all_children(self) -> list[Entry[ObservedChild]]:
            observed = [observe(obj) for obj in (service, piece)]
            return [Entry(NS, child.name, f"uid-{child.name}", "gone-run", child) for child in observed if child]

    async def scenario() -> list[Child]:
        kube = kube_over(fake_server(), tmp_path)
        controller = FlowRunController(Settings(namespaces=(NS,)), kube, Cached(), ThreadPoolExecutor(1))  # type: ignore[arg-type]
        return controller.cached_children()

    assert asyncio.run(scenario()) == [Child(("v1", "Service", NS, "x-r-db"), "gone-run")]


def test_a_run_whose_finalizer_a_pass_released_gets_no_pass_however_stale_the_cache(tmp_path: Path) -> None:
    # The cache may still show the run with its finalizer a moment after a pass released it (its
    # DELETED event not there yet), and a child's event asks for a pass: that pass would decide from
    # a stale status and could create a child (a cleanup Job) for a run that is gone.
    server = fake_server()
    deleting = flowrun("x", {"tasks": []}, deletionTimestamp="2024-05-01T12:00:05Z", finalizers=[api.FINALIZER])
    uid = server.add(deleting)["metadata"]["uid"]
    passes: list[str] = []

    def released(body: Any, children: Any) -> PassResult:
        passes.append(body["metadata"]["name"])
        return PassResult(deleting=True, released=True)

    async def scenario() -> None:
        listener = ToController()
        kube = kube_over(server, tmp_path)
        caches = Caches(kube, [NS], listener)
        controller = listener.controller = FlowRunController(
            Settings(namespaces=(NS,)), kube, caches, ThreadPoolExecutor(1)
        )
        controller.passes.run = released  # type: ignore[method-assign]
        caches.start()
        await asyncio.wait_for(listener.filled.wait(), 10)
        try:
            await until("the run known", lambda: uid in controller.namespaces)
            assert await controller.sync(uid) is None
            assert await controller.sync(uid) is None  # asked again: by a child's event, say
            assert passes == ["x"]
            server.delete(deleting)
            await until("its DELETED event", lambda: uid not in controller.namespaces)
        finally:
            caches.stop()
            server.end_watches()

    asyncio.run(scenario())


# A task pod that succeeded with the result "42".
SUCCEEDED_WITH_42 = {
    "phase": "Succeeded",
    "containerStatuses": [{"name": "main", "state": {"terminated": {"exitCode": 0, "message": "42"}}}],
}


class OneTaskRun:
    """FlowRun x, of one task a, on the fake API server, passed by a whole runtime."""

    def __init__(self, tmp_path: Path) -> None:
        self.server = fake_server()
        self.server.add(flowrun("x", {"tasks": [pod_task("a")]}))
        self.tmp_path = tmp_path

    def stored(self, plural: str, name: str) -> dict[str, Any] | None:
        return self.server.objects.get((plural, NS, name))

    def phase(self) -> str | None:
        return ((self.stored("flowruns", "x") or {}).get("status") or {}).get("phase")

    def in_phase(self, phase: str) -> dict[str, Any] | None:
        """The run, if it is in `phase`."""
        return self.stored("flowruns", "x") if self.phase() == phase else None

    async def running(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Its pod, and the run once Running."""
        pod = await until("the pod created", lambda: self.stored("pods", "x-a-1"))
        run = await until("the run Running", lambda: self.in_phase("Running"))
        return pod, run

    def write_status(self, status: dict[str, Any]) -> None:
        """As someone else would."""
        self.server.modify({**(self.stored("flowruns", "x") or {}), "status": status})

    def with_operator(self, scenario: Callable[[], Awaitable[None]]) -> None:
        async def main() -> None:
            runtime = Runtime(Settings(namespaces=(NS,), workers=2), kube_over(self.server, self.tmp_path))
            runtime.start()
            try:
                await scenario()
            finally:
                await runtime.stop()
                self.server.end_watches()

        asyncio.run(main())


def test_a_stale_status_written_back_by_someone_else_is_overruled_by_the_operators_own(tmp_path: Path) -> None:
    # Once the pod of a finished task is gone, nothing in the cluster says what it gave: a copy of
    # an older status written back (Running, no result) would start the task again, or lose its
    # result. The operator goes on from the status it wrote itself, and writes that back.
    run = OneTaskRun(tmp_path)

    async def scenario() -> None:
        pod, running = await run.running()
        run.server.modify({**pod, "status": SUCCEEDED_WITH_42})
        await until("the run Succeeded", lambda: run.phase() == "Succeeded")
        run.server.delete(run.stored("pods", "x-a-1") or pod)
        run.write_status(running["status"])
        again = await until("the run Succeeded again", lambda: run.in_phase("Succeeded"))
        assert again["status"]["tasks"]["a"]["result"] == "42"
        assert run.stored("pods", "x-a-2") is None
        # The event is posted after the status is written back: waited for, not read at once.
        await until(
            "the StatusOverruled event",
            lambda: any(
                e.get("reason") == "StatusOverruled"
                for (plural, _, _), e in list(run.server.objects.items())
                if plural == "events"
            ),
        )

    run.with_operator(scenario)


def test_a_pass_that_failed_half_way_leaves_the_status_it_decided_to_go_on_from(tmp_path: Path) -> None:
    # Found by the soak: a pass of a run failed (the API server away) and the operator forgot the
    # status it had written, so a stale copy written back just then was believed, and a cleanup
    # Job deleted as its record said was created again. Here: the pass that saw the pod succeed
    # cannot write that; the pod is then deleted and an older status written back. Only the
    # operator's own decision still knows the task's result.
    run = OneTaskRun(tmp_path)
    refusing = {"on": False, "refused": 0}

    def refuse_status_writes(method: str, path: str) -> None:
        if refusing["on"] and method == "PATCH" and path.endswith("/flowruns/x/status"):
            refusing["refused"] += 1
            raise ApiException(status=503, reason="Service Unavailable")

    run.server.intercept = refuse_status_writes

    async def scenario() -> None:
        pod, running = await run.running()
        refusing["on"] = True
        run.server.modify({**pod, "status": SUCCEEDED_WITH_42})
        await until("the write of Succeeded refused", lambda: refusing["refused"] > 0)
        run.server.delete(run.stored("pods", "x-a-1") or pod)
        run.write_status({**running["status"], "message": "written back by someone else"})
        await asyncio.sleep(0.3)  # passes of the run meet the refused writes meanwhile
        refusing["on"] = False
        done = await until("the run Succeeded", lambda: run.in_phase("Succeeded"), 30)
        assert done["status"]["tasks"]["a"]["result"] == "42"
        assert run.stored("pods", "x-a-2") is None

    run.with_operator(scenario)


def test_a_run_that_has_not_finished_is_passed_within_the_resync_period_and_a_finished_one_for_its_ttl() -> None:
    assert next_pass_after(PassResult(), 5.0) == 5.0
    assert next_pass_after(PassResult(requeue_after=2.0), 5.0) == 2.0
    assert next_pass_after(PassResult(requeue_after=60.0), 5.0) == 5.0
    assert next_pass_after(PassResult(done=True), 5.0) is None
    assert next_pass_after(PassResult(done=True, requeue_after=600.0), 5.0) == 600.0
    assert next_pass_after(PassResult(released=True, requeue_after=1.0), 5.0) is None
