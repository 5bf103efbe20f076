"""What the e2e tests share: the operator as a process of its own, FlowRun calls bound to a
namespace, one watch recorder for any kind, and one set of spec builders (pod templates the dev
cluster finishes as told, tasks, setup jobs and deployments). The fixtures are in conftest.py."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from devcluster import node as devcluster_node
from devcluster.ports import free_port
from devcluster.pytest_plugin import KubeCluster, RealNode, wait_for
from flowrun import api
from flowrun.timestamps import format_time

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "flowrun.yaml"
# Every CRD the operator serves (install_crds installs them all).
CRD_FILES = (CRD_FILE, CRD_FILE.with_name("flow.yaml"), CRD_FILE.with_name("cronflowrun.yaml"))
SIM = "sim.flowrun.dev/"  # the dev cluster's pod-simulation annotations

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
    "Lease": lambda c, ns, sel: client.CoordinationV1Api(c).list_namespaced_lease(ns, label_selector=sel).items,
}


# --- the operator ------------------------------------------------------------------------------


class Operator:
    """`flowrun run -n <namespace>` as a child process; killable and restartable. With
    `metrics=True` it serves its Prometheus metrics on a free port of 127.0.0.1, with
    `liveness=True` its liveness endpoint; `env` is added to its environment."""

    def __init__(
        self,
        kube_cluster: KubeCluster,
        namespace: str,
        log_dir: Path,
        extra_args: tuple[str, ...] = (),
        *,
        metrics: bool = False,
        liveness: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.namespace = namespace
        self.metrics_port = free_port() if metrics else None
        self.liveness_port = free_port() if liveness else None
        metrics_args = ("--metrics-port", str(self.metrics_port), "--metrics-address", "127.0.0.1") if metrics else ()
        liveness_args = ("--liveness", f"http://127.0.0.1:{self.liveness_port}/healthz") if liveness else ()
        self.extra_args = (*metrics_args, *liveness_args, *extra_args)
        self.env = dict(os.environ, KUBECONFIG=str(kube_cluster.kubeconfig), **(env or {}))
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.stopped = False  # stopped on purpose (stop()), not exited by itself

    @property
    def log_path(self) -> Path:
        """The log of the latest start."""
        return self.log_dir / f"operator-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        self.stopped = False
        log = open(self.log_path, "wb")  # noqa: SIM115 (the child process writes to it)
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

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies or the OOM killer strikes."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        self.stopped = True
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_path
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def health(self) -> tuple[int, dict[str, Any]]:
        """The liveness endpoint's status code and answer (0 while it does not serve)."""
        assert self.liveness_port is not None, "started without liveness=True"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=20) as response:
                return int(response.status), json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return int(error.code), {"error": error.read().decode(errors="replace")}
        except (urllib.error.URLError, ConnectionError):
            return 0, {}  # not serving (yet)

    def scrape_metrics(self) -> str:
        assert self.metrics_port is not None, "started without metrics=True"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text: str = response.read().decode()
            return text


def release_leftover_flowruns(kube_cluster: KubeCluster, namespace: str, running: Operator) -> None:
    """A test that failed before its leak check leaves FlowRuns behind. Delete them while the
    operator still runs (it cleans up and releases the finalizers), so the namespace can go."""
    custom = client.CustomObjectsApi(kube_cluster.api)
    leftovers = custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL)["items"]
    if not leftovers:
        return
    if not running.running():
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


def install_crds(kube_cluster: KubeCluster) -> None:
    """Install (or update) every CRD and wait until the API serves them. (A test may call it again:
    on a cluster shared with other checkouts, another may have installed its own since.)"""
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


# --- FlowRuns ----------------------------------------------------------------------------------


