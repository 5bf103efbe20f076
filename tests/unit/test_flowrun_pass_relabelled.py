"""A child whose labels someone edited leaves the operator's watch without being gone: before a
pass takes a child the status vouches for for gone, it looks it up once; one that exists and is the
run's by its owner reference gets the operator's labels back (and a Warning event says so) instead
of being replaced. One that is really gone is decided as before."""

from __future__ import annotations

from typing import Any

from flowrun import api
from flowrun.engine import missing_children, run_input_from_object
from flowrun.observed import observed_from_objects
from tests.unit.builders import NS, RUN, Sim, at, flow, resource, task
from tests.unit.fakes import FakeKube, pod_task


def running_task(kube: FakeKube) -> dict[str, Any]:
    """Two passes: the pod is created, then seen running."""
    passes = kube.passes()
    kube.run(passes)
    pod = next(o for o in kube.objects if o["kind"] == "Pod")
    pod["status"] = {"phase": "Running", "containerStatuses": [{"name": "main", "state": {"running": {}}}]}
    kube.run(passes)
    assert kube.body["status"]["tasks"]["a"]["reason"] == "PodRunning"
    return pod


def test_a_running_pod_that_lost_its_labels_gets_them_back_and_its_task_runs_on() -> None:
    kube = FakeKube({"tasks": [pod_task("a")]}, {})
    pod = running_task(kube)
    labels = dict(pod["metadata"]["labels"])
    del pod["metadata"]["labels"][api.LABEL_MANAGED_BY]  # out of the operator's watch
    del pod["metadata"]["labels"][api.LABEL_UID]
    passes = kube.passes()
    result = kube.run(passes)
    assert kube.calls[-2:] == ["get Pod/x-a-1", "patch_labels Pod/x-a-1"]
    assert pod["metadata"]["labels"] == labels
    assert kube.body["status"]["tasks"]["a"]["reason"] == "PodRunning" and result.requeue_after == 1.0
    assert [reason for _, reason, _ in kube.events][-1] == "LabelsRestored"
    kube.run(passes)  # back in the watch: nothing is missing, nothing looked up
    assert kube.body["status"]["tasks"]["a"]["reason"] == "PodRunning" and kube.calls.count("get Pod/x-a-1") == 1


def test_a_pod_that_is_really_gone_is_looked_up_once_and_then_decided_gone() -> None:
    kube = FakeKube({"tasks": [pod_task("a")]}, {})
    running_task(kube)
    kube.objects = [o for o in kube.objects if o["kind"] != "Pod"]
    passes = kube.passes()
    kube.run(passes)
    assert kube.body["status"]["tasks"]["a"]["reason"] == "PodDeleted"
    kube.run(passes)
    assert kube.calls.count("get Pod/x-a-1") == 1


def test_a_pod_someone_else_owns_now_is_not_relabelled() -> None:
    kube = FakeKube({"tasks": [pod_task("a")]}, {})
    pod = running_task(kube)
    pod["metadata"]["labels"] = {}
    pod["metadata"]["ownerReferences"] = []
    kube.run(kube.passes())
    assert "patch_labels Pod/x-a-1" not in kube.calls
    assert kube.body["status"]["tasks"]["a"]["reason"] == "PodDeleted"


def test_what_the_status_vouches_for() -> None:
    """Pods seen pending or running, a Ready block's objects (not its setup Job), a setup Job seen."""
    sim = Sim(
        flow(
            task("a", resources=["r"]),
            resources=[
                resource(
                    "r",
                    setup={"job": {"template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}}},
                )
            ],
        )
    )
    sim.step(at(0))
    job = sim.cluster.get("Job", f"{RUN}-r-setup")
    sim.cluster.start_job(f"{RUN}-r-setup")
    sim.step(at(1))
    assert sim.res("r")["reason"] == "SetupJobRunning"
    run = run_input_from_object(
        {"metadata": {"name": RUN, "namespace": NS, "uid": sim.run.uid}, "spec": sim.run.spec, "status": sim.status}
    )
    assert missing_children(run, observed_from_objects([]), at(2))[0].ref.name == f"{RUN}-r-setup"
    assert missing_children(run, sim.cluster.observed(), at(2)) == []
    vouched = missing_children(run, observed_from_objects([]), at(2))[0]
    assert vouched.labels == {
        k: v for k, v in job["metadata"]["labels"].items() if k.startswith("flowrun.dev/") or k == api.LABEL_MANAGED_BY
    }
