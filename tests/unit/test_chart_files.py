"""Packaging files that need no cluster: the chart's CRD copy, its metadata and values, and the
Dockerfile's key properties (hadolint and its build step: tests/image)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.dockerfile import DOCKERFILE, REPO, stages

CHART = REPO / "charts" / "flowrun-operator"


# --- chart -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["flowrun.yaml", "flow.yaml", "cronflowrun.yaml"])
def test_chart_crd_is_a_byte_identical_copy_of_the_repository_crd(name: str) -> None:
    source, copy = REPO / "crds" / name, CHART / "crds" / name
    assert copy.read_bytes() == source.read_bytes(), (
        f"charts/flowrun-operator/crds/{name} differs from crds/{name}: run scripts/generate"
    )


def test_the_chart_carries_every_crd_and_nothing_else() -> None:
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(p.name for p in (REPO / "crds").iterdir())


def test_chart_is_a_helm_3_application_chart() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert (chart["apiVersion"], chart["type"], chart["name"]) == ("v2", "application", "flowrun-operator")


def test_every_default_value_is_declared_in_the_schema() -> None:
    """helm enforces the schema; this catches a value added to values.yaml but not to the schema
    (which `additionalProperties: false` would then reject at install time)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert schema["additionalProperties"] is False

    def check(value: object, node: dict[str, Any], path: str) -> None:
        if isinstance(value, dict) and "properties" in node:
            for key, child in value.items():
                assert key in node["properties"], f"{path}{key} is in values.yaml but not in values.schema.json"
                target = node["properties"][key]
                if "$ref" in target:
                    target = schema["definitions"][target["$ref"].rsplit("/", 1)[1]]
                check(child, target, f"{path}{key}.")

    check(values, schema, "")


def test_values_are_documented_in_the_install_guide() -> None:
    """Every value the schema declares down to a free-form object (resources.requests,
    securityContext, ...) has a row in docs/install.md."""
    guide = (REPO / "docs" / "install.md").read_text()
    schema = json.loads((CHART / "values.schema.json").read_text())

    def leaves(node: dict[str, Any], prefix: str) -> list[str]:
        if "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
        if node.get("type") == "object" and "properties" in node:
            return [leaf for key, child in node["properties"].items() for leaf in leaves(child, f"{prefix}{key}.")]
        return [prefix.rstrip(".")]

    missing = [key for key in leaves(schema, "") if f"| `{key}` |" not in guide]
    assert not missing, f"values without a row in docs/install.md's table: {missing}"


# --- Dockerfile --------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_with_a_pinned_slim_python_base() -> None:
    text = DOCKERFILE.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base, "the base image is one ARG, shared by both stages"
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base.group(1)), (
        f"pin an exact 3.11 slim tag, not {base.group(1)}"
    )
    found = stages()
    assert len(found) >= 2
    assert all(stage[0].split()[1] == "${PYTHON_IMAGE}" for stage in found)
    assert " AS builder" in found[0][0]


def test_dockerfile_final_stage_copies_only_the_venv_and_installs_nothing() -> None:
    final = stages()[-1]
    runs = [line for line in final if line.upper().startswith(("RUN ", "ADD "))]
    assert not runs, f"the final stage must not run or add anything: {runs}"
    copies = [line for line in final if line.upper().startswith("COPY ")]
    # The venv, and the user database naming the numeric user the image runs as.
    assert copies == [
        "COPY --from=builder /opt/flowrun /opt/flowrun",
        "COPY --from=builder /etc/passwd /etc/group /etc/",
    ]
    builder = " ".join(stages()[0])
    assert "pip wheel" in builder and "--no-cache-dir" in builder


def test_the_image_names_the_user_it_runs_as() -> None:
    # kopf asks getpass.getuser() for its identity, which raises for a uid without a name.
    builder = " ".join(stages()[0])
    assert 'echo "flowrun:x:65532:65532:' in builder and ">> /etc/passwd" in builder


def test_dockerfile_runs_as_a_numeric_non_root_user_on_a_read_only_filesystem() -> None:
    final = stages()[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the final stage sets USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, (
        f"USER must be a numeric non-root uid (runAsNonRoot checks it), not {users[-1]}"
    )
    assert uid == "65532", "the chart's runAsUser"
    env = " ".join(line for line in final if line.upper().startswith("ENV "))
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "HOME=/tmp", "TMPDIR=/tmp"):
        assert setting in env


def test_dockerfile_exposes_the_probe_and_metrics_ports_and_runs_the_operator() -> None:
    final = stages()[-1]
    exposed = {port for line in final if line.upper().startswith("EXPOSE ") for port in line.split()[1:]}
    assert exposed == {"8080", "9090"}
    assert 'ENTRYPOINT ["flowrun", "run"]' in final
    assert 'CMD ["--all-namespaces"]' in final


def test_dockerignore_sends_only_the_wheel_sources() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "deny everything, then allow what the wheel needs"
    allowed = {p[1:] for p in patterns if p.startswith("!")}
    copied = {line.split()[1].rstrip("/") for line in stages()[0] if line.upper().startswith("COPY ")}
    for source in copied:
        assert any(a.rstrip("/").startswith(source) for a in allowed), f"COPY {source} is excluded by .dockerignore"
