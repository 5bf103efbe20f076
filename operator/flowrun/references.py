"""The `$(...)` reference grammar of a FlowRun, in one place.

The rule for what counts as a reference:

* A reference starts with `$(` followed by one of the words `params`, `tasks`, `resources`,
  `flowrun`, `item` and then a `.` or `)`. Everything up to the next `)` is the reference, and it must be
  one of the well-formed forms below; otherwise it is a spec error (so a typo such as
  `$(param.x)` is left alone, but `$(params.x.y)` or an unterminated `$(tasks.a.result` is
  reported instead of reaching a container).
* Any other `$(...)` is not ours and is left untouched: shell command substitution such as
  `$(date)`, and Kubernetes' own `$(VAR_NAME)` expansion of container env variables.
* `$$` is Kubernetes' escape for a literal `$`, so `$$(params.x)` is not a reference: it is left
  as written and the kubelet turns it into the literal text `$(params.x)`.

Well-formed references:

    $(params.NAME)                          NAME: a letter or `_`, then letters, digits, `_`, `-`
    $(tasks.TASK.result)                    TASK: a task name (DNS-1123 label)
    $(tasks.TASK.results)                   the results of a forEach task's instances, a JSON list
    $(tasks.TASK.phase)                     the task's phase (in a condition, `when`)
    $(resources.RESOURCE.value)             RESOURCE: a resource name (DNS-1123 label)
    $(resources.RESOURCE.services.DEPLOYMENT)
    $(flowrun.name) | $(flowrun.namespace) | $(flowrun.uid)
    $(item) | $(item.FIELD) | $(item.FIELD.FIELD...)   the item of a forEach task's instance; FIELD: a
                                            key (a letter or `_`, then letters, digits, `_`, `-`)
                                            or a list index (digits)

Where each may stand is the model's check (model/graph.py).
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
FLOWRUN_FIELDS = ("name", "namespace", "uid")
ITEM_FIELD = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]{0,62}|[0-9]{1,4})$")
TASK_FIELDS = ("result", "results", "phase")

# `$$` is matched first so that an escaped `$$(` is consumed before `$(` could match inside it.
_START = re.compile(r"\$\$|\$\((?:params|tasks|resources|flowrun|item)(?=[.)])")


class RefKind(enum.Enum):
    PARAM = "param"
    TASK_RESULT = "task-result"
    TASK_RESULTS = "task-results"  # of a forEach task: its instances' results
    TASK_PHASE = "task-phase"
    RESOURCE_VALUE = "resource-value"
    SERVICE = "service"
    FLOWRUN = "flowrun"
    ITEM = "item"


@dataclass(frozen=True)
class Reference:
    """One parsed reference. `name` is the param, task or resource name, or the flowrun field;
    `path` the fields of an item reference (empty: the whole item)."""

    text: str
    kind: RefKind
    name: str
    deployment: str = ""
    path: tuple[str, ...] = ()


class ReferenceSyntaxError(ValueError):
    """A `$(...)` that uses one of our prefixes but is not one of the well-formed references."""


class UnresolvedReference(KeyError):
    """The context holds no value for a reference (a validated spec never gets here, but for an
    item that lacks a field a reference reads: engine/fanout.py checks that first)."""


class _NoItem:
    """The context of anything but an instance of a forEach task: `$(item)` has no value."""


NO_ITEM: Any = _NoItem()


@dataclass(frozen=True)
class AnyItem:
    """Stands for every item (the dry run's, before the items are known): each field of it is
    itself, and it reads as `text`."""

    text: str


def item_value(item: Any, path: tuple[str, ...]) -> Any:
    """The part of `item` (a JSON value) that `path` names; raises KeyError if it has none."""
    value = item
    for key in path:
        if isinstance(value, AnyItem):
            return value
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise KeyError(key)
    return value


def as_text(value: Any) -> str:
    """How a JSON value is substituted: a string as it is, anything else as compact JSON."""
    if isinstance(value, AnyItem):
        return value.text
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Context:
    """The values references resolve to at one moment of a run."""

    params: Mapping[str, str] = field(default_factory=dict)
    flowrun: Mapping[str, str] = field(default_factory=dict)
    task_results: Mapping[str, str] = field(default_factory=dict)
    # forEach task -> the JSON list of its instances' results; task -> its phase
    task_results_lists: Mapping[str, str] = field(default_factory=dict)
    task_phases: Mapping[str, str] = field(default_factory=dict)
    resource_values: Mapping[str, str] = field(default_factory=dict)
    # (resource, deployment) -> the Service's cluster DNS name
    services: Mapping[tuple[str, str], str] = field(default_factory=dict)
    item: Any = NO_ITEM  # the JSON value of the item, in an instance of a forEach task

    def resolve(self, ref: Reference) -> str:
        if ref.kind is RefKind.ITEM:
            return self._item(ref)
        value: str | None
        if ref.kind is RefKind.SERVICE:
            value = self.services.get((ref.name, ref.deployment))
        else:
            value = self._named(ref.kind).get(ref.name)
        if value is None:
            raise UnresolvedReference(ref.text)
        return value

    def _named(self, kind: RefKind) -> Mapping[str, str]:
        return {
            RefKind.PARAM: self.params,
            RefKind.TASK_RESULT: self.task_results,
            RefKind.TASK_RESULTS: self.task_results_lists,
            RefKind.TASK_PHASE: self.task_phases,
            RefKind.RESOURCE_VALUE: self.resource_values,
            RefKind.FLOWRUN: self.flowrun,
        }[kind]

    def _item(self, ref: Reference) -> str:
        if self.item is NO_ITEM:
            raise UnresolvedReference(ref.text)
        try:
            return as_text(item_value(self.item, ref.path))
        except KeyError:
            raise UnresolvedReference(ref.text) from None


def _parse(text: str) -> Reference:
    body = text[2:-1]
    parts = body.split(".")
    kind = parts[0]
    if kind == "params" and len(parts) == 2 and PARAM_NAME.fullmatch(parts[1]):
        return Reference(text, RefKind.PARAM, parts[1])
    if kind == "tasks" and len(parts) == 3 and parts[2] in TASK_FIELDS and DNS1123_LABEL.fullmatch(parts[1]):
        task_kind = {"result": RefKind.TASK_RESULT, "results": RefKind.TASK_RESULTS, "phase": RefKind.TASK_PHASE}
        return Reference(text, task_kind[parts[2]], parts[1])
    if kind == "resources" and len(parts) >= 3 and DNS1123_LABEL.fullmatch(parts[1]):
        if len(parts) == 3 and parts[2] == "value":
            return Reference(text, RefKind.RESOURCE_VALUE, parts[1])
        if len(parts) == 4 and parts[2] == "services" and DNS1123_LABEL.fullmatch(parts[3]):
            return Reference(text, RefKind.SERVICE, parts[1], parts[3])
    if kind == "flowrun" and len(parts) == 2 and parts[1] in FLOWRUN_FIELDS:
        return Reference(text, RefKind.FLOWRUN, parts[1])
    if kind == "item" and all(ITEM_FIELD.fullmatch(p) for p in parts[1:]):
        return Reference(text, RefKind.ITEM, "item", path=tuple(parts[1:]))
    forms = {
        "params": "$(params.NAME)",
        "tasks": "$(tasks.NAME.result), $(tasks.NAME.results) or $(tasks.NAME.phase)",
        "item": "$(item) or $(item.FIELD)",
        "resources": "$(resources.NAME.value) or $(resources.NAME.services.DEPLOYMENT)",
        "flowrun": "$(flowrun.name), $(flowrun.namespace) or $(flowrun.uid)",
    }
    raise ReferenceSyntaxError(f"malformed reference {text!r}: expected {forms[kind]}")


def scan(text: str) -> list[tuple[int, int, Reference]]:
    """(start, end, reference) for every reference in `text`, in order."""
    found: list[tuple[int, int, Reference]] = []
    pos = 0
    while (match := _START.search(text, pos)) is not None:
        if match.group() == "$$":
            pos = match.end()
            continue
        close = text.find(")", match.end())
        if close < 0:
            raise ReferenceSyntaxError(f"unterminated reference {text[match.start() :]!r}")
        found.append((match.start(), close + 1, _parse(text[match.start() : close + 1])))
        pos = close + 1
    return found


def find_references(text: str) -> list[Reference]:
    """Every reference in `text`; raises ReferenceSyntaxError on a malformed one."""
    return [ref for _, _, ref in scan(text)]


def substitute(text: str, context: Context) -> str:
    """`text` with every reference replaced by its value from `context`."""
    pieces: list[str] = []
    pos = 0
    for start, end, ref in scan(text):
        pieces.append(text[pos:start])
        pieces.append(context.resolve(ref))
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)
