"""Locks across runs in the engine (docs/semantics.md, "Locks"): several runs of one namespace
(tests/unit/lock_world.py), each pass deciding from the Leases and the other runs' claims."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from flowrun import api, names
from flowrun.engine import TakeLock, decide
from tests.unit.builders import T0, at, flow, resource, task
from tests.unit.lock_world import World, lease_names, mutex_run, released, semaphore, uid_of

LEASE = names.lock_lease("mutex/m", 0)


def started(world: World, name: str) -> bool:
    return world.cluster.has("Pod", world.pod(name))


def finish(world: World, name: str, task_name: str = "work", phase: str = "Succeeded") -> None:
    world.cluster.set_pod(world.pod(name, task_name), phase)


# --- a mutex held by whole runs ---------------------------------------------------------------------


def test_a_run_waits_for_its_mutex_and_says_who_holds_it() -> None:
    world = World()
    world.add("a", mutex_run())
    world.add("b", mutex_run())
    first = world.step("a", at(0))
    assert lease_names(first) == [LEASE]
    # Taking it is no wait: the run is Pending, nothing of it starts before the Lease exists.
    assert world.condition("a")["reason"] == "Pending" and not started(world, "a")
    assert world.task("a")["message"] == f"taking mutex/m (Lease {LEASE})"
    world.step("b", at(0))
    world.step("a", at(1))
    assert started(world, "a") and world.leases() == {LEASE: "a"}
    assert world.status("a")["locks"] == [
        {"lock": "mutex/m", "task": None, "state": "Holding", "lease": LEASE, "message": None}
    ]
    world.step("b", at(1))
    waiting = "waiting for mutex/m, held by FlowRun a"
    assert world.status("b")["phase"] == "Pending" and not started(world, "b")
    assert (world.task("b")["reason"], world.task("b")["message"]) == ("WaitingForLock", waiting)
    assert (world.condition("b")["reason"], world.condition("b")["message"]) == ("WaitingForLock", waiting)
    assert world.status("b")["message"] == waiting
    assert (world.condition("b", "Reconciling")["status"], world.condition("b", "Reconciling")["reason"]) == (
        "True",
        "WaitingForLock",
    )
    assert world.status("b")["locks"] == [
        {"lock": "mutex/m", "task": None, "state": "Waiting", "lease": None, "message": waiting}
    ]
    assert world.reasons("b") == ["WaitingForLock"]
    # Taking a lock is in the status, not an event (as a task's start); waiting for one is an event.
    assert world.reasons("a") == []


def test_the_holder_releases_when_it_has_finished_and_the_next_takes_over() -> None:
    world = World()
    world.add("a", mutex_run())
    world.add("b", mutex_run())
    world.settle(at(0))
    finish(world, "a")
    done = world.step("a", at(5))
    assert world.status("a")["phase"] == "Succeeded" and released(done) == [LEASE]
    assert world.status("a")["locks"] is None
    assert world.reasons("a") == ["Succeeded"]  # releasing it is no event either
    assert lease_names(world.step("b", at(5))) == [LEASE]
    world.step("b", at(6))
    assert started(world, "b") and world.leases() == {LEASE: "b"}
    # The finished holder does nothing more.
    assert world.step("a", at(7)).actions == ()


def test_a_run_keeps_its_lock_through_its_cleanup() -> None:
    world = World()
    spec = flow(task("work", resources=["db"]), resources=[resource("db")], synchronization={"mutex": {"name": "m"}})
    world.add("a", spec)
    world.add("b", mutex_run())
    world.settle(at(0), rounds=2)
    world.cluster.make_available("a-db-db")
    world.settle(at(1), rounds=2)
    finish(world, "a")
    world.step("a", at(2))
    assert world.status("a")["resources"]["db"]["phase"] == "CleaningUp"
    world.cluster.collect()
    world.step("b", at(2))
    assert world.leases() == {LEASE: "a"} and not started(world, "b")


def test_nothing_of_a_waiting_run_starts_not_even_its_blocks() -> None:
    world = World()
    world.add("a", mutex_run())
    spec = flow(task("work", resources=["db"]), resources=[resource("db")], synchronization={"mutex": {"name": "m"}})
    world.add("b", spec)
    world.settle(at(0))
    assert world.status("b")["resources"]["db"]["phase"] == "Pending"
    assert world.cluster.names("Deployment") == []
    assert world.task("b")["reason"] == "WaitingForLock"


def test_only_ready_tasks_say_they_wait_for_the_lock() -> None:
    world = World()
    world.add("a", mutex_run())
    world.add("b", flow(task("first"), task("second", "first"), synchronization={"mutex": {"name": "m"}}))
    world.settle(at(0))
    assert world.task("b", "first")["reason"] == "WaitingForLock"
    assert world.task("b", "second")["reason"] == "WaitingForUpstream"


# --- the line: first come (by creation) first served --------------------------------------------------


def test_the_line_is_by_creation_whatever_order_the_passes_come_in() -> None:
    world = World()
    for name in ("c1", "c2", "c3"):
        world.add(name, mutex_run())
    # The youngest's pass comes first: the lock is free, but two runs are ahead of it in line.
    assert lease_names(world.step("c3", at(0))) == []
    assert world.task("c3")["message"] == "waiting for mutex/m; ahead in line: FlowRun c1, FlowRun c2"
    assert lease_names(world.step("c2", at(0))) == []
    assert lease_names(world.step("c1", at(0))) == [LEASE]
    order = []
    for second in range(1, 30):
        for name in ("c3", "c2", "c1"):
            world.step(name, at(second))
            if started(world, name) and name not in order:
                order.append(name)
                finish(world, name)
    assert order == ["c1", "c2", "c3"]


def test_runs_created_in_the_same_second_are_in_line_by_name() -> None:
    world = World()
    world.add("zeta", mutex_run(), created=T0)
    world.add("alpha", mutex_run(), created=T0)
    assert lease_names(world.step("zeta", at(0))) == []
    assert lease_names(world.step("alpha", at(0))) == [LEASE]


def test_a_run_whose_status_is_not_written_yet_is_in_line_by_its_spec() -> None:
    world = World()
    world.add("old", mutex_run())
    world.add("new", mutex_run())
    # `old` has had no pass: its spec alone puts it ahead.
    assert lease_names(world.step("new", at(0))) == []


def test_two_passes_racing_for_one_slot_leave_one_holder() -> None:
    world = World()
    world.add("a", mutex_run())
    world.add("b", mutex_run())
    # b's caches do not show a yet: both take slot 0; the API server lets the first create win.
    outcome_b = world.decide("b", at(0), hidden=("a",))
    outcome_a = world.decide("a", at(0))
    assert lease_names(outcome_a) == lease_names(outcome_b) == [LEASE]
    world.apply("a", outcome_a, at(0))
    world.apply("b", outcome_b, at(0))
    assert world.lost_races == [LEASE] and world.leases() == {LEASE: "a"}
    world.settle(at(1))
    assert started(world, "a") and not started(world, "b")
    assert world.task("b")["message"] == "waiting for mutex/m, held by FlowRun a"


def test_runs_on_different_mutexes_do_not_wait_for_each_other() -> None:
    world = World()
    world.add("a", mutex_run("one"))
    world.add("b", mutex_run("two"))
    world.settle(at(0))
    assert started(world, "a") and started(world, "b")


# --- semaphores ----------------------------------------------------------------------------------


def sem_run(**fields: Any) -> dict[str, Any]:
    return flow(task("work"), synchronization=semaphore(), **fields)


def test_a_semaphore_lets_its_limit_of_holders_in() -> None:
    world = World()
    world.config_maps["limits"] = {"db": "3"}
    for i in range(5):
        world.add(f"r{i}", sem_run())
    world.settle(at(0))
    assert [started(world, f"r{i}") for i in range(5)] == [True, True, True, False, False]
    assert sorted(world.leases().values()) == ["r0", "r1", "r2"]
    lease = names.lock_lease("semaphore/limits/db", 0)
    assert world.leases()[lease] == "r0"
    message = world.task("r4")["message"]
    assert message == (
        "waiting for semaphore/limits/db (limit 3), held by FlowRun r0, FlowRun r1, FlowRun r2;"
        " ahead in line: FlowRun r3"
    )
    finish(world, "r1")
    world.settle(at(1))
    assert started(world, "r3") and not started(world, "r4")
    assert len(world.leases()) == 3


def test_a_raised_limit_lets_waiters_in_and_a_lowered_one_keeps_holders() -> None:
    world = World()
    world.config_maps["limits"] = {"db": "1"}
    for i in range(4):
        world.add(f"r{i}", sem_run())
    world.settle(at(0))
    assert [started(world, f"r{i}") for i in range(4)] == [True, False, False, False]
    world.config_maps["limits"] = {"db": "3"}
    world.settle(at(1))
    assert [started(world, f"r{i}") for i in range(4)] == [True, True, True, False]
    # Lowered to 1: the three holders keep their slots; nobody new until fewer than 1 hold it.
    world.config_maps["limits"] = {"db": " 1\n"}
    finish(world, "r0")
    world.settle(at(2))
    assert len(world.leases()) == 2 and not started(world, "r3")
    finish(world, "r1")
    finish(world, "r2")
    world.settle(at(3))
    assert started(world, "r3") and len(world.leases()) == 1


@pytest.mark.parametrize(
    ("config_maps", "problem"),
    [
        ({}, "ConfigMap limits not found"),
        ({"limits": {"other": "2"}}, "ConfigMap limits has no key db"),
        ({"limits": {"db": "two"}}, "ConfigMap limits: db='two' is not an integer from 0 to 10000"),
        ({"limits": {"db": "-1"}}, "ConfigMap limits: db='-1' is not an integer from 0 to 10000"),
        ({"limits": {"db": "10001"}}, "ConfigMap limits: db='10001' is not an integer from 0 to 10000"),
    ],
)
def test_a_semaphore_whose_limit_is_not_known_lets_nobody_in_and_says_why(
    config_maps: dict[str, dict[str, str]], problem: str
) -> None:
    world = World()
    world.config_maps.update(config_maps)
    world.add("a", sem_run())
    world.settle(at(0))
    assert not started(world, "a") and world.leases() == {}
    assert world.task("a")["message"] == f"waiting for semaphore/limits/db: {problem}"
    assert world.condition("a")["reason"] == "WaitingForLock"
    # Fixed: the run goes on (the ConfigMap's watch brings the pass).
    world.config_maps["limits"] = {"db": "1"}
    world.settle(at(1))
    assert started(world, "a")


def test_a_semaphore_of_limit_zero_holds_everyone() -> None:
    world = World()
    world.config_maps["limits"] = {"db": "0"}
    world.add("a", sem_run())
    world.settle(at(0))
    assert not started(world, "a")
    assert world.task("a")["message"] == "waiting for semaphore/limits/db (limit 0)"


# --- task locks --------------------------------------------------------------------------------------


def test_tasks_of_one_run_on_one_mutex_take_turns_in_spec_order() -> None:
    world = World()
    lock = {"mutex": {"name": "m"}}
    world.add("a", flow(task("x", synchronization=lock), task("y", synchronization=lock)))
    world.settle(at(0))
    assert world.cluster.names("Pod") == ["a-x-1"]
    assert world.task("a", "y")["message"] == "waiting for mutex/m, held by FlowRun a (task x)"
    assert world.status("a")["locks"] == [
        {"lock": "mutex/m", "task": "x", "state": "Holding", "lease": LEASE, "message": None},
        {
            "lock": "mutex/m",
            "task": "y",
            "state": "Waiting",
            "lease": None,
            "message": "waiting for mutex/m, held by FlowRun a (task x)",
        },
    ]
    world.cluster.set_pod("a-x-1", "Succeeded")
    world.settle(at(1))
    assert world.cluster.names("Pod") == ["a-x-1", "a-y-1"]
    assert world.leases() == {LEASE: "a/y"}
    world.cluster.set_pod("a-y-1", "Succeeded")
    world.settle(at(2))
    assert world.status("a")["phase"] == "Succeeded" and world.leases() == {}


def test_a_task_of_an_older_run_is_ahead_of_a_younger_runs() -> None:
    world = World()
    lock = {"mutex": {"name": "m"}}
    world.add("old", flow(task("first"), task("locked", "first", synchronization=lock)))
    world.add("young", flow(task("locked", synchronization=lock)))
    world.settle(at(0))
    assert world.leases() == {LEASE: "young/locked"}  # the old run's task was not ready yet
    world.cluster.set_pod("old-first-1", "Succeeded")
    world.add("younger", flow(task("locked", synchronization=lock)))
    world.settle(at(1))
    message = "waiting for mutex/m, held by FlowRun young (task locked); ahead in line: FlowRun old (task locked)"
    assert world.task("younger", "locked")["message"] == message
    world.cluster.set_pod("young-locked-1", "Succeeded")
    world.settle(at(2), order=["younger", "young", "old"])
    assert world.leases() == {LEASE: "old/locked"}


def test_a_tasks_claim_is_seen_by_the_others_before_it_takes_a_slot() -> None:
    """Tasks of two runs become ready at once; the younger run's pass comes first. Its claim is
    written before it takes the free slot, and so is the older run's: the older goes first."""
    world = World()
    lock = {"mutex": {"name": "m"}}
    world.add("old", flow(task("locked", synchronization=lock)))
    world.add("young", flow(task("locked", synchronization=lock)))
    assert lease_names(world.step("young", at(0))) == []  # its claim is written first
    assert world.task("young", "locked")["message"] == f"taking mutex/m (Lease {LEASE})"
    assert lease_names(world.step("old", at(0))) == []
    assert lease_names(world.step("young", at(0))) == []  # now it sees the older claim ahead
    assert world.task("young", "locked")["message"] == "waiting for mutex/m; ahead in line: FlowRun old (task locked)"
    assert lease_names(world.step("old", at(0))) == [LEASE]