class FlowRuns:
    """FlowRun helpers bound to one namespace."""

    def __init__(self, kube_cluster: KubeCluster, namespace: str) -> None:
        self.api_client = kube_cluster.api
        self.custom = client.CustomObjectsApi(kube_cluster.api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": api.API_VERSION, "kind": api.KIND, **body}
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            api.GROUP, api.VERSION, self.namespace, api.PLURAL, body
        )
        return created

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            run: dict[str, Any] = self.custom.get_namespaced_custom_object(
                api.GROUP, api.VERSION, self.namespace, api.PLURAL, name
            )
            return run
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def patch(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        patched: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            api.GROUP, api.VERSION, self.namespace, api.PLURAL, name, body
        )
        return patched

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
        events: list[client.CoreV1Event] = (
            client.CoreV1Api(self.api_client)
            .list_namespaced_event(
                self.namespace, field_selector=f"involvedObject.kind={api.KIND},involvedObject.name={name}"
            )
            .items
        )
        return events

    def events_when(
        self, name: str, check: Callable[[list[client.CoreV1Event]], bool], timeout: float = 30.0
    ) -> list[client.CoreV1Event]:
        """The run's events once `check` holds for them: events are posted after the status of
        their pass is written, so a test that saw a phase may not see its events yet."""

        def holds() -> list[client.CoreV1Event] | None:
            events = self.events(name)
            return events if check(events) else None

        found: list[client.CoreV1Event] = wait_for(f"the events of {name} to be posted", holds, timeout=timeout)
        return found

    def read_pod(self, name: str) -> client.V1Pod:
        return client.CoreV1Api(self.api_client).read_namespaced_pod(name, self.namespace)

    def delete_and_check_nothing_leaked(self, name: str, timeout: float = 90.0) -> None:
        """The leak check every e2e test ends with: delete the run, wait until it is gone (the
        finalizer released), and find nothing labelled with its UID."""
        run = self.get(name)
        assert run is not None, f"FlowRun {name} does not exist"
        self.delete(name)
        self.wait_gone_and_nothing_leaked(name, run["metadata"]["uid"], timeout=timeout)

    def wait_gone_and_nothing_leaked(self, name: str, uid: str, timeout: float = 90.0) -> None:
        """The end of the leak check, for a run deleted already: wait until it is gone (the
        finalizer released), and find nothing labelled with its UID."""
        wait_for(f"FlowRun {name} to be gone", lambda: self.get(name) is None, timeout=timeout)
        wait_for(f"every child of {name} to be gone", lambda: not self.children(uid), timeout=timeout)
        # The EndpointSlices of its Services (which carry their labels) go with them.
        discovery = client.DiscoveryV1Api(self.api_client)
        selector = f"{api.LABEL_UID}={uid}"
        wait_for(
            f"the EndpointSlices of {name} to be gone",
            lambda: not discovery.list_namespaced_endpoint_slice(self.namespace, label_selector=selector).items,
            timeout=timeout,
        )


class Objects:
    """Flows or CronFlowRuns (`plural`, `kind`) helpers bound to one namespace."""

    def __init__(self, kube_cluster: KubeCluster, namespace: str, plural: str, kind: str) -> None:
        self.custom = client.CustomObjectsApi(kube_cluster.api)
        self.core = kube_cluster.core()
        self.namespace, self.plural, self.kind = namespace, plural, kind

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": api.API_VERSION, "kind": self.kind, **body}
        created: dict[str, Any] = self.custom.create_namespaced_custom_object(
            api.GROUP, api.VERSION, self.namespace, self.plural, body
        )
        return created

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                api.GROUP, api.VERSION, self.namespace, self.plural, name
            )
            return found
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def patch(self, name: str, body: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, self.plural, name, body)

    def patch_status(self, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            api.GROUP, api.VERSION, self.namespace, self.plural, name, {"status": status}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, self.plural, name)

    def wait_status(
        self, name: str, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = 30.0
    ) -> dict[str, Any]:
        def holds() -> dict[str, Any] | None:
            found = self.get(name)
            return found if found and check(found.get("status") or {}) else None

        try:
            result: dict[str, Any] = wait_for(f"{self.kind} {name}: {what}", holds, timeout=timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}; status now: {(self.get(name) or {}).get('status')}") from None
        return result

    def events(self, name: str) -> list[tuple[str, str, str]]:
        selector = f"involvedObject.kind={self.kind},involvedObject.name={name}"
        items = self.core.list_namespaced_event(self.namespace, field_selector=selector).items
        return [(e.type, e.reason, e.message) for e in items]


def task(run: Mapping[str, Any], name: str) -> dict[str, Any]:
    """status.tasks.<name> of a run."""
    entry: dict[str, Any] = run["status"]["tasks"][name]
    return entry


