"""The operator's caches of a run's children around a pass (handlers.Runtime): what the pass
created counts as created until the cache shows it, except a child whose events arrived while
the pass ran, which the cache already shows as it is now (even gone)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from flowrun import api
from flowrun.handlers import Runtime
from flowrun.kube import Kube
from flowrun.observed import observe
from flowrun.reconciler import PassResult

UID = "run-uid"


def pod(name: str, phase: str = "Pending") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "team", "uid": f"uid-{name}", "labels": {api.LABEL_UID: UID}},
        "status": {"phase": phase},
    }


def children_after(events: list[tuple[str, dict[str, Any]]], during_pass: bool) -> list[str]:
    """Names of the run's children a pass would see, after a pass that created pod x-a-1 and
    these events (arriving while that pass ran, or after it)."""

    async def scenario() -> list[str]:
        runtime = Runtime(Kube(SimpleNamespace()), {"flows_by_name": {}}, workers=1)
        created = observe(pod("x-a-1"))
        assert created is not None
        result = PassResult(created=(created,))
        if during_pass:
            runtime.seen_during_pass[UID] = set()
            for type_, raw in events:
                runtime.child_event(type_, raw)
            runtime.record(UID, result, runtime.seen_during_pass.pop(UID))
        else:
            runtime.record(UID, result, set())
            for type_, raw in events:
                runtime.child_event(type_, raw)
        runtime.pool.shutdown()
        return [child.name for child in runtime.current(UID)[1]]

    return asyncio.run(scenario())


def test_a_created_child_the_cache_does_not_show_yet_counts_as_created() -> None:
    assert children_after([], during_pass=False) == ["x-a-1"]


def test_a_child_created_and_deleted_while_its_pass_ran_does_not_come_back() -> None:
    events = [("ADDED", pod("x-a-1")), ("MODIFIED", pod("x-a-1", "Running")), ("DELETED", pod("x-a-1", "Running"))]
    assert children_after(events, during_pass=True) == []


def test_a_child_deleted_after_its_pass_is_gone() -> None:
    events = [("ADDED", pod("x-a-1")), ("DELETED", pod("x-a-1"))]
    assert children_after(events, during_pass=False) == []