def test_a_task_keeps_its_lock_through_its_retries_and_lets_go_once_terminal() -> None:
    world = World()
    lock = {"mutex": {"name": "m"}}
    world.add("a", flow(task("x", synchronization=lock, retries={"limit": 1, "backoffSeconds": 10})))
    world.add("b", flow(task("x", synchronization=lock)))
    world.settle(at(0))
    world.cluster.set_pod("a-x-1", "Failed")
    world.settle(at(1))
    assert world.task("a", "x")["reason"] == "RetryBackoff" and world.leases() == {LEASE: "a/x"}
    world.settle(at(11))
    assert world.task("a", "x")["attempts"] == 2 and world.leases() == {LEASE: "a/x"}
    world.cluster.set_pod("a-x-2", "Failed")
    world.settle(at(12))
    assert world.task("a", "x")["phase"] == "Failed" and world.leases() == {LEASE: "b/x"}


def test_a_runs_own_lock_and_a_tasks_other_lock() -> None:
    world = World()
    spec = flow(task("x", synchronization={"mutex": {"name": "inner"}}), synchronization={"mutex": {"name": "outer"}})
    world.add("a", spec)
    world.add("b", spec)
    world.settle(at(0))
    assert set(world.leases().values()) == {"a", "a/x"}
    # b waits for the run's lock; its task does not claim its own lock meanwhile.
    assert world.task("b", "x")["message"] == "waiting for mutex/outer, held by FlowRun a"
    assert [entry["lock"] for entry in world.status("b")["locks"]] == ["mutex/outer"]
    world.cluster.set_pod("a-x-1", "Succeeded")
    world.settle(at(1))
    assert set(world.leases().values()) == {"b", "b/x"}


