"""The byte budget of a FlowRun's status: the stored object (metadata, spec and status) stays under
api.OBJECT_LIMIT (1 MiB), well under etcd's default request limit (1.5 MiB), whatever the run's
size. A status that would not fit gives up detail, deterministically, in this order, each step
taking the tasks that finished first (and among them the largest) first, until it fits:

1. captured logs are cut to their last LOG_KEEP bytes, then dropped;
2. messages of finished tasks (and why their last attempt failed) are cut to MESSAGE_KEEP
   characters;
3. results no other task references are dropped (a note says where the full text is: the
   termination message of the task's pod);
4. results other tasks reference move to one ConfigMap per task that the run owns (the status
   keeps where: `resultFrom`), never cut: substitution reads them from there;
5. every message is cut to MESSAGE_MIN characters;
6. a finished task keeps no more than its message says: the note of its dropped logs and why its
   last attempt failed (`lastFailure`: a failed task's message says it) go.

A note in each field says what was cut and where the full text is. Pure: sizes are those of the
JSON the API server stores (compact, UTF-8), plus an estimate of the managedFields entry the
status write adds (its field paths)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowrun import names
from flowrun.api import MAX_INSTANCES, MAX_ITEMS, SUCCEEDED
from flowrun.merge_patch import pruned

LOG_KEEP = 1024  # bytes of a task's logs kept at the first step
MESSAGE_KEEP = 256  # characters of a finished task's message kept at the second step
MESSAGE_MIN = 96  # characters of any message kept at the last step
# What every task and block needs at the least (phase, reason, attempts, pod, times): a spec whose
# status cannot even hold that, with its metadata and spec, is refused.
MIN_TASK_BYTES, MIN_RESOURCE_BYTES, MIN_RUN_BYTES = 640, 800, 4096
NOTE = "the status is kept under 1 MiB"
REFERENCE = re.compile(r"\$\(tasks\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.results?\)")


def size(value: object) -> int:
    """Bytes of `value` as the API server stores it (compact JSON, UTF-8)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def fields_size(value: object) -> int:
    """An estimate of the managedFields entry that writing `value` adds: `{"f:key":{...}}` for every
    key, `".":{}` for every object that is not a leaf."""
    if isinstance(value, Mapping):
        return 7 + sum(len(str(key)) + 6 + fields_size(item) for key, item in value.items() if item is not None)
    if isinstance(value, list):
        return 2 + sum(fields_size(item) + 16 for item in value)
    return 2


def weight(status: Mapping[str, Any]) -> int:
    """What writing `status` (a merge patch: None removes a key) costs the object: its bytes as
    stored and its managedFields entry."""
    stored = pruned(status)
    return size(stored) + fields_size(stored)


def minimal_weight(tasks: int, resources: int) -> int:
    return MIN_RUN_BYTES + tasks * MIN_TASK_BYTES + resources * MIN_RESOURCE_BYTES


def minimal_instance_weight(run: str, task: str) -> int:
    """What an instance of forEach task `task` needs at the least, once every step has been taken
    (its message cut to MESSAGE_MIN, its logs and lastFailure dropped), with the longest values
    its fields can have."""
    index = MAX_ITEMS - 1
    entry = {
        "phase": "Succeeded",
        "reason": "r" * 32,
        "message": "m" * MESSAGE_MIN + f"... (cut: {NOTE})",
        "attempts": 101,
        "podName": names.task_pod_name(run, task, 101, index),
        "exitCode": 255,
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:00:00Z",
        "instanceOf": task,
        "index": index,
    }
    return weight({f"{task}-{index}": entry})


def instances_weight(run: str, for_each_tasks: list[str]) -> int:
    """What the status needs at the least for the instances a run with these forEach tasks may
    have (api.MAX_INSTANCES, of the one whose entries are largest)."""
    if not for_each_tasks:
        return 0
    return MAX_INSTANCES * max(minimal_instance_weight(run, task) for task in for_each_tasks)


def referenced_results(spec: object) -> frozenset[str]:
    """The tasks whose result some part of the spec references ($(tasks.NAME.result)), and the
    forEach tasks whose instances' results it does ($(tasks.NAME.results))."""
    return frozenset(match.group(1) for match in REFERENCE.finditer(json.dumps(spec)))


@dataclass
class Fitted:
    status: dict[str, Any]
    # Results that move to a ConfigMap of their own in this pass: task -> (ConfigMap, result).
    moved: dict[str, tuple[str, str]] = field(default_factory=dict)
    fits: bool = True


