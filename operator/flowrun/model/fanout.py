"""What the model checks of forEach tasks beyond their references: no other task is named like
one of their instances, and a list known before the run (written in the spec, or made of params)
is a JSON list within the caps whose items have the fields the template reads; the run's lists
known so far stay within its cap on instances. A list made of task results is checked when it is
known (engine/fanout.py), with the same messages."""

from __future__ import annotations

import re
from collections.abc import Collection

from flowrun.api import MAX_INSTANCES
from flowrun.items import ItemsError, missing_field, parse_items
from flowrun.model.spec import FlowSpec, TaskSpec
from flowrun.references import Context, RefKind, find_references, substitute
from flowrun.schema.nodes import SpecError


def check_for_each(flow: FlowSpec, placeholders: Collection[str] = ()) -> None:
    """Raise SpecError on the first problem; `placeholders` are params whose value is not known
    yet (a Flow's params without default): a list that reads one is checked when the run starts."""
    paths = {t.name: f"spec.tasks[{i}]" for i, t in enumerate(flow.tasks)}
    for task in flow.for_each_tasks():
        instance = re.compile(re.escape(task.name) + r"-[0-9]+")
        for other in flow.tasks:
            if instance.fullmatch(other.name):
                raise SpecError(
                    f"{paths[other.name]}.name",
                    f"{other.name!r} is the name of an instance of forEach task {task.name!r}: name it otherwise",
                )
    total = 0
    for task in flow.for_each_tasks():
        count = _static_items(flow, task, paths[task.name], placeholders)
        total += count or 0
        if count is not None and total > MAX_INSTANCES:
            raise SpecError(
                f"{paths[task.name]}.forEach",
                f"the run's forEach tasks would have {total} instances with this one's {count}: at most "
                f"{MAX_INSTANCES} in a run",
            )


def _static_items(flow: FlowSpec, task: TaskSpec, path: str, placeholders: Collection[str]) -> int | None:
    """How many items the list of `task` has, if it is known before the run; None if not."""
    assert task.for_each is not None
    refs = find_references(task.for_each)
    if any(r.kind is not RefKind.PARAM or r.name in placeholders for r in refs):
        return None
    text = substitute(task.for_each, Context(params=flow.param_values))
    try:
        items = parse_items(text)
    except ItemsError as err:
        raise SpecError(f"{path}.forEach", f"{task.for_each!r} {err}") from None
    missing = missing_field(items, task.template)
    if missing is not None:
        raise SpecError(f"{path}.template.{missing[0]}", missing[1])
    return len(items)
