"""The benchmarks' hold on the dev cluster: namespaces, ServiceAccount identities, cheap watches,
and the controller processes they start (with their CPU and memory from /proc).

Every controller under test runs as its own ServiceAccount of the namespace `flowrun-bench`, so
that the API server's audit log (bench/audit-policy.yaml) counts its requests apart from the
benchmark's own and from the cluster's components.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

from bench import stats
from devcluster import cluster as devcluster
from devcluster.ports import free_port
from flowrun import api

REPO = Path(__file__).resolve().parents[1]

IDENTITY_NAMESPACE = "flowrun-bench"
AUDIT_POLICY = REPO / "bench" / "audit-policy.yaml"
CRD_FILES = ("flowrun.yaml", "flow.yaml", "cronflowrun.yaml")
TERMINAL_POD_PHASES = ("Succeeded", "Failed")


def wait_for(what: str, check: Callable[[], bool], timeout: float, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Identity:
    """A ServiceAccount (cluster-admin) a controller under test runs as, and its kubeconfig."""

    name: str
    kubeconfig: Path

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{IDENTITY_NAMESPACE}:{self.name}"


class Session:
    """One benchmark's use of the dev cluster: started here if none runs (with the audit log),
    and everything it made removed by `close`."""

    def __init__(self) -> None:
        running = devcluster.running_cluster()
        self.started_cluster = running is None
        self.cluster = running or devcluster.up(AUDIT_POLICY)
        self.api = config.new_client_from_config(str(self.cluster.kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.rbac = client.RbacAuthorizationV1Api(self.api)
        self.workdir = Path(tempfile.mkdtemp(prefix="flowrun-bench-"))
        self.namespaces: list[str] = []
        self.bindings: list[str] = []
        self.audit_log = devcluster.audit_log()
        self.kubectl(
            "apply", "--server-side", "--force-conflicts", *(f"-f={REPO / 'crds' / name}" for name in CRD_FILES)
        )
        self._ensure_namespace(IDENTITY_NAMESPACE)

    # --- namespaces and identities --------------------------------------------------------------

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.cluster.bin_dir / "kubectl"), f"--kubeconfig={self.cluster.kubeconfig}", *args],
            check=check,
            capture_output=True,
            text=True,
        )

    def _ensure_namespace(self, name: str) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": name, "labels": {"bench.flowrun.dev/bench": "true"}}})
        except client.ApiException as error:
            if error.status != 409:
                raise

        def has_default_account() -> bool:
            try:
                self.core.read_namespaced_service_account("default", name)
                return True
            except client.ApiException:
                return False

        wait_for(f"the default ServiceAccount of {name}", has_default_account, 60)

    def namespace(self, prefix: str = "bench") -> str:
        """A new namespace, deleted by `close`."""
        name = f"{prefix}-{secrets.token_hex(3)}"
        self._ensure_namespace(name)
        self.namespaces.append(name)
        return name

    def identity(self, name: str, namespace: str = "") -> Identity:
        """A cluster-admin ServiceAccount of flowrun-bench and a kubeconfig that uses it (with
        `namespace` as its context's namespace)."""
        with contextlib.suppress(client.ApiException):
            self.core.create_namespaced_service_account(IDENTITY_NAMESPACE, {"metadata": {"name": name}})
        binding = f"flowrun-bench-{name}"
        with contextlib.suppress(client.ApiException):
            self.rbac.create_cluster_role_binding(
                {
                    "metadata": {"name": binding},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": "cluster-admin",
                    },
                    "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": IDENTITY_NAMESPACE}],
                }
            )
        if binding not in self.bindings:
            self.bindings.append(binding)
        token = self.core.create_namespaced_service_account_token(
            name, IDENTITY_NAMESPACE, {"spec": {"expirationSeconds": 86400}}
        ).status.token
        path = self.workdir / f"{name}.kubeconfig"
        devcluster.write_kubeconfig(path, self.cluster.server, self.cluster.ca_file, name, token, namespace=namespace)
        return Identity(name, path)

    # --- the API server's count of requests --------------------------------------------------------

    def audit_offset(self) -> int | None:
        """Where the audit log ends now (None: the cluster was started without one)."""
        return self.audit_log.stat().st_size if self.audit_log.exists() else None

    def audit_requests(self, offset: int | None, identity: Identity) -> Counter[tuple[str, str]] | None:
        """The identity's requests logged since `offset`."""
        if offset is None:
            return None
        with open(self.audit_log, "rb") as log:
            log.seek(offset)
            lines = log.read().decode(errors="replace").splitlines()
        return stats.audit_requests(lines, identity.username)

    def close(self) -> None:
        """Delete the benchmark's namespaces (and wait until they are gone), its identities, and the
        cluster if this session started it. Called after the controllers stopped: the FlowRuns'
        finalizers are lifted here, as no operator is left to clean up (the namespaces' deletion
        removes their children anyway)."""
        for name in self.namespaces:
            with contextlib.suppress(client.ApiException):
                self.core.delete_namespace(name)
            self._lift_finalizers(name)
        for binding in self.bindings:
            with contextlib.suppress(client.ApiException):
                self.rbac.delete_cluster_role_binding(binding)
        with contextlib.suppress(client.ApiException):
            self.core.delete_namespace(IDENTITY_NAMESPACE)
        for name in [*self.namespaces, IDENTITY_NAMESPACE]:

            def gone(name: str = name) -> bool:
                try:
                    self.core.read_namespace(name)
                    return False
                except client.ApiException as error:
                    return bool(error.status == 404)

            wait_for(f"namespace {name} to be deleted", gone, 300, interval=0.5)
        if self.started_cluster:
            devcluster.down()

    def _lift_finalizers(self, namespace: str) -> None:
        listed = json.loads(
            self.custom.list_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, _preload_content=False
            ).data
        )

        def lift(name: str) -> None:
            with contextlib.suppress(client.ApiException):
                self.custom.patch_namespaced_custom_object(
                    api.GROUP, api.VERSION, namespace, api.PLURAL, name, {"metadata": {"finalizers": None}}
                )

        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lift, [item["metadata"]["name"] for item in listed["items"] if item["metadata"].get("finalizers")]
                )
            )


