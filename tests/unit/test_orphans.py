"""The orphan sweep's decisions: when an object whose FlowRun is gone is reported, and deleted."""

from __future__ import annotations

from flowrun.controller.orphans import Child, SweepState, sweep

POD = ("v1", "Pod", "team", "x-a-1")
JOB = ("batch/v1", "Job", "team", "x-setup")


def test_an_orphan_is_reported_once_after_the_grace_period_and_never_deleted_by_default() -> None:
    children = [Child(POD, "gone"), Child(JOB, "alive")]
    first = sweep(["alive"], children, SweepState(), now=100.0, grace=60.0, delete_after=None)
    assert (first.orphans, first.newly_reported, first.delete) == ((), (), ())  # garbage collection may be on its way
    second = sweep(["alive"], children, first.state, now=159.0, grace=60.0, delete_after=None)
    assert second.orphans == ()
    third = sweep(["alive"], children, second.state, now=160.0, grace=60.0, delete_after=None)
    assert (third.orphans, third.newly_reported, third.delete) == ((POD,), (POD,), ())
    fourth = sweep(["alive"], children, third.state, now=1e6, grace=60.0, delete_after=None)
    assert (fourth.orphans, fourth.newly_reported, fourth.delete) == ((POD,), (), ())


def test_an_orphan_is_deleted_the_delay_after_it_was_reported_when_deletion_is_enabled() -> None:
    children = [Child(POD, "gone")]
    state = sweep([], children, SweepState(), now=0.0, grace=10.0, delete_after=30.0).state
    assert sweep([], children, state, now=39.0, grace=10.0, delete_after=30.0).delete == ()
    assert sweep([], children, state, now=40.0, grace=10.0, delete_after=30.0).delete == (POD,)


def test_an_object_that_is_no_longer_an_orphan_is_forgotten() -> None:
    children = [Child(POD, "late")]
    state = sweep([], children, SweepState(), now=0.0, grace=10.0, delete_after=0.0).state
    # Its FlowRun is known again (the cache of FlowRuns caught up): not an orphan, and forgotten.
    again = sweep(["late"], children, state, now=20.0, grace=10.0, delete_after=0.0)
    assert (again.orphans, again.delete, dict(again.state.first_seen)) == ((), (), {})
    # Gone from the caches: forgotten too.
    assert dict(sweep([], [], state, now=20.0, grace=10.0, delete_after=0.0).state.first_seen) == {}