class _Tasks:
    """The status's task entries, with their weights kept up to date as they are cut."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.entries: dict[str, dict[str, Any]] = {n: dict(e) for n, e in (status.get("tasks") or {}).items()}
        self.rest = weight({k: v for k, v in status.items() if k != "tasks"}) + 20
        self.weights = {n: weight({n: e}) for n, e in self.entries.items()}

    def total(self) -> int:
        return self.rest + sum(self.weights.values())

    def update(self, name: str) -> None:
        self.weights[name] = weight({name: self.entries[name]})

    def in_order(self, finished_only: bool) -> list[str]:
        """Finished first (earliest first), then the largest first, then by name."""

        def key(name: str) -> tuple[bool, str, int, str]:
            finished = self.entries[name].get("finishedAt")
            return (finished is None, str(finished or ""), -self.weights[name], name)

        chosen = [n for n in self.entries if not finished_only or self.entries[n].get("finishedAt")]
        return sorted(chosen, key=key)


Step = Callable[[str, dict[str, Any]], bool]  # cuts one task entry; True if it changed it


def fit(status: Mapping[str, Any], budget: int, run: str, referenced: frozenset[str]) -> Fitted:
    """`status` as it fits `budget` (see the module's docstring); `fits` is False if even the last
    step leaves it too large (a spec check keeps that from happening)."""
    tasks = _Tasks(dict(status))
    fitted = Fitted(dict(status))
    if tasks.total() <= budget:
        return fitted
    steps: list[tuple[bool, Step]] = [
        (True, lambda _, e: _cut_logs(e, LOG_KEEP)),
        (True, lambda _, e: _cut_logs(e, 0)),
        (True, lambda _, e: _cut_message(e, MESSAGE_KEEP)),
        (True, lambda n, e: not _used(n, e, referenced) and _drop_result(e)),
        (True, lambda n, e: _used(n, e, referenced) and _move_result(n, e, run, fitted)),
        (False, lambda _, e: _cut_message(e, MESSAGE_MIN)),
        (True, lambda _, e: _drop_repeated(e)),
    ]
    for finished_only, step in steps:
        for name in _each_until_it_fits(tasks, budget, finished_only):
            if step(name, tasks.entries[name]):
                tasks.update(name)
        if tasks.total() <= budget:
            break
    fitted.status["tasks"] = tasks.entries
    fitted.fits = tasks.total() <= budget
    return fitted


def _used(name: str, entry: Mapping[str, Any], referenced: frozenset[str]) -> bool:
    """Whether a task's result is referenced: its own, or (an instance's) its forEach task's results."""
    return name in referenced or entry.get("instanceOf") in referenced


def _each_until_it_fits(tasks: _Tasks, budget: int, finished_only: bool) -> Iterator[str]:
    for name in tasks.in_order(finished_only):
        if tasks.total() <= budget:
            return
        yield name


def _cut_logs(entry: dict[str, Any], keep: int) -> bool:
    """Keep the last `keep` bytes of the logs (of what an earlier cut kept), with a note."""
    logs = entry.get("logs")
    if not isinstance(logs, str):
        return False
    cut_before = logs.startswith("(cut")
    text = logs.partition("\n")[2] if cut_before else logs
    if len(text.encode()) <= keep and (cut_before or not keep):
        return False
    tail = text.encode()[-keep:].decode(errors="ignore") if keep else ""
    what = f"the last {keep} bytes" if keep else "none of them"
    entry["logs"] = f"(cut to {what}: {NOTE}; all of them: kubectl flowrun logs, or the pod)\n{tail}"
    return True


def _cut_message(entry: dict[str, Any], keep: int) -> bool:
    """Cut the message, and the reason of the last failed attempt, to `keep` characters."""
    cut = False
    for key in ("message", "lastFailure"):
        text = entry.get(key)
        if isinstance(text, str) and len(text) > keep:
            entry[key], cut = text[:keep] + f"... (cut: {NOTE})", True
    return cut


def _drop_repeated(entry: dict[str, Any]) -> bool:
    """Drop a finished task's logs (only a note is left of them by now) and its lastFailure."""
    dropped = False
    for key in ("logs", "lastFailure"):
        if entry.get(key) is not None:
            entry[key], dropped = None, True
    return dropped


def _drop_result(entry: dict[str, Any]) -> bool:
    result = entry.get("result")
    if entry.get("phase") != SUCCEEDED or not result:
        return False
    entry["result"] = None
    where = f"the termination message of pod {entry.get('podName')}" if entry.get("podName") else "the original run"
    entry["message"] = f"result of {len(result.encode())} bytes not kept ({NOTE}, no task uses it): see {where}"
    return True


def _move_result(name: str, entry: dict[str, Any], run: str, fitted: Fitted) -> bool:
    result = entry.get("result")
    if entry.get("phase") != SUCCEEDED or not result:
        return False
    index = entry.get("index")
    owner = entry.get("instanceOf")
    if isinstance(owner, str) and isinstance(index, int):
        config_map = names.result_config_map(run, owner, index)  # an instance's
    else:
        config_map = names.result_config_map(run, name)
    fitted.moved[name] = (config_map, result)
    entry["result"], entry["resultFrom"] = None, f"ConfigMap/{config_map}"
    return True
