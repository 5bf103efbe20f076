"""The field tables of docs/api.md, written from the CRDs' schemas (as flowrun.schema renders
them): each table lies between `<!-- BEGIN GENERATED: <section> -->` and
`<!-- END GENERATED: <section> -->`; the prose around the tables is written by hand.

A row per field: its type and bounds as the CRD enforces them, its default (the CRD's `default`,
else a "Default: ..." sentence of its description) and its description. `scripts/generate`
writes the tables (with the CRDs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from flowrun.schema import SCHEMAS, Kind, Schemas
from flowrun.schema.nodes import Str, walk

# Section -> the path of its object in the schema. A list of objects that has a section of its own
# gets one row in its parent's table and its fields in its own.
SECTIONS: dict[str, tuple[str, ...]] = {
    "spec": ("spec",),
    "spec.params": ("spec", "params", "[]"),
    "spec.tasks": ("spec", "tasks", "[]"),
    "spec.resources": ("spec", "resources", "[]"),
    "status": ("status",),
    "flow.spec.params": ("spec", "params", "[]"),
    "flow.status": ("status",),
    "cronflowrun.spec": ("spec",),
    "cronflowrun.status": ("status",),
}
# Sections of the Flow and CronFlowRun (by their name's prefix); the rest are the FlowRun's.
SECTION_KINDS = {"flow.": "flow", "cronflowrun.": "cronflowrun"}
# Written by the operator, or nothing in them has a default: no Default column.
NO_DEFAULTS = {"status", "flow.status", "cronflowrun.status", "flow.spec.params"}
# Fields shown as one row, not expanded: what they hold is documented elsewhere (a link).
LINKED = {"cronflowrun.spec.flowRunTemplate.spec": "[FlowRun spec](#spec)"}
_DEFAULT_SENTENCE = re.compile(r"\s*Default: ([^.]*(?:\.\w[^.]*)*)\.(?=\s|$)")
NOTE = "<!-- generated from operator/flowrun/schema by scripts/generate: edit the declarations there -->"


def named_patterns(schemas: Schemas) -> dict[str, str]:
    """The patterns of the named formats, with the names the docs show instead of the pattern."""
    return {
        node.format.pattern: node.format.name
        for kind in schemas.kinds
        for node in walk(kind.spec)
        if isinstance(node, Str) and node.format is not None and node.format.name
    }


# Names for the patterns the CRDs repeat, as the docs say them.
PATTERNS = named_patterns(SCHEMAS)


def node_at(root: Mapping[str, Any], path: tuple[str, ...]) -> Mapping[str, Any]:
    node = root
    for part in path:
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def _is_template(node: Mapping[str, Any]) -> bool:
    return "PodTemplateSpec" in str(node.get("description", ""))


def _bounds(node: Mapping[str, Any], low: str, high: str) -> str:
    lo, hi = node.get(low), node.get(high)
    if lo is not None and hi is not None:
        return f"{lo}..{hi}"
    if lo is not None:
        return f">= {lo}" if low == "minimum" else f"min {lo}"
    if hi is not None:
        return f"<= {hi}" if high == "maximum" else f"max {hi}"
    return ""


def type_of(node: Mapping[str, Any], required: bool) -> str:
    """The field's type and the bounds the CRD enforces, in a few words."""
    parts = _type_words(node)
    if required:
        parts.append("required")
    return ", ".join(parts)


def _type_words(node: Mapping[str, Any]) -> list[str]:
    """By the schema's `type`, once an int-or-string or an enum (of any type) is told apart."""
    if node.get("x-kubernetes-int-or-string"):
        return _int_or_string_words(node)
    if "enum" in node:
        return [" \\| ".join(f"`{value}`" for value in node["enum"])]
    kind = node.get("type")
    if kind == "integer":
        return _integer_words(node)
    if kind == "boolean":
        return ["bool"]
    if kind == "string":
        return _string_words(node)
    if kind == "array":
        return _array_words(node)
    if kind == "object":
        return _object_words(node)
    return []


def _int_or_string_words(node: Mapping[str, Any]) -> list[str]:
    parts = ["int or string"]
    parts += [b for b in (_bounds(node, "minimum", "maximum"), _bounds(node, "minLength", "maxLength")) if b]
    if node.get("pattern"):
        parts.append(f"string matching `{node['pattern']}`")
    return parts


def _integer_words(node: Mapping[str, Any]) -> list[str]:
    return [str(node.get("format", "integer")), *[b for b in (_bounds(node, "minimum", "maximum"),) if b]]


