"""The engine on resource blocks: setup, readiness, value, cleanup, and stopping around them."""

import copy
from typing import Any

import pytest

from flowrun import api
from flowrun.engine import RunInput, ValidateObjects, decide
from tests.unit.builders import (
    NS,
    READY_ENDPOINT,
    RUN,
    T0,
    UID,
    FakeCluster,
    Sim,
    assert_restart_safe,
    at,
    creates,
    deletes,
    deployment,
    flow,
    job,
    phases,
    pod_name,
    resource,
    slice_name,
    succeed,
    task,
)

SETUP_JOB = "demo-r-setup"
DB = "demo-r-db"  # the setup Deployment and its Service
LABELS = {api.LABEL_UID: UID}
CONFIG = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "r-config"}, "data": {"k": "v"}}


def env_of(manifest: dict[str, Any], container_index: int = 0) -> dict[str, str]:
    spec = manifest["spec"] if manifest["kind"] == "Pod" else manifest["spec"]["template"]["spec"]
    return {e["name"]: e["value"] for e in spec["containers"][container_index].get("env", [])}


def block(**fields: Any) -> dict[str, Any]:
    """One block `r` (a Deployment with a Service, and a cleanup job) used by task `use`."""
    fields.setdefault("cleanup", {"job": job("teardown")})
    return flow(task("use", resources=["r"]), resources=[resource("r", **fields)])


def ready_sim(spec: dict[str, Any] | None = None, cluster: FakeCluster | None = None) -> Sim:
    sim = Sim(spec or block(), cluster=cluster)
    sim.step(at(0))
    sim.cluster.make_available(DB)
    sim.step(at(1))
    assert sim.res("r")["phase"] == "Ready"
    return sim


# -- when setup starts --------------------------------------------------------------------------


def test_setup_starts_when_the_first_task_of_the_block_could_start() -> None:
    sim = Sim(flow(task("prep"), task("use", "prep", resources=["r"]), resources=[resource("r")]))
    assert creates(sim.step(at(0))) == ["Pod/demo-prep-1"]
    assert sim.res("r")["phase"] == "Pending"
    succeed(sim, "prep")
    assert creates(sim.step(at(1))) == [f"Deployment/{DB}", f"Service/{DB}"]
    r = sim.res("r")
    assert (r["phase"], r["setupStartedAt"], r["objects"]) == (
        "SettingUp",
        "2024-05-01T12:00:01Z",
        [f"Deployment/{DB}", f"Service/{DB}"],
    )
    assert (sim.task("use")["phase"], sim.task("use")["reason"]) == ("Pending", "WaitingForResources")
    sim.cluster.make_available(DB)
    assert creates(sim.step(at(2))) == ["Pod/demo-use-1"]
    assert sim.res("r")["readyAt"] == "2024-05-01T12:00:02Z"


def test_a_resource_run_after_waits_for_its_tasks_and_gets_their_results() -> None:
    spec = flow(
        task("make-id"),
        task("use", resources=["r"]),
        resources=[resource("r", runAfter=["make-id"], setup={"job": job("--id=$(tasks.make-id.result)")})],
    )
    sim = Sim(spec)
    assert creates(sim.step(at(0))) == ["Pod/demo-make-id-1"]
    succeed(sim, "make-id", message="42")
    assert creates(sim.step(at(1))) == [f"Job/{SETUP_JOB}"]
    assert sim.cluster.get("Job", SETUP_JOB)["spec"]["template"]["spec"]["containers"][0]["args"] == ["--id=42"]


def test_a_block_no_task_can_use_is_never_set_up() -> None:
    sim = Sim(flow(task("prep"), task("use", "prep", resources=["r"]), resources=[resource("r")]))
    sim.step(at(0))
    sim.cluster.set_pod(pod_name("prep"), "Failed")
    outcome = sim.step(at(1))
    assert creates(outcome) == [] and phases(sim) == {"prep": "Failed", "use": "Skipped"}
    assert (sim.res("r")["phase"], sim.res("r")["reason"]) == ("Pending", "NotNeeded")
    assert outcome.done and sim.condition("ResourcesReleased")["reason"] == "NothingToRelease"


def test_a_block_without_tasks_is_never_set_up() -> None:
    sim = Sim(flow(task("a"), resources=[resource("r")]))
    assert creates(sim.step(at(0))) == ["Pod/demo-a-1"]
    assert sim.res("r")["reason"] == "NotNeeded"


def test_a_failed_resource_run_after_skips_the_tasks_of_the_block() -> None:
    sim = Sim(flow(task("prep"), task("use", resources=["r"]), resources=[resource("r", runAfter=["prep"])]))
    sim.step(at(0))
    sim.cluster.set_pod(pod_name("prep"), "Failed")
    sim.step(at(1))
    assert (sim.task("use")["phase"], sim.task("use")["reason"]) == ("Skipped", "UpstreamFailed")
    assert sim.res("r")["reason"] == "NotNeeded"