def test_a_task_held_back_by_its_runs_lock_is_in_no_line_of_its_own() -> None:
    world = World()
    inner = {"mutex": {"name": "inner"}}
    outer = {"mutex": {"name": "outer"}}
    world.add("a", flow(task("x", synchronization=inner), task("y", "x"), synchronization=outer))
    world.add("b", flow(task("x", synchronization=inner), synchronization=outer))  # waits for outer
    world.add("c", flow(task("x", synchronization=inner)))  # younger than b, wants inner only
    world.settle(at(0))
    assert world.leases() == {LEASE.replace("-m-", "-outer-"): "a", LEASE.replace("-m-", "-inner-"): "a/x"}
    world.cluster.set_pod("a-x-1", "Succeeded")
    world.settle(at(1))
    # b's task says it waits (for its run's lock): c, behind b by creation, is not held back by it.
    assert world.task("b", "x")["reason"] == "WaitingForLock"
    assert world.leases()[LEASE.replace("-m-", "-inner-")] == "c/x"


def test_the_instances_of_a_foreach_task_wait_for_their_runs_lock() -> None:
    world = World()
    world.add("a", mutex_run())
    world.add("b", flow(task("work", forEach='["x", "y"]'), synchronization={"mutex": {"name": "m"}}))
    world.settle(at(0))
    assert world.leases() == {LEASE: "a"}
    # b's list is known (its task is ready) but none of its instances starts while a holds the mutex.
    assert [world.task("b", f"work-{i}")["reason"] for i in (0, 1)] == ["WaitingForLock"] * 2
    assert not any(n.startswith("b-") for n in world.cluster.names("Pod"))
    finish(world, "a")
    world.settle(at(1))
    assert world.leases() == {LEASE: "b"}
    assert world.cluster.has("Pod", "b-work-0-1") and world.cluster.has("Pod", "b-work-1-1")


