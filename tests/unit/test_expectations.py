"""What this process wrote and its watch caches do not show yet (the ReplicaSet controller's
"expectations"): a created child is seen until an event of it arrives, a deleted one is seen as
deleting, a patched FlowRun is seen as written until the cache holds that version or a newer one."""

from __future__ import annotations

from collections.abc import Mapping

from flowrun.controller.expectations import EXPECTATION_SECONDS, Expectations
from flowrun.observed import ObservedPod, child_key

POD = ObservedPod(name="x-a-1", labels={})
KEY = child_key(POD)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def flowrun(rv: str, phase: str) -> dict[str, object]:
    return {"metadata": {"resourceVersion": rv}, "status": {"phase": phase}}


def test_a_created_child_is_seen_until_its_event_arrives_then_the_cache_alone_is_believed() -> None:
    expect = Expectations()
    expect.created("u", [POD])
    assert expect.children("u", []) == [POD]  # neither missing nor to be created again
    cached = ObservedPod(name="x-a-1", labels={}, phase="Running")
    assert expect.children("u", [cached]) == [cached]  # the cache's newer view wins
    expect.child_seen("u", KEY)
    assert expect.children("u", []) == []  # gone since: the cache is right


def test_a_deleted_child_is_seen_deleting_until_its_event_arrives() -> None:
    expect = Expectations()
    expect.deleted("u", [KEY])
    assert expect.children("u", [POD]) == [ObservedPod(name="x-a-1", labels={}, deleting=True)]
    expect.child_seen("u", KEY)
    assert expect.children("u", [POD]) == [POD]


def test_an_expectation_no_event_meets_expires() -> None:
    clock = Clock()
    expect = Expectations(clock)
    expect.created("u", [POD])
    clock.now = EXPECTATION_SECONDS + 1
    assert expect.children("u", []) == []


def test_the_newest_flowrun_wins_and_the_echo_of_an_own_write_is_recognised() -> None:
    expect = Expectations()
    written = flowrun("12", "Running")
    expect.written("u", written)
    assert expect.flowrun("u", flowrun("11", "Pending")) is written  # the cache lags the write
    assert not expect.flowrun_seen("u", flowrun("11", "Pending"))  # an older event: still expected
    assert expect.flowrun_seen("u", flowrun("12", "Running"))  # the echo of the write
    newer = flowrun("13", "Running")
    assert expect.flowrun("u", newer) is newer and not expect.flowrun_seen("u", newer)


def test_a_resource_version_that_is_not_a_number_trusts_the_cache() -> None:
    expect = Expectations()
    expect.written("u", flowrun("b", "Running"))
    cached = flowrun("a", "Pending")
    assert expect.flowrun("u", cached) is cached


def run_with(status: Mapping[str, object], version: str = "5") -> dict[str, object]:
    return {"metadata": {"uid": "u", "resourceVersion": version}, "status": status}


RUNNING = {"phase": "Running", "message": "running: a"}
SUCCEEDED = {"phase": "Succeeded", "message": "done"}
STALE = {"phase": "Running", "message": "an older copy"}


def test_a_status_that_is_not_the_last_one_written_is_someone_elses() -> None:
    expectations = Expectations()
    assert expectations.own_status("u", run_with(STALE)) == (None, False)  # nothing written yet
    expectations.written("u", run_with(RUNNING))
    assert expectations.own_status("u", run_with(RUNNING)) == (None, False)
    assert expectations.own_status("u", run_with(STALE)) == (RUNNING, True)


def test_a_pass_that_failed_half_way_leaves_its_own_status_and_the_one_it_was_writing() -> None:
    expectations = Expectations()
    expectations.written("u", run_with(RUNNING))
    expectations.unsure("u", None)  # failed before writing: what it wrote last is still its own
    assert expectations.own_status("u", run_with(STALE)) == (RUNNING, True)
    expectations.unsure("u", SUCCEEDED)  # failed after writing, or while: landed or not
    # Not landed: the object shows the last write; the next pass goes on from the newer decision.
    assert expectations.own_status("u", run_with(RUNNING)) == (SUCCEEDED, False)
    # Someone else's write meanwhile is overruled by that decision.
    assert expectations.own_status("u", run_with(STALE)) == (SUCCEEDED, True)
    # Landed (its echo, or the pass wrote it and failed after): it is the operator's own from now.
    assert expectations.own_status("u", run_with(SUCCEEDED, "6")) == (None, False)
    assert expectations.own_status("u", run_with(RUNNING, "7")) == (SUCCEEDED, True)


def test_a_forgotten_run_has_no_status_of_its_own() -> None:
    expectations = Expectations()
    expectations.written("u", run_with(RUNNING))
    expectations.unsure("u", SUCCEEDED)
    expectations.forget("u")
    assert expectations.own_status("u", run_with(STALE)) == (None, False)
