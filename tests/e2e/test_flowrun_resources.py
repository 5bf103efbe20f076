"""Resource blocks end to end (docs/semantics.md "Resource blocks", docs/api.md): setup,
the value handed to tasks, cleanup whatever happens (failed task, failed or stuck setup, deletion
at every stage, a cleanup that keeps failing, an operator killed mid-way), nested blocks and
setup manifests, on the dev cluster with the real operator."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.pytest_plugin import wait_for
from flowrun import api
from flowrun.timestamps import parse_time
from tests.e2e.helpers import (
    REPO,
    FlowRuns,
    Operator,
    StartOperator,
    Watch,
    WatchRecorder,
    deployment,
    job,
    main_container,
    res,
    sim_task,
    task,
)

pytestmark = pytest.mark.e2e

# ---------------------------------------------------------------------------------------------
# Helpers


def block_is(resource: str, key: str, value: str) -> Callable[[dict[str, Any]], bool]:
    """A wait_status check: status.resources.<resource>.<key> == value."""
    return lambda status: ((status.get("resources") or {}).get(resource) or {}).get(key) == value


def task_is(name: str, key: str, value: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: ((status.get("tasks") or {}).get(name) or {}).get(key) == value


def at(value: str | None) -> datetime:
    moment = parse_time(value)
    assert moment is not None, f"not a timestamp: {value!r}"
    return moment


def setup_children(flowruns: FlowRuns, uid: str, resource: str | None = None) -> dict[str, list[str]]:
    """What setup created for a run (or one of its blocks) that still exists, by kind."""
    labels = {api.LABEL_ROLE: api.ROLE_SETUP}
    if resource is not None:
        labels[api.LABEL_RESOURCE] = resource
    return flowruns.children(uid, labels)


def env_of(container: Any) -> dict[str, str]:
    """A container's env as name -> value, from a typed object or a raw dict."""
    items = container.env if hasattr(container, "env") else container.get("env")
    result = {}
    for item in items or []:
        name, value = (item.name, item.value) if hasattr(item, "name") else (item["name"], item.get("value"))
        result[name] = value
    return result


def job_condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind and c["status"] == "True"), None)


def job_finished(obj: dict[str, Any], kind: str = "Complete") -> bool:
    return job_condition(obj, kind) is not None


def jobs_with_role(jobs: WatchRecorder, role: str) -> list[dict[str, Any]]:
    return [o for k, o in jobs.snapshot() if k == "ADDED" and o["metadata"]["labels"].get(api.LABEL_ROLE) == role]