# -- readiness and value ------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["nothing", "job", "deployment", "service", "manifest"])
def test_ready_needs_job_complete_deployments_available_services_and_manifests(missing: str) -> None:
    spec = block(setup={"job": job(), "deployments": [deployment("db")], "manifests": [CONFIG]}, value="v")
    sim = Sim(spec)
    assert creates(sim.step(at(0))) == [f"Job/{SETUP_JOB}", f"Deployment/{DB}", f"Service/{DB}", "ConfigMap/r-config"]
    if missing != "job":
        sim.cluster.finish_job(SETUP_JOB)
    if missing != "deployment":
        sim.cluster.make_available(DB)
    if missing == "service":
        sim.cluster.delete("Service", DB)
    if missing == "manifest":
        sim.cluster.delete("ConfigMap", "r-config")
    outcome = sim.step(at(1))
    if missing == "nothing":
        assert sim.res("r")["phase"] == "Ready" and creates(outcome) == ["Pod/demo-use-1"]
    else:
        assert sim.res("r")["phase"] == "SettingUp"
        assert creates(outcome) == ({"service": [f"Service/{DB}"], "manifest": ["ConfigMap/r-config"]}.get(missing, []))


@pytest.mark.parametrize(
    ("setup", "value", "expected"),
    [
        (
            {"deployments": [deployment("db")]},
            "tcp://$(resources.r.services.db):1/$(params.p)",
            f"tcp://{DB}.{NS}.svc:1/pv",
        ),
        ({"job": job(), "deployments": [deployment("db")]}, None, "vm-1234"),
        ({"deployments": [deployment("web", ports=False), deployment("db")]}, None, f"{DB}.{NS}.svc"),
        ({"manifests": [CONFIG]}, None, "r"),
        ({"deployments": [deployment("db", ports=False)]}, None, "r"),
    ],
    ids=["explicit", "setup-job-result", "first-service", "resource-name", "no-service"],
)
def test_value_defaults(setup: dict[str, Any], value: str | None, expected: str) -> None:
    fields: dict[str, Any] = {"setup": setup}
    if value is not None:
        fields["value"] = value
    spec = flow(
        task("use", resources=["r"], args=["$(resources.r.value)"]),
        resources=[resource("r", **fields)],
        params=[{"name": "p", "value": "pv"}],
    )
    sim = Sim(spec)
    sim.step(at(0))
    if "job" in setup:
        sim.cluster.finish_job(SETUP_JOB, message="vm-1234")
    for name in sim.cluster.names("Deployment"):
        sim.cluster.make_available(name)
    sim.step(at(1))
    assert sim.res("r")["value"] == expected
    pod = sim.cluster.get("Pod", "demo-use-1")
    assert pod["spec"]["containers"][0]["args"] == [expected]
    assert env_of(pod)["FLOWRUN_RESOURCE_R"] == expected


def test_setup_pods_get_the_value_only_when_it_is_known_before_setup() -> None:
    known = Sim(block(setup={"job": job(), "deployments": [deployment("db")]}, value="fixed"))
    known.step(at(0))
    assert env_of(known.cluster.get("Deployment", DB)) == {"FLOWRUN_RESOURCE_R": "fixed"}
    assert env_of(known.cluster.get("Job", SETUP_JOB)) == {"FLOWRUN_RESOURCE_R": "fixed"}
    from_job = Sim(block(setup={"job": job(), "deployments": [deployment("db")]}))
    from_job.step(at(0))
    assert env_of(from_job.cluster.get("Deployment", DB)) == {}
    assert env_of(from_job.cluster.get("Job", SETUP_JOB)) == {}


def test_replicas_come_from_params_and_results() -> None:
    spec = flow(
        task("size"),
        task("use", resources=["r"]),
        resources=[
            resource(
                "r",
                runAfter=["size"],
                setup={
                    "deployments": [deployment("db", "$(tasks.size.result)"), deployment("web", "$(params.n)", False)]
                },
            )
        ],
        params=[{"name": "n", "value": "4"}],
    )
    sim = Sim(spec)
    sim.step(at(0))
    succeed(sim, "size", message="3")
    sim.step(at(1))
    assert sim.cluster.get("Deployment", DB)["spec"]["replicas"] == 3
    assert sim.cluster.get("Deployment", "demo-r-web")["spec"]["replicas"] == 4


def test_replicas_that_do_not_resolve_to_a_number_fail_setup_before_anything_is_created() -> None:
    spec = flow(
        task("size"),
        task("use", resources=["r"]),
        resources=[resource("r", runAfter=["size"], setup={"deployments": [deployment("db", "$(tasks.size.result)")]})],
    )
    sim = Sim(spec)
    sim.step(at(0))
    succeed(sim, "size", message="lots")
    outcome = sim.step(at(1))
    assert creates(outcome) == [] and sim.res("r")["phase"] == "CleanedUp"
    assert "InvalidValue" in sim.res("r")["message"]
    assert (sim.task("use")["phase"], sim.task("use")["reason"]) == ("Skipped", "SetupFailed")


# -- a Service's ready endpoints -----------------------------------------------------------------

WAITING_DB = f"waiting for ready endpoints of Service {DB}"


def test_ready_waits_until_the_service_has_a_ready_endpoint_and_says_so() -> None:
    sim = Sim(block())
    sim.step(at(0))
    sim.cluster.make_available(DB, endpoints=False)  # pods Ready, the EndpointSlice not caught up
    outcome = sim.step(at(1))
    r = sim.res("r")
    assert (r["phase"], r["reason"], r["message"]) == ("SettingUp", "SettingUp", WAITING_DB)
    assert creates(outcome) == [] and r["value"] is None and sim.task("use")["reason"] == "WaitingForResources"
    # A lost status knows again what it waits for, and creates nothing that exists.
    lost = assert_restart_safe(sim, at(2))
    assert lost.status["resources"]["r"]["message"] == WAITING_DB
    sim.cluster.set_endpoints(DB)  # the slice, with no endpoint yet
    sim.step(at(2))
    assert (sim.res("r")["phase"], sim.res("r")["message"]) == ("SettingUp", WAITING_DB)
    sim.cluster.set_endpoints(DB, {"ready": True, "serving": True, "terminating": False})
    outcome = sim.step(at(3))
    r = sim.res("r")
    assert (r["phase"], r["message"], r["readyAt"]) == ("Ready", "", "2024-05-01T12:00:03Z")
    assert creates(outcome) == ["Pod/demo-use-1"]