def _string_words(node: Mapping[str, Any]) -> list[str]:
    if node.get("format") == "date-time":
        parts = ["RFC 3339 time"]
    elif node.get("pattern") in PATTERNS:
        parts = [PATTERNS[node["pattern"]]]
    else:
        parts = ["string"]
        if node.get("pattern"):
            parts.append(f"matching `{node['pattern']}`")
    length = _bounds(node, "minLength", "maxLength")
    if length and not (node.get("pattern") in PATTERNS and length == "1..63"):  # a label says 63 itself
        parts.append(length)
    return parts


def _array_words(node: Mapping[str, Any]) -> list[str]:
    items = node.get("items") or {}
    list_type = node.get("x-kubernetes-list-type")
    if items.get("type") == "string":
        of = PATTERNS.get(items.get("pattern", ""), "string")
        shape = f"{'set' if list_type == 'set' else 'list'} of {of}s"
    elif list_type == "map":
        shape = f"list keyed by `{'`, `'.join(node.get('x-kubernetes-list-map-keys', []))}`"
    else:
        shape = "list"
    return [shape, *[b for b in (_bounds(node, "minItems", "maxItems"),) if b]]


def _object_words(node: Mapping[str, Any]) -> list[str]:
    if "additionalProperties" in node and "properties" not in node:
        return ["map"]
    return ["PodTemplateSpec" if _is_template(node) else "object"]


def default_and_meaning(node: Mapping[str, Any]) -> tuple[str, str]:
    description = " ".join(str(node.get("description", "")).split())
    found = _DEFAULT_SENTENCE.search(description)
    if "default" in node:
        default = f"`{json.dumps(node['default'])}`"
    elif found:
        default = found[1]
    else:
        default = ""
    if found:
        description = (description[: found.start()] + description[found.end() :]).strip()
    return default, description


def rows(node: Mapping[str, Any], prefix: str, own_sections: set[str], section_path: str) -> Iterator[list[str]]:
    required = set(node.get("required") or [])
    for name, child in (node.get("properties") or {}).items():
        if name == "kopf" or (not child.get("description") and child.get("type") == "object"):
            continue  # the framework's bookkeeping and bare metadata are no API of the run
        field = f"{prefix}{name}"
        path = f"{section_path}.{name}"
        is_list = child.get("type") == "array"
        shown = f"{field}[]" if is_list and (child.get("items") or {}).get("type") == "object" else field
        default, meaning = default_and_meaning(child)
        if path in own_sections:
            meaning = f"{meaning} See [`{path}[]`](#{path.replace('.', '')}).".strip()
        if path in LINKED:
            meaning = f"{meaning} See {LINKED[path]}.".strip()
        yield [f"`{shown}`", type_of(child, name in required), default, meaning]
        if path in own_sections or path in LINKED or _is_template(child):
            continue
        if child.get("type") == "object" and "properties" in child:
            yield from rows(child, f"{field}.", own_sections, path)
        elif child.get("type") == "object" and isinstance(child.get("additionalProperties"), Mapping):
            yield from rows(child["additionalProperties"], f"{field}.<name>.", own_sections, f"{path}.<name>")
        elif is_list and "properties" in (child.get("items") or {}):
            yield from rows(child["items"], f"{shown}.", own_sections, f"{path}[]")


def _cell(text: str) -> str:
    # A bare | ends a table cell, inside code spans too; an escaped one is kept.
    return re.sub(r"(?<!\\)\|", r"\\|", text)


def _kind_name(section: str) -> str:
    return next((kind for prefix, kind in SECTION_KINDS.items() if section.startswith(prefix)), "flowrun")


def kind_of(section: str, schemas: Schemas) -> Kind:
    kind: Kind = getattr(schemas, _kind_name(section))
    return kind


def table(root: Mapping[str, Any], section: str) -> str:
    """`root`: the schema of the section's CRD."""
    own_sections = {name for name in SECTIONS if name != section and _kind_name(name) == _kind_name(section)}
    header = ["Field", "Type", "Meaning"] if section in NO_DEFAULTS else ["Field", "Type", "Default", "Meaning"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for field, kind, default, meaning in rows(node_at(root, SECTIONS[section]), "", own_sections, section):
        cells = [field, kind, meaning] if section in NO_DEFAULTS else [field, kind, default, meaning]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines)


def render(doc: str, schemas: Schemas = SCHEMAS) -> str:
    """`doc` (docs/api.md) with every table written anew from `schemas`; raises ValueError if a
    table's markers are missing."""
    for section in SECTIONS:
        begin, end = f"<!-- BEGIN GENERATED: {section} -->", f"<!-- END GENERATED: {section} -->"
        found = re.search(re.escape(begin) + r".*?" + re.escape(end), doc, re.DOTALL)
        if found is None:
            raise ValueError(f"docs/api.md has no markers {begin} ... {end}")
        root = kind_of(section, schemas).schema()
        doc = f"{doc[: found.start()]}{begin}\n{NOTE}\n{table(root, section)}\n{end}{doc[found.end() :]}"
    return doc