def live_job(flowruns: FlowRuns, name: str) -> client.V1Job | None:
    try:
        return client.BatchV1Api(flowruns.api_client).read_namespaced_job(name, flowruns.namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def job_succeeded(flowruns: FlowRuns, name: str) -> bool:
    found = live_job(flowruns, name)
    return found is not None and found.status is not None and found.status.succeeded == 1


def job_has_running_pod(flowruns: FlowRuns, job_name: str) -> bool:
    pods = (
        client.CoreV1Api(flowruns.api_client)
        .list_namespaced_pod(flowruns.namespace, label_selector=f"job-name={job_name}")
        .items
    )
    return any(p.status.phase == "Running" for p in pods)


def deleted_object(recorder: WatchRecorder, name: str) -> dict[str, Any]:
    """The last state of an object, as its DELETED event carried it."""
    try:
        return wait_for(f"the DELETED event of {name}", lambda: recorder.first(name, "DELETED"), timeout=10)
    except AssertionError:
        seen = [(k, o["metadata"]["name"]) for k, o in recorder.snapshot()]
        raise AssertionError(f"no DELETED event for {name}: {seen}") from None


def load_example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((REPO / "examples" / name).read_text())
    body.pop("apiVersion")
    body.pop("kind")
    return body


# ---------------------------------------------------------------------------------------------
# The examples


def test_dask_example_tears_the_cluster_down_while_write_csv_runs(
    operator: Operator, flowruns: FlowRuns, namespace: str, watch: Watch
) -> None:
    deployments = watch("deployments")
    services = watch("services")
    body = load_example("dask-flowrun.yaml")
    name = body["metadata"]["name"]
    flowruns.create(body)

    run = flowruns.wait_phase(name, ("Succeeded", "Failed"), timeout=120)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    dask = res(run, "dask")
    scheduler_dns = f"{name}-dask-scheduler.{namespace}.svc"
    assert dask["phase"] == "CleanedUp" and dask["reason"] == "CleanedUp", dask
    assert dask["value"] == f"tcp://{scheduler_dns}:8786"
    assert sorted(dask["objects"]) == sorted(
        [f"Deployment/{name}-dask-scheduler", f"Service/{name}-dask-scheduler", f"Deployment/{name}-dask-workers"]
    )

    # The cluster went as soon as the block's tasks were done: write-csv, outside the block, ran
    # meanwhile and the cluster was gone when it finished (or within a moment of it).
    summarize, write_csv = task(run, "summarize"), task(run, "write-csv")
    assert at(dask["cleanupStartedAt"]) >= at(summarize["finishedAt"])
    assert at(dask["cleanupStartedAt"]) <= at(write_csv["finishedAt"]), "cleanup waited for write-csv"
    assert at(dask["cleanedUpAt"]) <= at(write_csv["finishedAt"]) + timedelta(seconds=3), (dask, write_csv)
    assert at(write_csv["startedAt"]) <= at(dask["cleanedUpAt"]), "write-csv waited for the cleanup"
    assert not setup_children(flowruns, run["metadata"]["uid"]), "the Dask cluster outlived its block"
    for deployment_name in (f"{name}-dask-scheduler", f"{name}-dask-workers"):
        deleted_object(deployments, deployment_name)
    deleted_object(services, f"{name}-dask-scheduler")

    # The workers Deployment had replicas = $(params.n-workers) and found the scheduler by DNS.
    workers = deployments.first(f"{name}-dask-workers")
    assert workers is not None
    assert workers["spec"]["replicas"] == 2
    assert any(
        o["metadata"]["name"] == workers["metadata"]["name"] and (o.get("status") or {}).get("availableReplicas") == 2
        for _, o in deployments.snapshot()
    ), "the two workers never ran"
    worker = workers["spec"]["template"]["spec"]["containers"][0]
    assert worker["args"][:3] == ["dask", "worker", f"tcp://{scheduler_dns}:8786"]
    # The image is a param of the example: substituted like the other references.
    assert worker["image"] == {p["name"]: p["value"] for p in body["spec"]["params"]}["image"]
    scheduler_service = services.first(f"{name}-dask-scheduler")
    assert scheduler_service is not None and scheduler_service["spec"]["ports"][0]["port"] == 8786

    # Results flow: load-data -> summarize -> write-csv (with the out-path param).
    assert task(run, "load-data")["result"] == "flowrun-data"
    summary = next(t for t in body["spec"]["tasks"] if t["name"] == "summarize")["template"]["metadata"]["annotations"][
        "sim.flowrun.dev/message"
    ]
    assert summarize["result"] == summary
    load_pod = main_container(flowruns.read_pod(f"{name}-load-data-1"))
    assert env_of(load_pod)["FLOWRUN_RESOURCE_DASK"] == dask["value"]
    assert f'Client("{dask["value"]}"' in load_pod.args[0]
    summarize_args = main_container(flowruns.read_pod(f"{name}-summarize-1")).args
    assert 'client.get_dataset("flowrun-data")' in summarize_args[0], summarize_args
    write_container = main_container(flowruns.read_pod(f"{name}-write-csv-1"))
    assert write_container.args[1:] == [summary, "/data/summary.csv"]
    assert "FLOWRUN_RESOURCE_DASK" not in env_of(write_container), "write-csv is outside the block"
    assert write_csv["result"] == "/data/summary.csv"
    flowruns.delete_and_check_nothing_leaked(name)


def test_vm_example_setup_result_is_the_value_of_tasks_and_cleanup(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    jobs = watch("jobs")
    body = load_example("vm-flowrun.yaml")
    name = body["metadata"]["name"]
    created = flowruns.create(body)
    uid = created["metadata"]["uid"]

    run = flowruns.wait_phase(name, ("Succeeded", "Failed"), timeout=90)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    vm = res(run, "vm")
    assert vm["phase"] == "CleanedUp"
    assert vm["value"] == "vm-0f3a9c"  # the setup job's termination message
    assert at(vm["readyAt"]) <= at(task(run, "run-on-vm")["startedAt"])

    setup_job = jobs.first(f"{name}-vm-setup")
    assert setup_job is not None
    assert f'id="vm-{uid}"' in setup_job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert "(type small)" in setup_job["spec"]["template"]["spec"]["containers"][0]["args"][0]

    pod = main_container(flowruns.read_pod(f"{name}-run-on-vm-1"))
    assert pod.args == ["printf 'ran on %s' 'vm-0f3a9c' | tee /dev/termination-log"]
    assert env_of(pod)["FLOWRUN_RESOURCE_VM"] == "vm-0f3a9c"
    assert task(run, "run-on-vm")["result"] == "ran on vm-0f3a9c"

    cleanup_jobs = jobs_with_role(jobs, api.ROLE_CLEANUP)
    assert [j["metadata"]["name"] for j in cleanup_jobs] == [f"{name}-vm-cleanup-1"]
    cleanup_env = env_of(cleanup_jobs[0]["spec"]["template"]["spec"]["containers"][0])
    assert cleanup_env["FLOWRUN_RESOURCE_VALUE"] == "vm-0f3a9c"
    # The cleanup job ran to completion before the block was called cleaned up, and the setup
    # job is gone; the cleanup job stays (for its logs) until the FlowRun goes.
    cleanup_job = live_job(flowruns, f"{name}-vm-cleanup-1")
    assert cleanup_job is not None and cleanup_job.status.succeeded == 1
    completed = cleanup_job.status.completion_time
    assert completed is not None and completed <= at(vm["cleanedUpAt"]) + timedelta(seconds=1)
    assert live_job(flowruns, f"{name}-vm-setup") is None
    events = flowruns.events_when(name, lambda events: any(e.reason == "CleanedUp" for e in events))
    events = sorted(events, key=lambda e: (e.first_timestamp, e.metadata.creation_timestamp))
    lifecycle = ["SetupStarted", "ResourceReady", "CleanupStarted", "CleanedUp"]
    block_events = [e.reason for e in events if e.reason in lifecycle]
    assert block_events == lifecycle, block_events
    flowruns.delete_and_check_nothing_leaked(name)


# ---------------------------------------------------------------------------------------------
# Cleanup whatever happens


def test_a_failed_task_in_the_block_still_cleans_up(operator: Operator, flowruns: FlowRuns, watch: Watch) -> None:
    jobs = watch("jobs")
    flowruns.create(
        {
            "metadata": {"name": "failing"},
            "spec": {
                "resources": [
                    {
                        "name": "svc",
                        "setup": {"job": job(message="svc-1"), "deployments": [deployment("server", ports=True)]},
                        "cleanup": {"job": job(duration="500ms"), "retries": 0},
                    }
                ],
                "tasks": [
                    sim_task("first", resources=["svc"]),
                    sim_task("second", resources=["svc"], run_after=["first"], outcome="fail"),
                    sim_task("never", run_after=["second"]),
                ],
            },
        }
    )
    run = flowruns.wait_phase("failing", ("Succeeded", "Failed"), timeout=90)
    assert run["status"]["phase"] == "Failed"
    assert task(run, "first")["phase"] == "Succeeded"
    assert (task(run, "second")["phase"], task(run, "second")["reason"]) == ("Failed", "Error")
    assert (task(run, "never")["phase"], task(run, "never")["reason"]) == ("Skipped", "UpstreamFailed")
    svc = res(run, "svc")
    assert (svc["phase"], svc["reason"]) == ("CleanedUp", "CleanedUp"), svc
    assert svc["value"] == "svc-1"
    assert at(svc["cleanupStartedAt"]) >= at(task(run, "second")["finishedAt"])
    assert sorted(svc["objects"]) == sorted(
        ["Job/failing-svc-setup", "Deployment/failing-svc-server", "Service/failing-svc-server"]
    )
    assert not setup_children(flowruns, run["metadata"]["uid"])
    cleanup = live_job(flowruns, "failing-svc-cleanup-1")
    assert cleanup is not None and cleanup.status.succeeded == 1
    assert env_of(cleanup.spec.template.spec.containers[0])["FLOWRUN_RESOURCE_VALUE"] == "svc-1"
    assert [j["metadata"]["name"] for j in jobs_with_role(jobs, api.ROLE_CLEANUP)] == ["failing-svc-cleanup-1"]
    conditions = {c["type"]: c for c in run["status"]["conditions"]}
    assert conditions["ResourcesReleased"]["status"] == "True"
    flowruns.delete_and_check_nothing_leaked("failing")


def test_setup_job_failure_deletes_the_deployment_already_created(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    deployments = watch("deployments")
    flowruns.create(
        {
            "metadata": {"name": "half"},
            "spec": {
                "resources": [
                    {
                        "name": "db",
                        "setup": {
                            "deployments": [deployment("server", ports=True)],
                            "job": job(outcome="fail", duration="1500ms", message="could not migrate"),
                        },
                        "cleanup": {"job": job()},
                    }
                ],
                "tasks": [sim_task("load", resources=["db"]), sim_task("query", resources=["db"], run_after=["load"])],
            },
        }
    )
    # The Deployment exists (and rolls out) while the setup job is still running.
    wait_for("the Deployment to be created", lambda: deployments.first("half-db-server"))
    run = flowruns.wait_phase("half", ("Succeeded", "Failed"), timeout=90)
    assert run["status"]["phase"] == "Failed"
    db = res(run, "db")
    assert (db["phase"], db["reason"]) == ("CleanedUp", "SetupFailed"), db
    assert db["setupError"].startswith("SetupJobFailed: setup job failed"), db
    assert "could not migrate" in db["setupError"]
    assert db.get("readyAt") is None
    for name in ("load", "query"):
        assert (task(run, name)["phase"], task(run, name)["reason"]) == ("Skipped", "SetupFailed"), task(run, name)
        assert task(run, name)["attempts"] == 0
    # The Deployment was created before the setup job failed, and cleanup deleted it.
    server = deployments.first("half-db-server")
    assert server is not None
    created = at(server["metadata"]["creationTimestamp"])
    assert job_succeeded(flowruns, "half-db-cleanup-1"), "the cleanup job runs after a failed setup too"
    assert created <= at(db["cleanupStartedAt"])
    deleted_object(deployments, "half-db-server")
    assert not setup_children(flowruns, run["metadata"]["uid"])
    events = flowruns.events_when("half", lambda events: any(e.reason == "CleanedUp" for e in events))
    reasons = [(e.type, e.reason) for e in events]
    assert ("Warning", "SetupFailed") in reasons and ("Normal", "CleanedUp") in reasons, reasons
    assert {c["type"]: c for c in run["status"]["conditions"]}["Succeeded"]["reason"] == "SetupFailed"
    flowruns.delete_and_check_nothing_leaked("half")


def test_deployment_never_ready_times_out_setup_and_is_cleaned_up(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    deployments = watch("deployments")
    flowruns.create(
        {
            "metadata": {"name": "stuck"},
            "spec": {
                "resources": [
                    {
                        "name": "cache",
                        "setup": {"deployments": [deployment("redis", replicas=2, ready=False)], "timeoutSeconds": 3},
                    }
                ],
                "tasks": [sim_task("use", resources=["cache"]), sim_task("other")],
            },
        }
    )
    run = flowruns.wait_phase("stuck", ("Succeeded", "Failed"), timeout=60)
    assert run["status"]["phase"] == "Failed"
    cache = res(run, "cache")
    assert (cache["phase"], cache["reason"]) == ("CleanedUp", "SetupFailed"), cache
    assert cache["setupError"] == "SetupTimeout: not Ready within timeoutSeconds=3"
    assert cache.get("readyAt") is None
    waited = at(cache["cleanupStartedAt"]) - at(cache["setupStartedAt"])
    assert timedelta(seconds=3) <= waited <= timedelta(seconds=10), waited
    assert (task(run, "use")["phase"], task(run, "use")["reason"]) == ("Skipped", "SetupFailed")
    assert task(run, "other")["phase"] == "Succeeded"
    # The pods ran but were never Ready; the Deployment, its ReplicaSet and pods are all gone.
    assert deployments.first("stuck-cache-redis") is not None
    last = deleted_object(deployments, "stuck-cache-redis")
    assert not (last.get("status") or {}).get("readyReplicas")
    assert not setup_children(flowruns, run["metadata"]["uid"])
    flowruns.delete_and_check_nothing_leaked("stuck")


def test_a_block_waits_for_a_ready_endpoint_of_its_service_and_says_so(operator: Operator, flowruns: FlowRuns) -> None:
    # The Service is made to select no pod while the setup Job still runs: when the Job completes,
    # the Deployment is Available but its Service would refuse connections.
    flowruns.create(
        {
            "metadata": {"name": "unserved"},
            "spec": {
                "resources": [
                    {
                        "name": "r",
                        "setup": {"job": job(duration="6s"), "deployments": [deployment("web", ports=True)]},
                        "value": "ready",
                    }
                ],
                "tasks": [sim_task("use", resources=["r"])],
            },
        }
    )
    core, apps = client.CoreV1Api(flowruns.api_client), client.AppsV1Api(flowruns.api_client)

    def service() -> client.V1Service | None:
        try:
            return core.read_namespaced_service("unserved-r-web", flowruns.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    wait_for("the block's Service", service, timeout=30)
    nowhere = {"spec": {"selector": {"flowrun.dev/nowhere": "true"}}}  # merged: it selects no pod now
    core.patch_namespaced_service("unserved-r-web", flowruns.namespace, nowhere)
    waiting = "waiting for ready endpoints of Service unserved-r-web"
    run = flowruns.wait_status("unserved", "the block waiting for endpoints", block_is("r", "message", waiting))
    assert (res(run, "r")["phase"], res(run, "r")["reason"]) == ("SettingUp", "SetupJobComplete"), res(run, "r")
    deployment_status = apps.read_namespaced_deployment("unserved-r-web", flowruns.namespace).status
    assert deployment_status.available_replicas == 1, "the Deployment is Available: only the Service is waited for"
    assert task(run, "use")["reason"] == "WaitingForResources"
    assert not flowruns.children(run["metadata"]["uid"], {api.LABEL_ROLE: api.ROLE_TASK}), "a task started"

    restored = datetime.now(UTC)
    core.patch_namespaced_service(
        "unserved-r-web", flowruns.namespace, {"spec": {"selector": {"flowrun.dev/nowhere": None}}}
    )
    run = flowruns.wait_phase("unserved", ("Succeeded", "Failed"), timeout=60)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    r = res(run, "r")
    assert r["phase"] == "CleanedUp" and r.get("setupError") is None, r
    # Ready once the Service selected the (KWOK) pod again, whose endpoint is ready.
    assert at(r["readyAt"]) >= restored.replace(microsecond=0), (r["readyAt"], restored)
    flowruns.delete_and_check_nothing_leaked("unserved")


# ---------------------------------------------------------------------------------------------
# Deletion: the finalizer holds the FlowRun until cleanup has finished


def _deletable_run(name: str, *, setup: str = "300ms", work: str = "300ms", cleanup: str = "300ms") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "resources": [
                {
                    "name": "env",
                    "setup": {"job": job(duration=setup, message="env-7"), "deployments": [deployment("api")]},
                    "cleanup": {"job": job(duration=cleanup)},
                }
            ],
            "tasks": [sim_task("work", resources=["env"], duration=work), sim_task("report", run_after=["work"])],
        },
    }


def _check_cleaned_up_before_gone(flowrun_events: WatchRecorder, jobs: WatchRecorder, name: str) -> dict[str, Any]:
    """The FlowRun's last state (its DELETED event): every block cleaned up; and the one cleanup
    job ran to completion."""
    final = deleted_object(flowrun_events, name)
    env = final["status"]["resources"]["env"]
    assert env["phase"] == "CleanedUp", env
    cleanup_jobs = jobs_with_role(jobs, api.ROLE_CLEANUP)
    assert [j["metadata"]["name"] for j in cleanup_jobs] == [f"{name}-env-cleanup-1"]
    assert any(
        k == "MODIFIED" and o["metadata"]["name"] == f"{name}-env-cleanup-1" and job_finished(o)
        for k, o in jobs.snapshot()
    ), "the cleanup job never completed"
    return final


def test_delete_while_setting_up_stops_setup_and_cleans_up(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    jobs, flowrun_events = watch("jobs"), watch("flowruns")
    flowruns.create(_deletable_run("del-setup", setup="60s"))
    flowruns.wait_status("del-setup", "setting up", block_is("env", "phase", "SettingUp"))
    wait_for("the setup pod to run", lambda: job_has_running_pod(flowruns, "del-setup-env-setup"))
    started = time.monotonic()
    flowruns.delete_and_check_nothing_leaked("del-setup", timeout=45)
    assert time.monotonic() - started < 40, "deletion waited for the 60 s setup job"

    final = _check_cleaned_up_before_gone(flowrun_events, jobs, "del-setup")
    assert (final["status"]["tasks"]["work"]["phase"], final["status"]["tasks"]["work"]["reason"]) == (
        "Cancelled",
        "FlowRunDeleted",
    )
    assert final["status"]["tasks"]["work"]["attempts"] == 0
    # The setup job was stopped, never completed.
    assert not any(o["metadata"]["name"] == "del-setup-env-setup" and job_finished(o) for _, o in jobs.snapshot())


def test_delete_while_tasks_run_stops_them_and_cleans_up(operator: Operator, flowruns: FlowRuns, watch: Watch) -> None:
    jobs, flowrun_events = watch("jobs"), watch("flowruns")
    flowruns.create(_deletable_run("del-work", work="60s"))
    flowruns.wait_status("del-work", "work running", task_is("work", "reason", "PodRunning"))
    started = time.monotonic()
    flowruns.delete_and_check_nothing_leaked("del-work", timeout=45)
    assert time.monotonic() - started < 40, "deletion waited for the 60 s task"

    final = _check_cleaned_up_before_gone(flowrun_events, jobs, "del-work")
    tasks = final["status"]["tasks"]
    assert (tasks["work"]["phase"], tasks["work"]["reason"]) == ("Cancelled", "FlowRunDeleted")
    assert (tasks["report"]["phase"], tasks["report"]["reason"]) == ("Cancelled", "FlowRunDeleted")
    assert final["status"]["resources"]["env"]["value"] == "env-7"


def test_delete_while_cleaning_up_lets_cleanup_finish(operator: Operator, flowruns: FlowRuns, watch: Watch) -> None:
    jobs, flowrun_events = watch("jobs"), watch("flowruns")
    flowruns.create(_deletable_run("del-clean", cleanup="4s"))
    flowruns.wait_status("del-clean", "cleanup job running", block_is("env", "reason", "CleanupJobRunning"))
    wait_for("the cleanup pod to run", lambda: job_has_running_pod(flowruns, "del-clean-env-cleanup-1"))
    flowruns.delete_and_check_nothing_leaked("del-clean", timeout=45)

    final = _check_cleaned_up_before_gone(flowrun_events, jobs, "del-clean")
    assert final["status"]["tasks"]["work"]["phase"] == "Succeeded"
    env = final["status"]["resources"]["env"]
    # The cleanup job ran its full 4 s although the FlowRun was deleted meanwhile.
    assert at(env["cleanedUpAt"]) - at(env["cleanupStartedAt"]) >= timedelta(seconds=3), env


def test_cleanup_that_keeps_failing_holds_the_finalizer_until_skip_cleanup(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    jobs = watch("jobs")
    created = flowruns.create(
        {
            "metadata": {"name": "leaky"},
            "spec": {
                "resources": [
                    {
                        "name": "vm",
                        "setup": {"job": job(message="vm-9"), "deployments": [deployment("agent")]},
                        "cleanup": {
                            "job": job(outcome="fail", message="cloud API down"),
                            "retries": 1,
                            "timeoutSeconds": 5,
                        },
                    }
                ],
                "tasks": [sim_task("work", resources=["vm"], duration="60s")],
            },
        }
    )
    uid = created["metadata"]["uid"]
    flowruns.wait_status("leaky", "work running", task_is("work", "reason", "PodRunning"))
    flowruns.delete("leaky")

    run = flowruns.wait_status("leaky", "cleanup failed", block_is("vm", "phase", "CleanupFailed"), timeout=45)
    assert run["metadata"].get("deletionTimestamp"), "the FlowRun is being deleted"
    assert api.FINALIZER in run["metadata"]["finalizers"]
    vm = res(run, "vm")
    assert vm["reason"] == "CleanupTimeout", vm
    assert "cleanup job attempt 1 failed" in vm["message"] and "timeoutSeconds=5" in vm["message"], vm
    assert (task(run, "work")["phase"], task(run, "work")["reason"]) == ("Cancelled", "FlowRunDeleted")

    def blocked_event() -> Any:
        return next((e for e in flowruns.events("leaky") if e.reason == "CleanupBlocked"), None)

    event = wait_for("a CleanupBlocked event", blocked_event)
    assert event.type == "Warning"
    assert "vm" in event.message and api.SKIP_CLEANUP_ANNOTATION in event.message, event.message
    assert "cleanup job attempt 1 failed" in event.message, event.message
    released = {c["type"]: c for c in run["status"]["conditions"]}["ResourcesReleased"]
    assert (released["status"], released["reason"]) == ("False", "CleanupBlocked")
    # What setup created is deleted even though the cleanup job failed.
    wait_for("the setup objects to be gone", lambda: not setup_children(flowruns, uid))

    # The finalizer holds: no further cleanup job, the FlowRun stays.
    time.sleep(3)  # nothing to wait for: the point is that nothing happens
    still = flowruns.get("leaky")
    assert still is not None and api.FINALIZER in still["metadata"]["finalizers"]
    assert [j["metadata"]["name"] for j in jobs_with_role(jobs, api.ROLE_CLEANUP)] == ["leaky-vm-cleanup-1"]

    flowruns.patch("leaky", {"metadata": {"annotations": {api.SKIP_CLEANUP_ANNOTATION: "true"}}})
    wait_for("the FlowRun to be released", lambda: flowruns.get("leaky") is None, timeout=30)
    wait_for("every child to be garbage-collected", lambda: not flowruns.children(uid), timeout=60)
    # delete_and_check_nothing_leaked cannot be used: the FlowRun is gone already (checked above).


def test_the_finalizer_held_for_a_failing_cleanup_is_a_wait_not_an_error(
    start_operator: StartOperator, flowruns: FlowRuns
) -> None:
    # The wait is by design (a Warning event says why and how to release it): nothing about it is
    # logged as an error, however long it lasts.
    operator = start_operator("--log-format", "json")
    created = flowruns.create(
        {
            "metadata": {"name": "held"},
            "spec": {
                "resources": [
                    {
                        "name": "vm",
                        "setup": {"deployments": [deployment("agent")]},
                        "cleanup": {"job": job(outcome="fail", message="cloud API down"), "retries": 0},
                    }
                ],
                "tasks": [sim_task("work", resources=["vm"], duration="60s")],
            },
        }
    )
    flowruns.wait_status("held", "work running", task_is("work", "reason", "PodRunning"))
    flowruns.delete("held")
    flowruns.wait_status("held", "cleanup failed", block_is("vm", "phase", "CleanupFailed"), timeout=45)
    flowruns.events_when("held", lambda events: any(e.reason == "CleanupFailed" for e in events))
    still = flowruns.get("held")
    assert still is not None and api.FINALIZER in still["metadata"]["finalizers"]
    released = next(c for c in still["status"]["conditions"] if c["type"] == "ResourcesReleased")
    assert api.SKIP_CLEANUP_ANNOTATION in released["message"], released

    flowruns.patch("held", {"metadata": {"annotations": {api.SKIP_CLEANUP_ANNOTATION: "true"}}})
    wait_for("the FlowRun to be released", lambda: flowruns.get("held") is None, timeout=30)
    uid = created["metadata"]["uid"]
    wait_for("every child to be garbage-collected", lambda: not flowruns.children(uid), timeout=60)
    operator.stop()  # every line written
    lines = operator.log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip().startswith("{")]
    errors = [r["message"] for r in records if r["level"] in ("error", "critical")]
    assert errors == [], errors


# ---------------------------------------------------------------------------------------------
# Restart safety


def test_operator_killed_during_setup_and_cleanup_duplicates_nothing(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    jobs, deployments = watch("jobs"), watch("deployments")
    flowruns.create(
        {
            "metadata": {"name": "crash"},
            "spec": {
                "resources": [
                    {
                        "name": "env",
                        "setup": {
                            "job": job(duration="3s", message="env-42"),
                            "deployments": [deployment("api", replicas=2)],
                        },
                        "cleanup": {"job": job(duration="3s"), "retries": 2},
                    }
                ],
                "tasks": [
                    sim_task("work", resources=["env"], args=["$(resources.env.value)"]),
                    sim_task("report", run_after=["work"]),
                ],
            },
        }
    )
    # Killed the moment the setup Job appears: maybe before the Deployment was created and the
    # status written. The setup job then finishes while nobody watches.
    wait_for("the setup job to be created", lambda: jobs.first("crash-env-setup"), interval=0.02)
    operator.kill()
    wait_for("the setup job to complete", lambda: job_succeeded(flowruns, "crash-env-setup"), timeout=30)
    operator.start()

    # Again the moment the cleanup Job appears; it completes while the operator is down.
    wait_for("the cleanup job to be created", lambda: jobs.first("crash-env-cleanup-1"), timeout=60, interval=0.02)
    operator.kill()
    wait_for("the cleanup job to complete", lambda: job_succeeded(flowruns, "crash-env-cleanup-1"), timeout=30)
    operator.start()

    run = flowruns.wait_phase("crash", ("Succeeded", "Failed"), timeout=90)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    env = res(run, "env")
    assert (env["phase"], env["value"], env["cleanupAttempts"]) == ("CleanedUp", "env-42", 1), env
    assert main_container(flowruns.read_pod("crash-work-1")).args == ["env-42"]
    assert task(run, "work")["attempts"] == 1 and task(run, "report")["attempts"] == 1

    uids = jobs.uids_by_name()
    assert set(uids) == {"crash-env-setup", "crash-env-cleanup-1"}, uids
    assert all(len(found) == 1 for found in uids.values()), f"a job was created twice: {uids}"
    per_attempt: dict[str, list[str]] = {}
    for obj in jobs_with_role(jobs, api.ROLE_CLEANUP):
        per_attempt.setdefault(obj["metadata"]["labels"][api.LABEL_ATTEMPT], []).append(obj["metadata"]["uid"])
    assert {a: len(u) for a, u in per_attempt.items()} == {"1": 1}, per_attempt
    assert {n: len(u) for n, u in deployments.uids_by_name().items()} == {"crash-env-api": 1}
    task_pods = (
        client.CoreV1Api(flowruns.api_client)
        .list_namespaced_pod(flowruns.namespace, label_selector=f"{api.LABEL_ROLE}={api.ROLE_TASK}")
        .items
    )
    assert sorted(p.metadata.name for p in task_pods) == ["crash-report-1", "crash-work-1"]
    flowruns.delete_and_check_nothing_leaked("crash")


# ---------------------------------------------------------------------------------------------
# Nesting and manifests


def test_nested_blocks_set_up_outer_first_and_clean_up_inner_first(
    operator: Operator, flowruns: FlowRuns, namespace: str, watch: Watch
) -> None:
    jobs, flowrun_events = watch("jobs"), watch("flowruns")
    flowruns.create(
        {
            "metadata": {"name": "nest"},
            "spec": {
                "resources": [
                    {
                        "name": "cluster",
                        "setup": {"deployments": [deployment("head", ports=True)]},
                        "cleanup": {"job": job()},
                    },
                    {
                        # Inner: its setup needs the outer cluster, so it is set up after and torn down before it.
                        "name": "db",
                        "setup": {"job": job(message="db-1", args=["attach", "$(resources.cluster.services.head)"])},
                        "cleanup": {"job": job(duration="2s")},
                    },
                ],
                "tasks": [
                    sim_task("prep", resources=["cluster"]),
                    sim_task(
                        "work",
                        resources=["cluster", "db"],
                        run_after=["prep"],
                        args=["$(resources.cluster.value)", "$(resources.db.value)"],
                    ),
                    sim_task("report", resources=["cluster"], run_after=["work"], duration="200ms"),
                ],
            },
        }
    )
    run = flowruns.wait_phase("nest", ("Succeeded", "Failed"), timeout=90)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    cluster, db = res(run, "cluster"), res(run, "db")
    head_dns = f"nest-cluster-head.{namespace}.svc"
    assert (cluster["phase"], cluster["value"]) == ("CleanedUp", head_dns)
    assert (db["phase"], db["value"]) == ("CleanedUp", "db-1")

    # Timestamps (whole seconds): db's setup after the cluster is Ready and prep is done (db is
    # only needed by work); db cleaned up once work is done; the cluster after db and report.
    assert at(db["setupStartedAt"]) >= at(cluster["readyAt"])
    assert at(db["setupStartedAt"]) >= at(task(run, "prep")["finishedAt"])
    assert at(db["cleanupStartedAt"]) >= at(task(run, "work")["finishedAt"])
    assert at(cluster["cleanupStartedAt"]) >= at(db["cleanedUpAt"])
    assert at(cluster["cleanupStartedAt"]) >= at(task(run, "report")["finishedAt"])

    # Every status the operator wrote keeps the nesting: db is only set up or in use while the
    # cluster is Ready, and the cluster is only cleaned up once db is.
    statuses = [o.get("status") or {} for _, o in flowrun_events.snapshot() if o["metadata"]["name"] == "nest"]
    phases = [
        (s["resources"]["cluster"]["phase"], s["resources"]["db"]["phase"])
        for s in statuses
        if "cluster" in s.get("resources", {})
    ]
    assert ("Ready", "Ready") in phases
    for outer, inner in phases:
        if inner in ("SettingUp", "Ready", "CleaningUp"):
            assert outer == "Ready", phases
        if outer in ("CleaningUp", "CleanedUp"):
            assert inner == "CleanedUp", phases

    # And the jobs: the cluster's cleanup job was created after db's cleanup job completed.
    db_cleanup_done = jobs.index(lambda k, o: o["metadata"]["name"] == "nest-db-cleanup-1" and job_finished(o))
    cluster_cleanup = jobs.index(lambda k, o: k == "ADDED" and o["metadata"]["name"] == "nest-cluster-cleanup-1")
    assert db_cleanup_done is not None and cluster_cleanup is not None and db_cleanup_done < cluster_cleanup

    db_setup = jobs.first("nest-db-setup")
    assert db_setup is not None and db_setup["spec"]["template"]["spec"]["containers"][0]["args"] == [
        "attach",
        head_dns,
    ]
    work = main_container(flowruns.read_pod("nest-work-1"))
    assert work.args == [head_dns, "db-1"]
    assert env_of(work)["FLOWRUN_RESOURCE_CLUSTER"] == head_dns and env_of(work)["FLOWRUN_RESOURCE_DB"] == "db-1"
    prep_env = env_of(main_container(flowruns.read_pod("nest-prep-1")))
    assert "FLOWRUN_RESOURCE_DB" not in prep_env and prep_env["FLOWRUN_RESOURCE_CLUSTER"] == head_dns
    flowruns.delete_and_check_nothing_leaked("nest")


def test_setup_manifests_are_created_owned_and_deleted(operator: Operator, flowruns: FlowRuns, namespace: str) -> None:
    core = client.CoreV1Api(flowruns.api_client)
    created = flowruns.create(
        {
            "metadata": {"name": "store"},
            "spec": {
                "resources": [
                    {
                        "name": "store",
                        "setup": {
                            "manifests": [
                                {
                                    "apiVersion": "v1",
                                    "kind": "ConfigMap",
                                    "metadata": {"name": "store-settings", "labels": {"team": "data"}},
                                    "data": {"greeting": "hello"},
                                },
                                {
                                    "apiVersion": "v1",
                                    "kind": "PersistentVolumeClaim",
                                    "metadata": {"name": "store-scratch"},
                                    "spec": {
                                        "accessModes": ["ReadWriteOnce"],
                                        "resources": {"requests": {"storage": "1Mi"}},
                                    },
                                },
                            ],
                        },
                        "value": "store-settings",
                    }
                ],
                "tasks": [
                    sim_task("use", resources=["store"], duration="2s", args=["--config", "$(resources.store.value)"]),
                    sim_task("after", run_after=["use"]),
                ],
            },
        }
    )
    uid = created["metadata"]["uid"]
    run = flowruns.wait_status("store", "the block Ready", block_is("store", "phase", "Ready"))
    assert res(run, "store")["value"] == "store-settings"
    config_map = core.read_namespaced_config_map("store-settings", namespace)
    claim = core.read_namespaced_persistent_volume_claim("store-scratch", namespace)
    assert config_map.data == {"greeting": "hello"}
    for obj in (config_map, claim):
        labels = obj.metadata.labels
        assert labels[api.LABEL_UID] == uid and labels[api.LABEL_ROLE] == api.ROLE_SETUP, labels
        assert labels[api.LABEL_RESOURCE] == "store" and labels[api.LABEL_MANAGED_BY] == api.MANAGED_BY, labels
        owners = obj.metadata.owner_references
        assert [(o.kind, o.name, o.uid, o.controller) for o in owners] == [(api.KIND, "store", uid, True)]
    assert config_map.metadata.labels["team"] == "data"

    run = flowruns.wait_phase("store", ("Succeeded", "Failed"), timeout=60)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    store = res(run, "store")
    assert store["phase"] == "CleanedUp"
    assert sorted(store["objects"]) == ["ConfigMap/store-settings", "PersistentVolumeClaim/store-scratch"]
    use = main_container(flowruns.read_pod("store-use-1"))
    assert use.args == ["--config", "store-settings"]
    assert env_of(use)["FLOWRUN_RESOURCE_STORE"] == "store-settings"
    assert not setup_children(flowruns, uid), "the manifests outlived their block"
    names = {i.metadata.name for i in core.list_namespaced_config_map(namespace).items}
    names |= {i.metadata.name for i in core.list_namespaced_persistent_volume_claim(namespace).items}
    assert not names & {"store-settings", "store-scratch"}, names
    flowruns.delete_and_check_nothing_leaked("store")


def test_a_run_whose_children_cannot_be_read_says_why_and_its_deletion_does_not_wait(
    operator: Operator, flowruns: FlowRuns, namespace: str
) -> None:
    # A manifest's kind whose CRD is deleted mid-run: every list of it is refused (404), so the
    # operator cannot tell whether what setup made is gone. It says so, and its deletion goes on
    # without that kind.
    extensions = client.ApiextensionsV1Api(flowruns.api_client)
    group = "e2e.flowrun.dev"
    plural = f"gadgets{hashlib.sha256(namespace.encode()).hexdigest()[:8]}"
    crd_name = f"{plural}.{group}"
    extensions.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": crd_name},
            "spec": {
                "group": group,
                "names": {"plural": plural, "singular": plural[:-1], "kind": "Gadget" + plural[7:]},
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                    }
                ],
            },
        }
    )
    kind = "Gadget" + plural[7:]
    try:

        def established() -> bool:
            conditions = extensions.read_custom_resource_definition(crd_name).status.conditions or []
            return bool(any(c.type == "Established" and c.status == "True" for c in conditions))

        wait_for("the test CRD to be Established", established)
        created = flowruns.create(
            {
                "metadata": {"name": "unreadable"},
                "spec": {
                    "resources": [
                        {
                            "name": "store",
                            "setup": {
                                "manifests": [{"apiVersion": f"{group}/v1", "kind": kind, "metadata": {"name": "g"}}]
                            },
                        }
                    ],
                    "tasks": [sim_task("use", resources=["store"], duration="300s")],
                },
            }
        )
        uid = created["metadata"]["uid"]
        flowruns.wait_status("unreadable", "use running", task_is("use", "reason", "PodRunning"))
        extensions.delete_custom_resource_definition(crd_name)

        def crd_gone() -> bool:
            try:
                extensions.read_custom_resource_definition(crd_name)
            except ApiException as error:
                return bool(error.status == 404)
            return False

        wait_for("the test CRD to be gone", crd_gone)
        flowruns.wait_status(
            "unreadable", "the unreadable children reported", lambda s: "cannot read" in str(s.get("message")), 45
        )
        run = flowruns.get("unreadable") or {}
        message = run["status"]["message"]
        assert message.startswith(f"cannot read the run's children: listing {kind} in {group}/v1: 404"), message
        # Deleted, it never waits on a kind the operator cannot list: what is left of it goes with
        # the FlowRun (its owner reference), and a Warning event says so.
        flowruns.delete("unreadable")
        wait_for("the FlowRun to be released", lambda: flowruns.get("unreadable") is None, timeout=30)
        events = flowruns.events_when(
            "unreadable",
            lambda es: any("garbage collector" in e.message for e in es if e.reason == "ChildrenUnreadable"),
        )
        assert all(e.type == "Warning" for e in events if e.reason == "ChildrenUnreadable")
        wait_for("every child to be garbage-collected", lambda: not flowruns.children(uid), timeout=60)
    finally:
        try:
            extensions.delete_custom_resource_definition(crd_name)
        except ApiException as error:
            if error.status != 404:
                raise
