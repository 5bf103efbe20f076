"""Creates the API server refuses for good (RunInput.refused): what waited for the child fails with
a reason instead of waiting forever. The FakeCluster refuses by "Kind/name" prefix and Sim hands
each pass's refusals to the next pass, as a FlowRun pass does."""

from dataclasses import replace

from flowrun.engine import decide
from tests.unit.builders import (
    Sim,
    assert_restart_safe,
    at,
    creates,
    deletes,
    deployment,
    flow,
    job,
    phases,
    resource,
    succeed,
    task,
)

QUOTA = (
    '403 Forbidden: pods "demo-b-1" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1'
)
FOREIGN = (
    '409 AlreadyExists: configmaps "r-config" already exists; the existing object was not created as this child'
    " of this FlowRun"
)
CONFIG = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "r-config"}, "data": {"k": "v"}}
DB = "demo-r-db"


def test_a_refused_task_pod_fails_the_attempt_then_retries_with_a_new_pod_until_failed() -> None:
    sim = Sim(flow(task("a"), task("b", "a", retries={"limit": 2, "backoffSeconds": 5}), task("c", "b")))
    sim.step(at(0))
    sim.cluster.refuse("Pod/demo-b-", QUOTA)
    succeed(sim, "a")
    assert creates(sim.step(at(1))) == ["Pod/demo-b-1"]  # sent, and refused
    assert sim.cluster.refused == ["Pod/demo-b-1"]
    outcome = sim.step(at(2))  # the refusal reaches the engine
    b = sim.task("b")
    assert (b["phase"], b["reason"], b["attempts"]) == ("Running", "RetryBackoff", 1)
    assert b["message"] == f"attempt 1 failed (CreateRefused: cannot create Pod demo-b-1: {QUOTA})"
    assert b["nextAttemptAt"] == "2024-05-01T12:00:07Z" and outcome.requeue_after == 5
    assert creates(outcome) == []  # never the refused pod again
    retrying = [e for e in outcome.events if e.reason == "TaskRetrying"]
    assert len(retrying) == 1 and "demo-b-1" in retrying[0].message and "exceeded quota" in retrying[0].message
    assert creates(sim.step(at(7))) == ["Pod/demo-b-2"]  # a new name per attempt
    sim.step(at(8))
    assert sim.task("b")["reason"] == "RetryBackoff"
    assert creates(sim.step(at(13))) == ["Pod/demo-b-3"]
    outcome = sim.step(at(14))
    b = sim.task("b")
    assert (b["phase"], b["reason"], b["attempts"]) == ("Failed", "CreateRefused", 3)
    assert b["message"] == f"attempt 3: cannot create Pod demo-b-3: {QUOTA}"
    assert b["logs"] is None and b["exitCode"] is None  # no pod: nothing to read
    assert (sim.task("c")["phase"], sim.task("c")["reason"]) == ("Skipped", "UpstreamFailed")
    assert outcome.done and sim.status["phase"] == "Failed"
    assert sim.status["message"].startswith("task b failed: CreateRefused: attempt 3: cannot create Pod demo-b-3")
    assert ("Warning", "TaskFailed") in [(e.type, e.reason) for e in outcome.events]
    assert sim.cluster.refused == ["Pod/demo-b-1", "Pod/demo-b-2", "Pod/demo-b-3"]


def test_a_refused_task_pod_without_retries_fails_at_once_even_without_a_run_deadline() -> None:
    sim = Sim(flow(task("a")))
    sim.cluster.refuse("Pod/", QUOTA)
    sim.step(at(0))
    sim.step(at(1))
    a = sim.task("a")
    assert (a["phase"], a["reason"], a["message"]) == (
        "Failed",
        "CreateRefused",
        f"cannot create Pod demo-a-1: {QUOTA}",
    )
    assert sim.status["phase"] == "Failed" and sim.condition("Succeeded")["reason"] == "TasksFailed"


def test_without_the_refusal_in_memory_the_create_is_sent_again_and_nothing_is_duplicated() -> None:
    # After a restart RunInput.refused is empty: the task waits for its pod and the create is
    # sent again (the same name); the refusal is then recorded again by the pass after.
    sim = Sim(flow(task("a")))
    sim.cluster.refuse("Pod/", QUOTA)
    sim.step(at(0))
    sim.update(refused={})
    assert creates(sim.step(at(1))) == ["Pod/demo-a-1"]
    assert (sim.task("a")["phase"], sim.task("a")["reason"]) == ("Running", "PodCreating")
    assert_restart_safe(sim, at(1))
    sim.step(at(2))
    assert (sim.task("a")["phase"], sim.task("a")["reason"]) == ("Failed", "CreateRefused")


def test_a_refusal_of_an_object_that_exists_now_is_ignored() -> None:
    sim = Sim(flow(task("a")))
    sim.step(at(0))  # demo-a-1 created
    sim.update(refused={"Pod/demo-a-1": QUOTA})  # stale: it exists
    sim.step(at(1))
    assert (sim.task("a")["phase"], sim.task("a")["reason"]) == ("Running", "PodPending")


