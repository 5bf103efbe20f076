"""The three CRDs without a cluster: generated files up to date, structural schemas with a
description on every field (for `kubectl explain`), the columns and subresources users see, and
the CEL rules evaluated on sample objects as the API server would."""

from __future__ import annotations

import functools
import re
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cel
import pytest
import yaml

from flowrun.schema.cronflowrun import MAX_CRON_NAME
from scripts import generate
from tests.unit.test_cron import ACCEPTED

REPO = Path(__file__).resolve().parents[2]
KINDS = {"FlowRun": "flowrun.yaml", "Flow": "flow.yaml", "CronFlowRun": "cronflowrun.yaml"}


@functools.cache
def _text(kind: str) -> str:
    return (REPO / "crds" / KINDS[kind]).read_text()


def load(kind: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.load(_text(kind), Loader=yaml.CSafeLoader)
    return crd


def version(kind: str) -> dict[str, Any]:
    versions: list[dict[str, Any]] = load(kind)["spec"]["versions"]
    assert len(versions) == 1
    return versions[0]


def root(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = version(kind)["schema"]["openAPIV3Schema"]
    return schema


def spec_schema(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = root(kind)["properties"]["spec"]
    return spec


def template_spec() -> dict[str, Any]:
    spec: dict[str, Any] = spec_schema("CronFlowRun")["properties"]["flowRunTemplate"]["properties"]["spec"]
    return spec


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from nodes(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def rules(schema: dict[str, Any]) -> list[str]:
    return [r["rule"] for r in schema.get("x-kubernetes-validations", [])]


def allowed(schema: dict[str, Any], new: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """The messages of the rules at `schema` that reject `new` (transition rules only with `old`)."""
    failed = []
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"] and old is None:
            continue
        context: dict[str, Any] = {"self": new} if old is None else {"self": new, "oldSelf": old}
        if cel.evaluate(rule["rule"], context) is not True:
            failed.append(rule["message"])
    return failed


# --- files ---------------------------------------------------------------------------------------


def test_generated_crds_and_chart_copies_are_up_to_date() -> None:
    assert generate.stale_files() == [], "run: scripts/generate"


@pytest.mark.parametrize("kind", KINDS)
def test_each_crd_is_a_namespaced_flowrun_dev_kind_with_a_status_subresource(kind: str) -> None:
    crd = load(kind)
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{names['plural']}.flowrun.dev"
    assert (crd["spec"]["group"], crd["spec"]["scope"], names["kind"]) == ("flowrun.dev", "Namespaced", kind)
    assert names["shortNames"] == {"FlowRun": ["fr"], "Flow": ["fl"], "CronFlowRun": ["cfr"]}[kind]
    assert version(kind)["subresources"] == {"status": {}}
    assert root(kind)["properties"]["status"]["properties"]["kopf"]["x-kubernetes-preserve-unknown-fields"]
    # Before the operator's first write the status reads observedGeneration 0: kstatus says
    # InProgress (generation not observed) rather than Current (no status at all).
    assert root(kind)["properties"]["status"]["default"] == {"observedGeneration": 0}


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        ("FlowRun", ["Phase", "Progress", "Duration", "Age"]),
        ("Flow", ["Tasks", "Resources", "Valid", "Ready", "Age"]),
        ("CronFlowRun", ["Schedule", "Suspend", "Active", "Last Schedule", "Ready", "Age"]),
    ],
)
def test_printer_columns(kind: str, columns: list[str]) -> None:
    printed = version(kind)["additionalPrinterColumns"]
    assert [c["name"] for c in printed if not c.get("priority")] == columns
    ready = next(c for c in printed if c["name"] == "Ready")  # FlowRun's at -o wide: its Phase says it
    assert ready["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    status = root(kind)["properties"]["status"]["properties"]
    for column in printed:
        path = column["jsonPath"]
        if path.startswith(".status."):
            assert path.split(".")[2].split("[")[0] in status, f"{kind} column {column['name']}: {path}"


@pytest.mark.parametrize("kind", KINDS)
def test_schemas_are_structural_and_every_field_is_described(kind: str) -> None:
    for path, node in nodes(root(kind)):
        if path.startswith(".status.kopf") or path in (".metadata",) or path.endswith(".manifests[]"):
            continue
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        assert typed, f"{kind}{path} has no type"
        if path and not path.endswith(("[]", "{}")):  # kubectl explain shows named fields
            assert node.get("description"), f"{kind}{path} has no description (kubectl explain shows none)"


def test_flow_and_cron_template_share_the_flowrun_task_and_resource_schema() -> None:
    flowrun = spec_schema("FlowRun")["properties"]
    for other in (spec_schema("Flow")["properties"], template_spec()["properties"]):
        for field in (
            "tasks",
            "resources",
            "serviceAccountName",
            "parallelism",
            "activeDeadlineSeconds",
            "pendingTimeoutSeconds",
        ):
            assert other[field] == flowrun[field], field


def test_list_fields_are_maps_keyed_by_name_so_duplicates_are_refused() -> None:
    for spec in (spec_schema("FlowRun"), spec_schema("Flow"), template_spec()):
        for field in ("params", "tasks", "resources"):
            assert spec["properties"][field]["x-kubernetes-list-type"] == "map"
            assert spec["properties"][field]["x-kubernetes-list-map-keys"] == ["name"]


# --- Flow ----------------------------------------------------------------------------------------


def test_flow_spec_has_no_cancel_and_params_declare_defaults() -> None:
    spec = spec_schema("Flow")
    assert spec["required"] == ["tasks"]
    assert not {"cancel", "flowRef", "rerunOf"} & set(spec["properties"])
    params = spec["properties"]["params"]["items"]
    assert set(params["properties"]) == {"name", "default", "description"}
    assert params["required"] == ["name"]
    assert not rules(spec), "a Flow is editable: no immutability rules"


# --- FlowRun: flowRef and rerunOf ----------------------------------------------------------------

TASKS = [{"name": "a", "template": {"spec": {"containers": [{"name": "main"}]}}}]


@pytest.mark.parametrize(
    ("spec", "refused"),
    [
        ({"tasks": TASKS}, []),
        ({"flowRef": {"name": "f"}, "params": [{"name": "p", "value": "1"}], "parallelism": 2}, []),
        ({}, ["spec needs tasks, flowRef or rerunOf"]),
        ({"flowRef": {"name": "f"}, "tasks": TASKS}, ["excludes spec.tasks"]),
        ({"flowRef": {"name": "f"}, "resources": []}, ["excludes spec.tasks"]),
        ({"rerunOf": {"name": "r"}, "cancel": True, "ttlSecondsAfterFinished": 60}, []),
        ({"rerunOf": {"name": "r"}, "params": []}, ["only spec.cancel and spec.ttlSecondsAfterFinished"]),
        ({"rerunOf": {"name": "r"}, "flowRef": {"name": "f"}}, ["only spec.cancel and spec.ttlSecondsAfterFinished"]),
        ({"rerunOf": {"name": "r"}, "parallelism": 1}, ["only spec.cancel and spec.ttlSecondsAfterFinished"]),
        ({"rerunOf": {"name": "r"}, "pendingTimeoutSeconds": 9}, ["only spec.cancel and spec.ttlSecondsAfterFinished"]),
    ],
)
def test_flowrun_spec_rules_on_create(spec: dict[str, Any], refused: list[str]) -> None:
    messages = allowed(spec_schema("FlowRun"), spec)
    assert len(messages) == len(refused), messages
    for message, expected in zip(messages, refused, strict=True):
        assert expected in message


def test_flowrun_has_flowref_and_rerunof_with_a_required_name() -> None:
    properties = spec_schema("FlowRun")["properties"]
    for field in ("flowRef", "rerunOf"):
        assert properties[field]["required"] == ["name"]
        assert re.fullmatch(properties[field]["properties"]["name"]["pattern"], "nightly-2026.v1")
        assert not re.fullmatch(properties[field]["properties"]["name"]["pattern"], "Bad_Name")
    assert "required" not in spec_schema("FlowRun"), "tasks are optional with flowRef or rerunOf"


@pytest.mark.parametrize(
    ("old", "new", "refused"),
    [
        ({"flowRef": {"name": "f"}}, {"flowRef": {"name": "f"}, "cancel": True}, []),
        ({"flowRef": {"name": "f"}}, {"flowRef": {"name": "g"}}, ["spec.flowRef is immutable"]),
        ({"rerunOf": {"name": "r"}}, {"rerunOf": {"name": "s"}}, ["spec.rerunOf is immutable"]),
        ({"rerunOf": {"name": "r"}}, {"tasks": TASKS}, ["spec.rerunOf is immutable", "spec.tasks is immutable"]),
        ({"tasks": TASKS}, {"tasks": TASKS, "cancel": True}, []),
        (
            {"tasks": TASKS, "pendingTimeoutSeconds": 60},
            {"tasks": TASKS, "pendingTimeoutSeconds": 61},
            ["spec.pendingTimeoutSeconds is immutable"],
        ),
        ({"tasks": TASKS, "cancel": True}, {"tasks": TASKS, "cancel": False}, ["cannot be set back"]),
    ],
)
def test_flowrun_spec_rules_on_update(old: dict[str, Any], new: dict[str, Any], refused: list[str]) -> None:
    transition = {"x-kubernetes-validations": [r for r in spec_schema("FlowRun")["x-kubernetes-validations"]]}
    transition["x-kubernetes-validations"] = [
        r for r in transition["x-kubernetes-validations"] if "oldSelf" in r["rule"]
    ]
    messages = allowed(transition, new, old)
    assert len(messages) == len(refused), messages
    for message, expected in zip(messages, refused, strict=True):
        assert expected in message


def test_every_cel_rule_compiles() -> None:
    for kind in KINDS:
        for path, node in nodes(root(kind)):
            for rule in rules(node):
                cel.compile(rule)  # raises on a syntax error
                assert rule, f"{kind}{path}"


# --- CronFlowRun ---------------------------------------------------------------------------------


def test_cron_spec_has_cronjob_fields_with_cronjob_defaults() -> None:
    properties = spec_schema("CronFlowRun")["properties"]
    assert spec_schema("CronFlowRun")["required"] == ["schedule", "flowRunTemplate"]
    assert properties["concurrencyPolicy"]["enum"] == ["Allow", "Forbid", "Replace"]
    assert properties["concurrencyPolicy"]["default"] == "Allow"
    assert properties["suspend"]["default"] is False
    assert properties["successfulRunsHistoryLimit"]["default"] == 3
    assert properties["failedRunsHistoryLimit"]["default"] == 1
    assert properties["startingDeadlineSeconds"]["minimum"] == 0
    assert not {"cancel", "rerunOf"} & set(template_spec()["properties"])


@pytest.mark.parametrize(
    ("schedule", "ok"),
    [
        ("0 2 * * *", True),
        ("*/15 9-17 * * MON-FRI", True),
        ("0 0 ? * mon/2", True),
        ("0-5,*/30 * * * *", True),
        ("@daily", True),
        ("@hourly", True),
        # Values out of range, reversed ranges, names of the wrong field: the operator's check.
        ("1-0 * * * *", True),
        ("0 0 * * jan", True),
        ("0 2 * *", False),
        ("0 2 * * * *", False),
        ("@reboot", False),
        ("@every 1h", False),
        ("TZ=UTC 0 2 * * *", False),
        ("1,,2 * * * *", False),
        (", * * * *", False),
        ("+5 * * * *", False),
        ("*-5 * * * *", False),
        ("1-2-3 * * * *", False),
        ("*/2/3 * * * *", False),
        ("*/ * * * *", False),
        ("/5 * * * *", False),
        ("0 0 L * *", False),
        ("0 0 15W * *", False),
        ("0 0 * * 1#2", False),
        ("H * * * *", False),
        ("0 0 * * monday", False),
        ("", False),
    ],
)
def test_schedule_pattern(schedule: str, ok: bool) -> None:
    pattern = spec_schema("CronFlowRun")["properties"]["schedule"]["pattern"]
    assert bool(re.search(pattern, schedule)) is ok


@pytest.mark.parametrize(("schedule", "expression"), ACCEPTED, ids=[a for a, _ in ACCEPTED])
def test_the_schedule_pattern_lets_through_every_schedule_a_cronjob_accepts(schedule: str, expression: str) -> None:
    pattern = spec_schema("CronFlowRun")["properties"]["schedule"]["pattern"]
    assert re.search(pattern, schedule.strip())


@pytest.mark.parametrize(
    ("zone", "ok"),
    [
        ("Europe/Paris", True),
        ("UTC", True),
        ("Etc/GMT+5", True),
        ("America/Argentina/ComodRivadavia", True),
        ("Europe", True),  # a region, not a zone: the operator's check
        ("a b", False),
        ("-Europe", False),
        ("Europe/-Paris", False),
        ("../etc", False),
        ("/etc/localtime", False),
        ("Europe//Paris", False),
        ("Abcdefghijklmno", False),  # a part has at most 14 characters, as in a CronJob
    ],
)
def test_time_zone_pattern(zone: str, ok: bool) -> None:
    pattern = spec_schema("CronFlowRun")["properties"]["timeZone"]["pattern"]
    assert bool(re.search(pattern, zone)) is ok


def test_the_time_zone_pattern_lets_through_every_zone_there_is() -> None:
    pattern = spec_schema("CronFlowRun")["properties"]["timeZone"]["pattern"]
    assert [zone for zone in zoneinfo.available_timezones() if not re.search(pattern, zone)] == []


@pytest.mark.parametrize(
    ("spec", "refused"),
    [
        ({"flowRef": {"name": "f"}}, []),
        ({"tasks": TASKS}, []),
        ({}, ["needs tasks or flowRef"]),
        ({"flowRef": {"name": "f"}, "tasks": TASKS}, ["excludes spec.tasks"]),
    ],
)
def test_cron_template_rules(spec: dict[str, Any], refused: list[str]) -> None:
    messages = allowed(template_spec(), spec)
    assert len(messages) == len(refused), messages
    for message, expected in zip(messages, refused, strict=True):
        assert expected in message
    assert not any("oldSelf" in rule for rule in rules(template_spec())), "a template is editable"


def test_cron_name_leaves_room_for_the_run_suffix() -> None:
    ok = {"metadata": {"name": "n" * MAX_CRON_NAME}}
    too_long = {"metadata": {"name": "n" * (MAX_CRON_NAME + 1)}}
    assert allowed(root("CronFlowRun"), ok) == []
    assert allowed(root("CronFlowRun"), too_long)
    assert len("n" * MAX_CRON_NAME + "-" + "99999999") <= 253
