"""The fault soak's pure parts (bench/soak): the seeded workload generator and the model of what
each run must end as.

- Determinism: the same seed and index give the same workload, byte for byte, in any process.
- Validity: every generated object passes the CRDs (schema and CEL rules) and the operator's own
  checks (the spec model, Flow resolution, the CronFlowRun's and the rerun's checks), and every
  expectation covers its run and agrees with itself.
- The model by hand: specs whose outcomes are derived from docs/semantics.md and docs/api.md.
- The cross-check: the operator's engine runs the generated specs (and the hand-written ones)
  against a cluster that finishes pods as their annotations say, and must end as the model says
  wherever the model says something.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from random import Random
from typing import Any

import cel
import pytest
import yaml

from bench.soak import model, workloads
from bench.soak.model import Expected, ExpectedTask
from bench.soak.workloads import Workload, real_template, sim_template
from flowrun import api, cron, flows, rerun
from flowrun.model import parse_spec
from tests.unit.builders import Sim
from tests.unit.soak_cluster import KwokCluster

REPO = Path(__file__).resolve().parents[2]
# The corpus: workloads 0..COUNT-1 of SEED, read by the validity tests (which count on at least the
# default number to find every kind and outcome); the engine runs the first CROSS_CHECKED of them,
# twice (usual and jittered timing). Larger runs, e.g. FLOWRUN_SOAK_SEED=8 FLOWRUN_SOAK_WORKLOADS=1000
# FLOWRUN_SOAK_CROSS_CHECKED=1000, take about a minute per thousand workloads and timing.
SEED = int(os.environ.get("FLOWRUN_SOAK_SEED", "11"))
COUNT = int(os.environ.get("FLOWRUN_SOAK_WORKLOADS", "200"))
CROSS_CHECKED = min(COUNT, int(os.environ.get("FLOWRUN_SOAK_CROSS_CHECKED", "80")))
IMAGE = "shell:1"  # a real node image name (only its presence matters here)


@functools.cache
def corpus() -> tuple[Workload, ...]:
    return tuple(workloads.generate(SEED, index, real_node_image=IMAGE) for index in range(COUNT))


def as_json(workload: Workload) -> str:
    return json.dumps(dataclasses.asdict(workload), sort_keys=False)


def runs_of(workload: Workload) -> Iterator[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """(expectation key, the run's spec, the Flow it runs or None) of each run of a workload."""
    by_kind = {o["kind"]: o for o in workload.objects}
    flow = by_kind.get("Flow")
    if workload.kind == "cron":
        yield "*", by_kind["CronFlowRun"]["spec"]["flowRunTemplate"]["spec"], flow
        return
    yield workload.name, by_kind["FlowRun"]["spec"], flow


def resolved(spec: Mapping[str, Any], flow: Mapping[str, Any] | None) -> dict[str, Any]:
    """The spec a run executes: its own, or its Flow's as the operator resolves it."""
    if flow is None:
        return dict(spec)
    return flows.resolve_flow(spec, flow, "soak").spec


# --- determinism ---------------------------------------------------------------------------------


def test_the_same_seed_and_index_give_the_same_workload_byte_for_byte() -> None:
    for index in range(40):
        again = workloads.generate(SEED, index, real_node_image=IMAGE)
        assert as_json(again) == as_json(corpus()[index])


def test_a_workload_does_not_depend_on_the_process_or_its_hash_seed() -> None:
    script = (
        "import dataclasses, json; from bench.soak import workloads; "
        f"print(json.dumps([dataclasses.asdict(workloads.generate({SEED}, i, real_node_image={IMAGE!r})) "
        "for i in range(12)]))"
    )
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(REPO)}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
        outputs.append(done.stdout)
    here = json.dumps([dataclasses.asdict(w) for w in corpus()[:12]])
    assert outputs[0] == outputs[1] == here + "\n"


def test_workloads_differ_by_index_and_seed_and_are_named_from_both() -> None:
    names = [w.name for w in corpus()]
    assert len(set(names)) == len(names) and names[7] == f"soak-{SEED}-7"
    assert len({as_json(w) for w in corpus()}) == COUNT
    assert as_json(workloads.generate(12, 0)) != as_json(workloads.generate(13, 0))


@pytest.mark.parametrize(("seed", "index"), [(-1, 0), (0, -1)])
def test_a_negative_seed_or_index_is_refused(seed: int, index: int) -> None:
    with pytest.raises(ValueError, match="non-negative"):
        workloads.generate(seed, index)


def test_no_real_node_workload_without_an_image() -> None:
    assert not [index for index in range(60) if workloads.generate(SEED, index).kind == "real"]
    assert [w.kind for w in corpus()].count("real") > 3


# --- validity: the CRDs --------------------------------------------------------------------------

