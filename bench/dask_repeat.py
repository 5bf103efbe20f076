"""The real Dask example (examples/dask-flowrun.yaml) N times in a row, in-cluster: the operator's
image built from this checkout and installed by its Helm chart on the dev cluster's real node, as
tests/e2e/test_in_cluster.py installs it, and every pod of the FlowRun on the real node, computing
for real. Prints each run's outcome and duration, then `N/N succeeded`.

    .venv/bin/python -m bench.dask_repeat [--runs 20] [--timeout 600]

A reliability figure rather than a test: one run in a few (a race) is what it is for, so it runs
many and reports them all, with why each failed run failed (its tasks' messages and captured
logs). The dev cluster must be running with its real node; it is never started or stopped here.

The operator image is built by the dev cluster's image builder from this checkout's sources and
imported into the real node's containerd under a tag of its own, `0.1.0-<content key>`: the plain
tag is the image the cluster's `up` imported (from whichever checkout started it), which other
checkouts' tests may be using meanwhile. Everything made here (namespaces, the release, the
imported tag) is removed at the end. Exit status 0 only if every run succeeded.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from devcluster import cluster as devcluster
from devcluster import images
from devcluster import node as devcluster_node
from devcluster.paths import state_dir
from flowrun import api
from flowrun.timestamps import parse_time

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "flowrun-operator"
EXAMPLE = REPO / "examples" / "dask-flowrun.yaml"
CRD_FILES = ("flowrun.yaml", "flow.yaml", "cronflowrun.yaml")
FINAL = ("Succeeded", "Failed")


# --- the operator's image, from this checkout ----------------------------------------------------


def own_reference(archive: Path) -> str:
    """The operator image's reference under a tag naming its build: the builder keeps each archive
    in a directory named `<image>-<content key>`."""
    key = archive.parent.name.rsplit("-", 1)[-1]
    return f"{images.OPERATOR_IMAGE}-{key}"


def retag_archive(archive: Path, reference: str, target: Path) -> None:
    """A copy of a docker-archive whose one image is named `reference`: manifest.json and the
    legacy `repositories` file rewritten, the config and layers copied as they are."""
    name, tag = reference.rsplit(":", 1)
    with tarfile.open(archive) as source, tarfile.open(target, "w") as out:
        for member in source:
            data = source.extractfile(member) if member.isfile() else None
            if member.name in ("manifest.json", "repositories") and data is not None:
                content = json.load(data)
                if member.name == "manifest.json":
                    for entry in content:
                        entry["RepoTags"] = [reference]
                else:
                    image_id = next(iter(next(iter(content.values())).values()))
                    content = {name: {tag: image_id}}
                raw = json.dumps(content).encode()
                member.size = len(raw)
                out.addfile(member, _Bytes(raw))
            else:
                out.addfile(member, data)


class _Bytes:
    """A file object over bytes, for tarfile.addfile."""

    def __init__(self, raw: bytes) -> None:
        self.raw, self.offset = raw, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.raw) if size < 0 else self.offset + size
        chunk, self.offset = self.raw[self.offset : end], min(end, len(self.raw))
        return chunk


@contextmanager
def operator_image() -> Iterator[str]:
    """Build the images from this checkout, import the operator's under its own tag into the real
    node's containerd, and remove that tag afterwards."""
    archive = next(
        built.archive for built in images.build_all(verbose=True) if built.reference == images.OPERATOR_IMAGE
    )
    reference = own_reference(archive)
    net = devcluster_node.slot_of(state_dir())
    if net is None:
        raise SystemExit("the dev cluster has no real node")
    with tempfile.TemporaryDirectory() as work:
        retagged = Path(work) / "operator.tar"
        retag_archive(archive, reference, retagged)
        done = devcluster_node.ctr(net, "images", "import", str(retagged))
        if done.returncode != 0:
            raise SystemExit(f"importing {reference} failed: {done.stderr.strip()}")
    print(f"operator image {reference} (from {archive})", flush=True)
    try:
        yield reference
    finally:
        devcluster_node.ctr(net, "images", "rm", reference, timeout=60)


# --- the cluster -------------------------------------------------------------------------------