@contextlib.contextmanager
def session() -> Iterator[Session]:
    opened = Session()
    try:
        yield opened
    finally:
        opened.close()


# --- watches ---------------------------------------------------------------------------------------


class RawWatch(threading.Thread):
    """Calls `on_event(type, object)` for every object of a list call (plain dicts: no model
    conversion, so the watcher costs little CPU beside the controller it measures). Lists first,
    then watches from the list's resourceVersion, re-watching as the server closes streams."""

    def __init__(
        self,
        list_call: Callable[..., Any],
        on_event: Callable[[str, dict[str, Any]], None],
        **selectors: str,
    ) -> None:
        super().__init__(daemon=True)
        self.list_call, self.on_event, self.selectors = list_call, on_event, selectors
        self.stopping = threading.Event()
        self.synced = threading.Event()

    def run(self) -> None:
        listed = json.loads(self.list_call(_preload_content=False, **self.selectors).data)
        for item in listed.get("items", []):
            self.on_event("ADDED", item)
        version = listed["metadata"]["resourceVersion"]
        self.synced.set()
        while not self.stopping.is_set():
            response = self.list_call(
                watch=True,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=60,
                _preload_content=False,
                **self.selectors,
            )
            buffer = b""
            for chunk in response.stream(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        raise RuntimeError(f"watch failed: {event['object']}")
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self.on_event(event["type"], event["object"])
                if self.stopping.is_set():
                    break
            response.release_conn()

    def stop(self) -> None:
        self.stopping.set()


@dataclass
class PodTimes:
    run: str
    task: str
    created: float
    finished: float | None = None
    phase: str = ""


class PodClock:
    """One watch of a namespace's benchmark pods, on one clock (time.monotonic): when each pod was
    first seen and first seen finished. Pods carry bench.flowrun.dev/run and /task labels."""

    RUN_LABEL = "bench.flowrun.dev/run"
    TASK_LABEL = "bench.flowrun.dev/task"

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.pods: dict[str, PodTimes] = {}
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.watch = RawWatch(
            lambda **kwargs: core.list_namespaced_pod(namespace, **kwargs),
            self._seen,
            label_selector=self.RUN_LABEL,
        )

    def _seen(self, kind: str, pod: dict[str, Any]) -> None:
        now = time.monotonic()
        labels = pod["metadata"].get("labels") or {}
        phase = (pod.get("status") or {}).get("phase", "")
        with self.changed:
            times = self.pods.setdefault(
                pod["metadata"]["name"], PodTimes(labels.get(self.RUN_LABEL, ""), labels.get(self.TASK_LABEL, ""), now)
            )
            if phase in TERMINAL_POD_PHASES and times.finished is None:
                times.finished, times.phase = now, phase
                self.changed.notify_all()

    def start(self) -> PodClock:
        self.watch.start()
        self.watch.synced.wait(60)
        return self

    def stop(self) -> None:
        self.watch.stop()

    def finished_count(self, runs: set[str] | None = None) -> int:
        with self.lock:
            return sum(1 for t in self.pods.values() if t.finished is not None and (runs is None or t.run in runs))

    def of_runs(self, runs: set[str]) -> list[PodTimes]:
        with self.lock:
            return [t for t in self.pods.values() if t.run in runs]


class PhaseClock:
    """One watch of a namespace's custom objects (FlowRuns or Workflows): when each was first seen
    in a terminal phase."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str, group: str, version: str, plural: str) -> None:
        self.finished: dict[str, tuple[float, str]] = {}
        self.lock = threading.Lock()
        self.watch = RawWatch(
            lambda **kwargs: custom.list_namespaced_custom_object(group, version, namespace, plural, **kwargs),
            self._seen,
        )

    def _seen(self, kind: str, obj: dict[str, Any]) -> None:
        phase = (obj.get("status") or {}).get("phase", "")
        if phase in ("Succeeded", "Failed", "Error", "Cancelled"):
            with self.lock:
                self.finished.setdefault(obj["metadata"]["name"], (time.monotonic(), phase))

    def start(self) -> PhaseClock:
        self.watch.start()
        self.watch.synced.wait(60)
        return self

    def stop(self) -> None:
        self.watch.stop()

    def count(self, names: set[str]) -> int:
        with self.lock:
            return sum(1 for name in names if name in self.finished)


# --- processes ---------------------------------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc/<pid>/status."""
    values: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values.get("VmRSS", 0.0), values.get("VmHWM", 0.0)


@dataclass
class Controller:
    """A controller under test, run as a local process that this benchmark starts and stops."""

    name: str
    argv: list[str]
    identity: Identity
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    metrics_port: int | None = None
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env={**os.environ, "KUBECONFIG": str(self.identity.kubeconfig), **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def memory(self) -> tuple[float, float]:
        return memory_mib(self.pid)

    def metrics(self) -> str | None:
        if self.metrics_port is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
                text: str = response.read().decode()
                return text
        except OSError:
            return None

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)


# Extra flags of every operator a benchmark starts, e.g. "--qps 20 --burst 30" (docs/performance.md).
OPERATOR_FLAGS_ENV = "FLOWRUN_BENCH_OPERATOR_FLAGS"


def flowrun_operator(session: Session, namespace: str, identity: Identity) -> Controller:
    """The operator of this checkout, `python -m flowrun.cli run` on one namespace, with metrics,
    and the flags of FLOWRUN_BENCH_OPERATOR_FLAGS."""
    port = free_port()
    return Controller(
        name="flowrun-operator",
        argv=[
            sys.executable,
            "-m",
            "flowrun.cli",
            "run",
            "--namespace",
            namespace,
            "--log-level",
            "warning",
            "--metrics-port",
            str(port),
            "--metrics-address",
            "127.0.0.1",
            *shlex.split(os.environ.get(OPERATOR_FLAGS_ENV, "")),
        ],
        identity=identity,
        log_path=session.workdir / "operator.log",
        metrics_port=port,
    )