CRD_FILES = {"FlowRun": "flowrun.yaml", "Flow": "flow.yaml", "CronFlowRun": "cronflowrun.yaml"}
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "number": (int, float),
}


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    crd = yaml.safe_load((REPO / "crds" / CRD_FILES[kind]).read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _type_errors(schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
    if schema.get("x-kubernetes-int-or-string"):
        ok = isinstance(value, str | int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: not an int or string"]
    wanted = schema.get("type")
    if wanted is None:
        return []
    ok = isinstance(value, PYTHON_TYPES[wanted]) and not (wanted in ("integer", "number") and isinstance(value, bool))
    return [] if ok else [f"{path}: not {wanted}: {value!r}"]


def _bound_errors(schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not in {schema['enum']}")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and not schema.get("minimum", value) <= value <= schema.get("maximum", value):
        errors.append(f"{path}: {value} out of bounds")
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            errors.append(f"{path}: length {len(value)} out of bounds")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if isinstance(value, list) and not schema.get("minItems", 0) <= len(value) <= schema.get("maxItems", len(value)):
        errors.append(f"{path}: {len(value)} items out of bounds")
    return errors


def _object_errors(schema: Mapping[str, Any], value: dict[str, Any], path: str) -> list[str]:
    errors = [f"{path}.{key}: required" for key in schema.get("required", []) if key not in value]
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    open_ended = schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-embedded-resource")
    for key, item in value.items():
        if key in properties:
            errors += crd_errors(properties[key], item, f"{path}.{key}")
        elif isinstance(extra, dict):
            errors += crd_errors(extra, item, f"{path}.{key}")
        elif properties and not open_ended:
            errors.append(f"{path}.{key}: unknown field")
    return errors


def _list_errors(schema: Mapping[str, Any], value: list[Any], path: str) -> list[str]:
    errors = []
    for i, item in enumerate(value):
        errors += crd_errors(schema.get("items") or {}, item, f"{path}[{i}]")
    if schema.get("x-kubernetes-list-type") == "map":
        keys = [tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"]) for item in value]
        errors += [f"{path}: duplicate key {key}" for key, n in Counter(keys).items() if n > 1]
    if schema.get("x-kubernetes-list-type") == "set":
        errors += [f"{path}: duplicate {item!r}" for item, n in Counter(map(str, value)).items() if n > 1]
    return errors


def crd_errors(schema: Mapping[str, Any], value: Any, path: str = "") -> list[str]:
    """What the API server would refuse in `value` by the CRD's structural schema and its CEL
    rules (transition rules need an old object: on create there is none)."""
    errors = _type_errors(schema, value, path)
    if errors:
        return errors
    errors += _bound_errors(schema, value, path)
    if isinstance(value, dict):
        errors += _object_errors(schema, value, path)
    elif isinstance(value, list):
        errors += _list_errors(schema, value, path)
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" not in rule["rule"] and cel.evaluate(rule["rule"], {"self": value}) is not True:
            errors.append(f"{path}: rule {rule['rule']!r} failed")
    return errors


def every_object(workload: Workload) -> list[dict[str, Any]]:
    return [*workload.objects, *([workload.rerun] if workload.rerun else [])]


def test_every_object_passes_its_crd() -> None:
    for workload in corpus():
        for obj in every_object(workload):
            assert obj["apiVersion"] == api.API_VERSION
            assert crd_errors(crd_schema(obj["kind"]), obj) == [], (workload.name, obj["kind"])


def test_the_crd_check_refuses_what_the_api_server_refuses() -> None:
    spec = {"tasks": [{"name": "Bad_Name", "runAfter": ["Bad_Name"], "template": sim_template(1)}], "bogus": 1}
    errors = crd_errors(crd_schema("FlowRun"), {"apiVersion": api.API_VERSION, "kind": "FlowRun", "spec": spec})
    assert any("does not match" in e for e in errors) and any("unknown field" in e for e in errors)
    assert any("self.name in self.runAfter" in e for e in errors)


def test_the_fallback_is_a_valid_workload_the_draws_never_need() -> None:
    fallback = workloads._fallback("soak-x")
    assert crd_errors(crd_schema("FlowRun"), fallback.objects[0]) == []
    assert fallback.expected["soak-x"].phase == api.SUCCEEDED

    def first_message(workload: Workload) -> str | None:
        tasks = workload.objects[-1]["spec"].get("tasks") or [{"template": {}}]
        notes: dict[str, str] = (tasks[0]["template"].get("metadata") or {}).get("annotations") or {}
        return notes.get(model.SIM + "message")

    assert first_message(fallback) == "t0"  # drawn tasks write "<name>:<token>..."
    assert not [w.name for w in corpus() if first_message(w) == "t0"]


def test_objects_are_named_from_the_workload_and_have_no_namespace() -> None:
    for workload in corpus():
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", workload.name) and len(workload.name) <= 63
        for obj in every_object(workload):
            assert "namespace" not in obj["metadata"]
            assert obj["metadata"]["name"].startswith(workload.name)
            assert obj["metadata"]["labels"] == {workloads.WORKLOAD_LABEL: workload.name}
        for spec in (o["spec"] for o in every_object(workload) if o["kind"] in ("FlowRun", "Flow")):
            for block in spec.get("resources") or []:
                for manifest in block["setup"].get("manifests") or []:
                    assert manifest["metadata"]["name"].startswith(workload.name + "-")
                    assert manifest["metadata"]["labels"] == {workloads.WORKLOAD_LABEL: workload.name}
                    assert "namespace" not in manifest["metadata"]


# --- validity: the operator's checks -------------------------------------------------------------


def test_every_run_passes_the_operators_checks() -> None:
    for workload in corpus():
        by_kind = {o["kind"]: o for o in workload.objects}
        if "Flow" in by_kind:
            assert flows.check_flow(by_kind["Flow"]["spec"], "soak").error is None, workload.name
        if "CronFlowRun" in by_kind:
            cron.parse_cron_spec(by_kind["CronFlowRun"]["spec"])
        for _, spec, flow in runs_of(workload):
            parse_spec(resolved(spec, flow), "soak")


def test_a_flow_resolves_to_the_spec_the_model_was_given() -> None:
    """A Flow and its run resolve (as the operator resolves them) to the spec drawn, so the model's
    expectation is that of the run the soak creates."""
    checked = 0
    for index in range(COUNT):
        rng = Random(f"flowrun-soak/{SEED}/{index}")
        spec = workloads.draw_spec(rng, "w", workloads.Options())
        flow, run_spec = workloads.flow_objects(rng, "w", spec)
        assert json.dumps(resolved(run_spec, flow), sort_keys=True) == json.dumps(spec, sort_keys=True)
        checked += bool(spec.get("params"))
    assert checked > 20


def test_a_rerun_names_its_original_and_passes_the_operators_rerun_checks() -> None:
    reruns = [w for w in corpus() if w.kind == "rerun"]
    assert len(reruns) > 10
    for workload in reruns:
        assert workload.rerun is not None
        assert workload.rerun["spec"] == {"rerunOf": {"name": workload.name}}
        assert workload.expected[workload.name].phase == api.FAILED
        ((_, spec, flow),) = runs_of(workload)
        executed = resolved(spec, flow)
        status = {"phase": "Failed", **({"resolvedSpec": executed} if flow is not None else {})}
        original = {"metadata": {"name": workload.name}, "spec": spec, "status": status}
        assert rerun.plan_rerun(workload.rerun["spec"], original, workload.name, "soak").snapshot.spec == executed


# --- what is drawn -------------------------------------------------------------------------------


def test_shapes_are_the_named_dags_of_earlier_tasks() -> None:
    rng = Random(0)
    assert workloads.shape(Random(1), 1) == [[]]
    assert workloads._fan(rng, 5) == [[], [0], [0], [0], [1, 2, 3]]
    assert workloads._diamonds(rng, 7) == [[], [0], [0], [1, 2], [3], [3], [4, 5]]
    assert workloads.depth(workloads._diamonds(rng, 7)) == 5
    for count in (1, 2, 3, 10, 40):
        for dag in (workloads._layers(rng, count), workloads._random_dag(rng, count), workloads.shape(rng, count)):
            assert len(dag) == count
            assert all(all(u < i for u in ups) and len(set(ups)) == len(ups) for i, ups in enumerate(dag))


def features(workload: Workload) -> set[str]:
    """What a workload exercises, by name."""
    found = {f"kind:{workload.kind}"}
    for _, raw, flow in runs_of(workload):
        spec = resolved(raw, flow)
        found.add(f"tasks:{'1' if len(spec['tasks']) == 1 else '26+' if len(spec['tasks']) > 25 else 'some'}")
        found |= {f"trigger:{t['trigger']}" for t in spec["tasks"] if "trigger" in t}
        found |= {"retries" for t in spec["tasks"] if "retries" in t}
        found |= {"echo" for t in spec["tasks"] if "$(tasks." in json.dumps(t["template"]["spec"])}
        found |= {f"setup:{part}" for b in spec.get("resources") or [] for part in b["setup"]}
        found |= {
            "ports" for b in spec.get("resources") or [] for d in b["setup"].get("deployments") or [] if "ports" in d
        }
        found |= {"cleanup job" for b in spec.get("resources") or [] if "job" in (b.get("cleanup") or {})}
        found |= {"block runAfter" for b in spec.get("resources") or [] if "runAfter" in b}
        found |= {"nested" for b in spec.get("resources") or [] if "$(resources." in json.dumps(b)}
        found |= {key for key in ("params", "parallelism", "activeDeadlineSeconds") if key in spec}
    for expected in workload.expected.values():
        found |= {f"run:{expected.phase}"}
        found |= {f"task:{t.phase}/{t.reason}" for t in expected.tasks.values()}
        found |= {f"block:{phase}" for phase in expected.resources.values()}
    for obj in workload.objects:
        if obj["kind"] == "CronFlowRun":
            found.add(f"cron:{obj['spec']['concurrencyPolicy']}")
            found.add("cron:flowRef" if "flowRef" in obj["spec"]["flowRunTemplate"]["spec"] else "cron:tasks")
    return found


def test_every_kind_shape_and_outcome_is_drawn() -> None:
    drawn = Counter(feature for workload in corpus() for feature in features(workload))
    wanted = {
        *(f"kind:{kind}" for kind in workloads.BUILDERS),
        "tasks:1",
        "tasks:some",
        "tasks:26+",
        *(f"trigger:{trigger}" for trigger in ("allSucceeded", "allDone", "anyFailed")),
        "retries",
        "echo",
        "setup:job",
        "setup:deployments",
        "setup:manifests",
        "ports",
        "cleanup job",
        "block runAfter",
        "nested",
        "params",
        "parallelism",
        "activeDeadlineSeconds",
        "run:Succeeded",
        "run:Failed",
        "task:Succeeded/Succeeded",
        "task:Succeeded/Reused",
        "task:Failed/Error",
        "task:Failed/DeadlineExceeded",
        "task:Skipped/UpstreamFailed",
        "task:Skipped/TriggerNotMet",
        "task:Skipped/SetupFailed",
        "task:Skipped/RunDeadlineExceeded",
        "block:CleanedUp",
        "block:CleanupFailed",
        "block:Pending",
        "cron:Allow",
        "cron:Forbid",
        "cron:Replace",
        "cron:flowRef",
        "cron:tasks",
    }
    assert wanted - set(drawn) == set(), drawn


def test_runs_end_well_under_a_minute_absent_faults() -> None:
    for workload in corpus():
        for _, spec, flow in runs_of(workload):
            assert model.nominal_seconds(resolved(spec, flow)) <= workloads.MAX_NOMINAL_SECONDS
            if workload.rerun is not None:
                reused = workloads.reused_of(workload.expected[workload.name])
                assert model.nominal_seconds(resolved(spec, flow), reused=reused) <= workloads.MAX_NOMINAL_SECONDS
        assert 15 < workload.max_seconds <= 2 * workloads.bound(workloads.MAX_NOMINAL_SECONDS) + 60


def test_deadlines_are_clearly_hit_or_clearly_not() -> None:
    """A task deadline is seconds against a pod of an hour, or ten minutes and more against pods of
    seconds; a run deadline is seconds (every task waits on a block never Ready) or half an hour."""
    for workload in corpus():
        for _, spec, flow in runs_of(workload):
            spec = resolved(spec, flow)
            for task in spec["tasks"]:
                seconds = model.pod_plan(task["template"]).seconds
                if "activeDeadlineSeconds" in task:
                    deadline = task["activeDeadlineSeconds"]
                    assert (deadline <= 3 and seconds >= 3600) or (deadline >= 600 and seconds <= 3), task
            if "activeDeadlineSeconds" in spec:
                assert spec["activeDeadlineSeconds"] <= 4 or spec["activeDeadlineSeconds"] >= 1800


# --- the expectations ----------------------------------------------------------------------------


def test_each_expectation_covers_its_run_and_agrees_with_itself() -> None:
    for workload in corpus():
        for key, spec, flow in runs_of(workload):
            spec = resolved(spec, flow)
            expected = workload.expected[key]
            assert list(expected.tasks) == [t["name"] for t in spec["tasks"]]
            assert list(expected.resources) == [b["name"] for b in spec.get("resources") or []]
            for task in expected.tasks.values():
                assert (task.result is not None) == (task.phase == api.SUCCEEDED), task
                assert task.phase != api.SKIPPED or task.attempts == 0
            failing = [
                t
                for t in expected.tasks.values()
                if t.phase == api.FAILED or (t.phase == api.SKIPPED and t.reason != api.TRIGGER_NOT_MET)
            ]
            if failing or api.CLEANUP_FAILED in expected.resources.values():
                assert expected.phase == api.FAILED


def test_a_rerun_expects_what_succeeded_reused_and_the_rest_run_again() -> None:
    for workload in (w for w in corpus() if w.kind == "rerun"):
        original, again = workload.expected[workload.name], workload.expected[f"{workload.name}-rerun"]
        for name, task in original.tasks.items():
            if task.phase == api.SUCCEEDED:
                assert again.tasks[name] == ExpectedTask(api.SUCCEEDED, model.REUSED, 0, task.result)
            else:  # the same pods again: the same outcome (a reused upstream may only change a skip)
                assert again.tasks[name].phase == task.phase or task.phase == api.SKIPPED, name


def test_echoed_results_are_the_upstream_results_the_model_expects() -> None:
    """A task that takes $(tasks.X.result) in its args writes a message holding X's result."""
    echoes = 0
    for workload in corpus():
        for key, spec, flow in runs_of(workload):
            expected = workload.expected[key]
            for task in resolved(spec, flow)["tasks"]:
                sources = re.findall(r"\$\(tasks\.([a-z0-9-]+)\.result\)", json.dumps(task["template"]["spec"]))
                mine = expected.tasks[task["name"]]
                if (
                    workload.kind == "real"
                    or mine.phase != api.SUCCEEDED
                    or task.get("trigger") not in (None, "allSucceeded")
                ):
                    continue
                for source in sources:
                    assert f"<{expected.tasks[source].result}" in str(mine.result)
                    echoes += 1
    assert echoes > 50


# --- the model, by hand --------------------------------------------------------------------------


def task(
    name: str, *after: str, seconds: float = 0.5, outcome: str = "succeed", fail_attempts: int = 0, **fields: Any
) -> dict[str, Any]:
    """A KWOK task whose message (its result) is its name unless `message` is given."""
    message = fields.pop("message", name)
    out: dict[str, Any] = {
        "name": name,
        "template": sim_template(seconds, outcome=outcome, message=message, fail_attempts=fail_attempts),
    }
    if after:
        out["runAfter"] = list(after)
    out.update(fields)
    return out


def real(name: str, *after: str, text: str, fails: bool = False, **fields: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "template": real_template(IMAGE, 0.2, text, fails=fails)}
    if after:
        out["runAfter"] = list(after)
    out.update(fields)
    return out


def job(
    message: str = "V", *, outcome: str = "succeed", fail_attempts: int = 0, args: list[str] | None = None
) -> dict[str, Any]:
    return {"template": sim_template(1.0, outcome=outcome, message=message, fail_attempts=fail_attempts, args=args)}


def never_ready() -> dict[str, Any]:
    return {"name": "d0", "template": sim_template(0, outcome=None, ready=False, container="d0")}


def ok(result: str, attempts: int = 1) -> ExpectedTask:
    return ExpectedTask(api.SUCCEEDED, "Succeeded", attempts, result)


def failed(reason: str = "Error", attempts: int = 1) -> ExpectedTask:
    return ExpectedTask(api.FAILED, reason, attempts, None)


def skipped(reason: str | None) -> ExpectedTask:
    return ExpectedTask(api.SKIPPED, reason, 0, None)


UF, TNM, SF, RDE = api.UPSTREAM_FAILED, api.TRIGGER_NOT_MET, api.SETUP_FAILED, api.STOP_DEADLINE


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    spec: dict[str, Any]
    phase: str
    tasks: dict[str, ExpectedTask]
    blocks: dict[str, str | None] = dataclasses.field(default_factory=dict)
    reused: dict[str, str] | None = None
    engine_disagrees: bool = False  # see test_the_engine_orders_skip_reasons_as_the_docs_do

    @property
    def expected(self) -> Expected:
        return Expected(self.phase, self.tasks, self.blocks)


S, F = api.SUCCEEDED, api.FAILED
CASES = [
    Case("a task succeeds, its message is its result", {"tasks": [task("a", message="A")]}, S, {"a": ok("A")}),
    Case(
        "a failure skips its downstream and fails the run",
        {"tasks": [task("a"), task("b", "a", outcome="fail"), task("c", "b")]},
        F,
        {"a": ok("a"), "b": failed(), "c": skipped(UF)},
    ),
    Case(
        "allDone runs whatever its upstream did",
        {"tasks": [task("a", outcome="fail"), task("b", "a", trigger="allDone")]},
        F,
        {"a": failed(), "b": ok("b")},
    ),
    Case(
        "anyFailed counts a propagated failure, and the run still fails",
        {"tasks": [task("a", outcome="fail"), task("b", "a"), task("h", "b", trigger="anyFailed")]},
        F,
        {"a": failed(), "b": skipped(UF), "h": ok("h")},
    ),
    Case(
        "anyFailed on a successful path is TriggerNotMet, so is what follows it, and the run succeeds",
        {"tasks": [task("a"), task("h", "a", trigger="anyFailed"), task("d", "h"), task("e", "h", trigger="allDone")]},
        S,
        {"a": ok("a"), "h": skipped(TNM), "d": skipped(TNM), "e": ok("e")},
    ),
    Case(
        "anyFailed without runAfter never holds; allDone without runAfter runs",
        {"tasks": [task("h", trigger="anyFailed"), task("d", trigger="allDone"), task("e", "h", trigger="anyFailed")]},
        S,
        {"h": skipped(TNM), "d": ok("d"), "e": skipped(TNM)},
    ),
    Case(
        "allSucceeded skips as soon as one upstream fails; the other upstream runs on",
        {"tasks": [task("a", seconds=0.2, outcome="fail"), task("b", seconds=2), task("c", "a", "b")]},
        F,
        {"a": failed(), "b": ok("b"), "c": skipped(UF)},
    ),
    Case(
        "a retried task wins on attempt N+1",
        {"tasks": [task("a", fail_attempts=2, retries={"limit": 2, "backoffSeconds": 0}), task("b", "a")]},
        S,
        {"a": ok("a", attempts=3), "b": ok("b")},
    ),
    Case(
        "retries run out: Failed with the last attempt's reason",
        {"tasks": [task("a", fail_attempts=3, retries={"limit": 1, "backoffSeconds": 1})]},
        F,
        {"a": failed(attempts=2)},
    ),
    Case(
        "a task deadline clearly hit fails every attempt",
        {
            "tasks": [
                task(
                    "a",
                    seconds=3600,
                    outcome="fail",
                    activeDeadlineSeconds=2,
                    retries={"limit": 1, "backoffSeconds": 0},
                ),
                task("b", "a"),
            ]
        },
        F,
        {"a": failed("DeadlineExceeded", attempts=2), "b": skipped(UF)},
    ),
    Case(
        "a task deadline clearly not hit, a run deadline clearly not hit, parallelism 1: no change",
        {
            "activeDeadlineSeconds": 1800,
            "parallelism": 1,
            "tasks": [task("a", activeDeadlineSeconds=900), task("b", "a"), task("c", "a"), task("d", "b", "c")],
        },
        S,
        {"a": ok("a"), "b": ok("b"), "c": ok("c"), "d": ok("d")},
    ),
    Case(
        "results and params are substituted in args; a result of a task that did not succeed is empty (Choice)",
        {
            "params": [{"name": "p", "value": "P"}],
            "tasks": [
                real("a", text="A"),
                real("f", text="F", fails=True),
                real("b", "a", "f", text="b<$(tasks.a.result)<$(tasks.f.result)<$(params.p)", trigger="allDone"),
            ],
        },
        F,
        {"a": ok("A"), "f": failed(), "b": ok("b<A<<P")},
    ),
    Case(
        "a block's value: its value field, else its setup job's result, else its name",
        {
            "params": [{"name": "p", "value": "P"}],
            "resources": [
                {"name": "j", "setup": {"job": job("J")}},
                {"name": "v", "setup": {"job": job("ignored")}, "value": "x-$(params.p)"},
                {
                    "name": "m",
                    "setup": {"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w-m"}}]},
                },
            ],
            "tasks": [
                real(
                    "u",
                    text="$(resources.j.value)/$(resources.v.value)/$(resources.m.value)",
                    resources=["j", "v", "m"],
                )
            ],
        },
        S,
        {"u": ok("J/x-P/m")},
        {"j": api.CLEANED_UP, "v": api.CLEANED_UP, "m": api.CLEANED_UP},
    ),
    Case(
        "a setup job fails: its tasks are SetupFailed, their downstream UpstreamFailed, the block cleaned up",
        {
            "resources": [{"name": "r", "setup": {"job": job(outcome="fail")}}],
            "tasks": [task("u", resources=["r"]), task("d", "u"), task("e")],
        },
        F,
        {"u": skipped(SF), "d": skipped(UF), "e": ok("e")},
        {"r": api.CLEANED_UP},
    ),
    Case(
        "a Deployment never Ready times out: SetupFailed",
        {
            "resources": [{"name": "r", "setup": {"deployments": [never_ready()], "timeoutSeconds": 2}}],
            "tasks": [task("u", resources=["r"])],
        },
        F,
        {"u": skipped(SF)},
        {"r": api.CLEANED_UP},
    ),
    Case(
        "a cleanup job that fails once succeeds on its retry",
        {
            "resources": [
                {"name": "r", "setup": {"job": job()}, "cleanup": {"job": job(fail_attempts=1), "retries": 1}}
            ],
            "tasks": [task("u", resources=["r"])],
        },
        S,
        {"u": ok("u")},
        {"r": api.CLEANED_UP},
    ),
    Case(
        "a cleanup job that fails every attempt: CleanupFailed fails the run, the tasks keep their outcome",
        {
            "resources": [
                {"name": "r", "setup": {"job": job()}, "cleanup": {"job": job(outcome="fail"), "retries": 1}}
            ],
            "tasks": [task("u", resources=["r"])],
        },
        F,
        {"u": ok("u")},
        {"r": api.CLEANUP_FAILED},
    ),
    Case(
        "a block whose runAfter task failed is never set up and its tasks are UpstreamFailed",
        {
            "resources": [{"name": "r", "runAfter": ["a"], "setup": {"job": job()}}],
            "tasks": [task("a", outcome="fail"), task("u", resources=["r"])],
        },
        F,
        {"a": failed(), "u": skipped(UF)},
        {"r": api.PENDING},
    ),
    Case(
        "a block whose runAfter task was skipped by its trigger: TriggerNotMet, and the run succeeds",
        {
            "resources": [{"name": "r", "runAfter": ["h"], "setup": {"job": job()}}],
            "tasks": [task("h", trigger="anyFailed"), task("u", resources=["r"])],
        },
        S,
        {"h": skipped(TNM), "u": skipped(TNM)},
        {"r": api.PENDING},
    ),
    Case(
        "a block no task can use is never set up",
        {
            "resources": [{"name": "r", "setup": {"job": job()}}, {"name": "s", "setup": {"job": job()}}],
            "tasks": [task("a", outcome="fail"), task("u", "a", resources=["s"])],
        },
        F,
        {"a": failed(), "u": skipped(UF)},
        {"r": api.PENDING, "s": api.PENDING},
    ),
    Case(
        "a nested block is set up inside the block it uses, and both are cleaned up",
        {
            "resources": [
                {"name": "s", "setup": {"job": job("S")}},
                {
                    "name": "r",
                    "setup": {"job": job("R", args=["$(resources.s.value)"])},
                    "value": "in-$(resources.s.value)",
                },
            ],
            "tasks": [real("u", text="$(resources.r.value)", resources=["r"])],
        },
        S,
        {"u": ok("in-S")},
        {"s": api.CLEANED_UP, "r": api.CLEANED_UP},
    ),
    Case(
        "a block nested in a failed one is never set up; its tasks are SetupFailed",
        {
            "resources": [
                {"name": "s", "setup": {"job": job(outcome="fail")}},
                {"name": "r", "setup": {"job": job(args=["$(resources.s.value)"])}},
            ],
            "tasks": [task("u", resources=["r"]), task("v", resources=["s"])],
        },
        F,
        {"u": skipped(SF), "v": skipped(SF)},
        {"s": api.CLEANED_UP, "r": api.PENDING},
    ),
    Case(
        "a run deadline hit while every task waits on a block never Ready skips them all",
        {
            "activeDeadlineSeconds": 3,
            "resources": [{"name": "gate", "setup": {"deployments": [never_ready()], "timeoutSeconds": 3600}}],
            "tasks": [task("a", resources=["gate"]), task("b", "a"), task("h", "a", trigger="anyFailed")],
        },
        F,
        {"a": skipped(RDE), "b": skipped(RDE), "h": skipped(RDE)},
        # Set up and cleaned up if the first pass came before the deadline, else never set up.
        {"gate": None},
    ),
    Case(
        "replicas from a result that is no integer: InvalidValue, the block's tasks SetupFailed",
        {
            "resources": [
                {
                    "name": "r",
                    "runAfter": ["a"],
                    "setup": {
                        "deployments": [
                            {"name": "d0", "replicas": "$(tasks.a.result)", "template": sim_template(0, outcome=None)}
                        ]
                    },
                }
            ],
            "tasks": [task("a", message="two"), task("u", resources=["r"])],
        },
        F,
        {"a": ok("two"), "u": skipped(SF)},
        # The docs say nothing of the block is created, not whether it then counts as cleaned up.
        {"r": None},
    ),
    Case(
        "a rerun reuses what succeeded, runs the rest again, and leaves a block of reused tasks alone",
        {
            "resources": [{"name": "r", "setup": {"job": job()}}],
            "tasks": [task("a", resources=["r"]), task("b", "a", outcome="fail"), task("c", "b")],
        },
        F,
        {"a": ExpectedTask(S, model.REUSED, 0, "A"), "b": failed(), "c": skipped(UF)},
        {"r": api.PENDING},
        reused={"a": "A"},
    ),
    Case(
        "a skip whose reason depends on which of two failures comes first is not checked",
        {
            "resources": [{"name": "r", "setup": {"job": job(outcome="fail")}}],
            "tasks": [task("x", outcome="fail"), task("t", "x", resources=["r"]), task("w", resources=["r"])],
        },
        F,
        {"x": failed(), "t": skipped(None), "w": skipped(SF)},
        {"r": api.CLEANED_UP},
    ),
    *(
        Case(
            f"SetupFailed comes before a block that can never be set up, whatever the order of resources ({order})",
            {
                "resources": [
                    {"name": "r", "setup": {"job": job(outcome="fail")}},
                    {"name": "s", "runAfter": ["t0"], "setup": {"job": job()}},
                ],
                "tasks": [task("t0", resources=["r"]), task("t1", "t0", trigger="allDone", resources=order.split(","))],
            },
            F,
            {"t0": skipped(SF), "t1": skipped(SF)},
            {"r": api.CLEANED_UP, "s": api.PENDING},
            engine_disagrees=order == "s,r",
        )
        for order in ("r,s", "s,r")
    ),
    Case(
        "a block nested in a failed one: SetupFailed comes before the block's runAfter, in the docs' order",
        {
            "resources": [
                {"name": "r", "setup": {"job": job(outcome="fail")}},
                {"name": "s", "runAfter": ["t0"], "setup": {"job": job(args=["$(resources.r.value)"])}},
            ],
            "tasks": [task("t0", resources=["r"]), task("t1", resources=["s"])],
        },
        F,
        {"t0": skipped(SF), "t1": skipped(SF)},
        {"r": api.CLEANED_UP, "s": api.PENDING},
        engine_disagrees=True,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_model_expects_what_the_docs_say(case: Case) -> None:
    parse_spec(case.spec, "soak")
    assert model.expect(case.spec, reused=case.reused) == case.expected


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"tasks": [task("a", seconds=1, activeDeadlineSeconds=30)]}, "depends on timing"),
        ({"activeDeadlineSeconds": 3, "tasks": [task("a", seconds=1)]}, "depends on timing"),
    ],
    ids=["a task deadline near its pod's duration", "a run deadline a task may beat"],
)
def test_the_model_refuses_to_guess_a_phase_that_depends_on_timing(spec: dict[str, Any], why: str) -> None:
    with pytest.raises(model.Undetermined, match=why):
        model.expect(spec)


