"""The plugin's drawings of the Dask example: the status tree and the graph, compared with golden
files, with and without colour. FLOWRUN_UPDATE_GOLDEN=1 rewrites the golden files (then review
the diff)."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console, RenderableType

from flowrun.model import parse_spec
from flowrun.plugin import graph
from flowrun.plugin.layout import BlockNode, layout
from flowrun.plugin.tree import one_line, render, run_spec
from tests.unit.builders import Sim, at, flow, job, resource, task

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "plugin_data"
NOW = datetime(2026, 12, 1, 10, 1, 30, tzinfo=UTC)
WIDTH = 110


def dask_example() -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((REPO / "examples" / "dask-flowrun.yaml").read_text())
    return body


def dask_run() -> dict[str, Any]:
    run = dask_example()
    run["metadata"]["namespace"] = "analytics"
    run["status"] = yaml.safe_load((DATA / "dask-status.yaml").read_text())
    return run


def draw(renderable: RenderableType, colour: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, width=WIDTH, force_terminal=colour, color_system="standard" if colour else None)
    console.print(renderable, soft_wrap=isinstance(renderable, str))
    return out.getvalue()


def check_golden(name: str, text: str) -> None:
    path = DATA / name
    if os.environ.get("FLOWRUN_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"no golden file {path.name}: run with FLOWRUN_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{path.name} differs (FLOWRUN_UPDATE_GOLDEN=1 rewrites it)"


@pytest.mark.parametrize("colour", [False, True], ids=["plain", "colour"])
def test_tree_of_the_dask_example(colour: bool) -> None:
    text = draw(render(dask_run(), NOW), colour)
    check_golden(f"dask-tree.{'ansi' if colour else 'txt'}", text)
    assert ("\x1b[" in text) is colour


def test_tree_nests_the_blocks_tasks_and_cuts_details_to_a_line() -> None:
    lines = draw(render(dask_run(), NOW), colour=False).splitlines()
    assert lines[0].split() == ["FlowRun", "dask-summary", "Running", "1/3", "tasks", "done", "1m30s"]
    assert lines[3].split()[0] == "NAME"
    names = [line.split()[0:2] for line in lines[4:]]
    assert names == [["block", "dask"], ["├──", "load-data"], ["└──", "summarize"], ["write-csv", "Pending"]]
    summarize = next(line for line in lines if line.startswith("└── summarize"))
    # Running, PodRunning, attempt 2 of 3, running for 45s, the message's first line only.
    assert summarize.split()[2:6] == ["Running", "PodRunning", "2/3", "45s"]
    assert "Traceback" not in summarize and summarize.rstrip().endswith("…")


def test_tree_without_a_parsable_spec_lists_the_status_flat() -> None:
    run = dask_run()
    run["spec"] = {"flowRef": {"name": "dask-summary"}}
    lines = draw(render(run, NOW), colour=False).splitlines()
    assert [line.split()[0] for line in lines[4:]] == ["block", "load-data", "summarize", "write-csv"]


def test_tree_cuts_the_last_column_to_the_terminal_width() -> None:
    out = io.StringIO()
    Console(file=out, width=80).print(render(dask_run(), NOW))
    assert all(len(line) <= 80 for line in out.getvalue().splitlines())
    assert "block dask" in out.getvalue() and "WaitingForUpstream" in out.getvalue()


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [("42\n", 10, "42"), ("a\nb", 10, "a…"), ("x" * 12, 10, "x" * 9 + "…"), ("", 10, "")],
)
def test_one_line(text: str, limit: int, expected: str) -> None:
    assert one_line(text, limit) == expected


@pytest.mark.parametrize("colour", [False, True], ids=["plain", "colour"])
def test_text_graph_of_the_dask_example(colour: bool) -> None:
    spec = parse_spec(dask_example()["spec"])
    text = draw(graph.text("dask-summary", spec), colour)
    check_golden(f"dask-graph.{'ansi' if colour else 'txt'}", text)


@pytest.mark.parametrize(("form", "suffix"), [("dot", "dot"), ("mermaid", "mmd")])
def test_dot_and_mermaid_graphs_of_the_dask_example(form: str, suffix: str) -> None:
    spec = parse_spec(dask_example()["spec"])
    drawn = graph.dot("dask-summary", spec) if form == "dot" else graph.mermaid("dask-summary", spec)
    check_golden(f"dask-graph.{suffix}", drawn + "\n")


def test_dot_graph_draws_the_block_as_a_cluster_around_its_tasks() -> None:
    lines = graph.dot("dask-summary", parse_spec(dask_example()["spec"])).splitlines()
    start = lines.index('  subgraph "cluster_dask" {')
    end = lines.index("  }", start)
    inside = "\n".join(lines[start:end])
    assert '"task:load-data"' in inside and '"task:summarize"' in inside
    assert '"task:write-csv"' not in inside
    assert '  "task:summarize" -> "task:write-csv";' in lines


NESTED = flow(
    task("prep"),
    task("load", "prep", resources=["db"]),
    task("both", "load", resources=["db", "cache"]),
    task("side", resources=["db", "tmp"]),
    resources=[
        resource("db", runAfter=["prep"]),
        resource("cache", value="$(resources.db.value)"),
        resource("tmp", setup={"job": job("mk")}),
    ],
)


def test_layout_nests_a_block_in_the_block_it_uses_and_a_task_in_its_innermost_block() -> None:
    plan = layout(parse_spec(NESTED))
    assert plan.parent == {"db": None, "cache": "db", "tmp": None}
    assert plan.home == {"prep": None, "load": "db", "both": "cache", "side": "db"}
    assert plan.also_in == {"side": ("tmp",)}
    top = [i.resource.name if isinstance(i, BlockNode) else i.name for i in plan.items]
    assert top == ["prep", "db", "tmp"]


def test_graphs_of_nested_blocks() -> None:
    spec = parse_spec(NESTED)
    mermaid = graph.mermaid("nested", spec).splitlines()
    # cache's subgraph is inside db's; side is drawn in db with a dashed edge from tmp.
    assert mermaid.index('    subgraph b_cache["block cache"]') > mermaid.index('  subgraph b_db["block db"]')
    assert "  r_tmp -.-> t_side" in mermaid
    assert "  t_prep --> r_db" in mermaid
    dot = graph.dot("nested", spec)
    assert '"resource:tmp" -> "task:side" [style=dashed];' in dot
    text = draw(graph.text("nested", spec), colour=False)
    assert "block db  [deployments db]  ← prep" in text and "side  (also in tmp)" in text


def test_a_run_of_a_flow_is_drawn_from_the_spec_it_resolved() -> None:
    resolved = flow(task("a"), task("b", "a"))
    run = {"metadata": {"name": "r", "namespace": "team"}, "spec": {"flowRef": {"name": "f"}}}
    assert run_spec(run) is None  # before the first pass: nothing to draw but the status
    run["status"] = {"resolvedSpec": resolved}
    drawn = run_spec(run)
    assert drawn is not None and [t.name for t in drawn.tasks] == ["a", "b"]
    # A run with its own tasks is drawn from them, whatever its status holds.
    inline = {"metadata": {"name": "r"}, "spec": flow(task("x")), "status": {"resolvedSpec": resolved}}
    assert [t.name for t in run_spec(inline).tasks] == ["x"]  # type: ignore[union-attr]


# --- conditions and fan-out ------------------------------------------------------------------------


def example_mid_run(file: str, script: Any, seconds: int) -> dict[str, Any]:
    """An example run by the engine (`script(sim, second)` plays the cluster), as `get` reads it."""
    body: dict[str, Any] = yaml.safe_load((REPO / "examples" / file).read_text())
    sim = Sim(body["spec"])
    sim.update(name=body["metadata"]["name"])
    for second in range(seconds):
        sim.step(at(second))
        script(sim, second)
    body["metadata"]["namespace"] = "analytics"
    body["status"] = sim.status
    return body


def branching_run() -> dict[str, Any]:
    def play(sim: Sim, second: int) -> None:
        for name in sim.cluster.names("Pod"):
            pod = sim.cluster.get("Pod", name)
            if not pod.get("status"):
                message = pod["metadata"]["annotations"]["sim.flowrun.dev/message"]
                sim.cluster.set_pod(name, "Succeeded", message=message, start=at(second), finish=at(second + 1))

    return example_mid_run("branching-flowrun.yaml", play, 6)


def foreach_run() -> dict[str, Any]:
    """summarize-day-0 succeeded, -1 runs its second attempt, -2 waits for a slot."""

    def play(sim: Sim, second: int) -> None:
        run = sim.run.name
        if second == 0:
            sim.cluster.set_pod(f"{run}-list-days-1", "Succeeded", message='["2026-01-01","2026-01-02","2026-01-03"]')
        for name in sim.cluster.names("Deployment"):
            sim.cluster.make_available(name)
        if sim.cluster.has("Pod", f"{run}-summarize-day-0-1") and second == 3:
            sim.cluster.set_pod(f"{run}-summarize-day-0-1", "Succeeded", message='{"rows": 86400, "mean": 0.0011}')
            sim.cluster.set_pod(f"{run}-summarize-day-1-1", "Failed", message="KilledWorker", exit_code=1)
        if sim.cluster.has("Pod", f"{run}-summarize-day-1-2"):
            sim.cluster.run_pod(f"{run}-summarize-day-1-2", start=at(second))

    return example_mid_run("foreach-dask-flowrun.yaml", play, 12)


@pytest.mark.parametrize("example", ["branching", "foreach"])
def test_trees_and_graphs_of_the_condition_and_fan_out_examples(example: str) -> None:
    run = branching_run() if example == "branching" else foreach_run()
    tree = draw(render(run, at(12)), False)
    check_golden(f"{example}-tree.txt", tree)
    spec = parse_spec(run["spec"])
    check_golden(f"{example}-graph.txt", draw(graph.text(run["metadata"]["name"], spec), False))
    check_golden(f"{example}-graph.dot", graph.dot(run["metadata"]["name"], spec) + "\n")
    check_golden(f"{example}-graph.mmd", graph.mermaid(run["metadata"]["name"], spec) + "\n")


def test_the_tree_shows_a_forEach_tasks_instances_under_it() -> None:
    tree = draw(render(foreach_run(), at(12)), False)
    lines = [line for line in tree.splitlines()[3:] if "summarize-day" in line[:24]]
    assert "InstancesRunning" in lines[0] and "1 of 3 instances done" in lines[0], lines
    assert [line.split()[1] for line in lines[1:]] == ["summarize-day-0", "summarize-day-1", "summarize-day-2"]
    assert "2/3" in lines[2] and "PodRunning" in lines[2], "the instance's attempt of its retries"
    assert "PodPending" in lines[3], "started once summarize-day-0 freed a slot of the task's two"


def test_the_tree_lists_the_first_instances_and_every_one_that_did_not_succeed() -> None:
    run = foreach_run()
    tasks = run["status"]["tasks"]
    template = dict(tasks["summarize-day-0"])
    for i in range(3, 40):
        tasks[f"summarize-day-{i}"] = {**template, "index": i, "phase": "Failed" if i == 33 else "Succeeded"}
    tree = draw(render(run, at(12)), False)
    assert "summarize-day-19 " in tree and "summarize-day-20 " not in tree
    assert "summarize-day-33 " in tree and "… 19 more succeeded" in tree, tree


def test_the_graph_writes_conditions_and_lists() -> None:
    spec = parse_spec(branching_run()["spec"])
    text = draw(graph.text("branching", spec), False)
    assert "publish-prod  ← load  when $(params.env) == 'prod'" in text, text
    assert "peripheries=2" in graph.dot("f", parse_spec(foreach_run()["spec"]))


def test_the_graph_writes_the_locks_the_run_and_its_tasks_hold() -> None:
    nightly = yaml.safe_load((REPO / "examples" / "nightly-mutex-flowrun.yaml").read_text())
    lines = draw(graph.text("nightly-load", parse_spec(nightly["spec"])), False).splitlines()
    assert lines == ["FlowRun nightly-load  [holds mutex/warehouse]", "extract", "load  ← extract"]
    limits = {"semaphore": {"configMapKeyRef": {"name": "limits", "key": "exports"}}}
    spec = parse_spec(flow(task("export", synchronization=limits)))
    assert draw(graph.text("f", spec), False).splitlines()[1] == "export  [holds semaphore/limits/exports]"
    assert "export\\nholds semaphore/limits/exports" in graph.dot("f", spec)
    assert "export<br/>holds semaphore/limits/exports" in graph.mermaid("f", spec)