@dataclass
class Cluster:
    running: devcluster.Cluster
    api: client.ApiClient
    helm_home: Path

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def tool(self, name: str, *args: str, check: bool = True) -> str:
        env = dict(
            os.environ,
            KUBECONFIG=str(self.running.kubeconfig),
            HELM_CACHE_HOME=str(self.helm_home / "cache"),
            HELM_CONFIG_HOME=str(self.helm_home / "config"),
            HELM_DATA_HOME=str(self.helm_home / "data"),
        )
        done = subprocess.run(
            [str(self.running.bin_dir / name), *args], env=env, capture_output=True, text=True, timeout=300
        )
        if check and done.returncode != 0:
            raise SystemExit(f"{name} {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def ensure_crds(self) -> None:
        """Create the CRDs if the cluster lacks them; installed ones are left as they are (the
        cluster is shared)."""
        extensions = client.ApiextensionsV1Api(self.api)
        for path in CRD_FILES:
            crd = yaml.safe_load((REPO / "crds" / path).read_text())
            try:
                extensions.create_custom_resource_definition(crd)
            except ApiException as error:
                if error.status != 409:
                    raise
        wait("the CRDs to be served", lambda: bool(self.flowruns("default")), 60)

    def flowruns(self, namespace: str) -> dict[str, Any]:
        """The FlowRun list of a namespace; an empty dict while the API does not serve FlowRuns."""
        custom = client.CustomObjectsApi(self.api)
        try:
            listed: dict[str, Any] = custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL)
            return listed
        except ApiException as error:
            if error.status != 404:
                raise
            return {}

    def namespace(self, name: str, labels: dict[str, str], annotations: dict[str, str]) -> None:
        meta = client.V1ObjectMeta(name=name, labels=labels, annotations=annotations)
        self.core.create_namespace(client.V1Namespace(metadata=meta))

    def delete_namespace(self, name: str) -> None:
        try:
            self.core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise


T = TypeVar("T")
# The API server of the shared dev cluster may be down a while (others' outage tests stop it): a
# request is tried again this long before the benchmark gives up.
PATIENCE_SECONDS = 180.0


def transient(error: Exception) -> bool:
    if isinstance(error, ApiException):
        return error.status in (429, 500, 502, 503, 504)
    return isinstance(error, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


def patiently(call: Callable[[], T]) -> T:
    """`call`, tried again while the API server cannot be reached or is busy."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while True:
        try:
            return call()
        except Exception as error:
            if not transient(error) or time.monotonic() > deadline:
                raise
            time.sleep(2.0)


def wait(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = patiently(check)
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def install_operator(cluster: Cluster, release: str, namespace: str, flows: str, image: str) -> None:
    repository, tag = image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "rbac": {"scope": "namespaces"},
        "watchNamespaces": [flows],
        "nodeSelector": {devcluster_node.LABEL: "true"},
        "tolerations": [{"key": devcluster_node.LABEL, "operator": "Exists", "effect": "NoSchedule"}],
    }
    values_file = cluster.helm_home / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    cluster.tool(
        "helm", "install", release, str(CHART), "-n", namespace, "--skip-crds", "-f", str(values_file), "--wait",
        "--timeout", "300s",
    )  # fmt: skip

    def ready() -> bool:
        pods = cluster.core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={release}").items
        statuses = [s for p in pods for s in (p.status.container_statuses or [])]
        return bool(statuses) and all(s.ready and s.restart_count == 0 for s in statuses)

    # Helm's --wait does not see an operator that exits after its start: wait for it to be Ready.
    wait("the operator's pod to be Ready", ready, 120)


# --- the runs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    number: int
    phase: str  # Succeeded, Failed, or TimedOut
    seconds: float
    setup_seconds: float | None  # the Dask block: setupStartedAt to readyAt
    why: str  # for a run that did not succeed: its tasks' messages and logs


def example(dask_image: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    for param in body["spec"]["params"]:
        if param["name"] == "image":
            param["value"] = dask_image
    return body


def seconds_between(start: object, end: object) -> float | None:
    began, ended = parse_time(start), parse_time(end)
    return (ended - began).total_seconds() if began is not None and ended is not None else None


def why_not(status: dict[str, Any]) -> str:
    """What a run that did not succeed says about itself: its message, each task that did not
    succeed (phase, reason, message, the end of its captured logs) and the blocks."""
    lines = [f"    run: {status.get('message', '')}"]
    for name, entry in (status.get("tasks") or {}).items():
        if entry.get("phase") != "Succeeded":
            lines.append(f"    task {name}: {entry.get('phase')} {entry.get('reason', '')}: {entry.get('message', '')}")
            logs = (entry.get("logs") or "").strip().splitlines()[-8:]
            lines += [f"      | {line}" for line in logs]
    for name, entry in (status.get("resources") or {}).items():
        lines.append(f"    block {name}: {entry.get('phase')} {entry.get('reason', '')}: {entry.get('message', '')}")
    return "\n".join(lines)


def operator_log(cluster: Cluster, namespace: str, lines: int = 30) -> str:
    """The last lines of the operator's log (for a run that did not succeed)."""
    pods = cluster.core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=operator").items
    if not pods:
        return "    (no operator pod)"
    log = cluster.core.read_namespaced_pod_log(pods[0].metadata.name, namespace, tail_lines=lines)
    return "\n".join(f"    operator | {line}" for line in str(log).splitlines())


def run_once(cluster: Cluster, namespace: str, number: int, body: dict[str, Any], timeout: float) -> Outcome:
    """Create the FlowRun, wait for its end, delete it and wait until it and its children are gone."""
    custom = client.CustomObjectsApi(cluster.api)
    name = body["metadata"]["name"]
    started = time.monotonic()
    patiently(lambda: custom.create_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, body))

    def status() -> dict[str, Any]:
        run = custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
        found: dict[str, Any] = run.get("status") or {}
        return found

    def finished() -> dict[str, Any] | None:
        now = status()
        return now if now.get("phase") in FINAL else None

    try:
        final = wait(f"run {number} to finish", finished, timeout, 1.0)
        phase = str(final["phase"])
    except TimeoutError:
        final, phase = patiently(status), "TimedOut"
    seconds = time.monotonic() - started
    block = (final.get("resources") or {}).get("dask") or {}
    outcome = Outcome(
        number,
        phase,
        seconds,
        seconds_between(block.get("setupStartedAt"), block.get("readyAt")),
        "" if phase == "Succeeded" else why_not(final),
    )
    # The next run starts from nothing: this one gone (its cleanup done: the finalizer), its pods too.
    patiently(lambda: custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name))
    wait(f"run {number} to be gone", lambda: not cluster.flowruns(namespace).get("items"), 300, 1.0)
    of_run = f"{api.LABEL_FLOWRUN}={name}"
    wait(
        f"the pods of run {number} to be gone",
        lambda: not cluster.core.list_namespaced_pod(namespace, label_selector=of_run).items,
        300,
        1.0,
    )
    return outcome


