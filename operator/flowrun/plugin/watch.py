"""`watch`: follow a FlowRun until it has finished. On a terminal the tree is redrawn in place
(durations keep counting); otherwise (a pipe, a CI log) each change of a phase or reason is one
line, and the final tree is printed at the end."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from rich.console import Console
from rich.live import Live
from rich.text import Text

from flowrun.api import HOLDING, PENDING, RUN_FINAL, SUCCEEDED, WAITING_LOCK
from flowrun.lenient import as_map, as_str, conditions_by_type
from flowrun.plugin.client import Connection, PluginError, api_error
from flowrun.plugin.tree import RunView, one_line, phase_text

WATCH_SECONDS = 30  # one watch request; the next starts from the last version seen
REFRESH_PER_SECOND = 2


def phase(run: Mapping[str, Any]) -> str:
    return as_str(as_map(run.get("status")).get("phase")) or PENDING


def finished(run: Mapping[str, Any]) -> bool:
    return phase(run) in RUN_FINAL


def states(run: Mapping[str, Any]) -> dict[str, tuple[str, str, str]]:
    """What a change line reports: "run" / "task NAME" / "block NAME" -> (phase, reason, detail)."""
    status = as_map(run.get("status"))
    waits = as_map(conditions_by_type(status).get("Succeeded")).get("reason") == WAITING_LOCK
    found = {"run": (phase(run), WAITING_LOCK if waits else "", as_str(status.get("message")))}
    locks = status.get("locks")
    for entry in map(as_map, locks if isinstance(locks, list) else []):
        task = f" (task {as_str(entry.get('task'))})" if entry.get("task") else ""
        state = as_str(entry.get("state"))
        detail = f"Lease {as_str(entry.get('lease'))}" if state == HOLDING else as_str(entry.get("message"))
        found[f"lock {as_str(entry.get('lock'))}{task}"] = (state, "", detail)
    for name, entry in as_map(status.get("resources")).items():
        entry = as_map(entry)
        found[f"block {name}"] = (as_str(entry.get("phase")), as_str(entry.get("reason")), as_str(entry.get("message")))
    for name, entry in as_map(status.get("tasks")).items():
        entry = as_map(entry)
        detail = as_str(entry.get("result")) if entry.get("phase") == SUCCEEDED else as_str(entry.get("message"))
        found[f"task {name}"] = (as_str(entry.get("phase")), as_str(entry.get("reason")), detail)
    return found


def changes(before: Mapping[str, tuple[str, str, str]], after: Mapping[str, tuple[str, str, str]]) -> list[Text]:
    """One line per thing whose phase or reason changed (a message alone changing is not news)."""
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    lines = []
    for what, (new_phase, reason, detail) in after.items():
        if before.get(what, ("", "", ""))[:2] == (new_phase, reason) or not new_phase:
            continue
        line = Text.assemble((stamp, "dim"), "  ", what, "  ", phase_text(new_phase))
        if reason and reason != new_phase:
            line.append(f"  {reason}")
        if detail:
            line.append(f"  {one_line(detail)}", style="dim")
        lines.append(line)
    return lines


def updates(connection: Connection, name: str, run: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every new version of the FlowRun until it has finished; an error if it is deleted."""
    version = as_str(as_map(run.get("metadata")).get("resourceVersion"))
    while not finished(run):
        try:
            for event in connection.watch_flowrun(name, version, WATCH_SECONDS):
                if event["type"] == "DELETED":
                    raise PluginError(f"FlowRun {name} was deleted before it finished")
                if event["type"] not in ("ADDED", "MODIFIED"):
                    continue
                run = event["object"]
                version = as_str(as_map(run.get("metadata")).get("resourceVersion")) or version
                yield run
                if finished(run):
                    return
        except ApiException as error:
            if error.status != 410:
                raise api_error(error, f"watching FlowRun {name}") from None
            # The version is too old to watch from: read the run again and watch from there.
            run = connection.get_flowrun(name)
            version = as_str(as_map(run.get("metadata")).get("resourceVersion"))
            yield run


def watch(connection: Connection, name: str, console: Console) -> str:
    """Follow the run to its end; returns its final phase."""
    run = connection.get_flowrun(name)
    if console.is_terminal:
        with Live(RunView(run), console=console, refresh_per_second=REFRESH_PER_SECOND) as live:
            for update in updates(connection, name, run):
                run = update
                live.update(RunView(run))
            live.update(RunView(run, datetime.now(UTC)))
        return phase(run)
    seen = states(run)
    for line in changes({}, seen):
        console.print(line, soft_wrap=True, highlight=False)
    for update in updates(connection, name, run):
        run, before, seen = update, seen, states(update)
        for line in changes(before, seen):
            console.print(line, soft_wrap=True, highlight=False)
    console.print()
    console.print(RunView(run))
    return phase(run)
