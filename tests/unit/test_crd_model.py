"""The CRD's schema (the generated crds/flowrun.yaml, as applied) and the spec model
(flowrun.model.parse_spec) agree: both come from flowrun.schema, and this checks the whole path
from the declarations to what the API server and the parser enforce. Walking the CRD's schema of
`spec`, every object accepts the same fields in both; every default of the CRD is the model's
when the field is absent; and every bound the CRD enforces (minimum, maximum, minLength,
maxLength, minItems, maxItems, enum) is exercised on the model with the CRD's boundary values:
the bound itself accepted, one past it refused naming the field.

The model's allow-lists are read from what it says of an unknown field ("unknown field (allowed:
...)"), the only place it states them. Pod templates and manifests are outside both walks: the
CRD describes only the outline of a pod template and the API server's dry run judges the rest.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import yaml

from flowrun.model import PROTOCOLS, TRIGGERS, Cleanup, FlowSpec, SpecError, parse_spec
from scripts.api_docs import node_at
from scripts.generate import CRDS

Path = tuple[str, ...]  # a path in the CRD's schema below spec: property names and "[]"

ROOT = yaml.safe_load((CRDS / "flowrun.yaml").read_text())["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
SPEC = node_at(ROOT, ("spec",))
POD = {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}


def full_spec() -> dict[str, Any]:
    """A valid spec that sets every field the CRD describes (outside templates), once. Names are
    distinct words that appear nowhere else, so a rename is a plain replacement."""
    return {
        "params": [{"name": "size", "value": "2"}],
        "serviceAccountName": "runner",
        "parallelism": 2,
        "activeDeadlineSeconds": 600,
        "pendingTimeoutSeconds": 300,
        "ttlSecondsAfterFinished": 60,
        "cancel": False,
        "synchronization": {"mutex": {"name": "nightly"}},
        "resources": [
            {
                "name": "cluster",
                "runAfter": ["prep"],
                "setup": {
                    "job": {"template": copy.deepcopy(POD), "backoffLimit": 1},
                    "deployments": [
                        {
                            "name": "server",
                            "replicas": 2,
                            "template": copy.deepcopy(POD),
                            "ports": [{"name": "web", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
                        }
                    ],
                    "manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}}],
                    "timeoutSeconds": 300,
                },
                "value": "a value",
                "cleanup": {"job": {"template": copy.deepcopy(POD)}, "timeoutSeconds": 300, "retries": 2},
            }
        ],
        "tasks": [
            {
                "name": "use",
                "runAfter": ["prep"],
                "trigger": "allSucceeded",
                "resources": ["cluster"],
                "template": copy.deepcopy(POD),
                "retries": {"limit": 1, "backoffSeconds": 5},
                "activeDeadlineSeconds": 60,
                "pendingTimeoutSeconds": 30,
                "when": ["$(tasks.prep.phase) == 'Succeeded'"],
                "forEach": '["a"]',
                "parallelism": 1,
            },
            {
                "name": "prep",
                "template": copy.deepcopy(POD),
                # Not on `use`: a forEach task may not hold a lock.
                "synchronization": {"semaphore": {"configMapKeyRef": {"name": "limits", "key": "db"}}},
            },
        ],
    }


# Objects whose fields exclude each other (a CEL rule says one of them): full_spec() sets one, and
# a value set in another replaces it.
ONE_OF = {("synchronization",): ("mutex", "semaphore"), ("tasks", "[]", "synchronization"): ("mutex", "semaphore")}
# A valid value of each alternative, which a value set inside it starts from.
ALTERNATIVES = {"mutex": {"name": "other"}, "semaphore": {"configMapKeyRef": {"name": "others", "key": "k"}}}


# Fields of the first task that a CEL rule forbids beside a lock of its own (a forEach task may not
# hold one): a value set in tasks[0].synchronization takes them out. full_spec() gives the lock to
# another task.
EXCLUDED_BY_LOCK = ("forEach", "parallelism")
TASK_LOCK = ("tasks", "[]", "synchronization")


def alternative_set(spec: dict[str, Any], path: Path) -> bool:
    """Whether the field at path is in an alternative full_spec() does not set, beside one it does."""
    for where, choices in ONE_OF.items():
        if path[: len(where)] == where and len(path) > len(where) and path[len(where)] in choices:
            # A task's lock is the second task's (the first is a forEach task).
            chosen = node_value(spec["tasks"][1], where[2:]) if where == TASK_LOCK else node_value(spec, where)
            return path[len(where)] not in chosen and any(c in chosen for c in choices)
    return False


def _is_template(node: Mapping[str, Any]) -> bool:
    return "PodTemplateSpec" in str(node.get("description", ""))


# Fields of spec that are resolved before the model parses it: a run from a Flow, or a rerun, gets
# its spec from that object (flowrun.resolution), and the model parses the spec it resolved to.
RESOLVED_FIRST = {"flowRef", "rerunOf"}


def properties(node: Mapping[str, Any], path: Path) -> dict[str, Any]:
    found = dict(node.get("properties") or {})
    return {k: v for k, v in found.items() if k not in RESOLVED_FIRST} if path == () else found


def walk(node: Mapping[str, Any], path: Path = ()) -> Iterator[tuple[Path, Mapping[str, Any]]]:
    """Every schema node below spec (spec itself first), templates and manifests not entered."""
    yield path, node
    if _is_template(node) or node.get("x-kubernetes-embedded-resource"):
        return
    for name, child in properties(node, path).items():
        yield from walk(child, (*path, name))
    if isinstance(node.get("items"), Mapping):
        yield from walk(node["items"], (*path, "[]"))


def field(path: Path) -> str:
    """The field's path in full_spec() as the model names it: spec.tasks[0].retries.limit."""
    text = "spec"
    for part in path:
        text += "[0]" if part == "[]" else f".{part}"
    return text