def test_the_model_reads_only_resolved_valid_specs() -> None:
    for spec in ({"flowRef": {"name": "f"}}, {"rerunOf": {"name": "r"}}, {"tasks": [task("a")], "cancel": True}):
        with pytest.raises(ValueError, match="resolved specs"):
            model.expect(spec)
    with pytest.raises(ValueError, match="cycle"):
        model.expect({"tasks": [task("a", "b"), task("b", "a")]})
    block = {"name": "r", "runAfter": ["a"], "setup": {"job": job()}}
    with pytest.raises(ValueError, match="cycle"):
        model.expect({"resources": [block], "tasks": [task("a", resources=["r"])]})


@pytest.mark.parametrize(("text", "seconds"), [("300ms", 0.3), ("1.5s", 1.5), ("1h2m", 3720.0), ("0", 0.0)])
def test_go_durations(text: str, seconds: float) -> None:
    assert model.go_seconds(text) == pytest.approx(seconds)


def test_bad_go_durations_are_refused() -> None:
    for text in ("", "5", "1x", "1s2"):
        with pytest.raises(ValueError):
            model.go_seconds(text)


def test_the_model_does_not_import_the_engine() -> None:
    """The point of the model is to disagree with the engine where the engine is wrong."""
    source = (REPO / "bench" / "soak" / "model.py").read_text()
    imports = re.findall(r"^(?:from|import) ([\w.]+)", source, re.MULTILINE)
    assert [name for name in imports if name.startswith("flowrun")] == ["flowrun"]
    assert "from flowrun import api" in source