@pytest.mark.parametrize(
    ("endpoints", "ready"),
    [
        ([], False),
        ([{"ready": False, "serving": False, "terminating": False}], False),
        ([{"ready": False, "serving": True, "terminating": True}], False),  # going away
        ([{"ready": True, "serving": True, "terminating": False}], True),
        ([{"ready": False}, {"ready": True}], True),  # one is enough
        ([{"serving": True}], True),  # ready absent: serving says
        ([{"serving": False}], False),
        ([{}], True),  # both absent: the API reads an absent condition as true
        ([{"ready": "true"}], False),  # not a boolean
    ],
    ids=["none", "not-ready", "terminating", "ready", "one-of-two", "serving", "not-serving", "no-conditions", "junk"],
)
def test_an_endpoint_counts_when_it_is_ready(endpoints: list[dict[str, Any]], ready: bool) -> None:
    sim = Sim(block())
    sim.step(at(0))
    sim.cluster.make_available(DB, endpoints=False)
    sim.cluster.set_endpoints(DB, *endpoints)
    sim.step(at(1))
    assert sim.res("r")["phase"] == ("Ready" if ready else "SettingUp")


def test_endpoints_count_only_from_the_services_own_slices_of_this_run_not_being_deleted() -> None:
    sim = Sim(block())
    sim.step(at(0))
    sim.cluster.make_available(DB)
    piece = sim.cluster.get("EndpointSlice", slice_name(DB))
    piece["metadata"]["labels"][api.LABEL_UID] = "another-run"
    sim.step(at(1))
    assert (sim.res("r")["phase"], sim.res("r")["message"]) == ("SettingUp", WAITING_DB)
    piece["metadata"]["labels"][api.LABEL_UID] = UID
    piece["metadata"]["labels"][api.LABEL_SERVICE_NAME] = "demo-r-other"
    sim.step(at(2))
    assert sim.res("r")["phase"] == "SettingUp"
    piece["metadata"]["labels"][api.LABEL_SERVICE_NAME] = DB
    piece["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:02Z"
    sim.step(at(3))
    assert sim.res("r")["phase"] == "SettingUp"
    del piece["metadata"]["deletionTimestamp"]
    sim.step(at(4))
    assert sim.res("r")["phase"] == "Ready"


def test_endpoints_of_several_slices_of_one_service_add_up() -> None:
    sim = Sim(block())
    sim.step(at(0))
    sim.cluster.make_available(DB, endpoints=False)
    sim.cluster.set_endpoints(DB, {"ready": False})
    second = copy.deepcopy(sim.cluster.get("EndpointSlice", slice_name(DB)))
    second["metadata"]["name"] = f"{DB}-second"
    second["endpoints"] = [{"addresses": ["10.0.0.9"], "conditions": {"ready": True}}]
    sim.cluster.add_other(second)
    sim.step(at(1))
    assert sim.res("r")["phase"] == "Ready"


def test_each_service_needs_a_ready_endpoint_and_the_message_names_those_without() -> None:
    spec = block(setup={"deployments": [deployment("db"), deployment("web"), deployment("worker", ports=False)]})
    sim = Sim(spec)
    sim.step(at(0))
    for name in (DB, "demo-r-web", "demo-r-worker"):
        sim.cluster.make_available(name, endpoints=False)
    sim.step(at(1))
    assert sim.res("r")["message"] == f"waiting for ready endpoints of Services {DB}, demo-r-web"
    sim.cluster.set_endpoints("demo-r-web", READY_ENDPOINT)
    sim.step(at(2))
    assert (sim.res("r")["phase"], sim.res("r")["message"]) == ("SettingUp", WAITING_DB)
    sim.cluster.set_endpoints(DB, READY_ENDPOINT)
    sim.step(at(3))
    assert sim.res("r")["phase"] == "Ready"


def test_the_service_of_a_deployment_of_zero_replicas_is_not_waited_for() -> None:
    sim = Sim(block(setup={"deployments": [deployment("db", 0)]}))
    sim.step(at(0))
    sim.cluster.make_available(DB, endpoints=False)
    sim.step(at(1))
    assert sim.res("r")["phase"] == "Ready"


def test_endpoints_are_asked_for_only_once_every_other_part_is_ready() -> None:
    sim = Sim(block(setup={"job": job(), "deployments": [deployment("db")]}, value="v"))
    sim.step(at(0))
    sim.cluster.set_endpoints(DB)  # no endpoint: the Deployment is not available yet either
    sim.step(at(1))
    assert (sim.res("r")["phase"], sim.res("r")["message"]) == ("SettingUp", "")
    sim.cluster.make_available(DB, endpoints=False)
    sim.step(at(2))
    assert (sim.res("r")["reason"], sim.res("r")["message"]) == ("SetupJobRunning", "")  # the Job first
    sim.cluster.finish_job(SETUP_JOB)
    sim.step(at(3))
    assert (sim.res("r")["reason"], sim.res("r")["message"]) == ("SetupJobComplete", WAITING_DB)
    sim.cluster.get("Deployment", DB)["status"] = {}  # its pod went away meanwhile
    sim.step(at(4))
    assert (sim.res("r")["phase"], sim.res("r")["message"]) == ("SettingUp", "")


def test_setup_times_out_while_waiting_for_endpoints_and_says_so() -> None:
    sim = Sim(block(setup={"deployments": [deployment("db")], "timeoutSeconds": 60}))
    sim.step(at(0))
    sim.cluster.make_available(DB, endpoints=False)
    sim.step(at(1))
    sim.step(at(60))
    r = sim.res("r")
    assert r["setupError"] == f"SetupTimeout: not Ready within timeoutSeconds=60: {WAITING_DB}"
    assert (sim.task("use")["phase"], sim.task("use")["reason"]) == ("Skipped", "SetupFailed")


def test_a_ready_block_stays_ready_when_its_endpoints_go() -> None:
    # Readiness is a gate to start the block's tasks: a scheduler pod that restarts later is the
    # tasks' business (they retry), not a broken block; its objects still exist.
    sim = ready_sim()
    sim.cluster.set_endpoints(DB)
    outcome = sim.step(at(2))
    assert sim.res("r")["phase"] == "Ready" and creates(outcome) == []


# -- setup failures -----------------------------------------------------------------------------


def test_setup_timeout_fails_setup_skips_the_tasks_and_cleans_up() -> None:
    spec = flow(
        task("prep"),
        task("use", resources=["r"]),
        task("later", "prep", resources=["r"]),
        resources=[resource("r", setup={"deployments": [deployment("db")], "timeoutSeconds": 60})],
    )
    sim = Sim(spec)
    assert sim.step(at(0)).requeue_after == 60
    assert sim.step(at(59)).requeue_after == 1
    outcome = sim.step(at(60))
    assert phases(sim) == {"prep": "Running", "use": "Skipped", "later": "Skipped"}
    assert sim.task("later")["reason"] == "SetupFailed"  # skipped though its upstream still runs
    assert deletes(outcome) == [f"Deployment/{DB}", f"Service/{DB}"]
    assert sim.res("r")["cleanupStartedAt"] == "2024-05-01T12:01:00Z"
    assert "SetupFailed" in sim.event_reasons()
    sim.step(at(61))
    r = sim.res("r")
    assert (r["phase"], r["reason"]) == ("CleanedUp", "SetupFailed") and "SetupTimeout" in r["message"]
    succeed(sim, "prep")
    sim.step(at(62))
    assert sim.status["phase"] == "Failed" and sim.status["message"].startswith("task use skipped: SetupFailed")
    assert sim.condition("Succeeded")["reason"] == "SetupFailed"


def test_a_failed_setup_job_is_cleaned_up_and_its_message_reaches_the_cleanup_job() -> None:
    sim = Sim(block(setup={"job": job(), "deployments": [deployment("db")]}))
    sim.step(at(0))
    sim.cluster.finish_job(SETUP_JOB, succeeded=False, message="vm-77 half created")
    outcome = sim.step(at(1))
    r = sim.res("r")
    assert (r["phase"], r["reason"], r["value"]) == ("CleaningUp", "CleanupJobRunning", "vm-77 half created")
    assert "SetupJobFailed" in r["message"] and "BackoffLimitExceeded" in r["message"]
    assert creates(outcome) == ["Job/demo-r-cleanup-1"]
    assert env_of(sim.cluster.get("Job", "demo-r-cleanup-1"))["FLOWRUN_RESOURCE_VALUE"] == "vm-77 half created"
    sim.cluster.finish_job("demo-r-cleanup-1")
    outcome = sim.step(at(2))
    assert deletes(outcome) == [f"Job/{SETUP_JOB}", f"Deployment/{DB}", f"Service/{DB}"]
    sim.step(at(3))
    assert sim.res("r")["phase"] == "CleanedUp" and sim.status["phase"] == "Failed"


def test_a_deployment_that_cannot_progress_fails_setup() -> None:
    sim = Sim(block())
    sim.step(at(0))
    sim.cluster.get("Deployment", DB)["status"] = {
        "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "slow"}
        ]
    }
    sim.step(at(1))
    assert sim.res("r")["phase"] == "CleaningUp" and "DeploymentFailed" in sim.res("r")["message"]


