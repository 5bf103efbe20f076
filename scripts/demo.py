"""Run examples/dask-flowrun.yaml on the dev cluster and show, live, what happens to it.

Usage: scripts/demo [--example examples/dask-flowrun.yaml] [--keep]
  --keep  leave the FlowRun and the dev cluster running afterwards (to explore with kubectl)

Where the dev cluster has its real node, the flow runs there for real: the demo's namespace puts
every pod on that node and the example's `image` param is the dev cluster's local Dask image, so
the Dask cluster computes the summary. Elsewhere the KWOK nodes simulate the pods.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import yaml
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devcluster import build, images
from devcluster import cluster as devcluster
from devcluster import node as devcluster_node
from flowrun import api

NAMESPACE = "flowrun-demo"
TIMEOUT = 300


def kubectl(running: devcluster.Cluster, *args: str) -> str:
    result = subprocess.run(
        [str(running.bin_dir / "kubectl"), f"--kubeconfig={running.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def set_param(body: dict[str, Any], name: str, value: str) -> None:
    for param in body["spec"].get("params") or []:
        if param["name"] == name:
            param["value"] = value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", default=str(REPO / "examples" / "dask-flowrun.yaml"))
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    body = yaml.safe_load(Path(args.example).read_text())
    name = body["metadata"]["name"]

    build.build(verbose=False)
    running = devcluster.running_cluster()
    started_cluster = running is None
    if running is None:
        print("starting the dev cluster ...", flush=True)
        running = devcluster.up()
    operator: subprocess.Popen[bytes] | None = None
    # A SIGTERM (CI, a closed terminal) unwinds like Ctrl-C, through the `finally` below.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        print(f'dev cluster: {running.server}  (eval "$(python -m devcluster env)" for kubectl)')
        install_crd(running)
        api_client = config.new_client_from_config(str(running.kubeconfig))
        core, custom = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
        real = use_real_node(running, core, body)
        create_namespace(core, real)
        remove_leftover(custom, name)
        operator, log = start_operator(running)
        uid = create_flowrun(custom, body)["metadata"]["uid"]
        print(f"\napplied {Path(args.example).relative_to(REPO)}: FlowRun {NAMESPACE}/{name}\n")
        watch(running, name, log.name)
        run: Any = custom.get_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, name)
        status = run.get("status") or {}
        report(running, core, name, uid, status, real)
        if not args.keep:
            delete_flowrun(custom, name)
        return 0 if status["phase"] == "Succeeded" else 1
    finally:
        if operator is not None:
            stop_operator(operator)
        if started_cluster and not args.keep:
            devcluster.down()
            print("stopped the dev cluster")


def install_crd(running: devcluster.Cluster) -> None:
    kubectl(running, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "flowrun.yaml"))
    kubectl(running, "wait", "--for=condition=Established", "crd/flowruns.flowrun.dev", "--timeout=60s")


def use_real_node(running: devcluster.Cluster, core: client.CoreV1Api, body: dict[str, Any]) -> bool:
    """Whether the dev cluster has its real node; if so, the flow's `image` param is the local Dask image."""
    real = bool(core.list_node(label_selector=f"{devcluster_node.LABEL}=true").items)
    if real:
        set_param(body, "image", images.DASK_IMAGE)
        print(f"real node: the flow runs real containers ({images.DASK_IMAGE})")
    else:
        why = devcluster_node.host_problem(running.bin_dir) or "the dev cluster started without one"
        print(f"no real node ({why}): the pods are simulated")
    return real


def create_namespace(core: client.CoreV1Api, real: bool) -> None:
    """The demo's namespace (perhaps left by an earlier run), once pods can be created in it."""
    # On the real node the namespace places every pod there; without it, no placement at all.
    annotations: dict[str, str | None] = dict.fromkeys(devcluster_node.namespace_annotations())
    if real:
        annotations.update(devcluster_node.namespace_annotations())
    try:
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    except client.ApiException as error:
        if error.status != 409:
            raise
    core.patch_namespace(NAMESPACE, {"metadata": {"annotations": annotations}})
    # Pods are refused until the namespace's default ServiceAccount exists.
    deadline = time.monotonic() + 60
    while True:
        try:
            core.read_namespaced_service_account("default", NAMESPACE)
            break
        except client.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def remove_leftover(custom: client.CustomObjectsApi, name: str) -> None:
    """A leftover from an earlier --keep run: remove it so this run starts fresh."""
    try:
        custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, name)
    except client.ApiException as error:
        if error.status != 404:
            raise


