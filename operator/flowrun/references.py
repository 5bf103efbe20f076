"""The `$(...)` reference grammar of a FlowRun, in one place.

The rule for what counts as a reference:

* A reference starts with `$(` followed by one of the words `params`, `tasks`, `resources`,
  `flowrun` and then a `.` or `)`. Everything up to the next `)` is the reference, and it must be
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
    $(resources.RESOURCE.value)             RESOURCE: a resource name (DNS-1123 label)
    $(resources.RESOURCE.services.DEPLOYMENT)
    $(flowrun.name) | $(flowrun.namespace) | $(flowrun.uid)
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
FLOWRUN_FIELDS = ("name", "namespace", "uid")

# `$$` is matched first so that an escaped `$$(` is consumed before `$(` could match inside it.
_START = re.compile(r"\$\$|\$\((?:params|tasks|resources|flowrun)(?=[.)])")


class RefKind(enum.Enum):
    PARAM = "param"
    TASK_RESULT = "task-result"
    RESOURCE_VALUE = "resource-value"
    SERVICE = "service"
    FLOWRUN = "flowrun"


@dataclass(frozen=True)
class Reference:
    """One parsed reference. `name` is the param, task or resource name, or the flowrun field."""

    text: str
    kind: RefKind
    name: str
    deployment: str = ""


class ReferenceSyntaxError(ValueError):
    """A `$(...)` that uses one of our prefixes but is not one of the well-formed references."""


class UnresolvedReference(KeyError):
    """The context holds no value for a reference (a validated spec never gets here)."""


@dataclass(frozen=True)
class Context:
    """The values references resolve to at one moment of a run."""

    params: Mapping[str, str] = field(default_factory=dict)
    flowrun: Mapping[str, str] = field(default_factory=dict)
    task_results: Mapping[str, str] = field(default_factory=dict)
    resource_values: Mapping[str, str] = field(default_factory=dict)
    # (resource, deployment) -> the Service's cluster DNS name
    services: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def resolve(self, ref: Reference) -> str:
        value: str | None
        if ref.kind is RefKind.PARAM:
            value = self.params.get(ref.name)
        elif ref.kind is RefKind.TASK_RESULT:
            value = self.task_results.get(ref.name)
        elif ref.kind is RefKind.RESOURCE_VALUE:
            value = self.resource_values.get(ref.name)
        elif ref.kind is RefKind.SERVICE:
            value = self.services.get((ref.name, ref.deployment))
        else:
            value = self.flowrun.get(ref.name)
        if value is None:
            raise UnresolvedReference(ref.text)
        return value


def _parse(text: str) -> Reference:
    body = text[2:-1]
    parts = body.split(".")
    kind = parts[0]
    if kind == "params" and len(parts) == 2 and PARAM_NAME.fullmatch(parts[1]):
        return Reference(text, RefKind.PARAM, parts[1])
    if kind == "tasks" and len(parts) == 3 and parts[2] == "result" and DNS1123_LABEL.fullmatch(parts[1]):
        return Reference(text, RefKind.TASK_RESULT, parts[1])
    if kind == "resources" and len(parts) >= 3 and DNS1123_LABEL.fullmatch(parts[1]):
        if len(parts) == 3 and parts[2] == "value":
            return Reference(text, RefKind.RESOURCE_VALUE, parts[1])
        if len(parts) == 4 and parts[2] == "services" and DNS1123_LABEL.fullmatch(parts[3]):
            return Reference(text, RefKind.SERVICE, parts[1], parts[3])
    if kind == "flowrun" and len(parts) == 2 and parts[1] in FLOWRUN_FIELDS:
        return Reference(text, RefKind.FLOWRUN, parts[1])
    forms = {
        "params": "$(params.NAME)",
        "tasks": "$(tasks.NAME.result)",
        "resources": "$(resources.NAME.value) or $(resources.NAME.services.DEPLOYMENT)",
        "flowrun": "$(flowrun.name), $(flowrun.namespace) or $(flowrun.uid)",
    }
    raise ReferenceSyntaxError(f"malformed reference {text!r}: expected {forms[kind]}")


def _scan(text: str) -> list[tuple[int, int, Reference]]:
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
    return [ref for _, _, ref in _scan(text)]


def substitute(text: str, context: Context) -> str:
    """`text` with every reference replaced by its value from `context`."""
    pieces: list[str] = []
    pos = 0
    for start, end, ref in _scan(text):
        pieces.append(text[pos:start])
        pieces.append(context.resolve(ref))
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)
