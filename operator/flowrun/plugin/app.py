"""The commands of `kubectl flowrun` (the console script `kubectl-flowrun`). Each command is thin:
parse its flags, connect, call the module that does the work, print. Every failure is one line
on stderr and a non-zero exit: 1 for an error (and for `watch` of a run that did not succeed),
2 for a usage error."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
import urllib3
import yaml
from kubernetes.client.exceptions import ApiException
from rich.console import Console
from rich.text import Text

from flowrun import api
from flowrun.plugin import graph as graphs
from flowrun.plugin import logs as task_logs
from flowrun.plugin import objects
from flowrun.plugin import validate as validation
from flowrun.plugin.client import Connection, PluginError, Target, api_error, connect, connection_error
from flowrun.plugin.documents import load_documents
from flowrun.plugin.listing import table
from flowrun.plugin.tree import render, run_spec
from flowrun.plugin.watch import finished, phase
from flowrun.plugin.watch import watch as follow_run

PROG = "kubectl flowrun"
SCRIPT = "kubectl-flowrun"
COMPLETE_VAR = "_KUBECTL_FLOWRUN_COMPLETE"
COMPLETION_FLAGS = ("--install-completion", "--show-completion")
PLAIN_WIDTH = 200  # lines written to a pipe or a file are not cut to a terminal's width

app = typer.Typer(
    name="kubectl-flowrun",
    help="Run, follow and inspect FlowRuns (flowrun.dev/v1alpha1). Flags work as kubectl's.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# --- shared flags --------------------------------------------------------------------------

Kubeconfig = Annotated[
    str | None, typer.Option("--kubeconfig", help="Kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).")
]
ContextName = Annotated[str | None, typer.Option("--context", help="Kubeconfig context (default: the current one).")]
Namespace = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Namespace (default: the context's, else default).")
]


def _complete_runs(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of FlowRun names, from the cluster (nothing when it cannot be reached)."""
    params = ctx.params
    target = Target(params.get("kubeconfig"), params.get("context"), params.get("namespace"))
    try:
        runs = connect(target).list_flowruns(all_namespaces=False)
    except Exception:
        return []
    names = (str((r.get("metadata") or {}).get("name") or "") for r in runs)
    return sorted(n for n in names if n.startswith(incomplete))


RunName = Annotated[str, typer.Argument(help="The FlowRun's name.", autocompletion=_complete_runs)]