def make_room(spec: dict[str, Any], path: Path) -> None:
    """Take out of spec what the field at path excludes: a lock's other alternative, and (for the
    first task's lock) its forEach."""
    if path[: len(TASK_LOCK)] == TASK_LOCK:
        first = spec["tasks"][0]
        for excluded in EXCLUDED_BY_LOCK:
            first.pop(excluded, None)
        first.setdefault("synchronization", {})
    for where, choices in ONE_OF.items():
        if path[: len(where)] == where and len(path) > len(where) and path[len(where)] in choices:
            chosen = node_value(spec, where)
            for other in set(choices) - {path[len(where)]}:
                chosen.pop(other, None)
            chosen.setdefault(path[len(where)], copy.deepcopy(ALTERNATIVES[path[len(where)]]))


def with_value(spec: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """A copy of spec with the field at path set (or removed, for value REMOVE)."""
    spec = copy.deepcopy(spec)
    node: Any = spec
    make_room(spec, path)
    for part, following in zip(path, (*path[1:], None), strict=True):
        key: Any = 0 if part == "[]" else part
        if following is None:
            if value is REMOVE:
                del node[key]
            elif part == "[]":
                node[0] = value
            else:
                node[key] = value
            return spec
        if part != "[]" and key not in node:
            node[key] = [] if following == "[]" else {}
        if part == "[]" and not node:
            node.append({})
        node = node[key]
    raise AssertionError("empty path")


REMOVE = object()


def renamed(spec: dict[str, Any], path: Path, name: str) -> dict[str, Any]:
    """spec with the name at path changed everywhere it is used (runAfter, resources)."""
    old = node_value(spec, path)
    changed: dict[str, Any] = json.loads(json.dumps(spec).replace(json.dumps(old), json.dumps(name)))
    return changed


def node_value(spec: Any, path: Path) -> Any:
    for part in path:
        spec = spec[0] if part == "[]" else spec[part]
    return spec


def refusal(spec: dict[str, Any]) -> SpecError | None:
    try:
        parse_spec(spec, "team")
    except SpecError as error:
        return error
    return None


# ---------------------------------------------------------------------------------------------
# Fields


OBJECTS = [(path, node) for path, node in walk(SPEC) if "properties" in node and not _is_template(node)]


@pytest.mark.parametrize("path", [path for path, _ in OBJECTS], ids=[field(path) for path, _ in OBJECTS])
def test_every_object_accepts_the_same_fields_in_the_crd_and_the_model(path: Path) -> None:
    crd_fields = set(properties(node_at(SPEC, path), path))
    error = refusal(with_value(full_spec(), (*path, "notAField"), 1))
    assert error is not None and error.field == f"{field(path)}.notAField", error
    allowed = re.fullmatch(r"unknown field \(allowed: (.*)\)", error.message)
    assert allowed, error.message
    model_fields = set(allowed[1].split(", "))
    assert model_fields == crd_fields, (
        f"{field(path)}: only in the CRD: {sorted(crd_fields - model_fields)};"
        f" only in the model: {sorted(model_fields - crd_fields)}"
    )


def test_the_full_spec_sets_every_field_of_the_crd_and_the_model_accepts_it() -> None:
    spec = full_spec()
    missing = []
    for path, _ in walk(SPEC):
        try:
            # A task's lock is the second task's (the first is a forEach task).
            node_value(spec["tasks"][1], path[2:]) if path[: len(TASK_LOCK)] == TASK_LOCK else node_value(spec, path)
        except (KeyError, IndexError):
            if not alternative_set(spec, path):
                missing.append(field(path))
    assert missing == []
    assert refusal(spec) is None


# ---------------------------------------------------------------------------------------------
# Defaults


# Where the model keeps each field's value: what parse_spec makes of the field when it is absent.
MODEL_VALUES: dict[Path, Callable[[FlowSpec], object]] = {
    ("tasks", "[]", "trigger"): lambda flow: flow.tasks[0].trigger,
    ("tasks", "[]", "retries", "limit"): lambda flow: flow.tasks[0].retries.limit,
    ("tasks", "[]", "retries", "backoffSeconds"): lambda flow: flow.tasks[0].retries.backoff_seconds,
    ("resources", "[]", "setup", "job", "backoffLimit"): lambda flow: flow.resources[0].setup.job.backoff_limit,  # type: ignore[union-attr]
    ("resources", "[]", "setup", "deployments", "[]", "replicas"): (
        lambda flow: flow.resources[0].setup.deployments[0].replicas
    ),
    ("resources", "[]", "setup", "deployments", "[]", "ports", "[]", "protocol"): (
        lambda flow: flow.resources[0].setup.deployments[0].ports[0].protocol
    ),
    ("resources", "[]", "setup", "timeoutSeconds"): lambda flow: flow.resources[0].setup.timeout_seconds,
    ("resources", "[]", "cleanup", "timeoutSeconds"): lambda flow: flow.resources[0].cleanup.timeout_seconds,
    ("resources", "[]", "cleanup", "retries"): lambda flow: flow.resources[0].cleanup.retries,
    # The CRD defaults cleanup to {}: the model's Cleanup() is what an empty cleanup parses to.
    ("resources", "[]", "cleanup"): lambda flow: flow.resources[0].cleanup,
}
DEFAULTS = {path: node["default"] for path, node in walk(SPEC) if "default" in node}


def test_every_crd_default_is_checked_against_the_model() -> None:
    assert set(DEFAULTS) == set(MODEL_VALUES)


@pytest.mark.parametrize("path", list(DEFAULTS), ids=[field(path) for path in DEFAULTS])
def test_the_crd_defaults_are_the_models(path: Path) -> None:
    flow = parse_spec(with_value(full_spec(), path, REMOVE), "team")
    value = MODEL_VALUES[path](flow)
    expected = Cleanup() if path == ("resources", "[]", "cleanup") else DEFAULTS[path]
    assert value == expected, f"{field(path)}: the CRD defaults it to {DEFAULTS[path]!r}, the model to {value!r}"
    assert MODEL_VALUES[path](parse_spec(with_value(full_spec(), path, DEFAULTS[path]), "team")) == value


# ---------------------------------------------------------------------------------------------
# Bounds

# A valid value of each string field of exactly the given length.
STRING_OF_LENGTH: dict[Path, Callable[[int], str]] = {
    ("params", "[]", "name"): lambda n: "p" * n,
    ("params", "[]", "value"): lambda n: "v" * n,
    ("serviceAccountName",): lambda n: "s" * n,
    ("resources", "[]", "name"): lambda n: "r" * n,
    ("resources", "[]", "setup", "deployments", "[]", "name"): lambda n: "d" * n,
    # A reference after leading zeros: plain digits that long would be past the number's maximum.
    ("resources", "[]", "setup", "deployments", "[]", "replicas"): lambda n: "$(params.size)".rjust(n, "0"),
    ("resources", "[]", "setup", "deployments", "[]", "ports", "[]", "name"): lambda n: "w" * n,
    ("resources", "[]", "setup", "deployments", "[]", "ports", "[]", "targetPort"): lambda n: "t" * n,
    ("tasks", "[]", "name"): lambda n: "t" * n,
    ("synchronization", "mutex", "name"): lambda n: "m" * n,
    ("synchronization", "semaphore", "configMapKeyRef", "name"): lambda n: "c" * n,
    ("synchronization", "semaphore", "configMapKeyRef", "key"): lambda n: "K" * n,
    ("tasks", "[]", "synchronization", "mutex", "name"): lambda n: "x" * n,
    ("tasks", "[]", "synchronization", "semaphore", "configMapKeyRef", "name"): lambda n: "y" * n,
    ("tasks", "[]", "synchronization", "semaphore", "configMapKeyRef", "key"): lambda n: "Y" * n,
    ("tasks", "[]", "when", "[]"): lambda n: "1"[:n] if n < 2 else "'" + "x" * (n - 2) + "'",
    ("tasks", "[]", "forEach"): lambda n: "[" + " " * (n - 2) + "]",
}
# A valid new item of each list, distinct for each i (the list's bounds are its length).
NEW_ITEM: dict[Path, Callable[[int], Any]] = {
    ("params",): lambda i: {"name": f"extra{i}", "value": ""},
    ("resources",): lambda i: {
        "name": f"extra{i}",
        "setup": {"deployments": [{"name": "part", "template": copy.deepcopy(POD)}]},
    },
    ("resources", "[]", "setup", "deployments"): lambda i: {"name": f"extra{i}", "template": copy.deepcopy(POD)},
    ("resources", "[]", "setup", "deployments", "[]", "ports"): lambda i: {"name": f"extra{i}", "port": 1000 + i},
    ("resources", "[]", "setup", "manifests"): lambda i: {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"extra{i}"},
    },
    ("tasks",): lambda i: {"name": f"extra{i}", "template": copy.deepcopy(POD)},
    ("tasks", "[]", "when"): lambda i: f"{i} >= 0",
}
# Lists of names that must each name an existing task or resource: their entries' bounds are
# those of the names they refer to (checked there), their length is bounded by those lists.
REFERENCE_LISTS = {("tasks", "[]", "runAfter"), ("tasks", "[]", "resources"), ("resources", "[]", "runAfter")}


