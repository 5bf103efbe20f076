"""The plugin's commands without a cluster: help, usage and connection errors, offline validate
(every example, and every bad input of the model tests), the objects submit and rerun build, and
the pure helpers of logs, watch and list."""

from __future__ import annotations

import io
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console

from flowrun.plugin import objects
from flowrun.plugin.app import main
from flowrun.plugin.client import PluginError, Target, connect
from flowrun.plugin.documents import load_documents
from flowrun.plugin.durations import age
from flowrun.plugin.listing import source
from flowrun.plugin.logs import attempts, prefixes
from flowrun.plugin.tree import lock_line, render
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


# --- files that cannot be read safely: one line, exit 1, bounded memory, nothing sent --------------

FLOWRUN_HEAD = "apiVersion: flowrun.dev/v1alpha1\nkind: FlowRun\nmetadata: {name: lol}\n"


def alias_bomb(levels: int, fan_out: int) -> str:
    """A "billion laughs" FlowRun: under 1 KB, valid offline (metadata.labels is the API server's
    to check), whose labels hold fan_out**levels strings once expanded (10**12 here: terabytes
    as JSON)."""
    lines = ["apiVersion: flowrun.dev/v1alpha1\nkind: FlowRun\nmetadata:\n  name: lol\n  labels:\n"]
    lines.append(f"    l0: &a0 [{', '.join(['lol'] * fan_out)}]\n")
    lines += [f"    l{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fan_out)}]\n" for i in range(1, levels)]
    lines.append("spec:\n  tasks:\n  - name: a\n    template: {spec: {containers: [{name: main, image: busybox}]}}\n")
    return "".join(lines)


def unreachable(tmp_path: Path) -> list[str]:
    """Flags for --server against an API server that is not there: the error must come before."""
    return ["--server", "--kubeconfig", str(write_kubeconfig(tmp_path / "config"))]


def one_line_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code, out, err = run_cli(capsys, *args)
    assert (code, out) == (1, ""), (code, out, err)
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err and "cannot reach the API server" not in err, err
    return err


COMMANDS_WITH_FILES = [["validate"], ["graph"]]


@pytest.mark.parametrize("command", COMMANDS_WITH_FILES, ids=["validate", "graph"])
def test_a_file_that_is_not_utf8_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(f"{FLOWRUN_HEAD}# caf\xe9\n".encode("latin-1"))
    err = one_line_error(capsys, *command, "-f", str(path))
    offset = len(FLOWRUN_HEAD) + len("# caf")
    assert err == f"error: {path}: not UTF-8 text (byte 0xe9 at offset {offset})\n"


def test_utf16_with_its_byte_order_mark_is_read_as_kubectl_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "utf16.yaml"
    path.write_bytes((REPO / "examples" / "linear-flowrun.yaml").read_text().encode("utf-16"))
    code, out, _ = run_cli(capsys, "validate", "-f", str(path))
    assert (code, out) == (0, f"{path}: FlowRun linear: valid\n")


def test_an_alias_bomb_is_refused_at_once_without_being_expanded(tmp_path: Path) -> None:
    bomb = alias_bomb(levels=12, fan_out=10)
    assert len(bomb) < 1024
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.raises(PluginError) as error:
        load_documents("-", io.BytesIO(bomb.encode()))
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert str(error.value) == (
        "-: excessive aliasing: its YAML aliases expand it to over 3 MiB, too large for the API server,"
        " which refuses a request over 3 MiB"
    )
    assert peak < 2 * 1024 * 1024, f"{peak} bytes at the peak"
    assert elapsed < 1.0, f"{elapsed:.2f} s"


def test_an_alias_bomb_is_one_line_and_nothing_is_sent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(alias_bomb(levels=12, fan_out=10))
    for command in (["validate", *unreachable(tmp_path)], ["graph"]):
        assert "excessive aliasing" in one_line_error(capsys, *command, "-f", str(path))


def test_aliases_that_stay_small_are_read_as_usual(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "anchors.yaml"
    path.write_text(
        FLOWRUN_HEAD
        + "spec:\n  tasks:\n"
        + "  - name: a\n    template: &pod {spec: {containers: [{name: main, image: busybox}]}}\n"
        + "  - name: b\n    runAfter: [a]\n    template: *pod\n"
    )
    code, out, _ = run_cli(capsys, "validate", "-f", str(path))
    assert (code, out) == (0, f"{path}: FlowRun lol: valid\n")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("a: &x [1, *x]\n", "the alias *x is inside its own anchor: a recursive document"),
        ("a: &x {b: *x}\n", "the alias *x is inside its own anchor: a recursive document"),
        ("a: *x\n", "the alias *x has no anchor before it"),
        ("a:\n" + "".join(f"{'  ' * (i + 1)}k:\n" for i in range(120)), "nested more than 100 levels deep"),
        ("a: [" + ",".join(["1"] * 150_000) + "]\n", "more than 100000 YAML nodes: far more than any FlowRun has"),
    ],
    ids=["recursive list", "recursive map", "undefined alias", "deep", "many nodes"],
)
def test_a_document_that_cannot_be_built_safely_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, error: str
) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    assert one_line_error(capsys, "validate", *unreachable(tmp_path), "-f", str(path)) == f"error: {path}: {error}\n"