def test_a_refused_setup_manifest_fails_setup_skips_the_tasks_and_cleans_up_what_was_created() -> None:
    spec = flow(
        task("use", resources=["r"]),
        task("after", "use"),
        resources=[
            resource(
                "r",
                setup={"deployments": [deployment("db")], "manifests": [CONFIG]},
                cleanup={"job": job("teardown")},
            )
        ],
    )
    sim = Sim(spec)
    # Someone else's ConfigMap holds the name: the cluster refuses ours (reported as ForeignObject).
    sim.cluster.refuse("ConfigMap/r-config", FOREIGN)
    outcome = sim.step(at(0))
    assert creates(outcome) == [f"Deployment/{DB}", f"Service/{DB}", "ConfigMap/r-config"]
    assert sim.res("r")["phase"] == "SettingUp"
    outcome = sim.step(at(1))  # long before timeoutSeconds (600)
    r = sim.res("r")
    assert r["setupError"] == f"CreateRefused: cannot create ConfigMap r-config: {FOREIGN}"
    assert (r["phase"], r["reason"]) == ("CleaningUp", "CleanupJobRunning")  # cleanup starts in the same pass
    assert (sim.task("use")["phase"], sim.task("use")["reason"]) == ("Skipped", "SetupFailed")
    assert "r-config" in sim.task("use")["message"]
    assert (sim.task("after")["phase"], sim.task("after")["reason"]) == ("Skipped", "UpstreamFailed")
    assert creates(outcome) == ["Job/demo-r-cleanup-1"]  # never the refused manifest again
    setup_failed = [e for e in outcome.events if e.reason == "SetupFailed"]
    assert len(setup_failed) == 1 and setup_failed[0].type == "Warning" and "r-config" in setup_failed[0].message
    sim.cluster.finish_job("demo-r-cleanup-1")
    outcome = sim.step(at(2))
    # What setup created goes; the refused object was never ours and is not touched.
    assert deletes(outcome) == [f"Deployment/{DB}", f"Service/{DB}"]
    sim.step(at(3))
    r = sim.res("r")
    assert (r["phase"], r["reason"]) == ("CleanedUp", "SetupFailed") and "r-config" in r["message"]
    assert sim.status["phase"] == "Failed" and sim.condition("Succeeded")["reason"] == "SetupFailed"
    assert phases(sim) == {"use": "Skipped", "after": "Skipped"}


def test_a_refused_setup_job_fails_setup_at_once() -> None:
    sim = Sim(flow(task("use", resources=["r"]), resources=[resource("r", setup={"job": job()})]))
    sim.cluster.refuse("Job/demo-r-setup", '422 Unprocessable Entity: Job.batch "demo-r-setup" is invalid')
    sim.step(at(0))
    sim.step(at(1))
    r = sim.res("r")
    assert r["setupError"].startswith("CreateRefused: cannot create Job demo-r-setup: 422 Unprocessable Entity")
    sim.step(at(2))
    assert sim.res("r")["phase"] == "CleanedUp" and sim.status["phase"] == "Failed"


def test_a_refused_cleanup_job_is_a_failed_attempt_then_cleanup_fails() -> None:
    spec = flow(
        task("use", resources=["r"]),
        resources=[resource("r", cleanup={"job": job("teardown"), "retries": 1})],
    )
    sim = Sim(spec)
    sim.step(at(0))
    sim.cluster.make_available(DB)
    sim.step(at(1))
    denied = '403 Forbidden: jobs.batch is forbidden: User "system:serviceaccount:team:flowrun" cannot create'
    sim.cluster.refuse("Job/demo-r-cleanup-", denied)
    succeed(sim, "use")
    assert creates(sim.step(at(2))) == ["Job/demo-r-cleanup-1"]
    outcome = sim.step(at(3))
    r = sim.res("r")
    assert (r["phase"], r["reason"], r["cleanupAttempts"]) == ("CleaningUp", "CleanupJobBackoff", 1)
    assert r["message"] == (
        f"cleanup job attempt 1 failed (CreateRefused: cannot create Job demo-r-cleanup-1: {denied}); retrying in 10s"
    )
    assert "CleanupRetrying" in [e.reason for e in outcome.events] and outcome.requeue_after == 10
    assert creates(sim.step(at(12))) == []
    assert creates(sim.step(at(13))) == ["Job/demo-r-cleanup-2"]
    outcome = sim.step(at(14))
    # No retries left: what setup created is deleted anyway, then the block is CleanupFailed.
    assert deletes(outcome) == [f"Deployment/{DB}", f"Service/{DB}"]
    sim.step(at(15))
    r = sim.res("r")
    assert (r["phase"], r["reason"], r["cleanupAttempts"]) == ("CleanupFailed", "CleanupJobFailed", 2)
    assert r["cleanupError"] == (
        f"cleanup job attempt 2 failed (CreateRefused: cannot create Job demo-r-cleanup-2: {denied}), no retries left"
    )
    assert sim.status["phase"] == "Failed" and sim.condition("Succeeded")["reason"] == "CleanupFailed"
    assert ("Warning", "CleanupFailed") in [(e.type, e.reason) for e in sim.events]


def test_refusals_never_change_a_pass_that_did_not_ask_for_those_objects() -> None:
    sim = Sim(flow(task("a"), task("b", "a")))
    sim.step(at(0))
    stale = {"Pod/demo-b-1": QUOTA, "Job/x": "403 Forbidden"}  # b is not started yet; x is nothing
    outcome = decide(replace(sim.run, refused=stale), sim.cluster.observed(), at(1))
    plain = decide(sim.run, sim.cluster.observed(), at(1))
    assert outcome.status == plain.status and outcome.actions == plain.actions and outcome.events == plain.events