# -- when cleanup starts ------------------------------------------------------------------------

TASK_STATES = {
    "Pending": {"phase": "Pending"},
    "Running": {"phase": "Running", "reason": "PodCreating", "attempts": 1},
    "Succeeded": {"phase": "Succeeded"},
    "Failed": {"phase": "Failed", "reason": "Error"},
    "Skipped": {"phase": "Skipped", "reason": "UpstreamFailed"},
    "Cancelled": {"phase": "Cancelled", "reason": "Cancelled"},
}
SETUP_STATES = {
    "Pending": {"phase": "Pending"},
    "SettingUp": {"phase": "SettingUp", "setupStartedAt": "2024-05-01T12:00:00Z"},
    "Ready": {"phase": "Ready", "setupStartedAt": "2024-05-01T12:00:00Z", "value": "v"},
    "SetupFailed": {"phase": "SetupFailed", "reason": "SetupJobFailed", "setupStartedAt": "2024-05-01T12:00:00Z"},
}


@pytest.mark.parametrize("setup", list(SETUP_STATES))
@pytest.mark.parametrize("first", list(TASK_STATES))
@pytest.mark.parametrize("second", list(TASK_STATES))
def test_cleanup_starts_once_every_task_of_a_started_block_is_terminal(setup: str, first: str, second: str) -> None:
    spec = flow(
        task("one", resources=["r"]), task("two", resources=["r"]), resources=[resource("r", cleanup={"job": job()})]
    )
    status = {"tasks": {"one": TASK_STATES[first], "two": TASK_STATES[second]}, "resources": {"r": SETUP_STATES[setup]}}
    cluster = FakeCluster()
    if setup != "Pending":  # what setup created exists (a Ready block missing it is broken)
        for api_version, kind in (("apps/v1", "Deployment"), ("v1", "Service")):
            cluster.add_other({"apiVersion": api_version, "kind": kind, "metadata": {"name": DB, "labels": LABELS}})
    outcome = decide(RunInput(RUN, NS, UID, spec, status=status, created_at=T0), cluster.observed(), at(1))
    # A failed setup skips the pending tasks of the block; Pending tasks otherwise wait.
    terminal_after = [s != "Running" and (s != "Pending" or setup == "SetupFailed") for s in (first, second)]
    expected = setup != "Pending" and all(terminal_after)
    assert (outcome.status["resources"]["r"]["phase"] == "CleaningUp") == expected
    assert ("Job/demo-r-cleanup-1" in creates(outcome)) == expected