def report(outcome: Outcome, runs: int) -> None:
    setup = f"  (block Ready after {outcome.setup_seconds:.0f} s)" if outcome.setup_seconds is not None else ""
    print(f"run {outcome.number:>3}/{runs}  {outcome.phase:<9} {outcome.seconds:6.1f} s{setup}", flush=True)
    if outcome.why:
        print(outcome.why, flush=True)


def summary(outcomes: list[Outcome]) -> str:
    succeeded = sum(1 for o in outcomes if o.phase == "Succeeded")
    durations = [o.seconds for o in outcomes]
    line = f"{succeeded}/{len(outcomes)} succeeded"
    if durations:
        line += f"; duration median {statistics.median(durations):.1f} s, min {min(durations):.1f} s"
        line += f", max {max(durations):.1f} s"
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds one run may take")
    args = parser.parse_args()
    running = devcluster.running_cluster()
    if running is None:
        print("the dev cluster is not running (python -m devcluster up)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as home, operator_image() as image:
        cluster = Cluster(running, config.new_client_from_config(str(running.kubeconfig)), Path(home))
        if not cluster.core.list_node(label_selector=f"{devcluster_node.LABEL}=true").items:
            print("the dev cluster has no real node", file=sys.stderr)
            return 2
        cluster.ensure_crds()
        suffix = secrets.token_hex(3)
        operator_ns, flows_ns, release = f"dask-repeat-{suffix}", f"dask-repeat-flows-{suffix}", f"repeat-{suffix}"
        outcomes: list[Outcome] = []
        try:
            cluster.namespace(operator_ns, {"pod-security.kubernetes.io/enforce": "restricted"}, {})
            cluster.namespace(flows_ns, {}, devcluster_node.namespace_annotations())
            install_operator(cluster, release, operator_ns, flows_ns, image)
            body = example(images.DASK_IMAGE)
            for number in range(1, args.runs + 1):
                outcomes.append(run_once(cluster, flows_ns, number, body, args.timeout))
                report(outcomes[-1], args.runs)
                if outcomes[-1].phase != "Succeeded":
                    print(patiently(lambda: operator_log(cluster, operator_ns)), flush=True)
        finally:
            if outcomes:
                print(summary(outcomes), flush=True)
            cluster.tool("helm", "uninstall", release, "-n", operator_ns, "--wait", check=False)
            cluster.delete_namespace(flows_ns)
            cluster.delete_namespace(operator_ns)
    return 0 if outcomes and all(o.phase == "Succeeded" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
