"""flowrun.schema, the one definition of the API: its vocabulary checks values as the CRDs it
renders make the API server check them; adding a field to it reaches the CRDs, the parser and the
docs with no other change; scripts/generate names a stale file and the command that fixes it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from flowrun import cron, flows
from flowrun.model import parse_spec
from flowrun.schema import SCHEMAS, derive, flowrun, kinds
from flowrun.schema.common import LABEL, MAX_COUNT
from flowrun.schema.nodes import Arr, Bool, Format, Int, IntOrStr, Map, Obj, Opaque, SpecError, Str, regex, walk
from scripts import api_docs, generate
from tests.unit.builders import flow, resource, task


def refusal(node: Any, value: object, path: str = "spec.x") -> str:
    with pytest.raises(SpecError) as error:
        node.check(value, path)
    return str(error.value)


# --- the vocabulary ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "value", "says"),
    [
        (Str(), 3, "spec.x: must be a string, not a number"),
        (Str(min_length=1), "", "spec.x: must not be empty"),
        (Str(min_length=2), "a", "spec.x: must have at least 2 characters, not 1"),
        (Str(max_length=3), "abcd", "spec.x: may have at most 3 characters, not 4"),
        (Str(enum=("A", "B")), "C", "spec.x: unknown x 'C' (one of A, B)"),
        (
            Str(format=LABEL),
            "A_b",
            "spec.x: 'A_b' is not a DNS-1123 label (lower-case letters, digits, '-', at most 63)",
        ),
        (Int(minimum=1, maximum=5), 0, "spec.x: must be >= 1, not 0"),
        (Int(minimum=1, maximum=5), 6, "spec.x: must be <= 5, not 6"),
        (Int(minimum=1, maximum=5), True, "spec.x: must be an integer, not a boolean"),
        (Int(minimum=1, maximum=5), "2", "spec.x: must be an integer, not a string"),
        (Bool(), "yes", "spec.x: must be a boolean, not a string"),
        (IntOrStr(minimum=0, maximum=9, format=LABEL, max_length=3), 10, "spec.x: must be <= 9, not 10"),
        (IntOrStr(minimum=0, maximum=9, format=LABEL, max_length=3), "abcd", "spec.x: may have at most 3 characters"),
        (IntOrStr(minimum=0, maximum=9, format=LABEL, max_length=3), [], "must be an integer or a string, not a list"),
        (Obj(fields={"a": Str()}), {"b": 1}, "spec.x.b: unknown field (allowed: a)"),
        (Obj(fields={"a": Str()}, required=("a",)), {}, "spec.x.a: must be a string, not null"),
        (Obj(), [], "spec.x: must be an object, not a list"),
        (Map(values=Str()), {"k": 1}, "spec.x.k: must be a string, not a number"),
        (Arr(items=Str()), {}, "spec.x: must be a list, not an object"),
        (Arr(items=Str(), min_items=1, noun="task"), [], "spec.x: must list at least one task"),
        (Arr(items=Str(), max_items=1, noun="task"), ["a", "b"], "spec.x: may list at most 1 tasks, not 2"),
        (Arr(items=Str(), list_type="set", noun="task"), ["a", "b", "a"], "spec.x[2]: task 'a' is listed twice"),
        (
            Arr(items=Obj(fields={"name": Str()}), list_type="map", keys=("name",), noun="port"),
            [{"name": "p"}, {"name": "p"}],
            "spec.x[1].name: duplicate port name 'p'",
        ),
        (Opaque(), "x", "spec.x: must be an object, not a string"),
    ],
)
def test_each_node_refuses_what_its_schema_refuses_naming_the_field(node: Any, value: object, says: str) -> None:
    assert says in refusal(node, value)


def test_an_object_drops_nulls_fills_defaults_at_every_level_and_keeps_what_it_preserves() -> None:
    inner = Obj(default={}, fields={"n": Int(minimum=0, maximum=9, default=3), "m": Int(minimum=0, maximum=9)})
    node = Obj(fields={"inner": inner, "s": Str()})
    assert node.check({"s": None}, "spec") == {"inner": {"n": 3}}
    assert node.check({"inner": {"m": None, "n": 4}}, "spec") == {"inner": {"n": 4}}
    kept = Obj(preserve_unknown=True, fields={"s": Str()})
    assert kept.check({"s": "a", "other": [1]}, "spec") == {"s": "a", "other": [1]}


def test_patterns_are_read_as_the_api_server_reads_them() -> None:
    # Go's `$` is the end of the text; Python's `$` also matches before a final newline.
    assert regex(LABEL.pattern).search("a") and not regex(LABEL.pattern).search("a\n")
    assert regex(r"^a\$[$]$").search("a$$") and not regex(r"^a\$[$]$").search("a$$\n")
    # Go's \s is ASCII whitespace.
    assert not regex(r"^\s$").search("\u2003")


def test_a_format_with_a_check_of_its_own_says_what_the_check_says() -> None:
    odd = Format(r"^[0-9]+$", "{value} is not a number", check=lambda text: None if int(text) % 2 else "is even")
    assert refusal(Str(format=odd), "4") == "spec.x: is even"
    assert Str(format=odd).check("5", "spec.x") == "5"


def test_a_node_renders_the_keywords_kubernetes_enforces() -> None:
    node = Arr(
        "Things.",
        items=Obj(required=("name",), fields={"name": Str(format=LABEL, max_length=63)}),
        max_items=5,
        list_type="map",
        keys=("name",),
    )
    assert node.render() == {
        "type": "array",
        "description": "Things.",
        "maxItems": 5,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["name"],
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "maxLength": 63, "pattern": LABEL.pattern}},
        },
    }
    assert Bool("On.", default=False).render() == {"type": "boolean", "description": "On.", "default": False}


# --- the definition ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", SCHEMAS.kinds, ids=[k.kind for k in SCHEMAS.kinds])
def test_every_number_of_a_spec_has_both_bounds(kind: kinds.Kind) -> None:
    # An unbounded int64 reaches date arithmetic and int32 fields of the children.
    numbers = [node for node in walk(kind.spec) if isinstance(node, (Int, IntOrStr))]
    assert numbers and all(node.minimum is not None and node.maximum is not None for node in numbers)


def test_the_spec_rules_that_name_fields_cover_every_field() -> None:
    spec = SCHEMAS.flowrun.spec
    immutable = [r.field_path.lstrip(".") for r in spec.rules if r.reason == "FieldValueForbidden"]
    assert immutable == [*(f for f in spec.fields if f != "cancel"), "cancel"]
    beside = next(r for r in spec.rules if r.field_path == ".rerunOf" and "oldSelf" not in r.rule)
    excluded = {f for f in spec.fields if f"!has(self.{f})" in beside.rule.split(" || ", 1)[1]}
    assert excluded == set(spec.fields) - {"rerunOf", "cancel", "ttlSecondsAfterFinished"}
    assert beside.message.startswith("only spec.cancel and spec.ttlSecondsAfterFinished may be set")


def test_a_flow_and_a_template_hold_the_runs_fields_but_those_only_a_run_has() -> None:
    run_fields = list(SCHEMAS.flowrun.spec.fields)
    assert list(SCHEMAS.flow.spec.fields) == [f for f in run_fields if f not in ("flowRef", "rerunOf", "cancel")]
    template = SCHEMAS.cronflowrun.spec.at(("flowRunTemplate", "spec"))
    assert isinstance(template, Obj) and list(template.fields) == [
        f for f in run_fields if f not in ("rerunOf", "cancel")
    ]
    assert SCHEMAS.settings == (
        "serviceAccountName",
        "parallelism",
        "activeDeadlineSeconds",
        "pendingTimeoutSeconds",
        "synchronization",
        "ttlSecondsAfterFinished",
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        # Refused by the CRD, and (since the model's checks come from the same declarations) by the
        # model too; before, the model let these through.
        (
            flow(task("a", template={"spec": {"containers": [{"name": "main"}], "restartPolicy": "Always"}})),
            "spec.tasks[0].template.spec.restartPolicy",
        ),
        (flow(task("a"), serviceAccountName="Not_A_Name"), "spec.serviceAccountName"),
        (flow(*(task(f"t{i}") for i in range(201))), "spec.tasks"),
        (
            flow(task("a", resources=["r"]), resources=[resource("r", setup={"deployments": []})]),
            "spec.resources[0].setup.deployments",
        ),
        (
            flow(task("a", template={"spec": {"containers": [{"name": "m" * 64}]}})),
            "spec.tasks[0].template.spec.containers[0].name",
        ),
        (flow(task("a", "B_c")), "spec.tasks[0].runAfter[0]"),
    ],
)
def test_the_model_refuses_what_the_crd_refuses(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(spec, "team")
    assert error.value.field == field


# --- one place -----------------------------------------------------------------------------------

PRIORITY = Int("Order among ready tasks: higher first. Default: 0.", minimum=0, maximum=9, default=0)
MAX_PODS = Int(
    "Pods of the run at most, setup included. Default: no limit.", minimum=1, maximum=MAX_COUNT, setting=True
)


def test_adding_a_field_touches_one_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task field and a run setting added to a copy of the declarations reach the three CRDs,
    the parser (FlowRun, Flow, CronFlowRun), the CEL rules naming fields, and the docs' tables."""
    spec = flowrun.SPEC.with_field_at(("tasks", "[]"), "priority", PRIORITY).with_field("maxPods", MAX_PODS)
    schemas = derive(spec)

    # The CRDs: the FlowRun's, and those that embed its spec.
    rendered = {"type": "integer", "format": "int32", "description": PRIORITY.description, "minimum": 0, "maximum": 9}
    flowrun_spec = schemas.flowrun.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert flowrun_spec["properties"]["tasks"]["items"]["properties"]["priority"] == {**rendered, "default": 0}
    for kind, path in (
        (schemas.flow, ("tasks", "[]", "priority")),
        (schemas.cronflowrun, ("flowRunTemplate", "spec", "tasks", "[]", "priority")),
    ):
        assert kind.spec.at(path) == PRIORITY
    assert "maxPods" in schemas.flow.spec.fields and "maxPods" in flowrun_spec["properties"]
    assert any(
        r["rule"].startswith("has(self.maxPods) == has(oldSelf.maxPods)")
        for r in flowrun_spec["x-kubernetes-validations"]
    )
    assert any(
        "!has(self.maxPods)" in r["rule"] and r.get("fieldPath") == ".rerunOf"
        for r in flowrun_spec["x-kubernetes-validations"]
    )
    assert (
        "ttlSecondsAfterFinished and maxPods override the Flow's"
        in flowrun_spec["properties"]["flowRef"]["description"]
    )

    # The parser, which takes its field checks from the definition in force.
    with_both = flow(task("a", priority=9), maxPods=5)
    with pytest.raises(SpecError, match=r"spec.tasks\[0\].priority: unknown field"):
        parse_spec(flow(task("a", priority=9)))
    monkeypatch.setattr(kinds, "SCHEMAS", schemas)
    assert parse_spec(with_both).task("a").name == "a"
    with pytest.raises(SpecError) as error:
        parse_spec(flow(task("a", priority=10)))
    assert str(error.value) == "spec.tasks[0].priority: must be <= 9, not 10"
    with pytest.raises(SpecError) as error:
        parse_spec(flow(task("a"), maxPods=0))
    assert str(error.value) == "spec.maxPods: must be >= 1, not 0"
    assert flows.check_flow({"tasks": [task("a", priority=9)], "maxPods": 5}).error is None
    template = {"spec": {"tasks": [task("a", priority=9)], "maxPods": 5}}
    assert cron.parse_cron_spec({"schedule": "0 2 * * *", "flowRunTemplate": template}).template_spec is not None
    snapshot = flows.resolve_flow(
        {"flowRef": {"name": "f"}, "maxPods": 7},
        {"metadata": {"name": "f"}, "spec": {"tasks": [task("a")], "maxPods": 5}},
    )
    assert snapshot.spec["maxPods"] == 7, "a setting of the run overrides the Flow's"

    # The docs' tables.
    doc = api_docs.render(generate.API_DOC.read_text(), schemas)
    assert "| `priority` | int32, 0..9 | `0` | Order among ready tasks: higher first. |" in doc
    assert "| `maxPods` | int32, 1..10000 | no limit | Pods of the run at most, setup included. |" in doc


# --- scripts/generate ----------------------------------------------------------------------------


def test_generate_check_names_each_stale_file_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("crds", "charts/flowrun-operator/crds", "docs"):
        shutil.copytree(generate.REPO / name, tmp_path / name)
    monkeypatch.setattr(generate, "REPO", tmp_path)
    monkeypatch.setattr(generate, "CRDS", tmp_path / "crds")
    monkeypatch.setattr(generate, "CHART_CRDS", tmp_path / "charts/flowrun-operator/crds")
    monkeypatch.setattr(generate, "API_DOC", tmp_path / "docs/api.md")
    assert generate.main(["--check"]) == 0
    (tmp_path / "crds/flow.yaml").write_text("edited by hand\n")
    assert generate.main(["--check"]) == 1
    assert capsys.readouterr().err == "out of date: crds/flow.yaml (run scripts/generate)\n"
    assert generate.main([]) == 0
    assert generate.main(["--check"]) == 0
    assert (tmp_path / "crds/flow.yaml").read_text() == generate.render_crd(SCHEMAS.flow)