def _out() -> Console:
    return Console(width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS") or PLAIN_WIDTH))


def _err() -> Console:
    return Console(stderr=True, width=None if sys.stderr.isatty() else PLAIN_WIDTH)


def _connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Connection:
    return connect(Target(kubeconfig, context, namespace))


def _watch_exit(connection: Connection, name: str) -> None:
    final = follow_run(connection, name, _out())
    if final != api.SUCCEEDED:
        raise typer.Exit(1)


# --- commands ------------------------------------------------------------------------------


class Output(StrEnum):
    tree = "tree"
    yaml = "yaml"
    json = "json"


@app.command()
def get(
    name: RunName,
    output: Annotated[
        Output, typer.Option("--output", "-o", help="tree, or the object as yaml or json.")
    ] = Output.tree,
    kubeconfig: Kubeconfig = None,
    context: ContextName = None,
    namespace: Namespace = None,
) -> None:
    """Show a run as a tree: blocks with their tasks nested; phase, reason, attempts, duration, result."""
    run = _connect(kubeconfig, context, namespace).get_flowrun(name)
    if output is Output.tree:
        _out().print(render(run))
        return
    (run.get("metadata") or {}).pop("managedFields", None)
    text = yaml.safe_dump(run, sort_keys=False) if output is Output.yaml else json.dumps(run, indent=2)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


@app.command()
def watch(
    name: RunName,
    kubeconfig: Kubeconfig = None,
    context: ContextName = None,
    namespace: Namespace = None,
) -> None:
    """Follow a run until it has finished (redrawn in place on a terminal).

    Exits 0 if it Succeeded, 1 otherwise."""
    _watch_exit(_connect(kubeconfig, context, namespace), name)


@app.command("list")
def list_runs(
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A", help="Runs of every namespace.")] = False,
    kubeconfig: Kubeconfig = None,
    context: ContextName = None,
    namespace: Namespace = None,
) -> None:
    """List runs with their Flow, phase, progress, duration and age."""
    connection = _connect(kubeconfig, context, namespace)
    runs = connection.list_flowruns(all_namespaces)
    if not runs:
        where = "any namespace" if all_namespaces else f"namespace {connection.namespace}"
        _err().print(f"No FlowRuns found in {where}.", highlight=False)
        return
    _out().print(table(list(runs), datetime.now(UTC), all_namespaces))


@app.command()
def logs(
    name: RunName,
    task: Annotated[str | None, typer.Argument(help="Only this task.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream new lines until the run finishes.")] = False,
    kubeconfig: Kubeconfig = None,
    context: ContextName = None,
    namespace: Namespace = None,
) -> None:
    """Logs of the task pods (every attempt), each line prefixed by its task.

    A pod that is gone shows the last lines the operator kept in the run's status."""
    connection = _connect(kubeconfig, context, namespace)
    run = connection.get_flowrun(name)
    printer = task_logs.Printer(_out(), _err(), task_logs.task_names(run), task_logs.prefixes(run, task))
    if follow:
        task_logs.follow(connection, name, task, printer)
    else:
        task_logs.show(connection, run, task, printer)


@app.command()
def cancel(
    name: RunName,
    kubeconfig: Kubeconfig = None,
    context: ContextName = None,
    namespace: Namespace = None,
) -> None:
    """Cancel a run: running tasks stop (their last log lines kept), every started block is cleaned up."""
    connection = _connect(kubeconfig, context, namespace)
    run = connection.get_flowrun(name)
    if finished(run):
        _out().print(f"FlowRun {name} has already finished ({phase(run)}): nothing to cancel", highlight=False)
        return
    connection.patch_flowrun(name, {"spec": {"cancel": True}})
    _out().print(f"FlowRun {name}: cancel requested", highlight=False)


@app.command()
def submit(
    flow: Annotated[str, typer.Argument(help="The Flow to run (in the namespace).")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="A parameter, NAME=VALUE (repeatable).")
    ] = None,
    run_name: Annotated[str | None, typer.Option("--name", help="Name of the run (default: FLOW-<random>).")] = None,
    watch_it: Annotated[bool, typer.Option("--watch", "-w", help="Then watch it (exit code as watch).")] = False,
    kubeconfig: Kubeconfig = None,
    context: ContextName = None,
    namespace: Namespace = None,
) -> None:
    """Create a FlowRun of a Flow and print its name."""
    body = objects.run_of_flow(flow, objects.parse_params(param or []), run_name)
    connection = _connect(kubeconfig, context, namespace)
    connection.get_flow(flow)
    created = connection.create_flowrun(body)
    _created(connection, created, watch_it)


@app.command()
def rerun(
    name: RunName,
    run_name: Annotated[
        str | None, typer.Option("--name", help="Name of the new run (default: NAME-rerun-<random>).")
    ] = None,
    watch_it: Annotated[bool, typer.Option("--watch", "-w", help="Then watch it (exit code as watch).")] = False,
    kubeconfig: Kubeconfig = None,
    context: ContextName = None,
    namespace: Namespace = None,
) -> None:
    """Create a run that continues a Failed or Cancelled one (its succeeded tasks are reused) and print its name."""
    connection = _connect(kubeconfig, context, namespace)
    objects.check_rerunnable(connection.get_flowrun(name))
    created = connection.create_flowrun(objects.rerun_of(name, run_name))
    _created(connection, created, watch_it)


def _created(connection: Connection, created: dict[str, Any], watch_it: bool) -> None:
    name = created["metadata"]["name"]
    if watch_it:
        _err().print(f"created FlowRun {name}", highlight=False)
        _watch_exit(connection, name)
    else:
        sys.stdout.write(f"{name}\n")


