"""Type checks of raw spec fields: each returns the value or raises SpecError naming `path`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowrun.model.spec import SpecError
from flowrun.references import DNS1123_LABEL, PARAM_NAME


def type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else "null"
    )


def mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SpecError(path, f"must be an object, not {type_name(value)}")
    return value


def sequence(value: object, path: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise SpecError(path, f"must be a list, not {type_name(value)}")
    return value


def string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise SpecError(path, f"must be a string, not {type_name(value)}")
    return value


def integer(value: object, path: str, minimum: int, maximum: int) -> int:
    # bool is an int in Python, but `true` is never a valid count.
    if not isinstance(value, int) or isinstance(value, bool):
        raise SpecError(path, f"must be an integer, not {type_name(value)}")
    if value < minimum:
        raise SpecError(path, f"must be >= {minimum}, not {value}")
    if value > maximum:
        raise SpecError(path, f"must be <= {maximum}, not {value}")
    return value


def optional_int(obj: Mapping[str, Any], key: str, path: str, minimum: int, maximum: int) -> int | None:
    return None if obj.get(key) is None else integer(obj[key], f"{path}.{key}", minimum, maximum)


def name(value: object, path: str) -> str:
    text = string(value, path)
    if not DNS1123_LABEL.fullmatch(text):
        raise SpecError(path, f"{text!r} is not a DNS-1123 label (lower-case letters, digits, '-', at most 63)")
    return text


def known_keys(obj: Mapping[str, Any], path: str, allowed: Sequence[str]) -> None:
    for key in obj:
        if key not in allowed:
            raise SpecError(f"{path}.{key}", f"unknown field (allowed: {', '.join(allowed)})")


def string_list(value: object, path: str) -> tuple[str, ...]:
    return tuple(string(item, f"{path}[{i}]") for i, item in enumerate(sequence(value, path)))


def string_map(value: object, path: str) -> None:
    for key, item in mapping(value, path).items():
        string(item, f"{path}.{key}")


def pod_template(value: object, path: str, *, needs_main: bool) -> dict[str, Any]:
    template = mapping(value, path)
    metadata = mapping(template.get("metadata") or {}, f"{path}.metadata")
    for key in ("labels", "annotations"):
        string_map(metadata.get(key) or {}, f"{path}.metadata.{key}")
    spec = mapping(template.get("spec"), f"{path}.spec")
    containers = sequence(spec.get("containers"), f"{path}.spec.containers")
    if not containers:
        raise SpecError(f"{path}.spec.containers", "must list at least one container")
    for group in ("initContainers", "containers"):
        for i, container in enumerate(sequence(spec.get(group) or [], f"{path}.spec.{group}")):
            cpath = f"{path}.spec.{group}[{i}]"
            container = mapping(container, cpath)
            string(container.get("name"), f"{cpath}.name")
            for key in ("command", "args"):
                string_list(container.get(key) or [], f"{cpath}.{key}")
            for j, env in enumerate(sequence(container.get("env") or [], f"{cpath}.env")):
                env = mapping(env, f"{cpath}.env[{j}]")
                string(env.get("name"), f"{cpath}.env[{j}].name")
                if "value" in env:
                    string(env["value"], f"{cpath}.env[{j}].value")
    names = [c["name"] for c in containers]
    if needs_main and len(names) > 1 and "main" not in names:
        raise SpecError(
            f"{path}.spec.containers",
            "with several containers, one must be named 'main' (its termination message is the result)",
        )
    return dict(template)


def param_name(value: object, path: str, taken: Sequence[str]) -> str:
    """A param's name (of a run or of a Flow): well-formed and not among the names `taken`."""
    name = string(value, path)
    if not PARAM_NAME.fullmatch(name):
        raise SpecError(path, f"{name!r} is not a valid param name (a letter or '_', then letters, digits, '_' or '-')")
    if name in taken:
        raise SpecError(path, f"duplicate param name {name!r}")
    return name