# --- the cross-check: the only place the engine runs ---------------------------------------------
#
# THE ONLY PLACE THE ENGINE IS USED: the operator's pure engine runs the specs against a cluster
# that plays pods as the dev cluster does (tests/unit/soak_cluster.py), and must end as the model
# (or, for the hand-written cases, the docs) says, wherever it says something.


def disagreements(expected: Expected, status: Mapping[str, Any]) -> list[str]:
    found = [f"run {status.get('phase')} != {expected.phase}"] if status.get("phase") != expected.phase else []
    for name, want in expected.tasks.items():
        got = status["tasks"][name]
        for field, value in (("phase", want.phase), ("reason", want.reason), ("result", want.result)):
            if value is not None and got.get(field) != value:
                found.append(
                    f"task {name} {field} {got.get(field)!r} != {value!r} ({got.get('phase')}/{got.get('reason')})"
                )
        if want.attempts is not None and (got.get("attempts") or 0) != want.attempts:
            found.append(f"task {name} attempts {got.get('attempts')} != {want.attempts}")
    for name, phase in expected.resources.items():
        if phase is not None and status["resources"][name]["phase"] != phase:
            found.append(f"block {name} {status['resources'][name]['phase']} != {phase}")
    return found


def known_engine_disagreement(spec: Mapping[str, Any], status: Mapping[str, Any], line: str) -> bool:
    """The disagreement test_the_engine_orders_skip_reasons_as_the_docs_do shows: a task whose
    blocks both failed setup (or use one that did) and can never be set up (a runAfter task of
    theirs did not succeed) is skipped UpstreamFailed or TriggerNotMet by the engine, where the
    docs check SetupFailed first. Tolerated here, and only that, so the cross-check goes on
    finding others; remove with the engine's fix."""
    match = re.fullmatch(r"task (\S+) reason '(UpstreamFailed|TriggerNotMet)' != 'SetupFailed' .*", line)
    if match is None:
        return False
    by_name = {block["name"]: block for block in spec.get("resources") or []}

    def broken(name: str) -> bool:
        used = set(re.findall(r"\$\(resources\.([a-z0-9-]+)\.", json.dumps(by_name[name]))) - {name}
        return bool(status["resources"][name].get("setupError")) or any(broken(other) for other in sorted(used))

    def never(name: str) -> bool:
        after = by_name[name].get("runAfter") or []
        missed = any(status["tasks"][x]["phase"] != api.SUCCEEDED for x in after)
        return status["resources"][name]["phase"] == api.PENDING and missed

    blocks = next(t for t in spec["tasks"] if t["name"] == match.group(1)).get("resources") or []
    return any(broken(b) for b in blocks) and any(never(b) for b in blocks)