def test_tasks_outside_the_block_do_not_wait_for_cleanup() -> None:
    spec = flow(task("use", resources=["r"]), task("write", "use"), resources=[resource("r", cleanup={"job": job()})])
    sim = ready_sim(spec)
    succeed(sim, "use")
    outcome = sim.step(at(2))
    assert creates(outcome) == ["Pod/demo-write-1", "Job/demo-r-cleanup-1"]


# -- cleanup ------------------------------------------------------------------------------------


def test_cleanup_runs_the_job_then_deletes_everything_and_waits_until_it_is_gone() -> None:
    sim = ready_sim(cluster=FakeCluster(graceful=True))
    succeed(sim, "use")
    outcome = sim.step(at(2))
    assert creates(outcome) == ["Job/demo-r-cleanup-1"] and deletes(outcome) == []
    job_ = sim.cluster.get("Job", "demo-r-cleanup-1")
    assert env_of(job_)["FLOWRUN_RESOURCE_VALUE"] == f"{DB}.{NS}.svc"
    assert sim.status["phase"] == "Running" and sim.condition("Succeeded")["reason"] == "CleaningUp"
    sim.cluster.finish_job("demo-r-cleanup-1")
    assert deletes(sim.step(at(3))) == [f"Deployment/{DB}", f"Service/{DB}"]
    assert sim.res("r")["phase"] == "CleaningUp" and deletes(sim.step(at(4))) == []  # marked, not gone yet
    sim.cluster.collect()
    outcome = sim.step(at(5))
    assert sim.res("r")["phase"] == "CleanedUp" and sim.res("r")["cleanedUpAt"] == "2024-05-01T12:00:05Z"
    assert outcome.done and sim.status["phase"] == "Succeeded"
    assert sim.condition("ResourcesReleased")["status"] == "True"
    assert [
        e for e in sim.event_reasons() if e in ("SetupStarted", "ResourceReady", "CleanupStarted", "CleanedUp")
    ] == ["SetupStarted", "ResourceReady", "CleanupStarted", "CleanedUp"]


def test_cleanup_without_a_cleanup_job_deletes_right_away() -> None:
    sim = ready_sim(block(cleanup={}))
    succeed(sim, "use")
    assert deletes(sim.step(at(2))) == [f"Deployment/{DB}", f"Service/{DB}"]


def test_cleanup_job_retries_then_cleanup_fails_and_fails_the_run() -> None:
    sim = ready_sim(block(cleanup={"job": job(), "retries": 1, "timeoutSeconds": 600}))
    succeed(sim, "use")
    sim.step(at(2))
    sim.cluster.finish_job("demo-r-cleanup-1", succeeded=False)
    outcome = sim.step(at(3))
    assert sim.res("r")["reason"] == "CleanupJobBackoff" and outcome.requeue_after == 10
    assert "CleanupRetrying" in sim.event_reasons()
    assert creates(sim.step(at(12))) == []
    assert creates(sim.step(at(13))) == ["Job/demo-r-cleanup-2"]
    sim.cluster.finish_job("demo-r-cleanup-2", succeeded=False)
    outcome = sim.step(at(14))
    assert deletes(outcome) == [f"Deployment/{DB}", f"Service/{DB}"]  # what setup made goes anyway
    sim.step(at(15))
    r = sim.res("r")
    assert (r["phase"], r["reason"], r["cleanupAttempts"]) == ("CleanupFailed", "CleanupJobFailed", 2)
    assert sim.status["phase"] == "Failed" and sim.status["message"].startswith("cleanup of resource r failed")
    released = sim.condition("ResourcesReleased")
    assert (released["status"], released["reason"]) == ("False", "CleanupFailed")
    assert ("Warning", "CleanupFailed") in [(e.type, e.reason) for e in sim.events]