# --- stopping: cancel, deletion, the deadline --------------------------------------------------------


def test_a_cancelled_waiter_leaves_the_line_and_takes_nothing() -> None:
    world = World()
    world.add("a", mutex_run())
    world.add("b", mutex_run())
    world.add("c", mutex_run())
    world.settle(at(0))
    world.update("b", spec={**world.runs["b"].spec, "cancel": True})
    world.step("b", at(1))
    assert world.status("b")["phase"] == "Cancelled" and world.status("b")["locks"] is None
    assert world.task("b")["phase"] == "Cancelled"
    finish(world, "a")
    world.settle(at(2))
    assert world.leases() == {LEASE: "c"}


def test_a_cancelled_holder_keeps_its_lock_until_its_pod_has_stopped() -> None:
    world = World()
    world.cluster.graceful = True  # a deleted pod runs on until the kubelet has stopped it
    world.add("a", mutex_run())
    world.add("b", mutex_run())
    world.settle(at(0))
    world.cluster.run_pod(world.pod("a"))
    world.update("a", spec={**world.runs["a"].spec, "cancel": True})
    world.settle(at(1))
    assert world.status("a")["phase"] == "Cancelled"
    assert world.leases() == {LEASE: "a"} and not started(world, "b")
    world.cluster.collect()
    world.settle(at(2))
    assert world.leases() == {LEASE: "b"}