def _sized(spec: dict[str, Any], path: Path, length: int) -> dict[str, Any]:
    """spec with the list at path made exactly `length` items long."""
    items = list(node_value(spec, path))
    if length < len(items):
        # Shorter than in the full spec: new items only, which nothing refers to (and without the
        # resources, which refer to the full spec's tasks).
        items = []
        if path == ("tasks",):
            spec = {"tasks": []}
    items += [NEW_ITEM[path](i) for i in range(length - len(items))]
    return with_value(spec, path, items)


def _string_case(spec: dict[str, Any], path: Path, length: int) -> dict[str, Any]:
    value = STRING_OF_LENGTH[path](length)
    if path == ("tasks", "[]", "name"):
        # The name's own bound (a forEach task's is shorter: test_model checks it).
        spec = copy.deepcopy(spec)
        for key in ("forEach", "parallelism"):
            spec["tasks"][0].pop(key)
    return (
        renamed(spec, path, value)
        if path in (("tasks", "[]", "name"), ("resources", "[]", "name"))
        else (with_value(spec, path, value))
    )


def _cases() -> list[tuple[str, Path, dict[str, Any], dict[str, Any]]]:
    cases = []
    for path, _ in walk(SPEC):
        for name, at_bound, past_bound in _cases_of(path):
            cases.append((f"{field(path)}: {name}", path, at_bound, past_bound))
    return cases


