"""The FlowRuns `submit` and `rerun` create. Pure: they only build objects; the operator resolves
the Flow or the original run and reports what is wrong with them."""

from __future__ import annotations

from typing import Any

from flowrun import api
from flowrun.plugin.client import PluginError


def parse_params(values: list[str]) -> list[dict[str, str]]:
    """`-p name=value` flags as `spec.params` entries, in order; a name given twice is an error."""
    params: list[dict[str, str]] = []
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise PluginError(f"-p {value!r}: expected NAME=VALUE")
        if any(p["name"] == name for p in params):
            raise PluginError(f"-p {name}: given twice")
        params.append({"name": name, "value": text})
    return params


def _metadata(name: str | None, generate_from: str) -> dict[str, str]:
    return {"name": name} if name else {"generateName": f"{generate_from}-"}


def run_of_flow(flow: str, params: list[dict[str, str]], name: str | None) -> dict[str, Any]:
    """A FlowRun of the Flow `flow`: named `name`, else `<flow>-<random suffix>`."""
    spec: dict[str, Any] = {"flowRef": {"name": flow}}
    if params:
        spec["params"] = params
    return {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": _metadata(name, flow), "spec": spec}


def rerun_of(original: str, name: str | None) -> dict[str, Any]:
    """A FlowRun that continues `original`: named `name`, else `<original>-rerun-<random suffix>`."""
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": _metadata(name, f"{original}-rerun"),
        "spec": {"rerunOf": {"name": original}},
    }


def check_rerunnable(run: dict[str, Any]) -> None:
    """Refuse early what the operator would refuse: a run still going, or one that succeeded."""
    name = run["metadata"]["name"]
    phase = (run.get("status") or {}).get("phase") or api.PENDING
    if phase not in api.RERUNNABLE:
        raise PluginError(f"FlowRun {name} is {phase}: only a Failed or Cancelled run can be rerun")