def res(run: Mapping[str, Any], name: str) -> dict[str, Any]:
    """status.resources.<name> of a run."""
    entry: dict[str, Any] = run["status"]["resources"][name]
    return entry


def main_container(pod: client.V1Pod) -> client.V1Container:
    """The container named main, else the first (a deployment's pods name theirs freely)."""
    containers = pod.spec.containers
    return next((c for c in containers if c.name == "main"), containers[0])


# --- spec builders -----------------------------------------------------------------------------


def sim_template(
    *,
    outcome: str | None = "succeed",
    duration: str | None = "300ms",
    message: str | None = None,
    annotations: dict[str, str] | None = None,
    args: list[str] | None = None,
    container: str = "main",
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A pod template the dev cluster finishes as told: outcome (succeed/fail), after duration,
    with message as the termination message. No outcome: the pod runs until deleted."""
    notes: dict[str, str] = {}
    if outcome is not None:
        notes[SIM + "outcome"] = outcome
    if duration is not None:
        notes[SIM + "duration"] = duration
    if message is not None:
        notes[SIM + "message"] = message
    notes.update(annotations or {})
    main: dict[str, Any] = {"name": container, "image": "busybox"}
    if args is not None:
        main["args"] = args
    if env is not None:
        main["env"] = env
    template: dict[str, Any] = {"spec": {"containers": [main]}}
    if notes:
        template["metadata"] = {"annotations": notes}
    return template


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
    """A task whose pod the dev cluster finishes as told; `fields` are other task fields
    (resources, retries, trigger, ...)."""
    task: dict[str, Any] = {
        "name": name,
        "template": sim_template(
            outcome=outcome, duration=duration, message=message, annotations=extra_annotations, args=args
        ),
        **fields,
    }
    if run_after:
        task["runAfter"] = run_after
    return task


def job(**template: Any) -> dict[str, Any]:
    """A setup or cleanup job: its pod template from sim_template(**template)."""
    return {"template": sim_template(**template)}


def deployment(name: str, *, replicas: int | str = 1, ports: bool = False, ready: bool = True) -> dict[str, Any]:
    """A setup Deployment whose pods run until deleted (Ready, unless ready=False)."""
    annotations = {} if ready else {SIM + "ready": "false"}
    spec: dict[str, Any] = {
        "name": name,
        "replicas": replicas,
        "template": sim_template(outcome=None, duration=None, annotations=annotations, container=name),
    }
    if ports:
        spec["ports"] = [{"name": "http", "port": 8080}]
    return spec


# --- the watch recorder ------------------------------------------------------------------------


def lister(api_client: client.ApiClient, kind: str) -> Callable[..., Any]:
    """The namespaced list call of a kind the recorder can watch."""
    listers: dict[str, Callable[..., Any]] = {
        "pods": client.CoreV1Api(api_client).list_namespaced_pod,
        "services": client.CoreV1Api(api_client).list_namespaced_service,
        "jobs": client.BatchV1Api(api_client).list_namespaced_job,
        "deployments": client.AppsV1Api(api_client).list_namespaced_deployment,
        "leases": client.CoordinationV1Api(api_client).list_namespaced_lease,
        "flowruns": partial(
            client.CustomObjectsApi(api_client).list_namespaced_custom_object,
            api.GROUP,
            api.VERSION,
            plural=api.PLURAL,
        ),
    }
    return listers[kind]


Event = tuple[str, dict[str, Any]]  # (ADDED | MODIFIED | DELETED, the object as the API server sent it)


def event_is(kind: str, name: str, phase: str | None = None) -> Callable[[str, dict[str, Any]], bool]:
    """A predicate for WatchRecorder.index: that event type for that object (and pod phase)."""
    return lambda k, o: k == kind and o["metadata"]["name"] == name and (phase is None or pod_phase(o) == phase)


def pod_phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


class WatchRecorder:
    """Every watch event of one kind in a namespace (optionally a label selector), in order, from
    construction until stop(): the raw objects as the API server sent them. What polling would
    miss: an object created twice, the peak of pods alive at once, the order of transitions."""

    ALIVE_PHASES = ("Pending", "Running")

    def __init__(self, list_fn: Callable[..., Any], namespace: str, label_selector: str | None = None) -> None:
        self.list_fn = list_fn
        self.namespace = namespace
        self.selector = {"label_selector": label_selector} if label_selector else {}
        self.events: list[Event] = []
        self.gaps = 0  # times the watch had to list again (410 Gone): events may have been missed
        self._changed = threading.Condition()
        self._stopped = threading.Event()
        self._watch: watch.Watch | None = None
        self.resource_version = self._relist()
        self._thread = threading.Thread(target=self._run, name=f"watch-{namespace}", daemon=True)
        self._thread.start()

    def _relist(self) -> str:
        response = self.list_fn(self.namespace, _preload_content=False, **self.selector)
        listed = json.loads(response.data)
        known = {uid for uids in self.uids_by_name().values() for uid in uids}
        for item in listed.get("items", []):
            self._record("MODIFIED" if item["metadata"]["uid"] in known else "ADDED", item)
        resource_version: str = listed["metadata"]["resourceVersion"]
        return resource_version

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._watch = watch.Watch()
            try:
                for event in self._watch.stream(
                    self.list_fn,
                    self.namespace,
                    resource_version=self.resource_version,
                    timeout_seconds=5,
                    **self.selector,
                ):
                    obj = event["raw_object"]
                    if event["type"] == "ERROR":  # 410 Gone: the watch fell behind; list again
                        self.gaps += 1
                        self.resource_version = self._relist()
                        break
                    self.resource_version = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._record(event["type"], obj)
                    if self._stopped.is_set():
                        break
            except ApiException as error:
                if error.status == 410:
                    self.gaps += 1
                    self.resource_version = self._relist()
                else:
                    time.sleep(0.5)
            except Exception:
                time.sleep(0.5)  # a dropped connection: watch again from the last version seen

    def _record(self, kind: str, obj: dict[str, Any]) -> None:
        with self._changed:
            self.events.append((kind, obj))
            self._changed.notify_all()

    def stop(self) -> None:
        self._stopped.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(timeout=15)

    def snapshot(self) -> list[Event]:
        with self._changed:
            return list(self.events)

    def wait(self, what: str, check: Callable[[WatchRecorder], Any], timeout: float = 60.0) -> Any:
        """Block until `check(self)` is truthy (evaluated on every event), and return it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = check(self)
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    latest = {name: pod_phase(o) for name, o in self.latest().items()}
                    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (now: {latest})")
                self._changed.wait(min(remaining, 1.0))

    # --- views of what was recorded ------------------------------------------------------------

    def uids_by_name(self) -> dict[str, set[str]]:
        """Every name ADDED, with the UID of each object of that name."""
        found: dict[str, set[str]] = {}
        for kind, obj in self.snapshot():
            if kind == "ADDED":
                found.setdefault(obj["metadata"]["name"], set()).add(obj["metadata"]["uid"])
        return found

    def duplicated_names(self) -> dict[str, set[str]]:
        """Names that were created more than once (several UIDs)."""
        return {name: uids for name, uids in self.uids_by_name().items() if len(uids) > 1}

    def latest(self) -> dict[str, dict[str, Any]]:
        """Each object's latest state, by name, for those not DELETED."""
        found: dict[str, dict[str, Any]] = {}
        for kind, obj in self.snapshot():
            if kind == "DELETED":
                found.pop(obj["metadata"]["name"], None)
            else:
                found[obj["metadata"]["name"]] = obj
        return found

    def phase(self, name: str) -> str | None:
        """A pod's latest phase (None: not seen, or deleted)."""
        pod = self.latest().get(name)
        return pod_phase(pod) if pod is not None else None

    def first(self, name: str, kind: str = "ADDED") -> dict[str, Any] | None:
        return next((o for k, o in self.snapshot() if k == kind and o["metadata"]["name"] == name), None)

    def index(self, predicate: Callable[[str, dict[str, Any]], bool]) -> int:
        """Position of the first event that satisfies `predicate(type, object)`; fails if none does."""
        events = self.snapshot()
        found = next((i for i, (k, o) in enumerate(events) if predicate(k, o)), None)
        assert found is not None, f"no such event among {[(k, o['metadata']['name']) for k, o in events]}"
        return found

    def alive(self) -> set[str]:
        """Pods alive now: Pending or Running, not being deleted."""
        return self._alive_after(self.snapshot())[0]

    def max_alive(self) -> int:
        """The most pods alive at once over the recording."""
        return self._alive_after(self.snapshot())[1]

    def _alive_after(self, events: list[Event]) -> tuple[set[str], int]:
        alive: dict[str, str] = {}  # uid -> name
        peak = 0
        for kind, pod in events:
            uid, name = pod["metadata"]["uid"], pod["metadata"]["name"]
            deleting = pod["metadata"].get("deletionTimestamp") is not None
            if kind != "DELETED" and pod_phase(pod) in self.ALIVE_PHASES and not deleting:
                alive[uid] = name
            else:
                alive.pop(uid, None)
            peak = max(peak, len(alive))
        return set(alive.values()), peak


# What the fixtures of the same names hand a test.
StartOperator = Callable[..., Operator]  # start_operator(*extra_args, metrics=False, liveness=False, env=None)
Watch = Callable[..., WatchRecorder]  # watch(kind, label_selector=None)


# --- Helm -----------------------------------------------------------------------------------------

CHART = REPO / "charts" / "flowrun-operator"
INSTANCE_LABEL = "app.kubernetes.io/instance"

# Setup manifests of kinds the chart's RBAC does not let the operator handle, and what the
# refusal of each says.
MANIFESTS_THE_CHART_DOES_NOT_GRANT = {
    "secret": ({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}, "may not create"),
    "role-binding": (
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "rb"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}],
        },
        "may not create",
    ),
    "service-account": ({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}}, "may not create"),
    "webhook": (
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "w"},
        },
        "is cluster-scoped",
    ),
    "event": (
        {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "e"},
            "involvedObject": {"kind": "Pod", "name": "p"},
        },
        "may not create Events",
    ),
}