def engine_status(
    spec: Mapping[str, Any], status: Mapping[str, Any] | None = None, jitter: Random | None = None
) -> dict[str, Any]:
    """The engine's final status of a run of `spec` (starting from `status`)."""
    return KwokCluster(Sim(copy.deepcopy(dict(spec)), status=copy.deepcopy(dict(status or {}))), jitter).run()


def original_object(name: str, spec: Mapping[str, Any], status: Mapping[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": "uid-original", "resourceVersion": "7"}, "spec": spec, "status": status}


def cross_check(workload: Workload, jitter: Random | None) -> list[str]:
    """What the engine, run on each of the workload's runs, says otherwise than the model."""
    found: list[str] = []
    for key, spec, flow in runs_of(workload):
        executed = resolved(spec, flow)
        status = engine_status(executed, jitter=jitter)
        found += [
            line
            for line in disagreements(workload.expected[key], status)
            if not known_engine_disagreement(executed, status, line)
        ]
        if workload.rerun is not None:
            written = {**status, **({"resolvedSpec": executed} if flow is not None else {})}
            plan = rerun.plan_rerun(
                workload.rerun["spec"], original_object(workload.name, spec, written), workload.name, "soak"
            )
            again = engine_status(plan.snapshot.spec, plan.seed(), jitter)
            key = workload.rerun["metadata"]["name"]
            found += [
                f"rerun: {line}"
                for line in disagreements(workload.expected[key], again)
                if not known_engine_disagreement(executed, again, line)
            ]
    return found


@pytest.mark.parametrize("jittered", [False, True], ids=["usual timing", "jittered timing"])
def test_the_engine_ends_generated_runs_as_the_model_says(jittered: bool) -> None:
    problems = {}
    for index, workload in enumerate(corpus()[:CROSS_CHECKED]):
        if workload.kind == "huge":
            continue  # hundreds of independent failing tasks: slow to play, nothing to disagree on
        found = cross_check(workload, Random(index) if jittered else None)
        if found:
            problems[f"{SEED}/{index} ({workload.kind})"] = found
    assert problems == {}


AGREED = [case for case in CASES if not case.engine_disagrees]


@pytest.mark.parametrize("case", AGREED, ids=[c.id for c in AGREED])
def test_the_engine_ends_hand_written_runs_as_the_docs_say(case: Case) -> None:
    reused = {
        name: {"phase": S, "reason": model.REUSED, "attempts": 0, "result": result}
        for name, result in (case.reused or {}).items()
    }
    for jitter in (None, Random(case.id)):
        status = engine_status(case.spec, {"tasks": reused} if reused else None, jitter)
        assert disagreements(case.expected, status) == [], "jittered" if jitter else "usual timing"


ENGINE_DISAGREES = [case for case in CASES if case.engine_disagrees]


@pytest.mark.xfail(strict=True, reason="engine: a skip reason of a task in blocks is not checked in the docs' order")
@pytest.mark.parametrize("case", ENGINE_DISAGREES, ids=[c.id for c in ENGINE_DISAGREES])
def test_the_engine_orders_skip_reasons_as_the_docs_do(case: Case) -> None:
    """docs/semantics.md, "Skip reasons, checked in this order": SetupFailed (a block of the task
    failed setup, or can no longer be set up because a block it uses did) before UpstreamFailed or
    TriggerNotMet (a block of the task can never be set up because a task of its runAfter did not
    succeed). The engine says UpstreamFailed for t1 in both cases: when the never-set-up block
    comes first in the task's `resources` (listed the other way round, it says SetupFailed), and
    when one block both uses the failed block and waits for the skipped task."""
    assert disagreements(case.expected, engine_status(case.spec)) == []