def _cases_of(path: Path) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    base = full_spec()
    node = node_at(SPEC, path) if path else SPEC
    if not path or path[:-1] in REFERENCE_LISTS:
        return
    numeric = node.get("type") == "integer" or node.get("x-kubernetes-int-or-string")
    textual = node.get("type") == "string" or node.get("x-kubernetes-int-or-string")
    for bound, step in (("minimum", -1), ("maximum", 1)):
        if numeric and bound in node:
            yield (
                f"{bound} {node[bound]}",
                with_value(base, path, node[bound]),
                with_value(base, path, node[bound] + step),
            )
    for bound, step in (("minLength", -1), ("maxLength", 1)):
        if textual and bound in node:
            n = node[bound]
            yield f"{bound} {n}", _string_case(base, path, n), _string_case(base, path, n + step)
    for value in node.get("enum", []):
        yield f"enum {value}", with_value(base, path, value), with_value(base, path, f"{value}x")
    for bound, step in (("minItems", -1), ("maxItems", 1)):
        if node.get("type") == "array" and path not in REFERENCE_LISTS and bound in node:
            n = node[bound]
            yield f"{bound} {n}", _sized(base, path, n), _sized(base, path, n + step)


CASES = _cases()


def test_the_bounds_walk_finds_the_crds_bounds() -> None:
    names = {name for name, _, _, _ in CASES}
    assert "spec.tasks: minItems 1" in names and "spec.tasks[0].retries.limit: maximum 100" in names
    assert "spec.resources[0].setup.deployments[0].ports[0].port: maximum 65535" in names