def test_a_deleted_holder_releases_in_the_pass_that_lets_it_go() -> None:
    world = World()
    world.add("a", mutex_run())
    world.add("b", mutex_run())
    world.settle(at(0))
    world.update("a", deleting=True)
    world.step("a", at(1))
    last = world.step("a", at(1))
    assert last.finalizer_releasable and released(last) == [LEASE]
    world.step("b", at(1))
    assert world.leases() == {LEASE: "b"}


def test_the_run_deadline_counts_the_wait() -> None:
    world = World()
    world.add("a", mutex_run())
    world.add("b", mutex_run(activeDeadlineSeconds=60))
    world.settle(at(0))
    world.settle(at(61))
    assert world.status("b")["phase"] == "Failed" and world.task("b")["phase"] == "Skipped"
    assert world.task("b")["reason"] == "RunDeadlineExceeded" and world.leases() == {LEASE: "a"}
    assert world.status("b")["locks"] is None


# --- restart safety, garbage, refusals ------------------------------------------------------------


def test_a_lost_status_loses_no_lock() -> None:
    world = World()
    world.add("a", mutex_run())
    world.add("b", mutex_run())
    world.settle(at(0))
    for name in ("a", "b"):
        fresh = decide(replace(world.runs[name], status={}), world.observed(name), at(1))
        assert not [a for a in fresh.actions if isinstance(a, TakeLock)]
        assert released(fresh) == []
    assert decide(replace(world.runs["b"], status={}), world.observed("b"), at(1)).status["locks"][0]["state"] == (
        "Waiting"
    )


