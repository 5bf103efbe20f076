"""The watch caches over the fake API server: filled before passes start, a run's children found by
its UID (also when only the owner reference says whose they are), Flows by name, a CronFlowRun's
runs by its label, the kinds of setup manifests watched from their first use (a refused kind is
ChildrenUnreadable, an unknown kind has no children), and flowrun_runs counted from the cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from flowrun import api, metrics
from flowrun.controller.caches import Caches
from flowrun.kube import ChildrenUnreadable
from tests.unit.fakes import api_error
from tests.unit.runtime_harness import NS, Recorded, fake_server, flowrun, kube_over, sim_pod, until

CONFIG_MAP = ("v1", "ConfigMap")


def config_map(name: str, run_uid: str) -> dict[str, object]:
    labels = {api.LABEL_UID: run_uid, api.LABEL_MANAGED_BY: api.MANAGED_BY}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NS, "labels": labels}}


def test_the_caches_fill_before_passes_start_and_serve_runs_children_flows_and_cron_runs(tmp_path: Path) -> None:
    server = fake_server()
    run = server.add(flowrun("x", {"tasks": []}))
    uid = run["metadata"]["uid"]
    server.add(flowrun("nightly-1", {"tasks": []}, labels={api.LABEL_CRON: "nightly"}))
    server.add(sim_pod("x-a-1", uid))
    owned_only = sim_pod("x-b-1", "")  # no UID label: its owner reference says whose it is
    owned_only["metadata"]["labels"].pop(api.LABEL_UID)
    owned_only["metadata"]["ownerReferences"] = [
        {"apiVersion": api.API_VERSION, "kind": api.KIND, "name": "x", "uid": uid, "controller": True}
    ]
    server.add(owned_only)
    server.add(sim_pod("theirs", "other"))
    flow = {"apiVersion": api.API_VERSION, "kind": api.FLOW_KIND, "metadata": {"name": "etl", "namespace": NS}}
    server.add(flow)

    async def scenario() -> None:
        listener = Recorded()
        caches = Caches(kube_over(server, tmp_path), [NS], listener)
        caches.start()
        await asyncio.wait_for(listener.filled.wait(), 10)
        try:
            body = caches.flowrun(NS, uid)
            assert body is not None and body["metadata"]["name"] == "x"
            assert sorted(child.name for child in caches.run_children(NS, uid)) == ["x-a-1", "x-b-1"]
            found = caches.flow(NS, "etl")
            assert found is not None and found["metadata"]["name"] == "etl" and caches.flow(NS, "nope") is None
            assert [r["metadata"]["name"] for r in caches.cron_runs(NS, "nightly")] == ["nightly-1"]
            assert ("flowrun", "LISTED", "x") in listener.events and ("flow", "LISTED", "etl") in listener.events
        finally:
            caches.stop()
            server.end_watches()

    asyncio.run(scenario())


def test_a_setup_manifests_kind_is_watched_from_its_first_use_and_wakes_its_run(tmp_path: Path) -> None:
    server = fake_server()
    server.add(config_map("settings", "run-1"))
    server.add(config_map("other", "run-2"))

    async def scenario() -> None:
        listener = Recorded()
        caches = Caches(kube_over(server, tmp_path), [NS], listener)
        try:
            children = await asyncio.to_thread(caches.other_children, NS, "run-1", [CONFIG_MAP])
            assert [child.name for child in children] == ["settings"]
            await until("each listed object's run woken", lambda: len(listener.others) == 2)
            assert sorted(listener.others) == [
                ("run-1", ("v1", "ConfigMap", "settings")),
                ("run-2", (*CONFIG_MAP, "other")),
            ]
            server.delete(config_map("settings", "run-1"))
            await until("the deletion reported to its run", lambda: len(listener.others) == 3)
            assert listener.others[2] == ("run-1", ("v1", "ConfigMap", "settings"))
            assert await asyncio.to_thread(caches.other_children, NS, "run-1", [CONFIG_MAP]) == []
            # A kind the API server does not serve has no children; nothing is watched for it.
            assert await asyncio.to_thread(caches.other_children, NS, "run-1", [("example.com/v1", "Widget")]) == []
        finally:
            caches.stop()
            server.end_watches()

    asyncio.run(scenario())


def test_a_setup_manifests_kind_the_operator_may_not_list_is_children_unreadable(tmp_path: Path) -> None:
    server = fake_server()
    server.fail(api_error(403, "Forbidden", 'configmaps is forbidden: User "op" cannot list'))

    async def scenario() -> None:
        caches = Caches(kube_over(server, tmp_path), [NS], Recorded())
        try:
            with pytest.raises(ChildrenUnreadable, match="listing ConfigMap in v1: 403 configmaps is forbidden"):
                await asyncio.to_thread(caches.other_children, NS, "run-1", [CONFIG_MAP])
        finally:
            caches.stop()
            server.end_watches()

    asyncio.run(scenario())


def test_flowrun_runs_counts_the_phases_in_the_cache_at_scrape_time(tmp_path: Path) -> None:
    server = fake_server()
    for name, phase in (("a", "Running"), ("b", "Running"), ("c", "Succeeded"), ("d", None)):
        run = flowrun(name, {"tasks": []})
        if phase:
            run["status"] = {"phase": phase}
        server.add(run)

    async def scenario() -> None:
        caches = Caches(kube_over(server, tmp_path), [NS], Recorded())
        caches.start()
        collector = metrics.RunPhases(
            lambda: [str((e.value.get("status") or {}).get("phase") or api.PENDING) for e in caches.flowrun_entries()]
        )
        collector.register()
        try:
            await until("the runs cached", lambda: len(caches.flowrun_entries()) == 4)

            def runs(phase: str) -> float | None:
                return REGISTRY.get_sample_value("flowrun_runs", {"phase": phase})

            assert (runs("Running"), runs("Succeeded"), runs("Pending"), runs("Failed")) == (2, 1, 1, 0)
            server.modify({**flowrun("a", {"tasks": []}), "status": {"phase": "Failed"}})
            await until("a Failed", lambda: runs("Failed") == 1)
            assert runs("Running") == 1
        finally:
            collector.unregister()
            caches.stop()
            server.end_watches()

    asyncio.run(scenario())


def test_a_watched_kind_refused_for_good_makes_the_namespace_children_unreadable(tmp_path: Path) -> None:
    server = fake_server()

    async def scenario() -> None:
        caches = Caches(kube_over(server, tmp_path), [NS], Recorded())
        assert caches.children_unreadable(NS) is None
        slices = next(i for i in caches.children[NS] if (i.api_version, i.kind) == api.ENDPOINT_SLICE)
        slices.error = ChildrenUnreadable("listing EndpointSlice in discovery.k8s.io/v1: 403 forbidden")
        assert caches.children_unreadable(NS) is slices.error
        assert caches.children_unreadable("elsewhere") is None  # a namespace not served has no informer

    asyncio.run(scenario())
