"""Flows, CronFlowRuns and reruns end to end: the real operator on the dev cluster, pods finished by
KWOK as their sim.flowrun.dev/* annotations say. Each test kills the operator at least once while
something is under way and checks with a watch that no object was created twice; each ends with
the leak check (nothing labelled with a run's UID remains once the run is gone)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from devcluster.pytest_plugin import wait_for
from flowrun import api
from flowrun.timestamps import format_time
from tests.e2e.helpers import (
    REPO,
    FlowRuns,
    Objects,
    Operator,
    StartOperator,
    Watch,
    deployment,
    sim_task,
    task,
)

pytestmark = pytest.mark.e2e

FLOW_EXAMPLES = REPO / "examples" / "flows"


# --- helpers -----------------------------------------------------------------------------------


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = {c["type"]: c for c in status.get("conditions") or []}.get(kind) or {}
    return found


def valid(status: dict[str, Any]) -> str | None:
    return condition(status, "SpecValid").get("status")


def args_of(pod: dict[str, Any]) -> list[str]:
    found: list[str] = pod["spec"]["containers"][0].get("args") or []
    return found


def no_duplicates(recorder: Any) -> None:
    assert recorder.gaps == 0, "the watch missed events: the proof is incomplete"
    assert not recorder.duplicated_names(), f"created twice: {recorder.duplicated_names()}"


def minute_floor(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def run_names_of(flowruns: FlowRuns, cron: str) -> list[str]:
    listed = flowruns.custom.list_namespaced_custom_object(
        api.GROUP, api.VERSION, flowruns.namespace, api.PLURAL, label_selector=f"{api.LABEL_CRON}={cron}"
    )["items"]
    return sorted(r["metadata"]["name"] for r in listed)


def cron_run_name(cron: str, scheduled: datetime) -> str:
    return f"{cron}-{int(scheduled.timestamp()) // 60}"


def delete_cron_and_check_its_runs_are_gone(crons: Objects, flowruns: FlowRuns, name: str) -> None:
    """Deleting a CronFlowRun deletes its runs (owner references), each through its finalizer."""
    uids = {n: (flowruns.get(n) or {}).get("metadata", {}).get("uid") for n in run_names_of(flowruns, name)}
    crons.delete(name)
    wait_for(f"the runs of {name} to be gone", lambda: not run_names_of(flowruns, name), timeout=90)
    wait_for(
        f"every child of the runs of {name} to be gone",
        lambda: not any(flowruns.children(uid) for uid in uids.values() if uid),
        timeout=60,
    )


def json_operator(start_operator: StartOperator) -> Operator:
    """The operator logging JSON, with its metrics served (passes are counted there)."""
    return start_operator("--log-format", "json", metrics=True)


def passes(operator: Operator) -> float:
    found = re.search(r"^flowrun_reconcile_duration_seconds_count (\S+)$", operator.scrape_metrics(), re.MULTILINE)
    assert found, "no reconcile pass counted"
    return float(found[1])


def operator_errors(operator: Operator) -> list[str]:
    """Stop the operator (every line written) and return what it logged at ERROR or above, or
    with a traceback."""
    operator.stop()
    text = operator.log_path.read_text()
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert records, "the operator logged nothing as JSON"
    errors = [
        f"{r['message']}\n{r.get('exception', '')}"
        for r in records
        if r.get("level") in ("error", "critical") or "exception" in r
    ]
    return errors + (["a traceback:\n" + text] if "Traceback" in text and not errors else [])


# --- Flows -------------------------------------------------------------------------------------


def etl_flow() -> dict[str, Any]:
    return {
        "metadata": {"name": "etl"},
        "spec": {
            "params": [{"name": "greeting", "default": "hello"}, {"name": "target"}],
            "tasks": [
                sim_task("first", duration="4s", message="r-first", args=["$(params.greeting)", "$(params.target)"]),
                sim_task("second", run_after=["first"], args=["$(tasks.first.result)", "$(params.greeting)"]),
            ],
        },
    }


def test_a_run_of_a_flow_takes_its_params_and_keeps_its_snapshot_when_the_flow_changes_and_goes(
    operator: Operator, flowruns: FlowRuns, flows: Objects, watch: Watch
) -> None:
    pods = watch("pods", f"{api.LABEL_FLOWRUN}=etl-1")
    flows.create(etl_flow())
    flow = flows.wait_status("etl", "validated", lambda s: valid(s) == "True")
    assert (flow["status"]["taskCount"], flow["status"]["resourceCount"]) == (2, 0)
    assert flow["status"]["observedGeneration"] == flow["metadata"]["generation"]
    assert "finalizers" not in flow["metadata"], "a Flow must stay deletable while no operator runs"

    flowruns.create(
        {
            "metadata": {"name": "etl-1"},
            "spec": {"flowRef": {"name": "etl"}, "params": [{"name": "target", "value": "world"}]},
        }
    )
    pods.wait("first's pod", lambda w: "etl-1-first-1" in w.uids_by_name())
    run = flowruns.get("etl-1")
    assert run is not None
    assert run["status"]["resolvedFrom"] == {
        "kind": "Flow",
        "name": "etl",
        "uid": flow["metadata"]["uid"],
        "resourceVersion": flow["metadata"]["resourceVersion"],
    }
    assert run["status"]["resolvedSpec"]["params"] == [
        {"name": "greeting", "value": "hello"},  # the Flow's default
        {"name": "target", "value": "world"},  # the run's value
    ]
    assert args_of(pods.latest()["etl-1-first-1"]) == ["hello", "world"]

    # While first runs, and while no operator runs: the Flow is edited, then deleted.
    operator.kill()
    flows.patch("etl", {"spec": {"tasks": [sim_task("other", args=["$(params.greeting)"])]}})
    flows.delete("etl")
    operator.start()
    run = flowruns.wait_phase("etl-1", "Succeeded", timeout=60)
    assert run["status"]["progress"] == "2/2" and set(run["status"]["tasks"]) == {"first", "second"}
    assert args_of(pods.latest()["etl-1-second-1"]) == ["r-first", "hello"]
    no_duplicates(pods)
    assert sorted(pods.uids_by_name()) == ["etl-1-first-1", "etl-1-second-1"]
    flowruns.delete_and_check_nothing_leaked("etl-1")


def test_a_run_waits_for_its_flow_and_starts_as_soon_as_it_is_applied(
    operator: Operator, flowruns: FlowRuns, flows: Objects, watch: Watch
) -> None:
    pods = watch("pods", f"{api.LABEL_FLOWRUN}=early")
    flowruns.create(
        {
            "metadata": {"name": "early"},
            "spec": {"flowRef": {"name": "etl"}, "params": [{"name": "target", "value": "x"}]},
        }
    )
    run = flowruns.wait_status(
        "early", "waiting for its Flow", lambda s: condition(s, "SpecValid").get("reason") == "FlowNotFound"
    )
    assert run["status"]["phase"] == "Pending"
    assert condition(run["status"], "SpecValid")["status"] == "Unknown"
    assert "resolvedSpec" not in run["status"]
    flowruns.events_when("early", lambda events: any(e.reason == "FlowNotFound" for e in events))
    # The operator restarts while the run waits; the Flow is applied while it is down.
    operator.kill()
    operator.start()
    flows.create(etl_flow())
    applied = datetime.now(UTC)
    run = flowruns.wait_phase("early", "Succeeded", timeout=45)
    created = datetime.fromisoformat(run["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
    started = datetime.fromisoformat(run["status"]["startedAt"].replace("Z", "+00:00"))
    assert started - created < timedelta(seconds=60), "the run waited out the whole minute"
    assert started >= applied - timedelta(seconds=1)
    assert [e.reason for e in flowruns.events("early")].count("FlowNotFound") == 1
    assert run["status"]["resolvedFrom"]["name"] == "etl"
    no_duplicates(pods)
    flowruns.delete_and_check_nothing_leaked("early")
    flows.delete("etl")


def test_flows_and_schedules_are_validated_when_created_and_when_changed(
    operator: Operator, flows: Objects, crons: Objects
) -> None:
    # A schedule the CRD lets through but croniter refuses: reported, no run.
    hour_25 = every_minute("hour-25", "Allow", {"flowRef": {"name": "typo"}})
    hour_25["spec"]["schedule"] = "0 25 * * *"
    crons.create(hour_25)
    flows.create(
        {
            "metadata": {"name": "typo"},
            "spec": {"tasks": [sim_task("load"), sim_task("use", run_after=["lod"])]},
        }
    )
    bad_volume = sim_task("mount")
    bad_volume["template"]["spec"]["containers"][0]["volumeMounts"] = [{"name": "nope", "mountPath": "/data"}]
    flows.create({"metadata": {"name": "refused"}, "spec": {"tasks": [bad_volume]}})

    typo = flows.wait_status("typo", "invalid", lambda s: valid(s) == "False")
    spec_valid = condition(typo["status"], "SpecValid")
    assert spec_valid["reason"] == "InvalidSpec"
    assert spec_valid["message"].startswith("spec.tasks[1].runAfter[0]"), spec_valid
    assert "lod" in spec_valid["message"] and typo["status"]["message"] == spec_valid["message"]
    assert (typo["status"]["taskCount"], typo["status"]["resourceCount"]) == (2, 0)

    refused = flows.wait_status("refused", "refused by the dry run", lambda s: valid(s) == "False")
    message = condition(refused["status"], "SpecValid")["message"]
    assert message.startswith("spec.tasks[0]") and "the API server rejected it" in message, message
    assert "nope" in message, message
    wait_for(
        "the InvalidSpec warning", lambda: [(t, r) for t, r, _ in flows.events("typo")] == [("Warning", "InvalidSpec")]
    )

    bad_schedule = crons.wait_status("hour-25", "invalid", lambda s: valid(s) == "False")
    assert bad_schedule["status"]["message"].startswith("spec.schedule"), bad_schedule["status"]
    assert bad_schedule["status"]["activeCount"] == 0 and not bad_schedule["status"].get("lastScheduleTime")

    # Fixed in Git and applied again while the operator is down: validated when it is back, for
    # the new generation.
    operator.kill()
    flows.patch("typo", {"spec": {"tasks": [sim_task("load"), sim_task("use", run_after=["load"])]}})
    operator.start()
    fixed = flows.wait_status("typo", "valid after the fix", lambda s: valid(s) == "True")
    assert fixed["status"]["observedGeneration"] == fixed["metadata"]["generation"] == 2
    assert fixed["status"]["message"] == ""
    flows.delete("typo")
    flows.delete("refused")
    crons.delete("hour-25")


# --- reruns ------------------------------------------------------------------------------------


def test_a_rerun_reuses_succeeded_tasks_and_sets_its_block_up_anew(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    pods = watch("pods", f"{api.LABEL_ROLE}={api.ROLE_TASK}")
    deployments = watch("deployments")
    flowruns.create(
        {
            "metadata": {"name": "orig"},
            "spec": {
                "resources": [{"name": "db", "setup": {"deployments": [deployment("server")]}}],
                "tasks": [
                    sim_task("extract", duration="200ms", message="r1"),
                    sim_task(
                        "load", run_after=["extract"], resources=["db"], duration="6s", args=["$(tasks.extract.result)"]
                    ),
                ],
            },
        }
    )
    flowruns.wait_status(
        "orig", "load running", lambda s: (s.get("tasks") or {}).get("load", {}).get("phase") == "Running"
    )
    flowruns.patch("orig", {"spec": {"cancel": True}})
    original = flowruns.wait_phase("orig", "Cancelled")
    assert original["status"]["resources"]["db"]["phase"] == "CleanedUp"
    assert task(original, "extract")["result"] == "r1"

    flowruns.create({"metadata": {"name": "orig-rerun"}, "spec": {"rerunOf": {"name": "orig"}}})
    rerun = flowruns.wait_status("orig-rerun", "its snapshot stored", lambda s: "resolvedSpec" in s)
    assert rerun["status"]["resolvedFrom"]["kind"] == "FlowRun"
    # The original may go at once: the rerun copied what it needs.
    flowruns.delete_and_check_nothing_leaked("orig")
    deployments.wait(
        "the rerun's block set up anew", lambda w: any(n.startswith("orig-rerun-") for n in w.uids_by_name())
    )
    operator.kill()  # while the block sets up again
    operator.start()
    rerun = flowruns.wait_phase("orig-rerun", "Succeeded", timeout=90)
    extract = task(rerun, "extract")
    assert (extract["phase"], extract["reason"], extract["attempts"], extract["result"]) == (
        "Succeeded",
        "Reused",
        0,
        "r1",
    )
    assert not extract.get("podName")
    assert (task(rerun, "load")["phase"], task(rerun, "load")["attempts"]) == ("Succeeded", 1)
    assert rerun["status"]["resources"]["db"]["phase"] == "CleanedUp"
    names = set(pods.uids_by_name())
    assert "orig-rerun-extract-1" not in names, "a reused task got a pod"
    assert args_of(pods.latest().get("orig-rerun-load-1") or pods.first("orig-rerun-load-1") or {}) == ["r1"]
    no_duplicates(pods)
    no_duplicates(deployments)
    flowruns.delete_and_check_nothing_leaked("orig-rerun")


def test_a_run_that_reruns_itself_fails_once_with_a_flat_message(
    start_operator: StartOperator, flowruns: FlowRuns
) -> None:
    operator = json_operator(start_operator)
    expected = "spec.rerunOf.name: names this FlowRun itself ('itself'): rerun another run"
    flowruns.create({"metadata": {"name": "itself"}, "spec": {"rerunOf": {"name": "itself"}}})
    run = flowruns.wait_phase("itself", "Failed")
    assert run["status"]["message"] == expected, run["status"]
    spec_valid = condition(run["status"], "SpecValid")
    assert (spec_valid["status"], spec_valid["reason"], spec_valid["message"]) == ("False", "InvalidSpec", expected)
    flowruns.events_when("itself", lambda events: len(events) >= 1)

    # Later passes (each change to the run wakes one) change nothing and report nothing again.
    def poke_and_wait_for_a_pass(poke: int) -> None:
        before = passes(operator)
        flowruns.patch("itself", {"metadata": {"annotations": {"example.com/poke": str(poke)}}})
        wait_for(f"a pass after poke {poke}", lambda: passes(operator) > before)

    for poke in range(3):
        poke_and_wait_for_a_pass(poke)
    again = flowruns.get("itself")
    assert again is not None and again["status"]["message"] == expected
    assert again["status"]["conditions"] == run["status"]["conditions"]
    assert [(e.type, e.reason, e.message) for e in flowruns.events("itself")] == [("Warning", "InvalidSpec", expected)]
    flowruns.delete_and_check_nothing_leaked("itself")
    assert operator.running(), operator.log_tail()
    assert operator_errors(operator) == []


# --- CronFlowRuns ------------------------------------------------------------------------------


def every_minute(name: str, policy: str, spec: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"schedule": "* * * * *", "concurrencyPolicy": policy, "flowRunTemplate": {"spec": spec}, **fields},
    }


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"timeZone": "Europe"}, "spec.timeZone: 'Europe' is not a known IANA time zone (e.g. Europe/Paris)"),
        ({"timeZone": "__pycache__"}, "spec.timeZone: '__pycache__' is not a known IANA time zone"),
        (
            {"schedule": "1-0 * * * *"},
            "spec.schedule: '1-0 * * * *': minute '1-0': beginning of range (1) beyond end of range (0)",
        ),
    ],
    ids=["time zone Europe", "time zone __pycache__", "reversed range"],
)
def test_a_cron_whose_time_zone_or_schedule_does_not_load_is_reported_once_and_the_operator_goes_on(
    start_operator: StartOperator, flowruns: FlowRuns, crons: Objects, fields: dict[str, Any], message: str
) -> None:
    operator = json_operator(start_operator)
    # Beside it, a valid CronFlowRun due at once: the operator goes on serving the others.
    crons.create(every_minute("bad", "Allow", {"tasks": [sim_task("work", duration="200ms")]}, **fields))
    crons.create(every_minute("good", "Allow", {"tasks": [sim_task("work", duration="200ms")]}))
    crons.patch_status("good", {"lastScheduleTime": format_time(datetime.now(UTC) - timedelta(minutes=2))})

    bad = crons.wait_status("bad", "SpecValid=False", lambda s: valid(s) == "False")
    spec_valid = condition(bad["status"], "SpecValid")
    assert (spec_valid["reason"], spec_valid["message"]) == ("InvalidSpec", bad["status"]["message"])
    assert bad["status"]["message"].startswith(message), bad["status"]
    assert bad["status"]["activeCount"] == 0 and not bad["status"].get("nextScheduleTime")
    wait_for(
        "the InvalidSpec warning", lambda: [(t, r) for t, r, _ in crons.events("bad")] == [("Warning", "InvalidSpec")]
    )
    wait_for("the good cron's run", lambda: run_names_of(flowruns, "good"), timeout=60)

    # A later pass (a new generation, still invalid) neither reports it again nor creates a run.
    crons.patch("bad", {"spec": {"startingDeadlineSeconds": 600}})
    crons.wait_status("bad", "generation 2 seen", lambda s: s.get("observedGeneration") == 2 and valid(s) == "False")
    assert [(t, r) for t, r, _ in crons.events("bad")] == [("Warning", "InvalidSpec")]
    assert run_names_of(flowruns, "bad") == []

    for name in ("bad", "good"):
        delete_cron_and_check_its_runs_are_gone(crons, flowruns, name)
    assert operator.running(), operator.log_tail()
    assert operator_errors(operator) == []


def test_cron_flow_runs_every_minute_with_forbid_replace_and_history_limits(
    start_operator: StartOperator, flowruns: FlowRuns, crons: Objects, watch: Watch
) -> None:
    # The first runs need some seconds to get going before the next minute comes: start early in one.
    now = datetime.now(UTC)
    if now.second > 35:
        time.sleep(60 - now.second - now.microsecond / 1e6 + 1)
    runs = watch("flowruns", api.LABEL_CRON)
    long_task = {"tasks": [sim_task("work", duration="1h")]}
    blocked = {
        "resources": [{"name": "db", "setup": {"deployments": [deployment("server")]}}],
        "tasks": [sim_task("work", resources=["db"], duration="1h")],
    }
    quick = {"tasks": [sim_task("work", duration="200ms")]}
    crons.create(every_minute("forbid", "Forbid", long_task))
    crons.create(every_minute("replace", "Replace", blocked))
    crons.create(every_minute("allow", "Allow", quick, successfulRunsHistoryLimit=1))
    # As if an operator had scheduled them two minutes ago and been down since: the latest missed
    # time (this minute) is due at once, a single run, no burst.
    earlier = format_time(minute_floor(datetime.now(UTC)) - timedelta(minutes=2))
    for name in ("forbid", "replace", "allow"):
        crons.patch_status(name, {"lastScheduleTime": earlier})
    operator = start_operator()

    def first_runs() -> dict[str, str] | None:
        found = {n: run_names_of(flowruns, n) for n in ("forbid", "replace", "allow")}
        return {n: r[0] for n, r in found.items()} if all(len(r) == 1 for r in found.values()) else None

    first = wait_for("one catch-up run of each", first_runs, timeout=30)
    for name, run in first.items():
        body = flowruns.get(run)
        assert body is not None
        scheduled = datetime.fromisoformat(
            body["metadata"]["annotations"][api.SCHEDULED_TIME_ANNOTATION].replace("Z", "+00:00")
        )
        assert run == cron_run_name(name, scheduled) and scheduled.second == 0
        assert body["metadata"]["ownerReferences"][0]["kind"] == "CronFlowRun"
        assert body["metadata"]["ownerReferences"][0]["name"] == name
    flowruns.wait_status(first["forbid"], "running", lambda s: s.get("phase") == "Running")
    replaced_run = flowruns.wait_status(
        first["replace"], "its block ready", lambda s: (s.get("resources") or {}).get("db", {}).get("phase") == "Ready"
    )
    flowruns.wait_phase(first["allow"], "Succeeded")
    forbid = crons.wait_status("forbid", "one active run", lambda s: s.get("activeCount") == 1)
    assert forbid["status"]["active"][0]["name"] == first["forbid"]
    assert valid(forbid["status"]) == "True"

    # The next minute comes while the operator is down: it catches up once when it is back.
    scheduled_first = datetime.fromisoformat(
        (flowruns.get(first["allow"]) or {})["metadata"]["annotations"][api.SCHEDULED_TIME_ANNOTATION].replace(
            "Z", "+00:00"
        )
    )
    boundary = scheduled_first + timedelta(minutes=1)
    time.sleep(max(0.0, (boundary - datetime.now(UTC)).total_seconds() - 3))
    operator.kill()
    time.sleep(max(0.0, (boundary - datetime.now(UTC)).total_seconds() + 2))
    operator.start()

    second = {n: cron_run_name(n, boundary) for n in ("replace", "allow")}
    wait_for("the second runs", lambda: all(r in run_names_of(flowruns, n) for n, r in second.items()), timeout=30)
    # Forbid: held back while its run is active; the time is not recorded as scheduled.
    forbid = crons.wait_status("forbid", "held back", lambda s: "Forbid" in (s.get("message") or ""))
    assert run_names_of(flowruns, "forbid") == [first["forbid"]]
    assert forbid["status"]["lastScheduleTime"] == format_time(scheduled_first)
    # Replace: the running one is cancelled and its block cleaned up; the new one runs.
    old = flowruns.wait_phase(first["replace"], "Cancelled", timeout=60)
    assert old["status"]["resources"]["db"]["phase"] == "CleanedUp"
    assert not flowruns.children(replaced_run["metadata"]["uid"], {api.LABEL_ROLE: api.ROLE_SETUP})
    wait_for(
        "RunReplaced event",
        lambda: any(r == "RunReplaced" and first["replace"] in m for _, r, m in crons.events("replace")),
    )
    # Allow with successfulRunsHistoryLimit 1: the second succeeds, the first is deleted.
    flowruns.wait_phase(second["allow"], "Succeeded")
    wait_for("the older succeeded run deleted", lambda: run_names_of(flowruns, "allow") == [second["allow"]])
    allow = crons.wait_status(
        "allow", "lastScheduleTime moved", lambda s: s.get("lastScheduleTime") == format_time(boundary)
    )
    assert allow["status"]["lastSuccessfulTime"] and allow["status"]["activeCount"] == 0
    created = [r for _, r, _ in crons.events("allow")]
    assert created.count("RunCreated") == 2 and "RunDeleted" in created

    runs.wait("every run seen", lambda w: set(second.values()) <= set(w.uids_by_name()))
    no_duplicates(runs)
    for name in ("forbid", "replace", "allow"):
        delete_cron_and_check_its_runs_are_gone(crons, flowruns, name)
    assert operator.running(), operator.log_tail()


# --- the examples ------------------------------------------------------------------------------


def test_the_flow_examples_run(
    start_operator: StartOperator, flowruns: FlowRuns, flows: Objects, crons: Objects
) -> None:
    flow, run, nightly = (
        yaml.safe_load((FLOW_EXAMPLES / f).read_text())
        for f in ("dask-flow.yaml", "dask-flowrun-from-flow.yaml", "nightly-cronflowrun.yaml")
    )
    for body, kind in ((flow, "Flow"), (run, "FlowRun"), (nightly, "CronFlowRun")):
        assert body["kind"] == kind
    flows.create({"metadata": flow["metadata"], "spec": flow["spec"]})
    crons.create({"metadata": nightly["metadata"], "spec": nightly["spec"]})
    # As if last scheduled two nights ago: last night's 02:00 (Paris) is due, within the deadline.
    crons.patch_status("nightly-summary", {"lastScheduleTime": format_time(datetime.now(UTC) - timedelta(days=2))})
    start_operator()
    flows.wait_status("dask-summary", "valid", lambda s: valid(s) == "True")
    flowruns.create({"metadata": run["metadata"], "spec": run["spec"]})
    done = flowruns.wait_phase(run["metadata"]["name"], ("Succeeded", "Failed"), timeout=90)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert {p["name"]: p["value"] for p in done["status"]["resolvedSpec"]["params"]}["n-workers"] == "3"

    nightly_runs = wait_for("last night's run", lambda: run_names_of(flowruns, "nightly-summary"), timeout=30)
    assert len(nightly_runs) == 1
    scheduled = (flowruns.get(nightly_runs[0]) or {})["metadata"]["annotations"][api.SCHEDULED_TIME_ANNOTATION]
    assert scheduled.endswith(("T01:00:00Z", "T00:00:00Z")), scheduled  # 02:00 in Paris, winter or summer
    nightly_run = flowruns.wait_phase(nightly_runs[0], ("Succeeded", "Failed"), timeout=90)
    assert nightly_run["status"]["phase"] == "Succeeded", nightly_run["status"]
    assert nightly_run["metadata"]["labels"]["team"] == "analytics"
    status = crons.wait_status("nightly-summary", "a success recorded", lambda s: bool(s.get("lastSuccessfulTime")))
    assert status["status"]["nextScheduleTime"] > format_time(datetime.now(UTC))
    flowruns.delete_and_check_nothing_leaked(run["metadata"]["name"])
    delete_cron_and_check_its_runs_are_gone(crons, flowruns, "nightly-summary")
    flows.delete("dask-summary")