@app.command("validate")
def validate_files(
    files: Annotated[
        list[str], typer.Option("--filename", "-f", help="YAML file of FlowRuns (repeatable; - for stdin).")
    ],
    server: Annotated[
        bool, typer.Option("--server", help="Also dry-run the FlowRun and every child on the cluster, as you.")
    ] = False,
    kubeconfig: Kubeconfig = None,
    context: ContextName = None,
    namespace: Namespace = None,
) -> None:
    """Check FlowRuns as the operator would, offline; with --server also as the API server would."""
    documents = [d for f in files for d in load_documents(f, sys.stdin.buffer)]
    connection = _connect(kubeconfig, context, namespace) if server else None
    checked_namespace = connection.namespace if connection is not None else namespace
    out, failed = _out(), False
    for verdict in validation.verdicts(
        documents, checked_namespace, connection, explicit_namespace=namespace is not None
    ):
        title = verdict.document.title
        for note in verdict.notes:
            out.print(Text.assemble(f"{title}: ", (f"note: {note}", "yellow")), soft_wrap=True, highlight=False)
        for error in verdict.errors:
            out.print(Text.assemble(f"{title}: ", (error, "red")), soft_wrap=True, highlight=False)
        if not verdict.errors:
            out.print(Text.assemble(f"{title}: ", (verdict.summary, "green")), soft_wrap=True, highlight=False)
        failed = failed or bool(verdict.errors)
    if failed:
        raise typer.Exit(1)


class Format(StrEnum):
    text = "text"
    dot = "dot"
    mermaid = "mermaid"


@app.command()
def graph(
    name: Annotated[str | None, typer.Argument(help="A FlowRun on the cluster.", autocompletion=_complete_runs)] = None,
    file: Annotated[str | None, typer.Option("--filename", "-f", help="A YAML file with a FlowRun instead.")] = None,
    output_format: Annotated[Format, typer.Option("--format", help="text, dot (Graphviz) or mermaid.")] = Format.text,
    kubeconfig: Kubeconfig = None,
    context: ContextName = None,
    namespace: Namespace = None,
) -> None:
    """Draw a run's DAG, each resource block as a cluster of the tasks inside it."""
    if (name is None) == (file is None):
        raise UsageProblem("give a FlowRun NAME or -f FILE (one of them)")
    if file is not None:
        documents = load_documents(file, sys.stdin.buffer)
        runs = [(d.title, d.body) for d in documents]
    else:
        run = _connect(kubeconfig, context, namespace).get_flowrun(name or "")
        runs = [(f"FlowRun {name}", run)]
    drawn: list[str | Text] = []
    for title, body in runs:
        errors = validation.offline_errors(body, None)
        spec = run_spec(body) if not errors else None
        if spec is None:
            raise PluginError(f"{title}: {errors[0] if errors else 'no inline spec to draw'}")
        run_name = str((body.get("metadata") or {}).get("name") or (body.get("metadata") or {}).get("generateName"))
        if output_format is Format.text:
            drawn.append(graphs.text(run_name, spec))
        else:
            drawn.append((graphs.dot if output_format is Format.dot else graphs.mermaid)(run_name, spec))
    out = _out()
    for i, item in enumerate(drawn):
        if i:
            out.print()
        if isinstance(item, Text):
            out.print(item, soft_wrap=True, highlight=False)
        else:
            sys.stdout.write(item + "\n")


# --- entry point ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """The console script: run a command, turn every failure into one line on stderr."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    # Help and errors say `kubectl flowrun`; shell completion is set up for the script itself, the
    # name a shell can complete (`kubectl-flowrun`, or `kubectl flowrun` through kubectl's own).
    completing = COMPLETE_VAR in os.environ or any(a.split("=")[0] in COMPLETION_FLAGS for a in args)
    prog = SCRIPT if completing else PROG
    try:
        result = command.main(args=args, prog_name=prog, complete_var=COMPLETE_VAR, standalone_mode=False)
        return result if isinstance(result, int) else 0
    except UsageProblem as error:
        return _fail(str(error), 2)
    except PluginError as error:
        return _fail(str(error))
    except typer.Abort:
        return 130
    except typer.TyperException as error:
        # Typer's usage errors (exit code 2, with the command they are about) and other errors.
        code = int(getattr(error, "exit_code", 1))
        ctx = getattr(error, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if code == 2 and ctx is not None else ""
        format_message = getattr(error, "format_message", None)
        return _fail((format_message() if callable(format_message) else str(error)) + hint, code)
    except ApiException as error:
        return _fail(str(api_error(error, "the API server refused")))
    except urllib3.exceptions.HTTPError as error:
        return _fail(str(connection_error(error)))


class UsageProblem(PluginError):
    """Flags that do not go together: exit code 2, as for any usage error."""


def _fail(message: str, code: int = 1) -> int:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
