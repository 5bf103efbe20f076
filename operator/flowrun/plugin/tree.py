"""A FlowRun's status as a tree: a header line for the run, then a table whose first column is
the tree (blocks with the tasks inside them nested) and whose other columns give each one's
phase (in colour on a terminal), reason, attempts, duration and result (or message) cut to a
line. Pure: the FlowRun object and the time in, a rich renderable out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from flowrun.api import (
    CANCELLED,
    CLEANED_UP,
    CLEANING_UP,
    CLEANUP_FAILED,
    FAILED,
    HOLDING,
    PENDING,
    READY,
    RUNNING,
    SETTING_UP,
    SETUP_FAILED,
    SKIPPED,
    SUCCEEDED,
)
from flowrun.lenient import as_map, as_str, count
from flowrun.model import FlowSpec, SpecError, TaskSpec, parse_spec
from flowrun.plugin.durations import elapsed
from flowrun.plugin.layout import BlockNode, layout

DETAIL_LIMIT = 80  # characters of a result or message shown in the tree
INSTANCE_ROWS = 20  # instances of a forEach task shown under it (and every one that did not succeed)

PHASE_STYLES = {
    SUCCEEDED: "green",
    READY: "green",
    CLEANED_UP: "green",
    FAILED: "bold red",
    SETUP_FAILED: "bold red",
    CLEANUP_FAILED: "bold red",
    RUNNING: "cyan",
    SETTING_UP: "cyan",
    CLEANING_UP: "cyan",
    PENDING: "yellow",
    SKIPPED: "dim",
    CANCELLED: "magenta",
}


def phase_text(phase: str) -> Text:
    return Text(phase, style=PHASE_STYLES.get(phase, ""))


def one_line(text: str, limit: int = DETAIL_LIMIT) -> str:
    """The first line of `text`, at most `limit` characters; `…` marks what was cut."""
    stripped = text.strip()
    lines = stripped.splitlines()
    first = lines[0] if lines else ""
    if len(first) > limit:
        return first[: limit - 1] + "…"
    return first + ("…" if len(lines) > 1 else "")


def run_spec(run: Mapping[str, Any]) -> FlowSpec | None:
    """The run's parsed spec, or None when it has no inline spec or an invalid one (the tree is
    then drawn from the status alone, flat)."""
    spec = run.get("spec")
    # A run of a Flow, or a rerun, executes the spec the operator resolved and kept in its status.
    resolved = as_map(run.get("status")).get("resolvedSpec")
    if resolved is not None and ("flowRef" in as_map(spec) or "rerunOf" in as_map(spec)):
        spec = resolved
    try:
        return parse_spec(spec, as_str(as_map(run.get("metadata")).get("namespace")) or None)
    except SpecError:
        return None


@dataclass(frozen=True)
class Row:
    name: Text
    phase: Text
    reason: str
    attempts: str
    duration: str
    detail: Text


def _task_row(label: Text, entry: Mapping[str, Any], task: TaskSpec | None, now: datetime) -> Row:
    phase = as_str(entry.get("phase")) or PENDING
    attempts = count(entry.get("attempts"))
    limit = task.retries.limit if task is not None else 0
    shown = "" if attempts == 0 else str(attempts) if limit == 0 else f"{attempts}/{limit + 1}"
    result, message = as_str(entry.get("result")), as_str(entry.get("message"))
    if phase == SUCCEEDED and entry.get("resultFrom"):
        detail = Text(f"(result in {as_str(entry.get('resultFrom'))})", style="dim")  # the status was full
    elif phase == SUCCEEDED and entry.get("result") is None and message:
        detail = Text(one_line(message), style="dim")  # its result was not kept: the message says where it is
    else:
        detail = Text(one_line(result)) if phase == SUCCEEDED else Text(one_line(message), style="dim")
    return Row(
        label,
        phase_text(phase),
        as_str(entry.get("reason")),
        shown,
        elapsed(entry.get("startedAt"), entry.get("finishedAt"), now),
        detail,
    )


def _block_row(label: Text, entry: Mapping[str, Any], now: datetime) -> Row:
    phase = as_str(entry.get("phase")) or PENDING
    value, message = as_str(entry.get("value")), as_str(entry.get("message"))
    failed = phase in (SETUP_FAILED, CLEANUP_FAILED) or entry.get("setupError") or entry.get("cleanupError")
    detail = Text(one_line(message), style="dim") if failed or not value else Text(one_line(value))
    end = entry.get("cleanedUpAt") or (entry.get("cleanupStartedAt") if phase == CLEANUP_FAILED else None)
    return Row(
        label,
        phase_text(phase),
        as_str(entry.get("reason")),
        "",
        elapsed(entry.get("setupStartedAt"), end, now),
        detail,
    )


def _block_label(name: str) -> Text:
    return Text.assemble(("block ", "dim"), (name, "bold"))


def rows(run: Mapping[str, Any], now: datetime) -> list[Row]:
    status = as_map(run.get("status"))
    tasks, resources = as_map(status.get("tasks")), as_map(status.get("resources"))
    spec = run_spec(run)
    if spec is None:
        # No spec to draw the blocks from: what the status knows, flat.
        flat = [_block_row(_block_label(n), as_map(e), now) for n, e in resources.items()]
        return flat + [_task_row(Text(n), as_map(e), None, now) for n, e in tasks.items()]
    plan = layout(spec)
    out: list[Row] = []

    def walk(items: list[BlockNode | TaskSpec], prefix: str | None) -> None:
        for i, item in enumerate(items):
            last = i == len(items) - 1
            guide = "" if prefix is None else prefix + ("└── " if last else "├── ")
            inner = "" if prefix is None else prefix + ("    " if last else "│   ")
            if isinstance(item, BlockNode):
                name = item.resource.name
                label = Text.assemble(Text(guide, style="dim"), _block_label(name))
                out.append(_block_row(label, as_map(resources.get(name)), now))
                walk(item.items, inner)
            else:
                label = Text.assemble(Text(guide, style="dim"), item.name)
                if item.name in plan.also_in:
                    label.append(f" (also in {', '.join(plan.also_in[item.name])})", style="dim")
                out.append(_task_row(label, as_map(tasks.get(item.name)), item, now))
                if item.for_each is not None:
                    out.extend(_instance_rows(item, tasks, inner, now))

    walk(plan.items, None)
    return out


def _instance_rows(task: TaskSpec, tasks: Mapping[str, Any], prefix: str, now: datetime) -> list[Row]:
    """The instances of a forEach task under it, in item order: the first INSTANCE_ROWS, then
    those of the rest that did not succeed, then how many more succeeded."""
    found = sorted(
        (
            (count(as_map(e).get("index")), n, as_map(e))
            for n, e in tasks.items()
            if as_map(e).get("instanceOf") == task.name
        ),
    )
    shown = [f for i, f in enumerate(found) if i < INSTANCE_ROWS or f[2].get("phase") != SUCCEEDED]
    hidden = len(found) - len(shown)
    rows: list[Row] = []
    for i, (_, name, entry) in enumerate(shown):
        last = i == len(shown) - 1 and not hidden
        label = Text.assemble(Text(prefix + ("└── " if last else "├── "), style="dim"), name)
        rows.append(_task_row(label, entry, task, now))
    if hidden:
        label = Text(prefix + f"└── … {hidden} more succeeded", style="dim")
        rows.append(Row(label, Text(""), "", "", "", Text("")))
    return rows


def header(run: Mapping[str, Any], now: datetime) -> Text:
    metadata, status = as_map(run.get("metadata")), as_map(run.get("status"))
    phase = as_str(status.get("phase")) or PENDING
    took = as_str(status.get("duration")) or elapsed(status.get("startedAt"), status.get("finishedAt"), now)
    parts: list[Text] = [
        Text.assemble(("FlowRun ", "bold"), (as_str(metadata.get("name")), "bold")),
        phase_text(phase),
    ]
    if status.get("progress"):
        parts.append(Text(f"{as_str(status.get('progress'))} tasks done"))
    if took:
        parts.append(Text(took))
    line = Text("  ").join(parts)
    message = as_str(status.get("message"))
    if message:
        line.append("\n")
        line.append(one_line(message, 200), style="dim")
    held = lock_line(status.get("locks"))
    if held:
        line.append("\n")
        line.append(held)
    return line


def lock_line(locks: object) -> str:
    """`locks: holds mutex/nightly (Lease ...); task load waits for semaphore/limits/db`: what the run
    and its tasks hold and wait for (status.locks); empty when nothing."""
    entries = [as_map(e) for e in locks] if isinstance(locks, list) else []
    parts = []
    for entry in entries:
        who = f"task {as_str(entry.get('task'))} " if entry.get("task") else ""
        lock = as_str(entry.get("lock"))
        if entry.get("state") == HOLDING:
            parts.append(f"{who}holds {lock} (Lease {as_str(entry.get('lease'))})")
        else:
            parts.append(f"{who}waits for {lock}")
    return "locks: " + "; ".join(parts) if parts else ""


class RunView:
    """The header and the tree table, laid out for the console's width when drawn: only the last
    column is cut on a narrow terminal. With `now` None, durations run to the moment of drawing
    (a live view redraws them as they grow)."""

    def __init__(self, run: Mapping[str, Any], now: datetime | None = None) -> None:
        self.run = run
        self.now = now

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        now = self.now or datetime.now(UTC)
        cells = [
            [r.name, r.phase, Text(r.reason), Text(r.attempts), Text(r.duration), r.detail] for r in rows(self.run, now)
        ]
        headings = ("NAME", "PHASE", "REASON", "ATTEMPTS", "DURATION")
        widths = [max([len(h), *(c[i].cell_len for c in cells)]) for i, h in enumerate(headings)]
        room = options.max_width - sum(widths) - 2 * len(widths)  # two spaces between columns
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for heading, width in zip(headings, widths, strict=True):
            table.add_column(heading, no_wrap=True, width=width)
        table.add_column("RESULT / MESSAGE", no_wrap=True, overflow="ellipsis", max_width=max(room, 1))
        for row in cells:
            table.add_row(*row)
        yield header(self.run, now)
        yield Text("")
        yield table


def render(run: Mapping[str, Any], now: datetime | None = None) -> RenderableType:
    return RunView(run, now)