def test_cleanup_timeout_fails_cleanup_and_deletes_what_it_can() -> None:
    sim = ready_sim(block(cleanup={"job": job(), "timeoutSeconds": 30}))
    succeed(sim, "use")
    assert sim.step(at(10)).requeue_after == 30
    outcome = sim.step(at(40))
    assert (sim.res("r")["phase"], sim.res("r")["reason"]) == ("CleanupFailed", "CleanupTimeout")
    assert deletes(outcome) == [f"Deployment/{DB}", f"Service/{DB}"]
    assert outcome.done and sim.status["phase"] == "Failed"


def test_cleanup_timeout_during_backoff_says_which_attempt_failed() -> None:
    # A cleanup job that fails, then the timeout passes before the retry: the error names the
    # failed attempt, not only the timeout (it is what the CleanupBlocked event shows).
    sim = ready_sim(block(cleanup={"job": job(), "retries": 1, "timeoutSeconds": 5}))
    succeed(sim, "use")
    sim.step(at(2))
    sim.cluster.finish_job("demo-r-cleanup-1", succeeded=False)
    sim.step(at(3))
    assert sim.res("r")["reason"] == "CleanupJobBackoff"
    sim.step(at(8))
    r = sim.res("r")
    assert (r["phase"], r["reason"]) == ("CleanupFailed", "CleanupTimeout")
    assert r["cleanupError"].startswith("cleanup job attempt 1 failed ("), r["cleanupError"]
    assert r["cleanupError"].endswith("cleanup did not finish within timeoutSeconds=5")
    assert r["message"] == r["cleanupError"]


def test_run_deadline_never_cuts_cleanup_short() -> None:
    spec = flow(
        task("use", resources=["r"]), resources=[resource("r", cleanup={"job": job()})], activeDeadlineSeconds=30
    )
    sim = ready_sim(spec)
    sim.cluster.run_pod(pod_name("use"))
    outcome = sim.step(at(30))
    assert deletes(outcome) == ["Pod/demo-use-1"]
    assert creates(outcome) == ["Job/demo-r-cleanup-1"]
    sim.cluster.finish_job("demo-r-cleanup-1")
    sim.step(at(100))
    sim.step(at(101))
    assert sim.res("r")["phase"] == "CleanedUp" and sim.status["phase"] == "Failed"


# -- cancel and deletion around blocks ----------------------------------------------------------


def test_cancel_during_setup_stops_the_setup_job_then_cleans_up() -> None:
    sim = Sim(block(setup={"job": job()}), cluster=FakeCluster(graceful=True))
    sim.step(at(0))
    sim.cluster.start_job(SETUP_JOB)
    sim.set_spec(cancel=True)
    outcome = sim.step(at(1))
    assert deletes(outcome) == [f"Job/{SETUP_JOB}"] and creates(outcome) == []
    assert (sim.res("r")["phase"], sim.res("r")["reason"]) == ("CleaningUp", "StoppingSetup")
    assert sim.status["phase"] == "Running" and sim.condition("Succeeded")["reason"] == "Cancelling"
    sim.cluster.collect()  # the Job and its pod are gone
    assert creates(sim.step(at(2))) == ["Job/demo-r-cleanup-1"]
    sim.cluster.finish_job("demo-r-cleanup-1")
    sim.step(at(3))
    assert sim.res("r")["phase"] == "CleanedUp" and sim.status["phase"] == "Cancelled"


def test_cancel_during_cleanup_lets_cleanup_finish() -> None:
    sim = ready_sim(
        flow(task("use", resources=["r"]), task("after", "use"), resources=[resource("r", cleanup={"job": job()})])
    )
    succeed(sim, "use")
    sim.step(at(2))
    sim.cluster.run_pod(pod_name("after"))
    sim.set_spec(cancel=True)
    outcome = sim.step(at(3))
    assert deletes(outcome) == ["Pod/demo-after-1"] and sim.res("r")["phase"] == "CleaningUp"
    assert not outcome.done
    sim.cluster.finish_job("demo-r-cleanup-1")
    sim.step(at(4))
    sim.step(at(5))
    assert sim.res("r")["phase"] == "CleanedUp" and sim.status["phase"] == "Cancelled"


def test_a_run_cancelled_while_only_its_cleanup_runs_ends_and_stays_cancelled() -> None:
    """Its tasks all succeeded; the cancel came before the run finished (its cleanup ran)."""
    sim = ready_sim(flow(task("use", resources=["r"]), resources=[resource("r", cleanup={"job": job()})]))
    succeed(sim, "use")
    sim.step(at(2))
    sim.set_spec(cancel=True)
    sim.cluster.finish_job("demo-r-cleanup-1")
    for moment in range(3, 7):
        sim.step(at(moment))
        if sim.res("r")["phase"] == "CleanedUp":
            assert sim.status["phase"] == "Cancelled", moment
    assert sim.status["phase"] == "Cancelled"


def test_a_cancelled_run_whose_cleanup_failed_stays_cancelled_and_shows_the_leak() -> None:
    sim = ready_sim(block(cleanup={"job": job(), "retries": 0}))
    sim.set_spec(cancel=True)
    sim.step(at(2))
    sim.cluster.finish_job("demo-r-cleanup-1", succeeded=False)
    sim.step(at(3))
    sim.step(at(4))
    assert sim.res("r")["phase"] == "CleanupFailed" and sim.status["phase"] == "Cancelled"
    released = sim.condition("ResourcesReleased")
    assert (released["status"], released["reason"]) == ("False", "CleanupFailed")
    assert "cleanup of resource r failed" in sim.status["message"]


