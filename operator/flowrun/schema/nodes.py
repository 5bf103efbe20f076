"""The vocabulary the API is declared in: one node per field. A node knows two things, from the
same declaration: the OpenAPI schema it renders to in a CRD (`render`), and how the operator
checks a value against it (`check`), raising a SpecError that names the field.

`check` enforces what the rendered schema makes the API server enforce (types, unknown fields,
bounds, lengths, enums, patterns, unique keys of a list) and returns the value as the API server
would store it: nulls dropped, defaults filled in. The operator needs its own checks because it
also reads specs no API server checked in that shape (a Flow's spec with a run's params, the copy a
rerun takes, a CronFlowRun's template). CEL rules (`Rule`) are rendered, not evaluated: what they
say is cross-field, and the model checks it in code.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import KW_ONLY, dataclass, field, replace
from typing import Any, TypeGuard


class SpecError(ValueError):
    """An invalid spec: `field` is the path of the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def type_name(value: object) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else "null"
    )


def _wrong_type(value: object, path: str, expected: str) -> SpecError:
    return SpecError(path, f"must be {expected}, not {type_name(value)}")


def mapping(value: object, path: str) -> Mapping[str, Any]:
    if type(value) is dict:  # the usual case, without the ABC check's cost
        return value
    if not isinstance(value, Mapping):
        raise _wrong_type(value, path, "an object")
    return value


def _is_int(value: object) -> TypeGuard[int]:
    # bool is an int in Python, but `true` is never a valid count.
    return isinstance(value, int) and not isinstance(value, bool)


def _go_anchors(pattern: str) -> str:
    """`pattern` with each `$` outside a character class made `\\Z`: in Go's regexp, which the API
    server uses, `$` is the end of the text; in Python's it also matches before a final newline."""
    out: list[str] = []
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "[]":
            in_class = char == "["
        elif char == "$" and not in_class:
            char = r"\Z"
        out.append(char)
    return "".join(out)


@functools.cache
def regex(pattern: str) -> re.Pattern[str]:
    """A CRD pattern read as the API server reads it (Go's RE2: ASCII classes, `$` at the end)."""
    return re.compile(_go_anchors(pattern), re.ASCII)


@dataclass(frozen=True)
class Format:
    """A named shape of string: the pattern the CRD enforces, and what the operator says of a value
    that does not match it (`{value}`: the value, quoted). `check`, when set, is the operator's own
    test in place of the pattern (stricter, and able to say why): it returns what is wrong, or None.
    `name` is what the docs call the shape; empty, they show the pattern."""

    pattern: str
    message: str
    name: str = ""
    check: Callable[[str], str | None] | None = None

    def problem(self, text: str) -> str | None:
        if self.check is not None:
            return self.check(text)
        return None if regex(self.pattern).search(text) else self.message.format(value=repr(text))


@dataclass(frozen=True)
class Rule:
    """A CEL rule of the CRD (x-kubernetes-validations). The operator's code checks the same."""

    rule: str
    message: str = ""
    message_expression: str = ""
    field_path: str = ""
    reason: str = ""

    def render(self) -> dict[str, str]:
        out = {"rule": self.rule}
        for key, value in (
            ("message", self.message),
            ("messageExpression", self.message_expression),
            ("fieldPath", self.field_path),
            ("reason", self.reason),
        ):
            if value:
                out[key] = value
        return out


