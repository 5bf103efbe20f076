"""E2E fixtures: the FlowRun CRD installed once, and the real operator (`flowrun run`) running as
a process of its own, watching the test's namespace only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from devcluster.pytest_plugin import KubeCluster, wait_for
from flowrun import api

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "flowrun.yaml"
CRD_FILES = (CRD_FILE, REPO / "crds" / "flow.yaml", REPO / "crds" / "cronflowrun.yaml")
# Every kind a run may create in these tests; the leak check looks at all of them.
CHILD_LISTERS: dict[str, Callable[[client.ApiClient, str, str], list[Any]]] = {
    "Pod": lambda c, ns, sel: client.CoreV1Api(c).list_namespaced_pod(ns, label_selector=sel).items,
    "Job": lambda c, ns, sel: client.BatchV1Api(c).list_namespaced_job(ns, label_selector=sel).items,
    "Deployment": lambda c, ns, sel: client.AppsV1Api(c).list_namespaced_deployment(ns, label_selector=sel).items,
    "ReplicaSet": lambda c, ns, sel: client.AppsV1Api(c).list_namespaced_replica_set(ns, label_selector=sel).items,
    "Service": lambda c, ns, sel: client.CoreV1Api(c).list_namespaced_service(ns, label_selector=sel).items,
    "ConfigMap": lambda c, ns, sel: client.CoreV1Api(c).list_namespaced_config_map(ns, label_selector=sel).items,
    "PersistentVolumeClaim": lambda c, ns, sel: (
        client.CoreV1Api(c).list_namespaced_persistent_volume_claim(ns, label_selector=sel).items
    ),
    "Secret": lambda c, ns, sel: client.CoreV1Api(c).list_namespaced_secret(ns, label_selector=sel).items,
}


@pytest.fixture(scope="session")
def flowrun_crd(kube_cluster: KubeCluster) -> None:
    """Install (or update) every CRD (FlowRun, Flow, CronFlowRun) and wait until the API serves them."""
    extensions = client.ApiextensionsV1Api(kube_cluster.api)
    names = []
    for path in CRD_FILES:
        crd = yaml.safe_load(path.read_text())
        names.append(crd["metadata"]["name"])
        try:
            current = extensions.read_custom_resource_definition(crd["metadata"]["name"])
            assert current.metadata is not None
            crd["metadata"]["resourceVersion"] = current.metadata.resource_version
            extensions.replace_custom_resource_definition(crd["metadata"]["name"], crd)
        except ApiException as error:
            if error.status != 404:
                raise
            extensions.create_custom_resource_definition(crd)

    def established() -> bool:
        for name in names:
            status = extensions.read_custom_resource_definition(name).status
            conditions = (status.conditions if status is not None else None) or []
            if not any(c.type == "Established" and c.status == "True" for c in conditions):
                return False
        return True

    wait_for("the CRDs to be Established", established)


class Operator:
    """`flowrun run -n <namespace>` as a child process; killable and restartable."""

    def __init__(
        self, kube_cluster: KubeCluster, namespace: str, log_dir: Path, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.namespace = namespace
        self.extra_args = extra_args
        self.env = dict(os.environ, KUBECONFIG=str(kube_cluster.kubeconfig))
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.log_dir / f"operator-{self.starts}.log", "wb")  # noqa: SIM115 (the child process writes to it)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "flowrun.cli",
                "run",
                "--namespace",
                self.namespace,
                "--log-level",
                "debug",
                *self.extra_args,
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies or the OOM killer strikes."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_dir / f"operator-{self.starts}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@pytest.fixture
def operator(kube_cluster: KubeCluster, flowrun_crd: None, namespace: str, tmp_path: Path) -> Iterator[Operator]:
    running = Operator(kube_cluster, namespace, tmp_path)
    running.start()
    try:
        yield running
        assert running.process is not None and running.process.poll() is None, (
            "the operator exited during the test:\n" + running.log_tail()
        )
    finally:
        _release_leftover_flowruns(kube_cluster, namespace, running)
        running.stop()


def _release_leftover_flowruns(kube_cluster: KubeCluster, namespace: str, running: Operator) -> None:
    """A test that failed before its leak check leaves FlowRuns behind. Delete them while the
    operator still runs (it cleans up and releases the finalizers), so the namespace can go."""
    custom = client.CustomObjectsApi(kube_cluster.api)
    leftovers = custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL)["items"]
    if not leftovers:
        return
    if running.process is None or running.process.poll() is not None:
        running.start()
    for run in leftovers:
        name = run["metadata"]["name"]
        custom.patch_namespaced_custom_object(
            api.GROUP,
            api.VERSION,
            namespace,
            api.PLURAL,
            name,
            {"metadata": {"annotations": {api.SKIP_CLEANUP_ANNOTATION: "true"}}},
        )
        custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
    wait_for(
        f"leftover FlowRuns in {namespace} to be released",
        lambda: not custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL)["items"],
        timeout=60,
    )


class FlowRuns:
    """FlowRun helpers bound to one namespace."""

    def __init__(self, kube_cluster: KubeCluster, namespace: str) -> None:
        self.api_client = kube_cluster.api
        self.custom = client.CustomObjectsApi(kube_cluster.api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": api.API_VERSION, "kind": api.KIND, **body}
        return self.custom.create_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, api.PLURAL, body)

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, api.PLURAL, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(
            api.GROUP, api.VERSION, self.namespace, api.PLURAL, name, body
        )

    def delete(self, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, api.PLURAL, name)
        except ApiException as error:
            if error.status != 404:
                raise

    def wait_phase(self, name: str, phases: str | tuple[str, ...], timeout: float = 60.0) -> dict[str, Any]:
        wanted = (phases,) if isinstance(phases, str) else phases

        def reached() -> dict[str, Any] | None:
            run = self.get(name)
            return run if run and (run.get("status") or {}).get("phase") in wanted else None

        try:
            return wait_for(f"FlowRun {name} to reach {'/'.join(wanted)}", reached, timeout=timeout)
        except AssertionError as error:
            run = self.get(name) or {}
            raise AssertionError(f"{error}; status now: {run.get('status')}") from None

    def wait_status(
        self, name: str, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        def holds() -> dict[str, Any] | None:
            run = self.get(name)
            return run if run and check(run.get("status") or {}) else None

        return wait_for(f"FlowRun {name}: {what}", holds, timeout=timeout)

    def children(self, uid: str, labels: dict[str, str] | None = None) -> dict[str, list[str]]:
        """Every object labelled with the run's UID (and `labels`), by kind (only kinds that have some)."""
        selector = ",".join(f"{key}={value}" for key, value in {api.LABEL_UID: uid, **(labels or {})}.items())
        found = {}
        for kind, lister in CHILD_LISTERS.items():
            names = [item.metadata.name for item in lister(self.api_client, self.namespace, selector)]
            if names:
                found[kind] = names
        return found

    def events(self, name: str) -> list[client.CoreV1Event]:
        return (
            client.CoreV1Api(self.api_client)
            .list_namespaced_event(
                self.namespace, field_selector=f"involvedObject.kind={api.KIND},involvedObject.name={name}"
            )
            .items
        )

    def delete_and_check_nothing_leaked(self, name: str, timeout: float = 90.0) -> None:
        """The leak check every e2e test ends with: delete the run, wait until it is gone (the
        finalizer released), and find nothing labelled with its UID."""
        run = self.get(name)
        assert run is not None, f"FlowRun {name} does not exist"
        uid = run["metadata"]["uid"]
        self.delete(name)
        wait_for(f"FlowRun {name} to be gone", lambda: self.get(name) is None, timeout=timeout)
        wait_for(f"every child of {name} to be gone", lambda: not self.children(uid), timeout=timeout)