def test_ready_waits_for_the_rollout_to_finish() -> None:
    sim = Sim(block())
    sim.step(at(0))
    sim.cluster.make_available(DB)
    sim.cluster.get("Deployment", DB)["status"]["updatedReplicas"] = 0  # old pods still serve
    sim.step(at(1))
    assert sim.res("r")["phase"] == "SettingUp"


def test_cancel_while_a_block_is_ready_cancels_its_tasks_and_cleans_up() -> None:
    sim = ready_sim()
    sim.cluster.run_pod(pod_name("use"))
    sim.set_spec(cancel=True)
    outcome = sim.step(at(2))
    assert deletes(outcome) == ["Pod/demo-use-1"] and creates(outcome) == ["Job/demo-r-cleanup-1"]


def test_deletion_cleans_up_every_started_block_before_the_finalizer_goes() -> None:
    sim = ready_sim(cluster=FakeCluster(graceful=True))
    sim.cluster.run_pod(pod_name("use"))
    sim.update(deleting=True)
    outcome = sim.step(at(2))
    assert deletes(outcome) == ["Pod/demo-use-1"] and creates(outcome) == ["Job/demo-r-cleanup-1"]
    assert not outcome.finalizer_releasable
    sim.cluster.collect()
    sim.cluster.finish_job("demo-r-cleanup-1")
    sim.step(at(3))
    sim.cluster.collect()
    outcome = sim.step(at(4))
    assert sim.res("r")["phase"] == "CleanedUp" and outcome.finalizer_releasable


def test_a_failed_cleanup_keeps_the_finalizer_until_skip_cleanup() -> None:
    sim = ready_sim(block(cleanup={"job": job(), "retries": 0}))
    sim.update(deleting=True)
    sim.step(at(2))
    sim.cluster.finish_job("demo-r-cleanup-1", succeeded=False)
    sim.step(at(3))
    outcome = sim.step(at(4))
    assert sim.res("r")["phase"] == "CleanupFailed" and not outcome.finalizer_releasable
    assert sim.condition("ResourcesReleased")["reason"] == "CleanupBlocked"
    assert "CleanupBlocked" in sim.event_reasons()
    assert sim.step(at(5)).events == ()
    sim.update(skip_cleanup=True)
    assert sim.step(at(6)).finalizer_releasable


def test_skip_cleanup_releases_the_finalizer_at_once() -> None:
    sim = ready_sim()
    sim.update(deleting=True, skip_cleanup=True)
    assert sim.step(at(2)).finalizer_releasable


# -- nested blocks ------------------------------------------------------------------------------


def test_nested_blocks_set_up_outside_in_and_clean_up_inside_out() -> None:
    spec = flow(
        task("load", resources=["cluster"]),
        task("query", "load", resources=["cluster", "db"]),
        resources=[
            resource("cluster", setup={"deployments": [deployment("sched")]}),
            resource("db", setup={"job": job("--on=$(resources.cluster.value)")}, cleanup={"job": job("drop")}),
        ],
    )
    sim = Sim(spec)
    assert creates(sim.step(at(0))) == ["Deployment/demo-cluster-sched", "Service/demo-cluster-sched"]
    sim.cluster.make_available("demo-cluster-sched")
    assert creates(sim.step(at(1))) == ["Pod/demo-load-1"]  # db is not needed before query could run
    succeed(sim, "load")
    assert creates(sim.step(at(2))) == ["Job/demo-db-setup"]
    args = sim.cluster.get("Job", "demo-db-setup")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == [f"--on=demo-cluster-sched.{NS}.svc"]
    sim.cluster.finish_job("demo-db-setup", message="db-1")
    assert creates(sim.step(at(3))) == ["Pod/demo-query-1"]
    env = env_of(sim.cluster.get("Pod", "demo-query-1"))
    assert env == {"FLOWRUN_RESOURCE_CLUSTER": f"demo-cluster-sched.{NS}.svc", "FLOWRUN_RESOURCE_DB": "db-1"}
    succeed(sim, "query")
    outcome = sim.step(at(4))
    assert creates(outcome) == ["Job/demo-db-cleanup-1"] and sim.res("cluster")["phase"] == "Ready"
    sim.cluster.finish_job("demo-db-cleanup-1")
    assert deletes(sim.step(at(5))) == ["Job/demo-db-setup"]
    assert sim.res("cluster")["phase"] == "Ready"  # still used by db's cleanup until db is gone
    outcome = sim.step(at(6))
    assert sim.res("db")["phase"] == "CleanedUp" and sim.res("cluster")["phase"] == "CleaningUp"
    assert deletes(outcome) == ["Deployment/demo-cluster-sched", "Service/demo-cluster-sched"]
    sim.step(at(7))
    assert sim.res("cluster")["phase"] == "CleanedUp" and sim.status["phase"] == "Succeeded"


def test_a_block_whose_inner_block_is_not_needed_is_still_cleaned_up() -> None:
    spec = flow(
        task("load", resources=["cluster"]),
        task("query", "load", resources=["db"]),
        resources=[
            resource("cluster"),
            resource("db", setup={"job": job("--on=$(resources.cluster.value)")}),
        ],
    )
    sim = Sim(spec)
    sim.step(at(0))
    sim.cluster.make_available("demo-cluster-db")
    sim.step(at(1))
    sim.cluster.set_pod(pod_name("load"), "Failed")
    sim.step(at(2))
    sim.step(at(3))
    assert sim.res("db")["reason"] == "NotNeeded"
    assert sim.res("cluster")["phase"] == "CleanedUp" and sim.status["phase"] == "Failed"