@dataclass(frozen=True, kw_only=True)
class Node:
    """A field's declaration. `default`: the value the API server stores when the field is absent
    (None: no default). `setting`: used on a FlowRun spec's own fields only (flowrun.schema.flowrun)."""

    default: Any = None
    rules: tuple[Rule, ...] = ()
    setting: bool = False

    def render(self) -> dict[str, Any]:
        raise NotImplementedError

    def check(self, value: object, path: str) -> Any:
        raise NotImplementedError

    def _finish(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Drop empty keywords; add the default (where the schema has the key, else last) and the rules."""
        out: dict[str, Any] = {}
        for key, value in schema.items():
            given = copy.deepcopy(self.default) if key == "default" else value
            if given is not None and given != "":
                out[key] = given
        if self.default is not None and "default" not in out:
            out["default"] = copy.deepcopy(self.default)
        if self.rules:
            out["x-kubernetes-validations"] = [rule.render() for rule in self.rules]
        return out


def _length_problem(length: int, low: int | None, high: int | None) -> str | None:
    if low is not None and length < low:
        return "must not be empty" if low == 1 else f"must have at least {low} characters, not {length}"
    if high is not None and length > high:
        return f"may have at most {high} characters, not {length}"
    return None


def _enum_problem(value: object, enum: tuple[Any, ...], path: str) -> str | None:
    if not enum or value in enum:
        return None
    name = path.rsplit(".", 1)[-1]
    return f"unknown {name} {value!r} (one of {', '.join(str(e) for e in enum)})"


@dataclass(frozen=True)
class Str(Node):
    description: str = ""
    _: KW_ONLY
    format: Format | None = None
    min_length: int | None = None
    max_length: int | None = None
    enum: tuple[str, ...] = ()
    date_time: bool = False  # an RFC 3339 time (status fields)

    def render(self) -> dict[str, Any]:
        return self._finish(
            {
                "type": "string",
                "description": self.description,
                "format": "date-time" if self.date_time else None,
                "minLength": self.min_length,
                "maxLength": self.max_length,
                "pattern": self.format.pattern if self.format else None,
                "enum": list(self.enum) or None,
            }
        )

    def check(self, value: object, path: str) -> str:
        if not isinstance(value, str):
            raise _wrong_type(value, path, "a string")
        if self.format is None and self.min_length is None and self.max_length is None and not self.enum:
            return value
        problem = (
            (self.format.problem(value) if self.format else None)
            or self._length_problem(value)
            or _enum_problem(value, self.enum, path)
        )
        if problem:
            raise SpecError(path, problem)
        return value

    def _length_problem(self, value: str) -> str | None:
        problem = _length_problem(len(value), self.min_length, self.max_length)
        if problem and self.format is not None and self.format.check is None:
            # Too long for its field is not of the format ("... a DNS-1123 label (..., at most 63)").
            return self.format.message.format(value=repr(value))
        return problem


@dataclass(frozen=True)
class Int(Node):
    description: str = ""
    _: KW_ONLY
    minimum: int | None = None  # a spec's numbers always have both bounds (a status's need none)
    maximum: int | None = None
    format: str = "int32"  # or int64: what the number is in Kubernetes' own types

    def render(self) -> dict[str, Any]:
        return self._finish(
            {
                "type": "integer",
                "format": self.format,
                "description": self.description,
                "minimum": self.minimum,
                "maximum": self.maximum,
            }
        )

    def check(self, value: object, path: str) -> int:
        if not _is_int(value):
            raise _wrong_type(value, path, "an integer")
        return _in_bounds(value, self.minimum, self.maximum, path)


def _in_bounds(value: int, minimum: int | None, maximum: int | None, path: str) -> int:
    if minimum is not None and value < minimum:
        raise SpecError(path, f"must be >= {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise SpecError(path, f"must be <= {maximum}, not {value}")
    return value


@dataclass(frozen=True)
class Bool(Node):
    description: str = ""

    def render(self) -> dict[str, Any]:
        return self._finish({"type": "boolean", "description": self.description})

    def check(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            raise _wrong_type(value, path, "a boolean")
        return value


@dataclass(frozen=True)
class IntOrStr(Node):
    """An integer within bounds, or a string of the given format and length (as a Kubernetes
    IntOrString: a port, a replica count)."""

    description: str = ""
    _: KW_ONLY
    minimum: int
    maximum: int
    format: Format
    max_length: int

    def render(self) -> dict[str, Any]:
        return self._finish(
            {
                "description": self.description,
                "x-kubernetes-int-or-string": True,
                "default": None,
                "anyOf": [{"type": "integer"}, {"type": "string"}],
                "minimum": self.minimum,
                "maximum": self.maximum,
                "maxLength": self.max_length,
                "pattern": self.format.pattern,
            }
        )

    def check(self, value: object, path: str) -> int | str:
        if _is_int(value):
            return _in_bounds(value, self.minimum, self.maximum, path)
        if not isinstance(value, str):
            raise _wrong_type(value, path, "an integer or a string")
        problem = self.format.problem(value) or _length_problem(len(value), None, self.max_length)
        if problem:
            raise SpecError(path, problem)
        return value


@dataclass(frozen=True)
class Obj(Node):
    """An object with declared fields (in the order the docs list them). Unknown fields are refused
    unless `preserve_unknown` (the parts of a pod template the API server's dry run judges)."""

    description: str = ""
    _: KW_ONLY
    fields: Mapping[str, Node] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    preserve_unknown: bool = False

    def render(self) -> dict[str, Any]:
        return self._finish(
            {
                "type": "object",
                "description": self.description,
                "x-kubernetes-preserve-unknown-fields": True if self.preserve_unknown else None,
                "required": list(self.required) or None,
                "default": None,
                "properties": {name: node.render() for name, node in self.fields.items()} or None,
            }
        )

    def check(self, value: object, path: str) -> dict[str, Any]:
        obj = mapping(value, path)
        if not self.preserve_unknown:
            for key in obj:
                if key not in self.fields:
                    raise SpecError(f"{path}.{key}", f"unknown field (allowed: {', '.join(self.fields)})")
        out = dict(obj)
        for name, node in self.fields.items():
            given = obj.get(name)
            if given is None and name not in self.required:
                # Absent or null (the API server drops a null): the default, if any.
                out.pop(name, None)
                if node.default is None:
                    continue
                given = copy.deepcopy(node.default)
            out[name] = node.check(given, f"{path}.{name}")
        return out

    # -- deriving one declaration from another (Flow and CronFlowRun from FlowRun) --

    def without(self, *names: str) -> Obj:
        return replace(
            self,
            fields={k: v for k, v in self.fields.items() if k not in names},
            required=tuple(r for r in self.required if r not in names),
        )

    def with_field(self, name: str, node: Node) -> Obj:
        """This object with field `name` added (last) or replaced (in place)."""
        return replace(self, fields={**self.fields, name: node})

    def at(self, path: tuple[str, ...]) -> Node:
        """The node at `path`: field names, `[]` for a list's items, `{}` for a map's values."""
        node: Node = self
        for part in path:
            node = _child(node, part)
        return node

    def with_field_at(self, path: tuple[str, ...], name: str, node: Node) -> Obj:
        """This object with field `name` added to (or replaced in) the object at `path`."""
        return _as_obj(_rebuilt(self, path, lambda target: _as_obj(target, path).with_field(name, node)), ())


def _as_obj(node: Node, path: tuple[str, ...]) -> Obj:
    if not isinstance(node, Obj):
        raise TypeError(f"{'.'.join(path)} is not an object")
    return node


def _child(node: Node, part: str) -> Node:
    if part == "[]" and isinstance(node, Arr):
        return node.items
    if part == "{}" and isinstance(node, Map):
        return node.values
    if isinstance(node, Obj) and part in node.fields:
        return node.fields[part]
    raise KeyError(part)


def _rebuilt(node: Node, path: tuple[str, ...], change: Callable[[Node], Node]) -> Node:
    if not path:
        return change(node)
    part, rest = path[0], path[1:]
    child = _rebuilt(_child(node, part), rest, change)
    if isinstance(node, Arr):
        return replace(node, items=child)
    if isinstance(node, Map):
        return replace(node, values=child)
    return _as_obj(node, path).with_field(part, child)


@dataclass(frozen=True)
class Arr(Node):
    """A list. `noun` names an item in messages ("must list at least one task"). A list of type
    `map` has items unique by `keys` (the first one is named when two clash); a `set`, unique items."""

    description: str = ""
    _: KW_ONLY
    items: Node
    min_items: int | None = None
    max_items: int | None = None
    list_type: str | None = None  # map | set
    keys: tuple[str, ...] = ()
    noun: str = "item"

    def render(self) -> dict[str, Any]:
        return self._finish(
            {
                "type": "array",
                "description": self.description,
                "minItems": self.min_items,
                "maxItems": self.max_items,
                "x-kubernetes-list-type": self.list_type,
                "x-kubernetes-list-map-keys": list(self.keys) or None,
                "items": self.items.render(),
            }
        )

    def check(self, value: object, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise _wrong_type(value, path, "a list")
        problem = self._size_problem(len(value))
        if problem:
            raise SpecError(path, problem)
        out: list[Any] = []
        seen: set[Any] = set()
        for i, item in enumerate(value):
            checked = self.items.check(item, f"{path}[{i}]")
            self._unique(checked, seen, f"{path}[{i}]")
            out.append(checked)
        return out

    def _size_problem(self, length: int) -> str | None:
        if self.min_items is not None and length < self.min_items:
            if self.min_items == 1:
                return f"must list at least one {self.noun}"
            return f"must list at least {self.min_items} {self.noun}s, not {length}"
        if self.max_items is not None and length > self.max_items:
            return f"may list at most {self.max_items} {self.noun}s, not {length}"
        return None

    def _unique(self, item: Any, seen: set[Any], path: str) -> None:
        if self.list_type == "map":
            key = tuple(item.get(k) for k in self.keys)
            if key in seen:
                raise SpecError(f"{path}.{self.keys[0]}", f"duplicate {self.noun} {self.keys[0]} {key[0]!r}")
            seen.add(key)
        elif self.list_type == "set":
            if item in seen:
                raise SpecError(path, f"{self.noun} {item!r} is listed twice")
            seen.add(item)


@dataclass(frozen=True)
class Map(Node):
    """An object of any keys, each value of one declaration (labels: strings)."""

    description: str = ""
    _: KW_ONLY
    values: Node

    def render(self) -> dict[str, Any]:
        return self._finish(
            {"type": "object", "description": self.description, "additionalProperties": self.values.render()}
        )

    def check(self, value: object, path: str) -> dict[str, Any]:
        return {key: self.values.check(item, f"{path}.{key}") for key, item in mapping(value, path).items()}


@dataclass(frozen=True)
class Opaque(Node):
    """An object the schema does not describe: kept as given (a complete Kubernetes object when
    `embedded`; the operator's own bookkeeping)."""

    description: str = ""
    _: KW_ONLY
    embedded: bool = False

    def render(self) -> dict[str, Any]:
        return self._finish(
            {
                "type": "object",
                "description": self.description,
                "x-kubernetes-embedded-resource": True if self.embedded else None,
                "x-kubernetes-preserve-unknown-fields": True,
            }
        )

    def check(self, value: object, path: str) -> Mapping[str, Any]:
        return mapping(value, path)


def walk(node: Node) -> Iterator[Node]:
    """`node` and every node below it."""
    yield node
    if isinstance(node, Obj):
        for child in node.fields.values():
            yield from walk(child)
    elif isinstance(node, Arr):
        yield from walk(node.items)
    elif isinstance(node, Map):
        yield from walk(node.values)
