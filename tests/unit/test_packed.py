"""A finished FlowRun as the cache keeps it (controller/packed.py): read like the object it packs,
its phase read without unpacking, and far smaller than the nested dicts."""

from __future__ import annotations

import tracemalloc
from typing import Any

from flowrun.controller.caches import cached_flowrun, trimmed
from flowrun.controller.packed import PackedBody, packed_if_finished, phase_of, unpacked


def run(phase: str | None, tasks: int = 3, **metadata: Any) -> dict[str, Any]:
    spec = {
        "tasks": [
            {"name": f"t{i}", "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}
            for i in range(tasks)
        ]
    }
    status = {
        "phase": phase,
        "tasks": {f"t{i}": {"phase": "Succeeded", "attempts": 1, "result": f"r{i}"} for i in range(tasks)},
        "conditions": [{"type": t, "status": "True", "reason": "R", "message": "m" * 40} for t in "ABCD"],
    }
    return {
        "apiVersion": "flowrun.dev/v1alpha1",
        "kind": "FlowRun",
        "metadata": {"name": "x", "namespace": "ns", "uid": "u-1", "resourceVersion": "7", **metadata},
        "spec": spec,
        "status": status if phase is not None else {},
    }


def test_a_finished_run_is_packed_and_reads_as_the_object_it_packs() -> None:
    body = trimmed(run("Succeeded"))
    packed = cached_flowrun(run("Succeeded"))
    assert isinstance(packed, PackedBody)
    assert dict(packed) == body and unpacked(packed) == body
    assert packed["metadata"] is packed.metadata and packed.get("spec") == body["spec"]
    assert packed.get("missing") is None and set(packed) == set(body) and len(packed) == len(body)
    assert phase_of(packed) == "Succeeded" == phase_of(body)


def test_a_run_that_has_not_finished_or_is_being_deleted_is_kept_as_it_is() -> None:
    for body in (run("Running"), run(None), run("Failed", deletionTimestamp="2024-05-01T12:00:00Z")):
        assert not isinstance(packed_if_finished(body), PackedBody)
    assert phase_of(run(None)) == "Pending"


def test_a_packed_run_costs_a_fraction_of_its_dicts() -> None:
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        plain = [run("Succeeded") for _ in range(200)]
        middle = tracemalloc.get_traced_memory()[0]
        packed = [PackedBody(body) for body in plain]
        del plain
        end = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(packed) == 200
    # Each packed run: its metadata and about a KiB, against several KiB of dicts.
    assert (end - start) * 4 < middle - start, (middle - start, end - start)