def start_operator(running: devcluster.Cluster) -> tuple[subprocess.Popen[bytes], BinaryIO]:
    """The operator, run from the checkout against the dev cluster; its output goes to a log file."""
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"flowrun-demo-operator-{secrets.token_hex(3)}.log", "wb")  # noqa: SIM115 (the child process writes to it)
    operator = subprocess.Popen(
        [sys.executable, "-m", "flowrun.cli", "run", "--namespace", NAMESPACE],
        env=dict(os.environ, KUBECONFIG=str(running.kubeconfig)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    print(f"operator: pid {operator.pid}, log {log.name}")
    return operator, log


def create_flowrun(custom: client.CustomObjectsApi, body: dict[str, Any]) -> Any:
    deadline = time.monotonic() + 60
    while True:
        try:
            return custom.create_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, body)
        except client.ApiException as error:
            # The previous run of the same name may still be finishing its own deletion.
            if error.status != 409 or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def watch(running: devcluster.Cluster, name: str, log_name: str) -> None:
    """The live view is the plugin's: `kubectl flowrun watch`, installed with the package."""
    plugin = Path(sys.executable).with_name("kubectl-flowrun")
    sys.stdout.flush()  # what was printed so far comes before the plugin's own output
    try:
        subprocess.run(
            [str(plugin), "watch", name, "-n", NAMESPACE, f"--kubeconfig={running.kubeconfig}"], timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(f"the FlowRun did not finish in {TIMEOUT}s; see {log_name}") from None


def report(
    running: devcluster.Cluster, core: client.CoreV1Api, name: str, uid: str, status: dict[str, Any], real: bool
) -> None:
    """What the finished run left behind: its phase, its resource blocks, the logs of failed tasks,
    on the real node what the Dask cluster computed, and the task pods kept."""
    print(f"\nFlowRun {name}: {status['phase']} in {status.get('duration')}")
    report_resource_blocks(running, uid, status)
    tasks = status.get("tasks") or {}
    report_failed_tasks(tasks)
    if real and status["phase"] == "Succeeded":
        report_dask_results(core, tasks)
    print(
        "task pods kept for their logs:",
        " ".join(
            kubectl(running, "get", "pods", "-n", NAMESPACE, "-l", f"{api.LABEL_UID}={uid}", "-o", "name").split()
        ),
    )


def report_resource_blocks(running: devcluster.Cluster, uid: str, status: dict[str, Any]) -> None:
    left = kubectl(
        running,
        "get",
        "deployments,services,jobs,configmaps,persistentvolumeclaims",
        "-n",
        NAMESPACE,
        "-l",
        f"{api.LABEL_UID}={uid},{api.LABEL_ROLE}=setup",
        "-o",
        "name",
    )
    print("objects of the resource blocks still present:", left.strip() or "none (cleaned up)")
    for resource_name, resource in sorted((status.get("resources") or {}).items()):
        print(
            f"  {resource_name}: {resource.get('phase')}, cleaned up at {resource.get('cleanedUpAt')}, "
            f"objects were {', '.join(resource.get('objects') or [])}"
        )


def report_failed_tasks(tasks: dict[str, Any]) -> None:
    for task_name, task_status in sorted(tasks.items()):
        if task_status.get("phase") == "Failed" and task_status.get("logs"):
            print(f"\nlast log lines of {task_name} (kept in its status):")
            print("  " + task_status["logs"].strip().replace("\n", "\n  "))


def report_dask_results(core: client.CoreV1Api, tasks: dict[str, Any]) -> None:
    summary = (tasks.get("summarize") or {}).get("result") or ""
    print("\nsummary computed by the Dask cluster (the result of summarize):")
    print("  " + summary.strip().replace("\n", "\n  "))
    path = (tasks.get("write-csv") or {}).get("result")
    written = core.read_namespaced_pod_log((tasks.get("write-csv") or {}).get("podName"), NAMESPACE)
    print(f"{path} as write-csv wrote it (its log):")
    print("  " + written.strip().replace("\n", "\n  "))


def delete_flowrun(custom: client.CustomObjectsApi, name: str) -> None:
    """Delete the FlowRun and wait until it is gone."""
    custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, name)
    while True:
        try:
            custom.get_namespaced_custom_object(api.GROUP, api.VERSION, NAMESPACE, api.PLURAL, name)
            time.sleep(0.2)
        except client.ApiException as error:
            if error.status == 404:
                break
            raise
    print(f"deleted FlowRun {name}: its finalizer was released and its pods garbage-collected")


def stop_operator(operator: subprocess.Popen[bytes]) -> None:
    operator.terminate()
    try:
        operator.wait(timeout=20)
    except subprocess.TimeoutExpired:
        operator.kill()


if __name__ == "__main__":
    sys.exit(main())
