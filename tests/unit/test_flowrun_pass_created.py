"""A pod the API server accepted is never created a second time under the same name: the pass
that created it writes PodPending (created, not started), not PodCreating (asked for, the create
not answered), so a pod deleted before any pass saw it is an attempt that failed (PodDeleted), not
a create to send again. A create that failed is sent again by the next pass, as before."""

from __future__ import annotations

from flowrun.api import POD_CREATING, POD_PENDING
from tests.unit.fakes import FakeKube, api_error, pod_task


def test_a_pod_deleted_before_any_pass_saw_it_fails_its_attempt_and_is_not_created_again() -> None:
    kube = FakeKube({"tasks": [pod_task("a", retries={"limit": 1, "backoffSeconds": 0})]}, {})
    passes = kube.passes()
    kube.run(passes)
    assert kube.body["status"]["tasks"]["a"]["reason"] == POD_PENDING
    kube.objects = [o for o in kube.objects if o["kind"] != "Pod"]  # deleted by someone else at once
    kube.run(passes)
    kube.run(passes)
    assert kube.create_calls.count("Pod/x-a-1") == 1, kube.create_calls
    assert "Pod/x-a-2" in kube.create_calls
    assert "PodDeleted" in kube.body["status"]["tasks"]["a"]["message"]


def test_a_pod_deleted_before_any_pass_saw_it_fails_a_task_without_retries() -> None:
    kube = FakeKube({"tasks": [pod_task("a")]}, {})
    passes = kube.passes()
    kube.run(passes)
    kube.objects = [o for o in kube.objects if o["kind"] != "Pod"]
    kube.run(passes)
    task = kube.body["status"]["tasks"]["a"]
    assert (task["phase"], task["reason"], kube.create_calls.count("Pod/x-a-1")) == ("Failed", "PodDeleted", 1)
    assert kube.body["status"]["phase"] == "Failed"


def test_a_create_that_failed_stays_podcreating_and_is_sent_again() -> None:
    kube = FakeKube({"tasks": [pod_task("a")]}, {"Pod/x-a-1": api_error(500, "Internal Server Error")})
    passes = kube.passes()
    kube.run(passes)
    assert kube.body["status"]["tasks"]["a"]["reason"] == POD_CREATING
    del kube.errors["Pod/x-a-1"]
    kube.run(passes)
    assert kube.create_calls.count("Pod/x-a-1") == 2
    assert kube.body["status"]["tasks"]["a"]["reason"] == POD_PENDING
    assert any(o["metadata"]["name"] == "x-a-1" for o in kube.objects)
