"""`list`: FlowRuns as a table, like `kubectl get fr` plus the Flow each one runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from flowrun.api import PENDING
from flowrun.lenient import as_map, as_str
from flowrun.plugin.durations import age, elapsed
from flowrun.plugin.tree import phase_text


def source(run: Mapping[str, Any]) -> str:
    """What the run runs: its Flow, `rerun of NAME`, or `-` for an inline spec."""
    spec = as_map(run.get("spec"))
    flow = as_str(as_map(spec.get("flowRef")).get("name"))
    if flow:
        return flow
    original = as_str(as_map(spec.get("rerunOf")).get("name"))
    return f"rerun of {original}" if original else "-"


def table(runs: Sequence[Mapping[str, Any]], now: datetime, all_namespaces: bool) -> Table:
    out = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    headings = ["NAMESPACE"] if all_namespaces else []
    headings += ["NAME", "FLOW", "PHASE", "PROGRESS", "DURATION", "AGE"]
    for heading in headings:
        out.add_column(heading, no_wrap=True)

    def key(run: Mapping[str, Any]) -> tuple[str, str]:
        metadata = as_map(run.get("metadata"))
        return as_str(metadata.get("namespace")), as_str(metadata.get("name"))

    for run in sorted(runs, key=key):
        metadata, status = as_map(run.get("metadata")), as_map(run.get("status"))
        took = as_str(status.get("duration")) or elapsed(status.get("startedAt"), status.get("finishedAt"), now)
        cells: list[Text] = [Text(as_str(metadata.get("namespace")))] if all_namespaces else []
        cells += [
            Text(as_str(metadata.get("name"))),
            Text(source(run)),
            phase_text(as_str(status.get("phase")) or PENDING),
            Text(as_str(status.get("progress"))),
            Text(took),
            Text(age(metadata.get("creationTimestamp"), now)),
        ]
        out.add_row(*cells)
    return out
