"""Checks of the parts of a spec its declaration (flowrun.schema) leaves open: pod templates beyond
their outline, and setup manifests. Each returns the value or raises SpecError naming `path`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowrun.schema.common import CONTAINER
from flowrun.schema.nodes import SpecError, mapping, type_name

__all__ = ["mapping", "pod_template", "string", "string_map"]


def string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise SpecError(path, f"must be a string, not {type_name(value)}")
    return value


def string_map(value: object, path: str) -> None:
    for key, item in mapping(value, path).items():
        string(item, f"{path}.{key}")


def pod_template(template: Mapping[str, Any], path: str, *, needs_main: bool) -> dict[str, Any]:
    """A pod template its declaration has checked, checked further: its init containers as its
    containers (the CRD leaves them to the API server; the operator substitutes in them), and, when
    `needs_main` (the result is read from the pod), the container named main (the CRD's CEL rule)."""
    spec = template["spec"]
    for i, container in enumerate(_list(spec.get("initContainers"), f"{path}.spec.initContainers")):
        CONTAINER.check(container, f"{path}.spec.initContainers[{i}]")
    names = [c["name"] for c in spec["containers"]]
    if needs_main and len(names) > 1 and "main" not in names:
        raise SpecError(
            f"{path}.spec.containers",
            "with several containers, one must be named 'main' (its termination message is the result)",
        )
    return dict(template)


def _list(value: object, path: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(path, f"must be a list, not {type_name(value)}")
    return value