def test_a_lease_of_a_lock_the_run_does_not_name_is_released() -> None:
    world = World()
    world.add("a", mutex_run("m"))
    world.settle(at(0))
    stray = names.lock_lease("mutex/other", 0)
    world.cluster.create(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": stray,
                "labels": {api.LABEL_ROLE: api.ROLE_LOCK, api.LABEL_UID: uid_of("a")},
                "annotations": {api.LOCK_ANNOTATION: "mutex/other", api.SLOT_ANNOTATION: "0"},
            },
            "spec": {"holderIdentity": "a"},
        }
    )
    assert released(world.step("a", at(1))) == [stray]


def test_a_lease_deleted_by_hand_frees_the_slot_and_its_run_waits_again_for_what_starts_next() -> None:
    world = World()
    world.add("a", flow(task("x"), task("y", "x"), synchronization={"mutex": {"name": "m"}}))
    world.add("b", mutex_run())
    world.settle(at(0))
    world.cluster.delete("Lease", LEASE)  # someone breaks the lock
    world.cluster.set_pod("a-x-1", "Succeeded")
    world.step("a", at(1))
    # a is older: first in line again; its next task waits until it holds the lock again.
    assert world.task("a", "y")["reason"] == "WaitingForLock" and not world.cluster.has("Pod", "a-y-1")
    world.step("a", at(1))
    world.step("a", at(2))
    assert world.cluster.has("Pod", "a-y-1") and world.leases() == {LEASE: "a"}


def test_a_refused_lease_fails_what_waits_for_it() -> None:
    world = World()
    world.cluster.refuse("Lease/", "403 Forbidden: leases is forbidden")
    world.add("a", mutex_run())
    world.settle(at(0))
    assert world.status("a")["phase"] == "Failed"
    assert world.task("a")["reason"] == "CreateRefused"
    assert world.task("a")["message"] == (
        f"cannot take mutex/m: cannot create Lease {LEASE}: 403 Forbidden: leases is forbidden"
    )


def test_a_run_of_a_flow_is_in_line_once_its_spec_is_resolved() -> None:
    world = World()
    world.add("from-flow", {"flowRef": {"name": "f"}})
    world.add("b", mutex_run())
    world.update("from-flow", status={"resolvedSpec": mutex_run()})
    assert lease_names(world.step("b", at(0))) == []
    assert world.task("b")["message"] == "waiting for mutex/m; ahead in line: FlowRun from-flow"


# --- a random schedule: never two holders, every run in turn ------------------------------------------


@pytest.mark.parametrize(("seed", "stale"), [(seed, stale) for seed in range(2) for stale in (False, True)])
def test_random_passes_never_let_two_runs_hold_a_mutex_and_serve_them_in_line(seed: int, stale: bool) -> None:
    """Passes in a random order, pods ending at random. With `stale` caches (a pass that does not
    see some runs yet), the line may be jumped, never the lock."""
    rng = random.Random(seed)
    world = World()
    runs = [f"r{i}" for i in range(6)]
    for name in runs:
        world.add(name, flow(task("x"), task("y", "x"), synchronization={"mutex": {"name": "m"}}))
    order: list[str] = []
    for second in range(400):
        name = rng.choice(runs)
        hidden = tuple(r for r in runs if stale and rng.random() < 0.2 and r != name)
        world.step(name, at(second), hidden=hidden)
        running = {pod.rsplit("-", 2)[0] for pod in world.running_pods()}
        assert len(running) <= 1, running
        assert len(world.leases()) <= 1
        for pod in world.running_pods():
            if rng.random() < 0.5:
                world.cluster.set_pod(pod, "Succeeded")
        order += [r for r in running if r not in order]
        if all(world.status(r).get("phase") == "Succeeded" for r in runs):
            break
    assert sorted(order) == runs and (stale or order == runs)
    assert world.leases() == {}
