"""The passes's handling of refused creates, against a fake Kube: which errors are refusals
handed to the next pass's engine (RunInput.refused) and which are transient and simply retried."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from flowrun import api
from flowrun.controller.flowrun_pass import FlowRunPass
from flowrun.kube import ChildrenUnreadable, ForeignObject, Kube
from tests.unit.fakes import NS, UID, FakeKube, api_error, pod_task

QUOTA = 'pods "x-a-1" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1'


def tasks(kube: FakeKube) -> dict[str, tuple[str, str]]:
    return {n: (t["phase"], t["reason"]) for n, t in kube.body["status"]["tasks"].items()}


def test_only_permanent_refusals_reach_the_engine_and_transient_errors_are_retried() -> None:
    kube = FakeKube(
        {"tasks": [pod_task(n) for n in ("a", "b", "c", "d", "e", "f")]},
        {
            "Pod/x-a-1": api_error(403, "Forbidden", QUOTA),
            "Pod/x-b-1": api_error(500, "Internal Server Error", "etcd is slow"),
            "Pod/x-c-1": api_error(429, "Too Many Requests", "slow down"),
            "Pod/x-d-1": api_error(422, "Unprocessable Entity", 'Pod "x-d-1" is invalid'),
            "Pod/x-e-1": ForeignObject('409 AlreadyExists: pods "x-e-1" already exists; not this FlowRun\'s'),
        },
    )
    passes = kube.passes()
    first = kube.run(passes)
    assert passes._refused[UID] == {
        "Pod/x-a-1": f"403 Forbidden: {QUOTA}",
        "Pod/x-d-1": '422 Unprocessable Entity: Pod "x-d-1" is invalid',
        "Pod/x-e-1": '409 AlreadyExists: pods "x-e-1" already exists; not this FlowRun\'s',
    }
    # Transient errors are ActionFailed events and retried; refusals become transitions instead.
    action_failed = [m for _, reason, m in kube.events if reason == "ActionFailed"]
    assert action_failed == ["creating Pod x-b-1: 500 etcd is slow", "creating Pod x-c-1: 429 slow down"]
    assert first.requeue_after == 1.0  # the pass that records the refusals comes soon

    kube.errors = {k: v for k, v in kube.errors.items() if k in ("Pod/x-a-1", "Pod/x-b-1")}
    kube.create_calls.clear()
    kube.run(passes)
    assert tasks(kube) == {
        "a": ("Failed", "CreateRefused"),
        "b": ("Running", "PodCreating"),  # a 500 never fails a task: sent again
        "c": ("Running", "PodPending"),  # sent again, and created
        "d": ("Failed", "CreateRefused"),
        "e": ("Failed", "CreateRefused"),
        "f": ("Running", "PodPending"),  # created in the first pass, seen now
    }
    assert kube.body["status"]["tasks"]["a"]["message"] == f"cannot create Pod x-a-1: 403 Forbidden: {QUOTA}"
    assert kube.create_calls == ["Pod/x-b-1", "Pod/x-c-1"]  # the refused ones are not sent again
    failed = [m for _, reason, m in kube.events if reason == "TaskFailed"]
    assert any("x-a-1" in m and "exceeded quota" in m for m in failed), failed
    assert UID not in passes._refused  # nothing refused in this pass: the memory is empty

    kube.errors = {}
    kube.run(passes)
    assert tasks(kube)["b"] == ("Running", "PodPending") and "Pod/x-b-1" in [
        f"Pod/{o['metadata']['name']}" for o in kube.objects
    ]


def test_a_pass_that_fails_half_way_forgets_the_refusals_as_a_restart_would() -> None:
    kube = FakeKube({"tasks": [pod_task("a")]}, {"Pod/x-a-1": api_error(403, "Forbidden", QUOTA)})
    passes = kube.passes()
    kube.run(passes)
    assert UID in passes._refused

    def broken(namespace: str, name: str, status: Any) -> dict[str, Any]:
        raise TimeoutError("read timed out")  # the status write of the pass that records them

    kube.patch_status = broken  # type: ignore[method-assign]
    with pytest.raises(TimeoutError):
        kube.run(passes)
    assert UID not in passes._refused


def test_forget_drops_the_memory_of_a_run() -> None:
    kube = FakeKube({"tasks": [pod_task("a")]}, {"Pod/x-a-1": api_error(403, "Forbidden", QUOTA)})
    passes = kube.passes()
    kube.run(passes)
    passes.forget(UID)
    assert UID not in passes._refused and UID not in passes._reported._reported


# -- Kube.create: a name taken by someone else is a refusal quoting the API server -----------------


class FakeResource:
    namespaced = True  # ConfigMaps are

    def __init__(self, existing: dict[str, Any] | None) -> None:
        self.existing = existing

    def create(self, **_: Any) -> None:
        raise api_error(409, "Conflict", 'configmaps "r-config" already exists')

    def get(self, **_: Any) -> Any:
        if self.existing is None:
            raise api_error(404, "Not Found", 'configmaps "r-config" not found')
        return SimpleNamespace(data=json.dumps(self.existing).encode())


def kube_with(existing: dict[str, Any] | None) -> Kube:
    kube = Kube.__new__(Kube)
    kube.resource = lambda api_version, kind: FakeResource(existing)  # type: ignore[method-assign]
    return kube


MANIFEST = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "r-config", "namespace": NS}}


def test_create_of_a_name_taken_by_a_foreign_object_raises_foreign_object_with_the_servers_message() -> None:
    with pytest.raises(ForeignObject) as raised:
        kube_with({"metadata": {"name": "r-config", "labels": {"team": "data"}}}).create(MANIFEST, UID)
    message = str(raised.value)
    assert message.startswith('409 Conflict: configmaps "r-config" already exists; ')
    assert f"{api.LABEL_UID}={UID}" in message


def test_create_of_an_own_object_is_success_and_one_gone_meanwhile_is_transient() -> None:
    assert kube_with({"metadata": {"labels": {api.LABEL_UID: UID}}}).create(MANIFEST, UID) is None
    with pytest.raises(ApiException) as raised:
        kube_with(None).create(MANIFEST, UID)
    assert raised.value.status == 409  # not a refusal: the next pass creates it


JOB_LABELS = {
    api.LABEL_MANAGED_BY: api.MANAGED_BY,
    api.LABEL_ROLE: "cleanup",
    api.LABEL_RESOURCE: "db",
    api.LABEL_ATTEMPT: "2",
}
CLEANUP_JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "r-db-cleanup-2", "namespace": NS, "labels": JOB_LABELS},
}


@pytest.mark.parametrize(
    "differs",
    [
        {api.LABEL_ROLE: "setup"},  # this run's, another role (its setup Job)
        {api.LABEL_ATTEMPT: "1"},  # this run's, the attempt before
        {api.LABEL_RESOURCE: "cache"},  # this run's, another block
        {api.LABEL_MANAGED_BY: "someone"},
    ],
)
def test_an_object_of_this_run_is_adopted_only_as_the_child_its_labels_prove(differs: dict[str, str]) -> None:
    # A create that finds its name taken adopts the object only when every label the operator
    # puts on this child says so: the run's UID alone does not make it this role, block or attempt.
    labels = {**JOB_LABELS, api.LABEL_UID: UID}
    assert kube_with({"metadata": {"labels": {**labels, "team": "data"}}}).create(CLEANUP_JOB, UID) is None
    with pytest.raises(ForeignObject) as raised:
        kube_with({"metadata": {"labels": {**labels, **differs}}}).create(CLEANUP_JOB, UID)
    [(key, value)] = [(k, JOB_LABELS[k]) for k in differs]
    assert f"({key}={value})" in str(raised.value)


# ---------------------------------------------------------------------------------------------
# Children that cannot be read


UNREADABLE = ChildrenUnreadable(
    "listing Widget in example.com/v1: 404 the server could not find the requested resource"
)


# A kind no watch cache holds: its children are listed, which may fail.
WIDGETS = {
    "resources": [
        {
            "name": "store",
            "setup": {"manifests": [{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}]},
        }
    ],
    "tasks": [pod_task("a", resources=["store"])],
}


def test_children_that_cannot_be_read_are_reported_once_and_never_hold_a_deletion() -> None:
    kube = FakeKube(WIDGETS, {})
    passes = kube.passes()
    kube.run(passes)
    assert kube.body["status"]["phase"] == "Running"
    kube.list_error = UNREADABLE
    for _ in range(3):
        result = kube.run(passes)
    message = f"cannot read the run's children: {UNREADABLE}"
    assert (result.message, result.released) == (message, False)
    assert kube.body["status"]["message"] == message and kube.body["status"]["phase"] == "Running"
    assert [e for e in kube.events if e[1] == "ChildrenUnreadable"] == [("Warning", "ChildrenUnreadable", message)]

    # Deletion never waits on a kind the operator cannot list: what is left of it goes with the
    # FlowRun (its owner reference), and a Warning event says so, once.
    kube.body["metadata"]["deletionTimestamp"] = "2024-05-01T12:05:00Z"
    for _ in range(2):
        result = kube.run(passes)
    assert result.released and result.deleting
    left = [m for _, reason, m in kube.events if reason == "ChildrenUnreadable" and "garbage collector" in m]
    assert left == [f"{message}; left to the garbage collector"]


def test_a_watched_kind_the_operator_may_not_list_is_reported_as_children_it_cannot_read() -> None:
    # Without EndpointSlices (an operator upgraded but not its RBAC) a block would wait for ever for
    # endpoints it cannot see; the run says why instead.
    spec = {
        "tasks": [pod_task("a", resources=["r"])],
        "resources": [
            {
                "name": "r",
                "setup": {
                    "deployments": [{"name": "db", "template": pod_task("db")["template"], "ports": [{"port": 80}]}]
                },
            }
        ],
    }
    kube = FakeKube(spec, {})
    kube.watch_error = ChildrenUnreadable(
        "listing EndpointSlice in discovery.k8s.io/v1: 403 endpointslices.discovery.k8s.io is forbidden"
    )
    result = kube.run(kube.passes())
    assert result.message == f"cannot read the run's children: {kube.watch_error}"
    assert kube.create_calls == []  # nothing is created from a partial view


@pytest.mark.parametrize(
    "failure",
    [UNREADABLE, api_error(500, "Internal Server Error", "etcd is slow")],
    ids=["unreadable", "transient"],
)
def test_skip_cleanup_releases_the_finalizer_whatever_reading_the_children_raises(failure: Exception) -> None:
    kube = FakeKube(WIDGETS, {})
    passes = kube.passes()
    kube.run(passes)
    kube.list_error = failure
    kube.body["metadata"]["deletionTimestamp"] = "2024-05-01T12:05:00Z"
    kube.body["metadata"]["annotations"] = {api.SKIP_CLEANUP_ANNOTATION: "true"}
    result = kube.run(passes)
    assert result.released and result.deleting
    assert api.FINALIZER not in kube.body["metadata"]["finalizers"]


def test_a_create_refused_by_a_terminating_namespace_tells_the_next_pass_and_its_warnings_go_elsewhere() -> None:
    spec = {
        "tasks": [pod_task("a", resources=["r"])],
        "resources": [
            {
                "name": "r",
                "setup": {"deployments": [{"name": "db", "template": pod_task("db")["template"]}]},
                "cleanup": {"job": {"template": pod_task("c")["template"]}},
            }
        ],
    }
    terminating = api_error(
        403, "Forbidden", "unable to create new content in namespace team because it is being terminated"
    )
    terminating.body = json.dumps(
        {
            "kind": "Status",
            "message": "unable to create new content in namespace team because it is being terminated",
            "details": {"causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace"}]},
        }
    )
    kube = FakeKube(spec, {"Job/x-r-cleanup-1": terminating})
    passes = kube.passes()
    kube.run(passes)  # the Deployment is created (the task waits for it)
    kube.body["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:05Z"
    kube.run(passes)  # stopped; the cleanup job is refused
    assert UID in passes._namespace_terminating
    result = kube.run(passes)
    r = kube.body["status"]["resources"]["r"]
    assert (r["phase"], r["reason"]) == ("CleanupFailed", "NamespaceDeleted")
    # The namespace accepts no Event: the Warning goes on the Namespace (in `default`) as well.
    warnings = [
        (o, m) for o, (t, reason, m) in zip(kube.event_objects, kube.events, strict=True) if reason == "CleanupFailed"
    ]
    assert sorted(o for o, _ in warnings) == ["FlowRun/x", "Namespace/team"]
    outside = next(m for o, m in warnings if o == "Namespace/team")
    assert outside.startswith("FlowRun team/x: resource r: cleanup job not run: namespace team is being deleted")
    assert UID not in passes._namespace_terminating
    assert result.released


def test_a_run_whose_failed_cleanup_holds_its_finalizer_goes_with_its_namespace() -> None:
    # A failed cleanup holds the finalizer of a deleted run (CleanupBlocked: a person decides). Once
    # its namespace is being deleted, it holds the namespace too, for ever: the run is released,
    # what the cleanup left outside the cluster named where the namespace's events go.
    spec = {
        "tasks": [pod_task("a", resources=["r"])],
        "resources": [
            {
                "name": "r",
                "setup": {"deployments": [{"name": "db", "template": pod_task("db")["template"]}]},
                "cleanup": {"job": {"template": pod_task("c")["template"]}, "retries": 0},
            }
        ],
    }
    denied = api_error(403, "Forbidden", 'jobs.batch "x-r-cleanup-1" is forbidden: denied by policy')
    kube = FakeKube(spec, {"Job/x-r-cleanup-1": denied})
    passes = kube.passes()
    kube.run(passes)
    kube.body["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:05Z"
    results = [kube.run(passes) for _ in range(4)]
    released = next(c for c in kube.body["status"]["conditions"] if c["type"] == "ResourcesReleased")
    assert released["reason"] == "CleanupBlocked" and not any(r.released for r in results)
    # Looked at again while it waits: the namespace may be deleted after the run was.
    assert results[-1].requeue_after is not None and results[-1].requeue_after <= 60
    assert kube.calls.count("namespace_terminating") == 2  # once per pass that found it blocked
    kube.namespace_deleting = True
    result = kube.run(passes)
    assert result.released
    outside = [m for o, (_, reason, m) in zip(kube.event_objects, kube.events, strict=True) if o == "Namespace/team"]
    assert len(outside) == 1, outside
    assert outside[0].startswith("FlowRun team/x: released with its namespace; what its failed cleanup would have")
    assert "cleanup failed for r: cleanup job attempt 1 failed" in outside[0] and "finalizer" not in outside[0]


def test_a_forbidden_create_for_another_reason_is_no_namespace_termination() -> None:
    kube = FakeKube({"tasks": [pod_task("a")]}, {"Pod/x-a-1": api_error(403, "Forbidden", QUOTA)})
    passes = kube.passes()
    kube.run(passes)
    assert passes._refused[UID] and UID not in passes._namespace_terminating


def test_a_flowrun_deleted_while_its_pass_runs_ends_the_pass_quietly() -> None:
    """A status patch that meets NotFound is an ordinary delete race: the pass says the run is gone
    (its DELETED event follows) instead of raising (an ERROR traceback, a retry)."""
    kube = FakeKube({"tasks": [pod_task("a")]}, {})

    def gone(namespace: str, name: str, status: Any) -> dict[str, Any]:
        raise api_error(404, "Not Found", 'flowruns.flowrun.dev "x" not found')

    kube.patch_status = gone  # type: ignore[method-assign]
    assert kube.run(kube.passes()).gone


def failing_status_write(kube: FakeKube, passes: FlowRunPass) -> None:
    """A pass whose creates and deletes are answered and whose status write is not (the API server
    went away between them)."""
    write = kube.patch_status

    def unreachable(*args: Any) -> dict[str, Any]:
        raise api_error(503, "Service Unavailable", "etcd is away")

    kube.patch_status = unreachable  # type: ignore[method-assign,assignment]
    try:
        with pytest.raises(ApiException):
            kube.run(passes)
    finally:
        kube.patch_status = write  # type: ignore[method-assign]


def test_a_pod_deleted_for_its_deadline_by_a_pass_whose_status_write_failed_keeps_its_reason() -> None:
    # Found by the soak: the API server went away between a pass's delete of an overdue pod and its
    # status write; the next pass found the pod gone and took it for deleted by someone else.
    kube = FakeKube({"tasks": [pod_task("a", activeDeadlineSeconds=5)]}, {})
    passes = kube.passes()
    kube.run(passes)
    pod = next(o for o in kube.objects if o["metadata"]["name"] == "x-a-1")
    pod["status"] = {"phase": "Running", "startTime": "2024-05-01T12:00:00Z"}  # long past its deadline
    failing_status_write(kube, passes)
    assert not any(o["metadata"]["name"] == "x-a-1" for o in kube.objects)  # deleted before the write

    kube.run(passes)
    assert tasks(kube) == {"a": ("Failed", "DeadlineExceeded")}
    assert passes._unrecorded_pods == {}  # recorded: nothing more to remember


def test_a_pod_created_by_a_pass_whose_status_write_failed_and_deleted_since_is_not_created_again() -> None:
    # Found by the soak (a run of 200 tasks, a pod deleted seconds after its create): the status
    # that would have said the pod was created was never written, the pod was gone by the next
    # pass, which created it again under the same name.
    kube = FakeKube({"tasks": [pod_task("a")]}, {})
    passes = kube.passes()
    failing_status_write(kube, passes)
    assert kube.create_calls == ["Pod/x-a-1"]
    kube.objects = [o for o in kube.objects if o["metadata"]["name"] != "x-a-1"]  # deleted by someone

    kube.run(passes)
    kube.run(passes)
    assert kube.create_calls == ["Pod/x-a-1"]  # never under the same name again
    assert tasks(kube) == {"a": ("Failed", "PodDeleted")}
    assert passes._unrecorded_pods == {}


def test_a_deleted_run_whose_status_cannot_be_written_is_released_though_it_deleted_pods_unrecorded() -> None:
    # What the pods a pass deleted are remembered for (their reason) does not matter to a run that
    # goes: they must not hold its finalizer while its status cannot be written.
    kube = FakeKube({"tasks": [pod_task("a")]}, {})
    passes = kube.passes()
    kube.run(passes)
    kube.body["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:05Z"
    failing_status_write(kube, passes)  # the pass deletes the running pod; its write fails
    assert not any(o["kind"] == "Pod" for o in kube.objects)

    def refused(*args: Any) -> dict[str, Any]:
        raise api_error(422, "Unprocessable Entity", "the status cannot be written")

    kube.patch_status = refused  # type: ignore[method-assign,assignment]
    assert kube.run(passes).released
    assert api.FINALIZER not in kube.body["metadata"]["finalizers"]
