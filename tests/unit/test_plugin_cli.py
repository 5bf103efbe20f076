"""The plugin's commands without a cluster: help, usage and connection errors, offline validate
(every example, and every bad input of the model tests), the objects submit and rerun build, and
the pure helpers of logs, watch and list."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowrun.plugin import objects
from flowrun.plugin.app import main
from flowrun.plugin.client import PluginError, Target, connect
from flowrun.plugin.durations import age
from flowrun.plugin.listing import source
from flowrun.plugin.logs import attempts, prefixes
from flowrun.plugin.watch import changes, states
from tests.unit.test_model import ONE_TASK_ERRORS

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
COMMANDS = ["submit", "get", "watch", "list", "logs", "cancel", "rerun", "validate", "graph"]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0
    assert f"kubectl flowrun {command}" in out
    if command not in ("validate", "graph", "submit"):
        assert "--kubeconfig" in out and "--context" in out and "--namespace" in out


def test_usage_error_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "get")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and "Missing argument 'name'" in err and "--help" in err


def test_graph_needs_a_name_or_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "graph")
    assert code == 2 and "give a FlowRun NAME or -f FILE" in err


def write_kubeconfig(path: Path) -> Path:
    cluster = {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [
                    {"name": "dev", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
                    {"name": "plain", "context": {"cluster": "c", "user": "u"}},
                ],
                "current-context": "dev",
            }
        )
    )
    return path


def test_namespace_comes_from_the_flag_else_the_context_else_default(tmp_path: Path) -> None:
    kubeconfig = str(write_kubeconfig(tmp_path / "config"))
    assert connect(Target(kubeconfig)).namespace == "team-a"
    assert connect(Target(kubeconfig, "plain")).namespace == "default"
    assert connect(Target(kubeconfig, "plain", "other")).namespace == "other"
    assert connect(Target(kubeconfig, "plain")).server == "https://127.0.0.1:1"


def test_unknown_context_and_missing_kubeconfig_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = str(write_kubeconfig(tmp_path / "config"))
    with pytest.raises(PluginError, match=r"context 'nope' not found \(contexts: dev, plain\)"):
        connect(Target(kubeconfig, "nope"))
    code, _, err = run_cli(capsys, "list", "--kubeconfig", str(tmp_path / "missing"))
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: kubeconfig ")


def test_an_unreachable_server_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = str(write_kubeconfig(tmp_path / "config"))
    code, _, err = run_cli(capsys, "get", "x", "--kubeconfig", kubeconfig)
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("error: cannot reach the API server at https://127.0.0.1:1")


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_validate_accepts_every_example(capsys: pytest.CaptureFixture[str], example: Path) -> None:
    code, out, _ = run_cli(capsys, "validate", "-f", str(example))
    assert code == 0
    assert out.strip().endswith(": valid")


@pytest.mark.parametrize(("what", "spec", "field", "message"), ONE_TASK_ERRORS, ids=[c[0] for c in ONE_TASK_ERRORS])
def test_validate_names_the_field_of_every_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str, spec: Any, field: str, message: str
) -> None:
    body = {"apiVersion": "flowrun.dev/v1alpha1", "kind": "FlowRun", "metadata": {"name": "bad"}, "spec": spec}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(body))
    code, out, _ = run_cli(capsys, "validate", "-f", str(path), "-n", "team")
    assert code == 1
    assert out == f"{path}: FlowRun bad: {field}: " + out.split(f"{field}: ", 1)[1]
    assert message in out


def test_validate_reports_each_document_of_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = yaml.safe_load((REPO / "examples" / "linear-flowrun.yaml").read_text())
    bad = {"apiVersion": "flowrun.dev/v1alpha1", "kind": "FlowRun", "metadata": {"generateName": "x-"}, "spec": {}}
    flow = {"apiVersion": "flowrun.dev/v1alpha1", "kind": "Flow", "metadata": {"name": "f"}, "spec": {}}
    path = tmp_path / "runs.yaml"
    path.write_text(yaml.safe_dump_all([good, bad, flow]))
    code, out, _ = run_cli(capsys, "validate", "-f", str(path))
    assert code == 1
    assert out.splitlines() == [
        f"{path}#1: FlowRun linear: valid",
        f"{path}#2: FlowRun x-*: spec.tasks: must be a list, not null",
        f"{path}#3: Flow f: kind: must be FlowRun, not 'Flow' (validate checks FlowRuns)",
    ]


@pytest.mark.parametrize(
    ("content", "error"),
    [(None, "No such file or directory"), ("a: [", "not valid YAML"), ("", "no YAML document")],
)
def test_validate_of_an_unreadable_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, error: str
) -> None:
    path = tmp_path / "f.yaml"
    if content is not None:
        path.write_text(content)
    code, _, err = run_cli(capsys, "validate", "-f", str(path))
    assert code == 1 and err.count("\n") == 1 and error in err


def test_graph_of_a_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "graph", "-f", str(REPO / "examples" / "dask-flowrun.yaml"), "--format", "mermaid")
    assert code == 0 and out.startswith("flowchart LR\n") and '  subgraph b_dask["block dask"]' in out


def test_submit_builds_a_run_of_the_flow() -> None:
    params = objects.parse_params(["out-path=/data/x=1.csv", "n-workers=3"])
    assert objects.run_of_flow("dask-summary", params, None) == {
        "apiVersion": "flowrun.dev/v1alpha1",
        "kind": "FlowRun",
        "metadata": {"generateName": "dask-summary-"},
        "spec": {
            "flowRef": {"name": "dask-summary"},
            "params": [{"name": "out-path", "value": "/data/x=1.csv"}, {"name": "n-workers", "value": "3"}],
        },
    }
    named = objects.run_of_flow("dask-summary", [], "nightly")
    assert named["metadata"] == {"name": "nightly"} and named["spec"] == {"flowRef": {"name": "dask-summary"}}


@pytest.mark.parametrize(
    ("flags", "error"), [(["x"], "expected NAME=VALUE"), (["=1"], "expected"), (["a=1", "a=2"], "twice")]
)
def test_bad_params_are_refused(flags: list[str], error: str) -> None:
    with pytest.raises(PluginError, match=error):
        objects.parse_params(flags)


def test_rerun_builds_a_run_with_rerun_of() -> None:
    assert objects.rerun_of("nightly", None) == {
        "apiVersion": "flowrun.dev/v1alpha1",
        "kind": "FlowRun",
        "metadata": {"generateName": "nightly-rerun-"},
        "spec": {"rerunOf": {"name": "nightly"}},
    }
    assert objects.rerun_of("nightly", "again")["metadata"] == {"name": "again"}


@pytest.mark.parametrize(
    ("phase", "allowed"), [("Failed", True), ("Cancelled", True), ("Succeeded", False), (None, False)]
)
def test_only_a_failed_or_cancelled_run_is_rerun(phase: str | None, allowed: bool) -> None:
    run: dict[str, Any] = {"metadata": {"name": "r"}, "status": {"phase": phase} if phase else {}}
    if allowed:
        objects.check_rerunnable(run)
    else:
        with pytest.raises(PluginError, match="only a Failed or Cancelled run can be rerun"):
            objects.check_rerunnable(run)


def test_list_names_the_flow_or_the_original() -> None:
    assert source({"spec": {"flowRef": {"name": "f"}}}) == "f"
    assert source({"spec": {"rerunOf": {"name": "r"}}}) == "rerun of r"
    assert source({"spec": {"tasks": []}}) == "-"


def failed_run() -> dict[str, Any]:
    run: dict[str, Any] = yaml.safe_load((REPO / "examples" / "linear-flowrun.yaml").read_text())
    run["spec"]["tasks"][1]["retries"] = {"limit": 2}
    first, second = run["spec"]["tasks"][0]["name"], run["spec"]["tasks"][1]["name"]
    run["status"] = {
        "phase": "Failed",
        "tasks": {
            first: {"phase": "Succeeded", "attempts": 1, "podName": f"linear-{first}-1"},
            second: {"phase": "Failed", "attempts": 2, "podName": f"linear-{second}-2", "logs": "line 1\nline 2\n"},
        },
    }
    return run


def test_logs_cover_every_attempt_with_its_prefix_and_kept_tail() -> None:
    run = failed_run()
    first, second = (t["name"] for t in run["spec"]["tasks"][:2])
    found = attempts(run, None)
    assert [(a.prefix, a.pod, a.latest) for a in found] == [
        (first, f"linear-{first}-1", True),
        (second, f"linear-{second}-1", False),
        (f"{second}#2", f"linear-{second}-2", True),
    ]
    assert found[2].kept_logs == "line 1\nline 2\n" and found[1].kept_logs == ""
    assert f"{second}#3" in prefixes(run, None)
    with pytest.raises(PluginError, match="has no task 'nope'"):
        attempts(run, "nope")


def test_watch_reports_each_change_of_phase_or_reason_once() -> None:
    before = failed_run()
    after = failed_run()
    after["status"]["tasks"][after["spec"]["tasks"][0]["name"]]["message"] = "only the message changed"
    third = after["spec"]["tasks"][2]["name"]
    after["status"]["tasks"][third] = {"phase": "Skipped", "reason": "UpstreamFailed", "message": "upstream"}
    lines = [line.plain.split("  ", 1)[1] for line in changes(states(before), states(after))]
    assert lines == [f"task {third}  Skipped  UpstreamFailed  upstream"]
    assert changes(states(after), states(after)) == []


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (5, "5s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 120, "3h2m"),
        (30 * 3600, "30h"),
        (3 * 86400, "3d"),
    ],
)
def test_age_as_kubectl_prints_it(seconds: int, shown: str) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    created = datetime.fromtimestamp(now.timestamp() - seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert age(created, now) == shown


def test_shell_completion_is_set_up_for_the_console_script(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:  # typer exits from inside the flag's callback
        main(["--show-completion", "bash"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "_KUBECTL_FLOWRUN_COMPLETE=complete_bash" in out
    assert out.rstrip().endswith("kubectl-flowrun")
