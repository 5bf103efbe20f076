"""Task flows end to end: the real operator runs FlowRuns of task pods on the dev cluster, whose
KWOK stages finish each pod as its sim.flowrun.dev/* annotations say. Every test ends with the
leak check (delete the run, the finalizer is released, nothing labelled with its UID remains)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from devcluster.pytest_plugin import KubeCluster, wait_for
from flowrun import api
from tests.e2e.helpers import REPO, FlowRuns, Operator, Watch, event_is, main_container, sim_task, task

pytestmark = pytest.mark.e2e


# --- helpers -----------------------------------------------------------------------------------


def run_selector(name: str) -> str:
    return f"{api.LABEL_FLOWRUN}={name}"


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def pod_gone(flowruns: FlowRuns, name: str) -> bool:
    try:
        flowruns.read_pod(name)
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def task_pods(kube_cluster: KubeCluster, namespace: str, run: str) -> list[str]:
    pods = kube_cluster.core().list_namespaced_pod(namespace, label_selector=run_selector(run)).items
    return sorted(p.metadata.name for p in pods)


def wait_task(
    flowruns: FlowRuns, run: str, task: str, phase: str, reason: str | None = None, timeout: float = 60.0
) -> dict[str, Any]:
    def holds(status: dict[str, Any]) -> bool:
        entry = (status.get("tasks") or {}).get(task) or {}
        return entry.get("phase") == phase and (reason is None or entry.get("reason") == reason)

    return flowruns.wait_status(run, f"task {task} {phase} {reason or ''}", holds, timeout=timeout)


def create_refused(flowruns: FlowRuns, body: dict[str, Any]) -> ApiException:
    with pytest.raises(ApiException) as refused:
        flowruns.create(body)
    assert refused.value.status == 422, refused.value.body
    return refused.value


# --- tests -------------------------------------------------------------------------------------


def test_linear_flow_hands_each_result_to_the_next_task(
    operator: Operator, flowruns: FlowRuns, kube_cluster: KubeCluster, namespace: str
) -> None:
    flowruns.create(
        {
            "metadata": {"name": "line"},
            "spec": {
                "tasks": [
                    sim_task("a", message="rows=42"),
                    sim_task("b", run_after=["a"], message="sum=99", args=["--input", "$(tasks.a.result)"]),
                    sim_task("c", run_after=["b"], args=["report", "$(tasks.b.result)", "from $(tasks.a.result)"]),
                ]
            },
        }
    )
    run = flowruns.wait_phase("line", "Succeeded")
    assert [task(run, t)["phase"] for t in "abc"] == ["Succeeded"] * 3
    assert task(run, "a")["result"] == "rows=42"
    assert task(run, "b")["result"] == "sum=99"
    assert run["status"]["progress"] == "3/3"
    # What the pods were really created with, read back from the API server.
    assert main_container(flowruns.read_pod("line-b-1")).args == ["--input", "rows=42"]
    assert main_container(flowruns.read_pod("line-c-1")).args == ["report", "sum=99", "from rows=42"]
    # Sequential: each task started once its upstream had finished.
    assert ts(task(run, "b")["startedAt"]) >= ts(task(run, "a")["finishedAt"])
    assert ts(task(run, "c")["startedAt"]) >= ts(task(run, "b")["finishedAt"])
    flowruns.delete_and_check_nothing_leaked("line")


def test_diamond_joins_only_after_both_branches_finished(
    operator: Operator, flowruns: FlowRuns, kube_cluster: KubeCluster, namespace: str, watch: Watch
) -> None:
    pods = watch("pods", run_selector("dia"))
    flowruns.create(
        {
            "metadata": {"name": "dia"},
            "spec": {
                "tasks": [
                    sim_task("a", duration="300ms"),
                    sim_task("b", run_after=["a"], duration="500ms", message="left"),
                    sim_task("c", run_after=["a"], duration="2s", message="right"),
                    sim_task("d", run_after=["b", "c"], args=["$(tasks.b.result)", "$(tasks.c.result)"]),
                ]
            },
        }
    )
    run = flowruns.wait_phase("dia", "Succeeded")
    b, c, d = (task(run, t) for t in "bcd")
    assert ts(d["startedAt"]) >= max(ts(b["finishedAt"]), ts(c["finishedAt"]))
    d_pod = flowruns.read_pod("dia-d-1")
    for upstream in ("dia-b-1", "dia-c-1"):
        finished = flowruns.read_pod(upstream).status.container_statuses[0].state.terminated.finished_at
        assert d_pod.metadata.creation_timestamp >= finished
    # Exactly, from the order of the watch events: d's pod was created after b's and c's pods
    # had succeeded, and b and c ran side by side (c was created before b finished).
    d_added = pods.index(event_is("ADDED", "dia-d-1"))
    assert d_added > pods.index(event_is("MODIFIED", "dia-b-1", "Succeeded"))
    assert d_added > pods.index(event_is("MODIFIED", "dia-c-1", "Succeeded"))
    assert pods.index(event_is("ADDED", "dia-c-1")) < pods.index(event_is("MODIFIED", "dia-b-1", "Succeeded"))
    assert main_container(d_pod).args == ["left", "right"]
    flowruns.delete_and_check_nothing_leaked("dia")


def test_fan_out_never_runs_more_pods_than_parallelism(operator: Operator, flowruns: FlowRuns, watch: Watch) -> None:
    pods = watch("pods", run_selector("fan"))
    flowruns.create(
        {
            "metadata": {"name": "fan"},
            "spec": {
                "parallelism": 5,
                "tasks": [sim_task(f"part-{i:02d}", duration="1s") for i in range(20)],
            },
        }
    )
    run = flowruns.wait_phase("fan", "Succeeded", timeout=120)
    assert run["status"]["progress"] == "20/20"
    pods.wait("every pod event of the run", lambda w: len(w.uids_by_name()) == 20 and not w.alive(), timeout=30)
    assert pods.gaps == 0, "the pod watch missed events: the peak may have been missed"
    peak = pods.max_alive()
    assert peak <= 5, f"{peak} task pods were alive at once with parallelism 5"
    assert peak == 5, f"at most {peak} task pods ran at once: parallelism 5 was never used"
    assert sorted(pods.uids_by_name()) == [f"fan-part-{i:02d}-1" for i in range(20)]
    assert not pods.duplicated_names()
    flowruns.delete_and_check_nothing_leaked("fan")


def test_a_failed_task_skips_downstream_and_runs_the_failure_handler(
    operator: Operator, flowruns: FlowRuns, kube_cluster: KubeCluster, namespace: str
) -> None:
    flowruns.create(
        {
            "metadata": {"name": "oops"},
            "spec": {
                "tasks": [
                    sim_task(
                        "a", outcome="fail", message="disk full", extra_annotations={"sim.flowrun.dev/exit-code": "3"}
                    ),
                    sim_task("b", run_after=["a"]),
                    sim_task("handler", run_after=["b"], trigger="anyFailed", message="alerted"),
                ]
            },
        }
    )
    run = flowruns.wait_phase("oops", "Failed")
    a, b, handler = (task(run, t) for t in ("a", "b", "handler"))
    assert a["phase"] == "Failed"
    assert a["exitCode"] == 3
    assert "disk full" in a["message"] and "exit code 3" in a["message"], a["message"]
    assert a["attempts"] == 1
    assert (b["phase"], b["reason"]) == ("Skipped", "UpstreamFailed")
    assert handler["phase"] == "Succeeded" and handler["result"] == "alerted"
    assert not pod_gone(flowruns, "oops-handler-1")
    assert pod_gone(flowruns, "oops-b-1"), "a skipped task must not get a pod"
    # The last 100 lines of the failed container's log, at most 4 KiB, are kept in status.
    logs = a["logs"]
    assert logs is not None and len(logs.encode()) <= 4096
    lines = logs.rstrip("\n").splitlines()
    assert lines[-1].endswith("simulated log line 150"), lines[-3:]
    assert len(lines) == 100 and lines[0].endswith("simulated log line 51"), (len(lines), lines[:2])
    succeeded = {c["type"]: c for c in run["status"]["conditions"]}["Succeeded"]
    assert (succeeded["status"], succeeded["reason"]) == ("False", "TasksFailed")
    flowruns.events_when("oops", lambda events: any(e.type == "Warning" and e.reason == "TaskFailed" for e in events))
    flowruns.delete_and_check_nothing_leaked("oops")


def test_retries_until_success_with_a_new_pod_per_attempt(
    operator: Operator, flowruns: FlowRuns, kube_cluster: KubeCluster, namespace: str
) -> None:
    flowruns.create(
        {
            "metadata": {"name": "retry"},
            "spec": {
                "tasks": [
                    sim_task(
                        "flaky",
                        message="finally",
                        extra_annotations={"sim.flowrun.dev/fail-attempts": "2"},
                        retries={"limit": 2, "backoffSeconds": 1},
                    ),
                    sim_task("after", run_after=["flaky"], args=["$(tasks.flaky.result)"]),
                ]
            },
        }
    )
    run = flowruns.wait_phase("retry", ("Succeeded", "Failed"))
    flaky = task(run, "flaky")
    assert run["status"]["phase"] == "Succeeded", (
        f"{flaky} (a task failing on attempt 1 with fail-attempts=2 means the dev cluster does not honour "
        "sim.flowrun.dev/fail-attempts yet: it must be restarted)"
    )
    assert flaky["attempts"] == 3 and flaky["podName"] == "retry-flaky-3"
    assert flaky["result"] == "finally" and flaky["exitCode"] == 0
    assert task_pods(kube_cluster, namespace, "retry") == [
        "retry-after-1",
        "retry-flaky-1",
        "retry-flaky-2",
        "retry-flaky-3",
    ]
    phases = {n: flowruns.read_pod(n).status.phase for n in ("retry-flaky-1", "retry-flaky-2")}
    assert phases == {"retry-flaky-1": "Failed", "retry-flaky-2": "Failed"}
    # The backoff is counted from the failed pod's end: attempt 3 started at least 1s after attempt 2 ended.
    failed_2 = flowruns.read_pod("retry-flaky-2").status.container_statuses[0].state.terminated
    third = flowruns.read_pod("retry-flaky-3")
    assert (third.metadata.creation_timestamp - failed_2.finished_at).total_seconds() >= 1
    flowruns.events_when("retry", lambda events: any(e.reason == "TaskRetrying" for e in events))
    flowruns.delete_and_check_nothing_leaked("retry")


def test_params_and_flowrun_name_are_substituted(
    operator: Operator, flowruns: FlowRuns, kube_cluster: KubeCluster, namespace: str
) -> None:
    task = sim_task("show", args=["--greeting", "$(params.greeting)", "--run", "$(flowrun.name)"])
    task["template"]["spec"]["containers"][0]["env"] = [
        {"name": "GREETING", "value": "$(params.greeting) from $(flowrun.name) in $(flowrun.namespace)"},
        {"name": "EMPTY", "value": "<$(params.empty)>"},
    ]
    flowruns.create(
        {
            "metadata": {"name": "params"},
            "spec": {
                "params": [{"name": "greeting", "value": "hello world"}, {"name": "empty", "value": ""}],
                "tasks": [task],
            },
        }
    )
    flowruns.wait_phase("params", "Succeeded")
    container = main_container(flowruns.read_pod("params-show-1"))
    assert container.args == ["--greeting", "hello world", "--run", "params"]
    env = {e.name: e.value for e in container.env or []}
    assert env["GREETING"] == f"hello world from params in {namespace}"
    assert env["EMPTY"] == "<>"
    flowruns.delete_and_check_nothing_leaked("params")


def test_task_active_deadline_fails_the_task(
    operator: Operator, flowruns: FlowRuns, kube_cluster: KubeCluster, namespace: str
) -> None:
    flowruns.create(
        {
            "metadata": {"name": "slow"},
            "spec": {
                "tasks": [
                    sim_task("forever", duration="1h", activeDeadlineSeconds=2),
                    sim_task("next", run_after=["forever"]),
                ]
            },
        }
    )
    run = flowruns.wait_phase("slow", "Failed", timeout=45)
    forever = task(run, "forever")
    assert (forever["phase"], forever["reason"]) == ("Failed", "DeadlineExceeded"), forever
    assert forever["message"] == "ran longer than activeDeadlineSeconds=2", forever["message"]
    assert forever["logs"] and forever["logs"].rstrip("\n").endswith("simulated log line 150")
    elapsed = (ts(forever["finishedAt"]) - ts(forever["startedAt"])).total_seconds()
    assert 2 <= elapsed <= 15, elapsed
    assert (task(run, "next")["phase"], task(run, "next")["reason"]) == ("Skipped", "UpstreamFailed")
    # The operator stops the pod itself (no kubelet enforces the pod's activeDeadlineSeconds here).
    wait_for(
        "the timed-out pod to stop",
        lambda: pod_gone(flowruns, "slow-forever-1") or flowruns.read_pod("slow-forever-1").status.phase == "Failed",
    )
    flowruns.delete_and_check_nothing_leaked("slow")


def test_cancel_mid_run_stops_the_running_pod_and_cancels_pending_tasks(
    operator: Operator, flowruns: FlowRuns, kube_cluster: KubeCluster, namespace: str
) -> None:
    flowruns.create(
        {
            "metadata": {"name": "stopme"},
            "spec": {
                "tasks": [
                    sim_task("first", duration="300ms", message="done"),
                    sim_task("long", run_after=["first"], duration="1h"),
                    sim_task("later", run_after=["long"]),
                ]
            },
        }
    )
    wait_task(flowruns, "stopme", "long", "Running", "PodRunning")
    assert flowruns.read_pod("stopme-long-1").status.phase == "Running"
    flowruns.patch("stopme", {"spec": {"cancel": True}})
    run = flowruns.wait_phase("stopme", "Cancelled")
    assert (task(run, "first")["phase"]) == "Succeeded"  # a finished task keeps its outcome
    assert (task(run, "long")["phase"], task(run, "long")["reason"]) == ("Cancelled", "Cancelled")
    assert (task(run, "later")["phase"], task(run, "later")["reason"]) == ("Cancelled", "Cancelled")
    assert task(run, "long")["logs"].rstrip("\n").endswith("simulated log line 150")
    wait_for("the running pod to be deleted", lambda: pod_gone(flowruns, "stopme-long-1"))
    assert pod_gone(flowruns, "stopme-later-1")
    succeeded = {c["type"]: c for c in run["status"]["conditions"]}["Succeeded"]
    assert (succeeded["status"], succeeded["reason"]) == ("False", "Cancelled")
    flowruns.delete_and_check_nothing_leaked("stopme")


def test_delete_mid_run_releases_the_finalizer_and_leaves_nothing(
    operator: Operator, flowruns: FlowRuns, kube_cluster: KubeCluster, namespace: str, watch: Watch
) -> None:
    pods = watch("pods", run_selector("gone"))
    flowruns.create(
        {
            "metadata": {"name": "gone"},
            "spec": {"tasks": [sim_task("long", duration="1h"), sim_task("later", run_after=["long"])]},
        }
    )
    run = wait_task(flowruns, "gone", "long", "Running", "PodRunning")
    assert api.FINALIZER in run["metadata"]["finalizers"]
    # The leak check deletes the run while its task runs: the operator must stop the pod, release
    # the finalizer, and leave nothing behind.
    flowruns.delete_and_check_nothing_leaked("gone")
    # The pod was stopped by the operator (it went Failed/137 through a graceful delete) and was
    # never replaced; the deletion was reported by one event of the run (a run of tasks alone ends
    # in the pass that stops its pods: Cancelled, saying why), not by one event per task.
    assert list(pods.uids_by_name()) == ["gone-long-1"]
    events = flowruns.events_when(
        "gone", lambda events: any(e.reason == "Cancelled" and "being deleted" in e.message for e in events)
    )
    assert not [e.reason for e in events if e.reason.startswith("Task")]


def test_a_spec_over_256_kib_runs_and_is_deleted(operator: Operator, flowruns: FlowRuns) -> None:
    # Annotations are limited to 256 KiB: an operator keeping a copy of the spec in one (as kopf's
    # change handlers do) could never release such a run. This one keeps no copy.
    task = sim_task("big")
    task["template"]["spec"]["containers"][0]["env"] = [{"name": "BIG", "value": "x" * 300_000}]
    flowruns.create({"metadata": {"name": "big"}, "spec": {"tasks": [task]}})
    run = flowruns.wait_phase("big", "Succeeded")
    assert not any(key.startswith("kopf.") for key in (run["metadata"].get("annotations") or {}))
    flowruns.delete_and_check_nothing_leaked("big")


def test_operator_killed_three_times_mid_run_creates_no_pod_twice(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    pods = watch("pods", run_selector("tough"))
    flowruns.create(
        {
            "metadata": {"name": "tough"},
            "spec": {
                "tasks": [
                    sim_task("a", duration="500ms", message="A"),
                    sim_task("b", run_after=["a"], duration="800ms", message="B"),
                    sim_task("c", run_after=["a"], duration="300ms", message="C"),
                    sim_task("d", run_after=["a"], duration="1s", message="D"),
                    sim_task(
                        "e",
                        run_after=["b", "c", "d"],
                        duration="500ms",
                        args=["$(tasks.b.result)$(tasks.d.result)"],
                        message="E",
                    ),
                    sim_task("f", run_after=["e"], duration="300ms", args=["$(tasks.e.result)", "$(tasks.a.result)"]),
                ]
            },
        }
    )
    # 1: right after the first pod was created (maybe before its status was written); the pod
    # finishes while no operator runs.
    pods.wait("pod a created", lambda w: "tough-a-1" in w.uids_by_name())
    operator.kill()
    pods.wait("pod a finished while the operator is down", lambda w: w.phase("tough-a-1") == "Succeeded")
    operator.start()
    # 2: in the middle of the fan-out, as soon as the first of b, c, d exists.
    pods.wait("a pod of b, c or d created", lambda w: {"tough-b-1", "tough-c-1", "tough-d-1"} & set(w.uids_by_name()))
    operator.kill()
    operator.start()
    # 3: the moment e finished, before f is created.
    pods.wait("pod e finished", lambda w: w.phase("tough-e-1") == "Succeeded", timeout=90)
    operator.kill()
    operator.start()
    run = flowruns.wait_phase("tough", "Succeeded", timeout=120)
    assert operator.starts == 4
    assert run["status"]["progress"] == "6/6"
    assert {t: task(run, t)["attempts"] for t in "abcdef"} == dict.fromkeys("abcdef", 1)
    assert task(run, "e")["result"] == "E"
    pods.wait("f's pod seen", lambda w: "tough-f-1" in w.uids_by_name())
    assert pods.gaps == 0, "the pod watch missed events: the proof is incomplete"
    assert not pods.duplicated_names(), f"pods created twice: {pods.duplicated_names()}"
    assert sorted(pods.uids_by_name()) == [f"tough-{t}-1" for t in "abcdef"]
    latest = pods.latest()
    f_args = latest["tough-f-1"]["spec"]["containers"][0]["args"]
    assert f_args == ["E", "A"], "a result was lost across the restarts"
    assert latest["tough-e-1"]["spec"]["containers"][0]["args"] == ["BD"]
    flowruns.delete_and_check_nothing_leaked("tough")


def test_the_crd_refuses_invalid_flowruns_and_spec_changes(
    operator: Operator, flowruns: FlowRuns, kube_cluster: KubeCluster, namespace: str
) -> None:
    duplicate = create_refused(
        flowruns,
        {
            "metadata": {"name": "dup"},
            "spec": {"tasks": [sim_task("same"), sim_task("same", duration="1s")]},
        },
    )
    assert "Duplicate value" in duplicate.body and "spec.tasks[1]" in duplicate.body, duplicate.body
    bad_name = create_refused(flowruns, {"metadata": {"name": "badname"}, "spec": {"tasks": [sim_task("Not_DNS")]}})
    assert "spec.tasks[0].name" in bad_name.body, bad_name.body
    assert flowruns.get("dup") is None and flowruns.get("badname") is None

    tasks = [sim_task("long", duration="1h")]
    flowruns.create({"metadata": {"name": "frozen"}, "spec": {"tasks": tasks}})
    wait_task(flowruns, "frozen", "long", "Running", "PodRunning")
    changed = yaml.safe_load(yaml.safe_dump(tasks))
    changed[0]["template"]["spec"]["containers"][0]["image"] = "busybox:other"
    with pytest.raises(ApiException) as refused:
        flowruns.patch("frozen", {"spec": {"tasks": changed}})
    assert refused.value.status == 422 and "spec.tasks is immutable" in refused.value.body, refused.value.body
    frozen = flowruns.get("frozen")
    assert frozen is not None and frozen["spec"]["tasks"][0]["template"]["spec"]["containers"][0]["image"] == "busybox"
    # cancel is the one field that may change.
    flowruns.patch("frozen", {"spec": {"cancel": True}})
    flowruns.wait_phase("frozen", "Cancelled")
    with pytest.raises(ApiException) as uncancel:
        flowruns.patch("frozen", {"spec": {"cancel": False}})
    assert uncancel.value.status == 422
    flowruns.delete_and_check_nothing_leaked("frozen")


@pytest.mark.parametrize(
    ("tasks", "field", "words"),
    [
        pytest.param(
            [sim_task("a", run_after=["b"]), sim_task("b", run_after=["a"])], "spec.tasks[", "cycle", id="cycle"
        ),
        pytest.param(
            [sim_task("a"), sim_task("b", run_after=["nope"])],
            "spec.tasks[1].runAfter[0]",
            "unknown task",
            id="unknown-run-after",
        ),
        pytest.param(
            [sim_task("a"), sim_task("b", run_after=["a"], args=["x", "$(params.nope)"])],
            "spec.tasks[1].template.spec.containers[0].args[1]",
            "nope",
            id="unknown-param",
        ),
    ],
)
def test_semantic_spec_errors_fail_the_run_and_create_nothing(
    operator: Operator, flowruns: FlowRuns, watch: Watch, tasks: list[dict[str, Any]], field: str, words: str
) -> None:
    pods = watch("pods")
    flowruns.create({"metadata": {"name": "bad"}, "spec": {"params": [{"name": "x", "value": "1"}], "tasks": tasks}})
    run = flowruns.wait_phase("bad", "Failed")
    conditions = {c["type"]: c for c in run["status"]["conditions"]}
    spec_valid = conditions["SpecValid"]
    assert (spec_valid["status"], spec_valid["reason"]) == ("False", "InvalidSpec")
    assert field in spec_valid["message"] and words in spec_valid["message"], spec_valid["message"]
    assert run["status"]["message"] == spec_valid["message"]
    assert (conditions["Succeeded"]["status"], conditions["Succeeded"]["reason"]) == ("False", "InvalidSpec")
    # The event is posted after the status is written: wait for it.
    warnings = wait_for(
        "the InvalidSpec warning",
        lambda: [e for e in flowruns.events("bad") if e.type == "Warning" and e.reason == "InvalidSpec"],
    )
    assert len(warnings) == 1 and field in warnings[0].message
    assert not flowruns.children(run["metadata"]["uid"])
    assert all(t.get("phase") != "Running" for t in (run["status"].get("tasks") or {}).values())
    assert not pods.uids_by_name(), f"pods were created for an invalid spec: {list(pods.uids_by_name())}"
    flowruns.delete_and_check_nothing_leaked("bad")


# Examples another test covers (they set up resource blocks).
EXAMPLES_COVERED_ELSEWHERE = {"dask-flowrun.yaml", "vm-flowrun.yaml", "foreach-dask-flowrun.yaml"}
# What each example ends as, per its header comment.
EXAMPLE_PHASES = {
    "linear-flowrun.yaml": "Succeeded",
    "diamond-flowrun.yaml": "Succeeded",
    "fanout-flowrun.yaml": "Succeeded",
    "failure-handler-flowrun.yaml": "Failed",
    "nightly-mutex-flowrun.yaml": "Succeeded",
    "branching-flowrun.yaml": "Succeeded",
}


def test_examples_reach_their_documented_phase(operator: Operator, flowruns: FlowRuns) -> None:
    files = sorted(p.name for p in (REPO / "examples").glob("*.yaml"))
    unknown = set(files) - EXAMPLES_COVERED_ELSEWHERE - set(EXAMPLE_PHASES)
    assert not unknown, f"examples without an expected phase in this test: {sorted(unknown)}"
    names = {}
    for file in sorted(EXAMPLE_PHASES):
        documents = [d for d in yaml.safe_load_all((REPO / "examples" / file).read_text()) if d]
        assert len(documents) == 1 and documents[0]["kind"] == "FlowRun", file
        body = documents[0]
        body["metadata"].pop("namespace", None)
        flowruns.create(body)
        names[file] = body["metadata"]["name"]
    runs = {
        file: flowruns.wait_phase(name, ("Succeeded", "Failed", "Cancelled"), timeout=120)
        for file, name in names.items()
    }
    phases = {file: run["status"]["phase"] for file, run in runs.items()}
    assert phases == EXAMPLE_PHASES, {f: runs[f]["status"].get("message") for f in runs}

    linear = runs["linear-flowrun.yaml"]["status"]["tasks"]
    assert linear["report"]["result"] == "sum=5050 doubled=10100"
    handler = runs["failure-handler-flowrun.yaml"]["status"]["tasks"]
    assert (handler["transform"]["phase"], handler["transform"]["attempts"]) == ("Failed", 2)
    assert (handler["load"]["phase"], handler["load"]["reason"]) == ("Skipped", "UpstreamFailed")
    assert handler["alert"]["phase"] == "Succeeded"
    assert runs["fanout-flowrun.yaml"]["status"]["progress"] == "20/20"
    nightly = runs["nightly-mutex-flowrun.yaml"]
    assert nightly["status"]["tasks"]["load"]["result"] == "loaded /data/extract/orders.csv"
    # It held its mutex and let it go: no lock in its status, no Lease left.
    assert nightly["status"].get("locks") is None
    assert not flowruns.children(nightly["metadata"]["uid"], {api.LABEL_ROLE: api.ROLE_LOCK})
    branching = runs["branching-flowrun.yaml"]["status"]["tasks"]
    assert (branching["publish-prod"]["phase"], branching["publish-prod"]["reason"]) == ("Skipped", "WhenFalse")
    assert branching["publish-prod"]["message"] == "when[0] is false: $(params.env) == 'prod'"
    assert branching["load"]["phase"] == branching["notify"]["phase"] == "Succeeded", "a branch not taken joins"
    for name in names.values():
        flowruns.delete_and_check_nothing_leaked(name)