def create_runs_the_chart_refuses(flowruns: FlowRuns) -> dict[str, str]:
    """A run per manifest above (its block's only manifest); their UIDs by name."""
    uids = {}
    for name, (manifest, _) in MANIFESTS_THE_CHART_DOES_NOT_GRANT.items():
        block = {"name": "r", "setup": {"manifests": [manifest]}}
        task = {"name": "a", "resources": ["r"], "template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}}
        created = flowruns.create({"metadata": {"name": name}, "spec": {"resources": [block], "tasks": [task]}})
        uids[name] = created["metadata"]["uid"]
    return uids


def check_runs_the_chart_refuses(flowruns: FlowRuns, uids: Mapping[str, str]) -> None:
    """Each failed at once naming its manifest and why, created nothing, and is deleted in seconds."""
    for name, (_, why) in MANIFESTS_THE_CHART_DOES_NOT_GRANT.items():
        run = flowruns.wait_phase(name, "Failed", timeout=30)
        message = run["status"]["message"]
        assert message.startswith("spec.resources[0].setup.manifests[0]"), (name, message)
        assert why in message, (name, message)
        assert not flowruns.children(uids[name]), name
    for name in MANIFESTS_THE_CHART_DOES_NOT_GRANT:
        started = datetime.now(UTC)
        flowruns.delete_and_check_nothing_leaked(name, timeout=20)
        print(f"{name}: deleted in {(datetime.now(UTC) - started).total_seconds():.1f}s")


class Tools:
    """helm and kubectl bound to the test cluster, with Helm's caches kept out of HOME."""

    def __init__(self, kube_cluster: KubeCluster, home: Path) -> None:
        self.helm = self._find(kube_cluster, "helm")
        self.kubectl = self._find(kube_cluster, "kubectl")
        self.env = dict(
            os.environ,
            KUBECONFIG=str(kube_cluster.kubeconfig),
            HELM_CACHE_HOME=str(home / "cache"),
            HELM_CONFIG_HOME=str(home / "config"),
            HELM_DATA_HOME=str(home / "data"),
        )

    @staticmethod
    def _find(kube_cluster: KubeCluster, name: str) -> str:
        if kube_cluster.bin_dir is not None and (kube_cluster.bin_dir / name).exists():
            return str(kube_cluster.bin_dir / name)
        found = shutil.which(name)
        if found is None:
            pytest.skip(f"no {name} binary (the dev cluster provides one)")
        return found

    def run(
        self, tool: str, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [getattr(self, tool), *args],
            check=False,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done


def release_name() -> str:
    return f"fro-{secrets.token_hex(3)}"


def labelled_leftovers(api_client: client.ApiClient, namespaces: list[str], release: str) -> dict[str, list[str]]:
    """Every object labelled with the release, in the namespaces given and cluster-wide."""
    selector = f"{INSTANCE_LABEL}={release}"
    core, apps, rbac = (
        client.CoreV1Api(api_client),
        client.AppsV1Api(api_client),
        client.RbacAuthorizationV1Api(api_client),
    )
    found: dict[str, list[str]] = {}

    def add(kind: str, items: list[Any]) -> None:
        names = [
            f"{item.metadata.namespace + '/' if item.metadata.namespace else ''}{item.metadata.name}" for item in items
        ]
        if names:
            found.setdefault(kind, []).extend(names)

    for ns in namespaces:
        add("ServiceAccount", core.list_namespaced_service_account(ns, label_selector=selector).items)
        add("Service", core.list_namespaced_service(ns, label_selector=selector).items)
        add("Pod", core.list_namespaced_pod(ns, label_selector=selector).items)
        add("Deployment", apps.list_namespaced_deployment(ns, label_selector=selector).items)
        add("ReplicaSet", apps.list_namespaced_replica_set(ns, label_selector=selector).items)
        add("Role", rbac.list_namespaced_role(ns, label_selector=selector).items)
        add("RoleBinding", rbac.list_namespaced_role_binding(ns, label_selector=selector).items)
        add(
            "PodDisruptionBudget",
            client.PolicyV1Api(api_client).list_namespaced_pod_disruption_budget(ns, label_selector=selector).items,
        )
    add("ClusterRole", rbac.list_cluster_role(label_selector=selector).items)
    add("ClusterRoleBinding", rbac.list_cluster_role_binding(label_selector=selector).items)
    return found


def uninstall_and_check_nothing_left(
    tools: Tools, api_client: client.ApiClient, release: str, namespace: str, namespaces: list[str]
) -> None:
    tools.run("helm", "uninstall", release, "--namespace", namespace, "--wait", "--timeout", "120s")
    wait_for(
        f"nothing labelled {INSTANCE_LABEL}={release} to be left",
        lambda: not labelled_leftovers(api_client, namespaces, release),
        timeout=60,
    )
    assert tools.run("helm", "status", release, "--namespace", namespace, check=False).returncode != 0


# --- the real node ---------------------------------------------------------------------------------


def real_task(real_node: RealNode, name: str, script: str, **fields: Any) -> dict[str, Any]:
    """A task whose container runs `script` with the shell image on the real node."""
    main = {
        "name": "main",
        "image": real_node.shell_image,
        "imagePullPolicy": "Never",
        "command": ["/bin/sh", "-c", script],
    }
    pod_spec = {
        "nodeSelector": {devcluster_node.LABEL: "true"},
        "tolerations": [{"key": devcluster_node.LABEL, "operator": "Exists", "effect": "NoSchedule"}],
        "terminationGracePeriodSeconds": 10,
        "containers": [main],
    }
    return {"name": name, "template": {"spec": pod_spec}, **fields}


def kubectl(kube_cluster: KubeCluster, *args: str) -> str:
    """kubectl's output for `args` (the dev cluster's kubectl where it has one)."""
    binary = str(kube_cluster.bin_dir / "kubectl") if kube_cluster.bin_dir else "kubectl"
    return subprocess.run(
        [binary, f"--kubeconfig={kube_cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


def real_dask_example(real_node: RealNode, file: str = "dask-flowrun.yaml") -> dict[str, Any]:
    """An example (examples/dask-flowrun.yaml by default) with its `image` param set to the dev
    cluster's local Dask image."""
    body: dict[str, Any] = yaml.safe_load((REPO / "examples" / file).read_text())
    for param in body["spec"]["params"]:
        if param["name"] == "image":
            param["value"] = real_node.dask_image
    return body


# --- Flux ------------------------------------------------------------------------------------------

FLUX_SOURCE = ("source.toolkit.fluxcd.io", "v1", "gitrepositories", "GitRepository")
FLUX_KUSTOMIZE = ("kustomize.toolkit.fluxcd.io", "v1", "kustomizations", "Kustomization")


class FluxObjects:
    """GitRepositories and Kustomizations in one namespace, for the Flux controllers started on it
    (devcluster/flux.py)."""

    def __init__(self, kube_cluster: KubeCluster, namespace: str, controllers: Any) -> None:
        self.custom = client.CustomObjectsApi(kube_cluster.api)
        self.namespace = namespace
        self.controllers = controllers  # devcluster.flux.Flux: its logs when a wait fails

    def git_repository(self, name: str, url: str, interval: str = "10m") -> None:
        group, version, plural, kind = FLUX_SOURCE
        body = {
            "apiVersion": f"{group}/{version}",
            "kind": kind,
            "metadata": {"name": name},
            "spec": {"url": url, "interval": interval, "ref": {"branch": "main"}, "timeout": "20s"},
        }
        self.custom.create_namespaced_custom_object(group, version, self.namespace, plural, body)

    def kustomization(self, name: str, source: str, path: str, **spec: Any) -> None:
        group, version, plural, kind = FLUX_KUSTOMIZE
        body = {
            "apiVersion": f"{group}/{version}",
            "kind": kind,
            "metadata": {"name": name},
            "spec": {
                "sourceRef": {"kind": FLUX_SOURCE[3], "name": source},
                "path": path,
                "interval": "10m",
                "prune": True,
                "targetNamespace": self.namespace,
                **spec,
            },
        }
        self.custom.create_namespaced_custom_object(group, version, self.namespace, plural, body)

    def get(self, kind: tuple[str, str, str, str], name: str) -> dict[str, Any] | None:
        group, version, plural, _ = kind
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                group, version, self.namespace, plural, name
            )
            return found
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def ready(self, name: str) -> dict[str, Any]:
        """A Kustomization's Ready condition ({} before it has one)."""
        found = self.get(FLUX_KUSTOMIZE, name) or {}
        conditions = (found.get("status") or {}).get("conditions") or []
        ready: dict[str, Any] = next((c for c in conditions if c.get("type") == "Ready"), {})
        return ready

    def wait_ready(self, name: str, status: str, timeout: float = 120.0) -> dict[str, Any]:
        """A Kustomization's Ready condition once its status is `status`."""

        def reached() -> dict[str, Any] | None:
            ready = self.ready(name)
            return ready if ready.get("status") == status else None

        try:
            found: dict[str, Any] = wait_for(f"Kustomization {name} Ready={status}", reached, timeout=timeout)
        except AssertionError as error:
            raise AssertionError(f"{error}; Ready now: {self.ready(name)}\n{self.controllers.logs()}") from None
        return found

    def reconcile(self, name: str) -> None:
        """Ask for a reconcile of a Kustomization now (as `flux reconcile` does) and wait until it
        has been handled."""
        group, version, plural, _ = FLUX_KUSTOMIZE
        requested = format_time(datetime.now(UTC)) + f"-{secrets.token_hex(3)}"
        patch = {"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": requested}}}
        self.custom.patch_namespaced_custom_object(group, version, self.namespace, plural, name, patch)
        wait_for(
            f"Kustomization {name} to handle the reconcile request",
            lambda: (
                ((self.get(FLUX_KUSTOMIZE, name) or {}).get("status") or {}).get("lastHandledReconcileAt") == requested
            ),
            timeout=60,
        )

    def suspend(self, name: str) -> None:
        group, version, plural, _ = FLUX_KUSTOMIZE
        self.custom.patch_namespaced_custom_object(
            group, version, self.namespace, plural, name, {"spec": {"suspend": True}}
        )

    def delete_all(self, timeout: float = 60.0) -> None:
        """Delete every Kustomization, then every GitRepository, and wait until they are gone."""
        for kind in (FLUX_KUSTOMIZE, FLUX_SOURCE):
            group, version, plural, name = kind
            for item in self._items(kind):
                try:
                    self.custom.delete_namespaced_custom_object(
                        group, version, self.namespace, plural, item["metadata"]["name"]
                    )
                except ApiException as error:
                    if error.status != 404:
                        raise
            wait_for(f"every {name} in {self.namespace} to be gone", partial(self._none_left, kind), timeout=timeout)

    def _items(self, kind: tuple[str, str, str, str]) -> list[dict[str, Any]]:
        group, version, plural, _ = kind
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(group, version, self.namespace, plural)[
            "items"
        ]
        return items

    def _none_left(self, kind: tuple[str, str, str, str]) -> bool:
        return not self._items(kind)
