"""The benchmarks' pure helpers (bench/): percentiles, Prometheus counters, audit log lines, the
shapes they run and the sizes they parse. The benchmarks themselves are scripts, never tests."""

from __future__ import annotations

import json

import pytest

from bench import stats, throughput, workloads


def test_percentile_interpolates_between_ranks_and_names_bad_input() -> None:
    values = [4.0, 1.0, 3.0, 2.0]
    assert stats.percentile(values, 0) == 1.0
    assert stats.percentile(values, 50) == 2.5
    assert stats.percentile(values, 100) == 4.0
    assert stats.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        stats.percentile([], 50)
    with pytest.raises(ValueError, match=r"0\.\.100"):
        stats.percentile(values, 101)


def test_ratio_never_divides_by_zero() -> None:
    assert stats.ratio(2.0, 1.0) == 2.0
    assert stats.ratio(0.5, 0.0) == 500.0


METRICS = """\
# HELP flowrun_api_requests_total API requests of the operator
# TYPE flowrun_api_requests_total counter
flowrun_api_requests_total{resource="pods",verb="create"} 12.0
flowrun_api_requests_total{resource="flowruns",verb="patch"} 30.0
# HELP flowrun_api_requests_created API requests of the operator
# TYPE flowrun_api_requests_created gauge
flowrun_api_requests_created{resource="pods",verb="create"} 1.7e+09
# HELP flowrun_runs Runs by phase
# TYPE flowrun_runs gauge
flowrun_runs{phase="Running"} 3.0
"""


def test_counter_samples_reads_one_counter_by_its_labels() -> None:
    samples = stats.counter_samples(METRICS, "flowrun_api_requests_total")
    assert samples == {
        (("resource", "pods"), ("verb", "create")): 12.0,
        (("resource", "flowruns"), ("verb", "patch")): 30.0,
    }
    assert stats.counter_total(METRICS, "flowrun_api_requests") == 42.0
    assert stats.counter_total(METRICS, "flowrun_missing_total") == 0.0


def audit_line(user: str, verb: str, resource: str, stage: str = "ResponseComplete", sub: str = "") -> str:
    ref = {"resource": resource, **({"subresource": sub} if sub else {})}
    return json.dumps({"stage": stage, "verb": verb, "user": {"username": user}, "objectRef": ref})


def test_audit_requests_counts_one_users_completed_requests_by_verb_and_resource() -> None:
    me, other = "system:serviceaccount:flowrun-bench:operator", "admin"
    lines = [
        audit_line(me, "create", "pods"),
        audit_line(me, "create", "pods"),
        audit_line(me, "patch", "flowruns", sub="status"),
        audit_line(me, "create", "pods", stage="ResponseStarted"),
        audit_line(other, "create", "pods"),
        '{"stage": "ResponseComplete", "verb": "get", "us',  # a line still being written
    ]
    counts = stats.audit_requests(lines, me)
    assert counts == {("create", "pods"): 2, ("patch", "flowruns/status"): 1}
    assert stats.format_counts(counts) == "create pods 2, patch flowruns/status 1"


def test_shapes_chain_and_fan_out_and_join() -> None:
    assert workloads.chain(3) == (
        workloads.Task("t0"),
        workloads.Task("t1", ("t0",)),
        workloads.Task("t2", ("t1",)),
    )
    shape = workloads.fan_out_and_join(2)
    assert [task.name for task in shape] == ["root", "f0", "f1", "join"]
    assert shape[-1].after == ("f0", "f1")


def test_every_driver_gets_the_same_dag_and_pod_labels() -> None:
    shape = workloads.fan_out_and_join(2)
    run = workloads.flowrun("r", shape, "100ms")
    workflow = workloads.argo_workflow("r", shape, "100ms")
    flow_deps = {task["name"]: task.get("runAfter", []) for task in run["spec"]["tasks"]}
    dag = workflow["spec"]["templates"][0]["dag"]["tasks"]
    assert flow_deps == {task["name"]: task.get("dependencies", []) for task in dag}
    argo_labels = {t["name"]: t["metadata"]["labels"] for t in workflow["spec"]["templates"][1:]}
    for task in run["spec"]["tasks"]:
        labels = task["template"]["metadata"]["labels"]
        assert labels == {workloads.RUN_LABEL: "r", workloads.TASK_LABEL: task["name"]}
        assert argo_labels[f"run-{task['name']}"] == labels
    assert workloads.bare_pod("r", "join", "1s")["metadata"]["labels"][workloads.TASK_LABEL] == "join"


def test_throughput_sizes_parse_and_bad_ones_name_the_flag() -> None:
    assert throughput.parse_workloads("100x10, 1000x1") == [(100, 10), (1000, 1)]
    with pytest.raises(SystemExit, match="--workloads: '10by2'"):
        throughput.parse_workloads("10by2")
    with pytest.raises(SystemExit, match="--workloads"):
        throughput.parse_workloads("0x5")
