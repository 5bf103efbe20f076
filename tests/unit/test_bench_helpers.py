"""The benchmarks' pure helpers (bench/): percentiles, Prometheus counters, audit log lines, the
shapes they run and the sizes they parse. The benchmarks themselves are scripts, never tests."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from bench import dask_repeat, stats, throughput, workloads


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


def test_the_dask_repeat_operator_image_gets_a_tag_of_its_own_build(tmp_path: Path) -> None:
    build = tmp_path / "flowrun-operator-962a9a5f7a2f6ad6"
    build.mkdir()
    archive = build / "image.tar"
    files = {
        "manifest.json": json.dumps(
            [{"Config": "c.json", "RepoTags": ["flowrun.local/flowrun-operator:0.1.0"], "Layers": ["l.tar"]}]
        ).encode(),
        "repositories": json.dumps({"flowrun.local/flowrun-operator": {"0.1.0": "abc"}}).encode(),
        "c.json": b'{"config": {}}',
        "l.tar": b"layer bytes",
    }
    with tarfile.open(archive, "w") as out:
        for name, raw in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            out.addfile(info, io.BytesIO(raw))
    reference = dask_repeat.own_reference(archive)
    assert reference == "flowrun.local/flowrun-operator:0.1.0-962a9a5f7a2f6ad6"
    retagged = tmp_path / "retagged.tar"
    dask_repeat.retag_archive(archive, reference, retagged)
    with tarfile.open(retagged) as result:
        read = {m.name: result.extractfile(m).read() for m in result if m.isfile()}  # type: ignore[union-attr]
    assert json.loads(read["manifest.json"]) == [{"Config": "c.json", "RepoTags": [reference], "Layers": ["l.tar"]}]
    assert json.loads(read["repositories"]) == {"flowrun.local/flowrun-operator": {"0.1.0-962a9a5f7a2f6ad6": "abc"}}
    assert (read["c.json"], read["l.tar"]) == (files["c.json"], files["l.tar"])


def test_the_dask_repeat_summary_counts_successes_and_says_why_a_run_failed() -> None:
    outcomes = [
        dask_repeat.Outcome(1, "Succeeded", 90.0, 30.0, ""),
        dask_repeat.Outcome(2, "Failed", 120.0, 31.0, "why"),
        dask_repeat.Outcome(3, "Succeeded", 100.0, None, ""),
    ]
    assert dask_repeat.summary(outcomes) == "2/3 succeeded; duration median 100.0 s, min 90.0 s, max 120.0 s"
    status = {
        "message": "task load-data failed",
        "tasks": {
            "load-data": {"phase": "Failed", "reason": "Error", "message": "exit code 1", "logs": "a\nOSError: x\n"},
            "summarize": {"phase": "Succeeded"},
        },
        "resources": {"dask": {"phase": "CleanedUp", "reason": "CleanedUp", "message": "cleaned up"}},
    }
    assert dask_repeat.why_not(status).splitlines() == [
        "    run: task load-data failed",
        "    task load-data: Failed Error: exit code 1",
        "      | a",
        "      | OSError: x",
        "    block dask: CleanedUp CleanedUp: cleaned up",
    ]