@pytest.fixture
def flowruns(kube_cluster: KubeCluster, flowrun_crd: None, namespace: str) -> FlowRuns:
    return FlowRuns(kube_cluster, namespace)


def sim_task(
    name: str,
    *,
    run_after: list[str] | None = None,
    duration: str = "200ms",
    outcome: str = "succeed",
    message: str | None = None,
    extra_annotations: dict[str, str] | None = None,
    args: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A task whose pod the dev cluster finishes as told (outcome, duration, termination message)."""
    annotations = {"sim.flowrun.dev/outcome": outcome, "sim.flowrun.dev/duration": duration}
    if message is not None:
        annotations["sim.flowrun.dev/message"] = message
    annotations.update(extra_annotations or {})
    container: dict[str, Any] = {"name": "main", "image": "busybox"}
    if args is not None:
        container["args"] = args
    task: dict[str, Any] = {
        "name": name,
        "template": {"metadata": {"annotations": annotations}, "spec": {"containers": [container]}},
        **fields,
    }
    if run_after:
        task["runAfter"] = run_after
    return task


class PodWatch:
    """Every pod event in a namespace (optionally a label selector), recorded in order by a watch
    thread from construction until `stop()`: what polling would miss (a pod created twice, the
    peak of pods alive at once, the order of transitions)."""

    ALIVE_PHASES = ("Pending", "Running")

    def __init__(self, api_client: client.ApiClient, namespace: str, label_selector: str | None = None) -> None:
        self.core = client.CoreV1Api(api_client)
        self.namespace = namespace
        self.selector = label_selector
        # (type, name, uid, phase, deleting), in the order the API server sent them
        self.events: list[tuple[str, str, str, str, bool]] = []
        self.added: dict[str, set[str]] = {}  # pod name -> uid of every ADDED pod of that name
        self.pods: dict[str, client.V1Pod] = {}  # pod name -> its latest state (until DELETED)
        self.alive: dict[str, str] = {}  # uid -> name: Pending/Running and not being deleted
        self.max_alive = 0
        self.gaps = 0  # times the watch had to list again (410 Gone): events may have been missed
        self.error: BaseException | None = None
        self._changed = threading.Condition()
        self._stopped = threading.Event()
        self._watch: watch.Watch | None = None
        self._resource_version = self._relist()
        self._thread = threading.Thread(target=self._run, name=f"pod-watch-{namespace}", daemon=True)
        self._thread.start()

    def _relist(self) -> str:
        listed = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector)
        for pod in listed.items:
            known = pod.metadata.uid in self.added.get(pod.metadata.name, set())
            self._record("MODIFIED" if known else "ADDED", pod)
        return listed.metadata.resource_version

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._watch = watch.Watch()
            try:
                for event in self._watch.stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=self.selector,
                    resource_version=self._resource_version,
                    timeout_seconds=5,
                ):
                    pod = event["object"]
                    self._resource_version = pod.metadata.resource_version
                    self._record(event["type"], pod)
                    if self._stopped.is_set():
                        break
            except ApiException as error:
                if error.status == 410:  # too old: list again, then watch from there
                    self.gaps += 1
                    self._resource_version = self._relist()
                else:
                    self.error = error
                    time.sleep(0.5)
            except Exception as error:
                self.error = error
                time.sleep(0.5)

    def _record(self, kind: str, pod: client.V1Pod) -> None:
        name, uid = pod.metadata.name, pod.metadata.uid
        phase = (pod.status.phase if pod.status else None) or "Pending"
        deleting = pod.metadata.deletion_timestamp is not None
        with self._changed:
            self.events.append((kind, name, uid, phase, deleting))
            if kind == "ADDED":
                self.added.setdefault(name, set()).add(uid)
            if kind == "DELETED":
                self.pods.pop(name, None)
            else:
                self.pods[name] = pod
            if kind != "DELETED" and phase in self.ALIVE_PHASES and not deleting:
                self.alive[uid] = name
            else:
                self.alive.pop(uid, None)
            self.max_alive = max(self.max_alive, len(self.alive))
            self._changed.notify_all()

    def wait(self, what: str, check: Callable[[PodWatch], Any], timeout: float = 60.0) -> Any:
        """Block until `check(self)` is truthy (evaluated on every event), and return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = check(self)
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (pods: {self.phases()})")
                self._changed.wait(min(remaining, 1.0))

    def phase(self, name: str) -> str | None:
        pod = self.pods.get(name)
        return ((pod.status.phase if pod.status else None) or "Pending") if pod is not None else None

    def phases(self) -> dict[str, str | None]:
        return {name: self.phase(name) for name in sorted(self.pods)}

    def index(self, kind: str, name: str, phase: str | None = None) -> int:
        """Position of the first event of that type for that pod (and phase), else -1."""
        for position, (k, n, _, p, _) in enumerate(self.events):
            if k == kind and n == name and (phase is None or p == phase):
                return position
        return -1

    def duplicated_names(self) -> dict[str, set[str]]:
        """Pod names that were created more than once (several UIDs)."""
        return {name: uids for name, uids in self.added.items() if len(uids) > 1}

    def stop(self) -> None:
        self._stopped.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(timeout=15)


@pytest.fixture
def watch_pods(kube_cluster: KubeCluster, namespace: str) -> Iterator[Callable[..., PodWatch]]:
    """`watch_pods(label_selector=None)` starts a PodWatch on the test namespace; stopped at teardown."""
    started: list[PodWatch] = []

    def start(label_selector: str | None = None) -> PodWatch:
        pod_watch = PodWatch(kube_cluster.api, namespace, label_selector)
        started.append(pod_watch)
        return pod_watch

    yield start
    for pod_watch in started:
        pod_watch.stop()
