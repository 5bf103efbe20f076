"""The pure parts of locks across runs: the spec's fields, what a cached FlowRun claims, a
semaphore's limit from its ConfigMap, a lock's Lease (name, labels, what the engine sees of it),
and the Lease create that the API server decides between two runs (kube.take_lock)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flowrun import api, manifests, names
from flowrun.kube import ForeignObject, Kube
from flowrun.locks import LAST, Claim, claims_of, lock_of, lock_view, semaphore_limit, wanted_locks
from flowrun.model import Lock, RunIdentity, SpecError, parse_spec
from flowrun.observed import ObservedLease, observe
from tests.unit.builders import T0, flow, task
from tests.unit.fake_api_server import OPERATOR_KINDS, FakeApiServer

MUTEX = {"mutex": {"name": "m"}}
SEMAPHORE = {"semaphore": {"configMapKeyRef": {"name": "limits", "key": "db"}}}


# --- the spec ------------------------------------------------------------------------------------


def test_the_spec_names_a_mutex_or_a_semaphore_at_either_level() -> None:
    spec = parse_spec(flow(task("a", synchronization=SEMAPHORE), task("b"), synchronization=MUTEX))
    assert spec.synchronization == Lock.mutex("m") and spec.synchronization.id == "mutex/m"
    assert spec.tasks[0].synchronization == Lock.semaphore("limits", "db")
    assert spec.tasks[0].synchronization.id == "semaphore/limits/db"
    assert spec.tasks[1].synchronization is None
    assert spec.locks() == [Lock.mutex("m"), Lock.semaphore("limits", "db")]


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        (flow(task("a"), synchronization={}), "spec.synchronization", "needs exactly one of mutex or semaphore"),
        (
            flow(task("a"), synchronization={**MUTEX, **SEMAPHORE}),
            "spec.synchronization",
            "needs exactly one of mutex or semaphore",
        ),
        (
            flow(task("a", synchronization={"mutex": {"name": "Not_A_Label"}})),
            "spec.tasks[0].synchronization.mutex.name",
            "is not a DNS-1123 label",
        ),
        (
            flow(task("a", synchronization={"semaphore": {"configMapKeyRef": {"name": "limits"}}})),
            "spec.tasks[0].synchronization.semaphore.configMapKeyRef.key",
            "",
        ),
        (
            flow(task("a", synchronization={"semaphore": {"configMapKeyRef": {"name": "l", "key": "a b"}}})),
            "spec.tasks[0].synchronization.semaphore.configMapKeyRef.key",
            "is not a ConfigMap key",
        ),
        (
            flow(task("a"), task("b", synchronization=MUTEX), synchronization=MUTEX),
            "spec.tasks[1].synchronization",
            "mutex/m is the run's own lock (spec.synchronization)",
        ),
        (
            flow(task("a", synchronization=MUTEX, forEach='["x", "y"]')),
            "spec.tasks[0].synchronization",
            "a forEach task may not hold a lock: put it on the run (spec.synchronization)",
        ),
    ],
)
def test_a_bad_synchronization_is_refused_naming_the_field(spec: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec)
    assert caught.value.field == field and words in caught.value.message


# --- what a cached FlowRun claims ----------------------------------------------------------------------


def body(spec: dict[str, Any], status: dict[str, Any] | None = None, **metadata: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "r", "uid": "uid-r", "creationTimestamp": "2024-05-01T12:00:00Z", **metadata},
        "spec": spec,
        "status": status or {},
    }


def waiting(*tasks: str, state: str = "Waiting") -> dict[str, Any]:
    """A status whose status.locks says these tasks wait for their locks (as the engine writes it)."""
    locks = {"b": "semaphore/limits/db", "c": "mutex/m"}
    return {"locks": [{"lock": locks[name], "task": name, "state": state} for name in tasks]}


def test_a_run_claims_its_own_lock_until_it_has_finished() -> None:
    claims = claims_of(body(flow(task("a"), synchronization=MUTEX)))
    assert claims == (Claim(T0, "r", -1, "uid-r", "", "mutex/m"),)
    assert claims_of(body(flow(task("a"), synchronization=MUTEX), {"phase": "Running"})) == claims
    for phase in ("Succeeded", "Failed", "Cancelled"):
        assert claims_of(body(flow(task("a"), synchronization=MUTEX), {"phase": phase})) == ()


def test_a_task_claims_its_lock_while_its_status_says_it_waits_for_it() -> None:
    spec = flow(task("a"), task("b", synchronization=SEMAPHORE), task("c", synchronization=MUTEX))
    assert claims_of(body(spec)) == ()
    claims = claims_of(body(spec, waiting("b", "c")))
    assert [(c.task, c.order, c.lock) for c in claims] == [("b", 1, "semaphore/limits/db"), ("c", 2, "mutex/m")]
    # Holding (the Lease says so), or waiting for a lock its spec does not name (garbage): no claim.
    assert claims_of(body(spec, waiting("b", "c", state="Holding"))) == ()
    garbage = {"locks": [{"lock": "mutex/other", "task": "c", "state": "Waiting"}, "x", {"task": "a"}]}
    assert claims_of(body(spec, garbage)) == ()
    # A task that says WaitingForLock while its run waits for its own lock makes no claim of its own.
    gated = {"tasks": {"c": {"phase": "Pending", "reason": "WaitingForLock"}}}
    assert claims_of(body(spec, gated)) == ()


def test_a_run_being_deleted_cancelled_or_not_resolved_yet_claims_nothing() -> None:
    spec = flow(task("a"), synchronization=MUTEX)
    assert claims_of(body(spec, deletionTimestamp="2024-05-01T12:01:00Z")) == ()
    assert claims_of(body({**spec, "cancel": True})) == ()
    assert claims_of(body({"flowRef": {"name": "f"}})) == ()
    resolved = claims_of(body({"flowRef": {"name": "f"}}, {"resolvedSpec": spec}))
    assert [c.lock for c in resolved] == ["mutex/m"]


def test_claims_are_read_leniently() -> None:
    assert claims_of({}) == ()
    assert claims_of(body({"tasks": "garbage", "synchronization": {"mutex": "x"}}, {"locks": 3})) == ()
    no_time = claims_of({"metadata": {"name": "r"}, "spec": flow(task("a"), synchronization=MUTEX)})
    assert no_time[0].created == LAST
    assert lock_of({"semaphore": {"configMapKeyRef": {"name": "x"}}}) is None
    assert wanted_locks({"tasks": [{"synchronization": MUTEX}, {"synchronization": MUTEX}]}) == [Lock.mutex("m")]


# --- a semaphore's limit ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "unreadable", "limit", "problem"),
    [
        ({"db": "3"}, "", 3, ""),
        ({"db": " 0\n"}, "", 0, ""),
        ({"db": "10000"}, "", 10000, ""),
        (None, "", None, "ConfigMap limits not found"),
        ({}, "", None, "ConfigMap limits has no key db"),
        ({"db": "3.5"}, "", None, "ConfigMap limits: db='3.5' is not an integer from 0 to 10000"),
        (
            {"db": "\u0661"},
            "",
            None,
            "ConfigMap limits: db='\u0661' is not an integer from 0 to 10000",
        ),  # a digit, not ASCII
        ({"db": "3"}, "403 Forbidden", None, "cannot read ConfigMap limits: 403 Forbidden"),
    ],
)
def test_a_semaphores_limit_is_its_configmaps_value(
    data: dict[str, str] | None, unreadable: str, limit: int | None, problem: str
) -> None:
    assert semaphore_limit(Lock.semaphore("limits", "db"), data, unreadable) == (limit, problem)


def test_a_mutex_has_one_slot() -> None:
    assert semaphore_limit(Lock.mutex("m"), None) == (1, "")


# --- a lock's Lease ----------------------------------------------------------------------------------


RUN = RunIdentity("nightly-1", "team", "uid-n")


def test_a_lease_names_its_lock_slot_and_holder_and_is_owned_by_its_run() -> None:
    lease = manifests.build_lock_lease(RUN, Lock.semaphore("limits", "db"), 2, "load", "2024-05-01T12:00:00.000000Z")
    metadata = lease["metadata"]
    assert (lease["apiVersion"], lease["kind"]) == api.LEASE
    assert metadata["name"] == names.lock_lease("semaphore/limits/db", 2)
    assert metadata["labels"][api.LABEL_ROLE] == api.ROLE_LOCK
    assert metadata["labels"][api.LABEL_LOCK] == "semaphore.limits.db"
    assert metadata["labels"][api.LABEL_TASK] == "load"
    assert metadata["annotations"] == {api.LOCK_ANNOTATION: "semaphore/limits/db", api.SLOT_ANNOTATION: "2"}
    assert [(r["kind"], r["uid"], r["controller"]) for r in metadata["ownerReferences"]] == [("FlowRun", "uid-n", True)]
    assert lease["spec"]["holderIdentity"] == "nightly-1/load"
    seen = observe({**lease, "metadata": {**metadata, "uid": "l1"}})
    assert isinstance(seen, ObservedLease)
    assert (seen.lock, seen.slot, seen.task, seen.run, seen.holder) == (
        "semaphore/limits/db",
        2,
        "load",
        "uid-n",
        "nightly-1/load",
    )


def test_a_lease_that_is_no_locks_is_no_child() -> None:
    election = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "flowrun-operator"}}
    assert observe(election) is None


def test_lease_names_are_valid_distinct_and_readable_where_they_can_be() -> None:
    assert names.lock_lease("mutex/nightly", 0) == "flowrun-mutex-nightly-0"
    found = {
        names.lock_lease(lock, slot)
        for lock in ("semaphore/a-b/c", "semaphore/a/b-c", "semaphore/a/B_c", "semaphore/a/b_c", "mutex/" + "x" * 63)
        for slot in (0, 1, 10_000)
    }
    assert len(found) == 15
    for name in found:
        assert len(name) <= 63 and name.replace("-", "").isalnum() and name == name.lower(), name
    assert names.lock_label("mutex/nightly") == "mutex.nightly"
    assert len(names.lock_label("semaphore/" + "c" * 253 + "/" + "K" * 253)) == 63


def test_a_lock_view_keeps_its_locks_leases_and_claims_in_line() -> None:
    lease = ObservedLease("l", {}, lock="mutex/m", slot=0)
    other = ObservedLease("o", {}, lock="mutex/o", slot=0)
    late = Claim(T0.replace(second=5), "a", -1, "u1", "", "mutex/m")
    early = Claim(T0, "z", 3, "u2", "t", "mutex/m")
    view = lock_view(Lock.mutex("m"), [lease, other], [late, early, Claim(T0, "y", -1, "u3", "", "mutex/o")], (1, ""))
    assert view.leases == (lease,) and view.claims == (early, late)


# --- kube.take_lock: the API server decides ----------------------------------------------------------


def kube(tmp_path: Path) -> tuple[FakeApiServer, Kube]:
    server = FakeApiServer(kinds=list(OPERATOR_KINDS), store_creates=True)
    return server, Kube(server, dynamic=server.dynamic_client(tmp_path))


def test_a_slot_is_taken_by_the_first_create_only(tmp_path: Path) -> None:
    server, client = kube(tmp_path)
    first = manifests.build_lock_lease(RUN, Lock.mutex("m"), 0, None, "2024-05-01T12:00:00.000000Z")
    second = manifests.build_lock_lease(RunIdentity("other", "team", "uid-o"), Lock.mutex("m"), 0, None, "x")
    assert client.take_lock(first) is not None
    assert client.take_lock(second) is None  # taken: a lost race, not a failure
    stored = server.objects[("leases", "team", "flowrun-mutex-m-0")]
    assert stored["spec"]["holderIdentity"] == "nightly-1"


def test_a_slot_whose_name_a_foreign_lease_holds_is_refused(tmp_path: Path) -> None:
    server, client = kube(tmp_path)
    server.add(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "flowrun-mutex-m-0", "namespace": "team"},
        }
    )
    with pytest.raises(ForeignObject, match="not a lock's"):
        client.take_lock(manifests.build_lock_lease(RUN, Lock.mutex("m"), 0, None, "x"))