def test_every_number_of_the_crd_has_both_bounds() -> None:
    # An unbounded int64 reaches date arithmetic and int32 fields of the children: 2^63-1 must be
    # refused at apply time, not overflow on every pass.
    numbers = [
        path for path, node in walk(SPEC) if node.get("type") == "integer" or node.get("x-kubernetes-int-or-string")
    ]
    assert numbers
    unbounded = [field(path) for path in numbers if not {"minimum", "maximum"} <= set(node_at(SPEC, path))]
    assert unbounded == []


@pytest.mark.parametrize(("name", "path", "at_bound", "past_bound"), CASES, ids=[c[0] for c in CASES])
def test_the_model_accepts_the_crds_bound_and_refuses_one_past_it_naming_the_field(
    name: str, path: Path, at_bound: dict[str, Any], past_bound: dict[str, Any]
) -> None:
    assert refusal(at_bound) is None, f"{name}: the model refuses what the CRD accepts: {refusal(at_bound)}"
    error = refusal(past_bound)
    assert error is not None, f"{name}: the CRD refuses it, the model accepts it"
    assert error.field.startswith(field(path).removesuffix("[0]")), f"{name}: {error}"


def test_the_enums_are_the_models() -> None:
    assert tuple(node_at(SPEC, ("tasks", "[]", "trigger"))["enum"]) == TRIGGERS
    assert tuple(
        node_at(SPEC, ("resources", "[]", "setup", "deployments", "[]", "ports", "[]", "protocol"))["enum"]
    ) == (PROTOCOLS)