# -- restart safety -----------------------------------------------------------------------------


def test_restart_at_every_stage_of_a_block_never_duplicates_a_child() -> None:
    sim = Sim(
        flow(
            task("use", resources=["r"]),
            task("after", "use"),
            resources=[resource("r", setup={"job": job(), "deployments": [deployment("db")]}, cleanup={"job": job()})],
        )
    )
    sim.step(at(0))
    assert_restart_safe(sim, at(0))
    sim.cluster.finish_job(SETUP_JOB, message="v")
    sim.cluster.make_available(DB)
    assert_restart_safe(sim, at(1))
    sim.step(at(1))
    assert_restart_safe(sim, at(2))
    succeed(sim, "use")
    sim.step(at(2))
    assert_restart_safe(sim, at(3))
    sim.cluster.finish_job("demo-r-cleanup-1", succeeded=False)
    sim.step(at(3))
    sim.step(at(13))
    assert_restart_safe(sim, at(14))
    assert sim.cluster.names("Job") == ["demo-r-cleanup-1", "demo-r-cleanup-2", SETUP_JOB]


def test_a_lost_status_with_a_ready_block_recovers_its_value() -> None:
    sim = ready_sim()
    fresh = decide(RunInput(RUN, NS, UID, sim.run.spec, status={}, created_at=T0), sim.cluster.observed(), at(5))
    assert fresh.status["resources"]["r"]["phase"] == "Ready"
    assert fresh.status["resources"]["r"]["value"] == f"{DB}.{NS}.svc"


def test_deletion_during_setup_stops_setup_and_cleans_up() -> None:
    sim = Sim(block(setup={"job": job(), "deployments": [deployment("db")]}), cluster=FakeCluster(graceful=True))
    sim.step(at(0))
    sim.cluster.start_job(SETUP_JOB)
    sim.update(deleting=True)
    outcome = sim.step(at(1))
    assert deletes(outcome) == [f"Job/{SETUP_JOB}"] and not outcome.finalizer_releasable
    assert sim.condition("Succeeded")["reason"] == "Deleting"
    sim.cluster.collect()
    assert creates(sim.step(at(2))) == ["Job/demo-r-cleanup-1"]
    sim.cluster.finish_job("demo-r-cleanup-1")
    assert deletes(sim.step(at(3))) == [f"Deployment/{DB}", f"Service/{DB}"]
    sim.cluster.collect()
    outcome = sim.step(at(4))
    assert sim.res("r")["phase"] == "CleanedUp" and outcome.finalizer_releasable
    assert sim.status["phase"] == "Cancelled" and sim.status["message"] == "stopped: the FlowRun is being deleted"


def test_deletion_during_cleanup_waits_for_cleanup() -> None:
    sim = ready_sim(
        flow(task("use", resources=["r"]), task("after", "use"), resources=[resource("r", cleanup={"job": job()})])
    )
    succeed(sim, "use")
    sim.step(at(2))
    sim.update(deleting=True)
    outcome = sim.step(at(3))
    assert not outcome.finalizer_releasable and sim.res("r")["phase"] == "CleaningUp"
    sim.cluster.finish_job("demo-r-cleanup-1")
    sim.step(at(4))
    outcome = sim.step(at(5))
    assert sim.res("r")["phase"] == "CleanedUp" and outcome.finalizer_releasable


def test_the_dry_run_covers_every_child_with_placeholders() -> None:
    spec = flow(
        task("size"),
        task("use", "size", resources=["r"], args=["$(resources.r.value)"]),
        resources=[
            resource(
                "r",
                runAfter=["size"],
                setup={
                    "job": job("$(tasks.size.result)"),
                    "deployments": [deployment("db", "$(tasks.size.result)")],
                    "manifests": [CONFIG],
                },
                cleanup={"job": job()},
            )
        ],
    )
    validate = Sim(spec).step(at(0)).actions[0]
    assert isinstance(validate, ValidateObjects)
    dry = validate.manifests
    assert [f"{m['kind']}/{m['metadata']['name']}" for m in dry] == [
        "Pod/demo-size-1",
        "Pod/demo-use-1",
        f"Job/{SETUP_JOB}",
        f"Deployment/{DB}",
        f"Service/{DB}",
        "ConfigMap/r-config",
        "Job/demo-r-cleanup-1",
    ]
    assert dry[1]["spec"]["containers"][0]["args"] == ["flowrun-dry-run-placeholder"]
    assert dry[3]["spec"]["replicas"] == 0  # a referenced count that is not known yet
    assert validate.fields == (
        "spec.tasks[0].template",
        "spec.tasks[1].template",
        "spec.resources[0].setup.job.template",
        "spec.resources[0].setup.deployments[0]",
        "spec.resources[0].setup.deployments[0]",
        "spec.resources[0].setup.manifests[0]",
        "spec.resources[0].cleanup.job.template",
    )


def test_requeue_is_only_asked_for_time_based_decisions() -> None:
    sim = Sim(block(cleanup={}))
    assert sim.step(at(0)).requeue_after == 600  # the setup timeout
    sim.cluster.make_available(DB)
    assert sim.step(at(1)).requeue_after is None  # Ready, task running without a deadline