def test_a_file_over_3_mib_is_too_large_for_the_api_server_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(f"{FLOWRUN_HEAD}spec:\n  tasks: []\n  x: '{'a' * 10_000_000}'\n")
    expected = "over 3 MiB: too large for the API server, which refuses a request over 3 MiB"
    for command in (["validate", *unreachable(tmp_path)], ["validate"], ["graph"]):
        assert one_line_error(capsys, *command, "-f", str(path)) == f"error: {path}: {expected}\n"
    # From stdin too, which may never end: at most one byte more than the limit is read.
    endless = io.BytesIO(b"#" * 10_000_000)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(endless))
    assert one_line_error(capsys, "validate", "-f", "-") == f"error: -: {expected}\n"
    assert endless.tell() == 3 * 1024 * 1024 + 1


def test_a_document_over_3_mib_as_json_is_too_large_for_the_api_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Under 3 MiB as YAML, over it as JSON (each control character is \\u0001 there): said, not sent.
    path = tmp_path / "escapes.yaml"
    run = yaml.safe_load((REPO / "examples" / "linear-flowrun.yaml").read_text())
    run["metadata"] = {"name": "lol", "annotations": {"x": "\x01" * 700_000}}
    path.write_text(yaml.safe_dump(run, width=1 << 30))
    assert path.stat().st_size < 3 * 1024 * 1024
    code, out, err = run_cli(capsys, "validate", *unreachable(tmp_path), "-f", str(path), "-n", "team")
    assert code == 1 and "cannot reach" not in err, err
    assert out.startswith(f"{path}: FlowRun lol: not sent: "), out
    assert out.rstrip().endswith("bytes as JSON: too large for the API server, which refuses a request over 3 MiB")


def test_a_directory_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert one_line_error(capsys, "validate", "-f", str(tmp_path)) == f"error: {tmp_path}: Is a directory\n"


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


def waiting_run() -> dict[str, Any]:
    """A run of the nightly example waiting for its mutex, one of its tasks holding a semaphore's slot."""
    message = "waiting for mutex/warehouse, held by FlowRun nightly-etl-1"
    return {
        "apiVersion": "flowrun.dev/v1alpha1",
        "kind": "FlowRun",
        "metadata": {"name": "nightly-etl-2", "namespace": "team"},
        "spec": {
            "synchronization": {"mutex": {"name": "warehouse"}},
            "tasks": [{"name": "load", "template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}}],
        },
        "status": {
            "phase": "Pending",
            "progress": "0/1",
            "message": message,
            "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "WaitingForLock", "message": message}],
            "tasks": {"load": {"phase": "Pending", "reason": "WaitingForLock", "message": message, "attempts": 0}},
            "locks": [{"lock": "mutex/warehouse", "state": "Waiting", "message": message}],
        },
    }


def test_get_shows_what_a_run_waits_for_and_holds() -> None:
    run = waiting_run()
    out = io.StringIO()
    Console(file=out, width=160).print(render(run))
    lines = out.getvalue().splitlines()
    assert lines[1] == "waiting for mutex/warehouse, held by FlowRun nightly-etl-1"
    assert lines[2] == "locks: waits for mutex/warehouse"
    load = next(line for line in lines if line.startswith("load"))
    assert load.split()[:3] == ["load", "Pending", "WaitingForLock"] and "held by FlowRun nightly-etl-1" in load
    run["status"]["locks"] = [
        {"lock": "mutex/warehouse", "state": "Holding", "lease": "flowrun-mutex-warehouse-0"},
        {"lock": "semaphore/limits/db", "task": "load", "state": "Waiting", "message": "x"},
    ]
    assert lock_line(run["status"]["locks"]) == (
        "locks: holds mutex/warehouse (Lease flowrun-mutex-warehouse-0); task load waits for semaphore/limits/db"
    )
    assert lock_line("garbage") == lock_line(None) == ""


def test_watch_reports_a_run_waiting_for_a_lock_and_taking_it() -> None:
    before = waiting_run()
    lines = [line.plain.split("  ", 1)[1] for line in changes({}, states(before))]
    held_by = "waiting for mutex/warehouse, held by FlowRun nightly-etl-1"
    assert f"run  Pending  WaitingForLock  {held_by}" in lines
    assert f"lock mutex/warehouse  Waiting  {held_by}" in lines
    after = waiting_run()
    after["status"]["locks"] = [{"lock": "mutex/warehouse", "state": "Holding", "lease": "flowrun-mutex-warehouse-0"}]
    after["status"]["conditions"][0]["reason"] = "Pending"
    lines = [line.plain.split("  ", 1)[1] for line in changes(states(before), states(after))]
    assert lines == ["run  Pending  " + held_by, "lock mutex/warehouse  Holding  Lease flowrun-mutex-warehouse-0"]
