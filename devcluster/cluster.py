"""Start, stop and inspect the dev cluster: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and KWOK, each a process on 127.0.0.1, with TLS, token authentication and RBAC;
and, where the host can, one real node beside the KWOK nodes (`devcluster.node`).

`up` records every process it starts (pid and kernel start time) in the state directory; `down`
stops exactly those processes and nothing else, then removes the state. Ports are chosen free at
`up` time, so a busy port never blocks the cluster.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster import build, node
from devcluster.paths import state_dir
from devcluster.ports import free_port

NODE_COUNT = 2
NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
STAGES_FILE = Path(__file__).resolve().parent / "stages.yaml"
# Which component processes a cluster has, in start order (stopped in reverse); the real node's
# follow them when there is one.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SERVICE_IP = "10.96.0.1"


class ClusterError(RuntimeError):
    pass


class AlreadyRunning(ClusterError):
    pass


@dataclass(frozen=True)
class Cluster:
    """What a running dev cluster offers its users."""

    kubeconfig: Path
    server: str
    token: str
    ca_file: Path
    bin_dir: Path


# --- processes -------------------------------------------------------------------------------


def _proc_start_time(pid: int) -> str | None:
    """The kernel's start time of a process: with the pid, it identifies the process for sure."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22, counted after the parenthesised command name (which may contain spaces).
    return stat.rsplit(")", 1)[1].split()[19]


def _is_ours(record: dict[str, Any]) -> bool:
    return bool(_proc_start_time(record["pid"]) == record["startTime"])


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _State:
    """The state file: ports, token and the processes `up` started."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.file = root / "state.json"

    def load(self) -> dict[str, Any] | None:
        try:
            state: dict[str, Any] = json.loads(self.file.read_text())
            return state
        except (OSError, ValueError):
            return None

    def save(self, data: dict[str, Any]) -> None:
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.file)


def _start(state: _State, data: dict[str, Any], name: str, argv: list[str], at: int | None = None) -> None:
    log = state.root / "logs" / f"{name}.log"
    with open(log, "ab") as out:
        # A new session: the cluster outlives `up` and ignores the terminal's Ctrl-C.
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    start_time = None
    for _ in range(100):
        start_time = _proc_start_time(process.pid)
        if start_time:
            break
        time.sleep(0.01)
    record = {"name": name, "pid": process.pid, "startTime": start_time, "log": str(log), "argv": argv}
    # The start order is the stop order reversed: a restarted component keeps its place.
    data["processes"].insert(len(data["processes"]) if at is None else at, record)
    state.save(data)


def _stop_processes(records: list[dict[str, Any]], timeout: float = 20.0) -> None:
    """Stop in reverse start order, each before the next: the API server shuts down quickly
    while etcd is still there, and hangs in its graceful shutdown when it is not."""
    for record in reversed(records):
        if not _is_ours(record):
            continue
        try:
            os.kill(record["pid"], signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + timeout
        while _is_ours(record) and _proc_state(record["pid"]) != "Z" and time.monotonic() < deadline:
            _reap(record["pid"])
            time.sleep(0.05)
        if _is_ours(record) and _proc_state(record["pid"]) != "Z":
            os.kill(record["pid"], signal.SIGKILL)
        while _is_ours(record) and _proc_state(record["pid"]) != "Z":
            _reap(record["pid"])
            time.sleep(0.02)
        _reap(record["pid"])


def _reap(pid: int) -> None:
    """Collect a child that exited, so it does not linger as a zombie that looks alive."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _dead_components(data: dict[str, Any]) -> list[dict[str, Any]]:
    dead = []
    for record in data["processes"]:
        _reap(record["pid"])
        zombie = _proc_state(record["pid"]) == "Z"
        if not _is_ours(record) or zombie:
            dead.append(record)
    return dead


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


# --- certificates, tokens, kubeconfigs ------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _sign(pki: Path, name: str, subject: str, extensions: str) -> None:
    """A key and a certificate for `name`, signed by the cluster's CA."""
    (pki / f"{name}.ext").write_text(extensions)
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subject,
        cwd=pki,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "3650",
        "-extfile",
        f"{name}.ext",
        cwd=pki,
    )


def _make_node_pki(pki: Path, net: node.NodeNet) -> None:
    # The real kubelet's serving certificate, for its address on the node's veth.
    _sign(pki, "real-node", f"/CN={node.NODE_NAME}", f"subjectAltName=IP:{net.node_ip}\nextendedKeyUsage=serverAuth\n")
    # The API server's client certificate towards kubelets (logs, exec); the kubelet checks it
    # against the cluster CA and asks the API server whether this user may.
    _sign(
        pki,
        "apiserver-kubelet-client",
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
        "extendedKeyUsage=clientAuth\n",
    )


def _make_pki(pki: Path, extra_ips: tuple[str, ...] = ()) -> None:
    pki.mkdir(parents=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "3650",
        "-subj",
        "/CN=flowrun-devcluster-ca",
        cwd=pki,
    )
    _sign(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1"
        + "".join(f",IP:{ip}" for ip in extra_ips)
        + "\nextendedKeyUsage=serverAuth\n",
    )
    # KWOK's server plays the nodes' kubelet endpoint (container logs) on loopback.
    _sign(
        pki, "kubelet", "/CN=kwok-kubelet", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    # One RSA key signs ServiceAccount tokens and verifies them.
    _openssl("genrsa", "-out", "service-account.key", "2048", cwd=pki)


def write_kubeconfig(path: Path, server: str, ca_file: Path, user: str, token: str, namespace: str = "") -> None:
    context = {"cluster": "flowrun-dev", "user": user, **({"namespace": namespace} if namespace else {})}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "flowrun-dev", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "flowrun-dev", "context": context}],
        "current-context": "flowrun-dev",
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML; every client reads it.
    path.chmod(0o600)


SIMULATED_LOG_LINES = 150


def _write_simulated_logs(root: Path) -> None:
    """Every simulated container 'prints' the same numbered lines (in the CRI log format), so tests
    can check that only the last lines of a log are kept."""
    log_file = root / "simulated-container.log"
    log_file.write_text(
        "".join(
            f"2026-01-01T00:00:{index % 60:02d}.000000000Z stdout F simulated log line {index}\n"
            for index in range(1, SIMULATED_LOG_LINES + 1)
        )
    )
    (root / "logs-config.yaml").write_text(
        json.dumps(
            {
                "apiVersion": "kwok.x-k8s.io/v1alpha1",
                "kind": "ClusterLogs",
                "metadata": {"name": "simulated-logs"},
                "spec": {"logs": [{"logsFile": str(log_file)}]},
            }
        )
    )


# --- talking to the cluster -----------------------------------------------------------------------


class Api:
    """A minimal client for the dev cluster's own start-up checks (no dependencies)."""

    def __init__(self, server: str, token: str, ca_file: Path) -> None:
        self.server = server
        self.token = token
        self.context = ssl.create_default_context(cafile=str(ca_file))

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.server + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=10) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")


def _wait(what: str, check: Callable[[], bool], data: dict[str, Any], timeout: float) -> None:
    """Poll `check` until it holds; fail fast, naming the component, if any process died."""
    deadline = time.monotonic() + timeout
    while True:
        dead = _dead_components(data)
        if dead:
            record = dead[0]
            raise ClusterError(
                f"{record['name']} exited while waiting for {what}; last lines of {record['log']}:\n"
                f"{_log_tail(Path(record['log']))}"
            )
        try:
            if check():
                return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def _etcd_healthy(port: int) -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
        return bool(json.loads(response.read()).get("health") == "true")


def _nodes_ready(api: Api) -> bool:
    status, nodes = api.request("GET", "/api/v1/nodes")
    if status != 200:
        return False
    ready = [
        node
        for node in nodes["items"]
        if any(c["type"] == "Ready" and c["status"] == "True" for c in node.get("status", {}).get("conditions", []))
    ]
    return len(ready) >= NODE_COUNT


def _create_nodes(api: Api) -> None:
    for index in range(NODE_COUNT):
        name = f"kwok-node-{index}"
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"},
            },
        }
        status, body = api.request("POST", "/api/v1/nodes", node)
        if status not in (201, 409):
            raise ClusterError(f"creating node {name} failed ({status}): {body}")


# --- commands -------------------------------------------------------------------------------------


@contextlib.contextmanager
def stopped(component: str) -> Iterator[None]:
    """One component of the running cluster (say `kube-apiserver` or `etcd`) stopped for the
    duration of the block, then started again with the same command line, and the API server
    ready again: for fault tests."""
    state = _State(state_dir())
    with _exclusive():
        data = state.load()
        if data is None:
            raise RuntimeError("no dev cluster is running")
        index, record = next((i, r) for i, r in enumerate(data["processes"]) if r["name"] == component)
        if "argv" not in record:
            raise RuntimeError(f"{component} was started by an older devcluster: run `down` and `up` first")
        _stop_processes([record])
        del data["processes"][index]
        state.save(data)
    try:
        yield
    finally:
        with _exclusive():
            data = state.load()
            if data is not None:
                _start(state, data, component, record["argv"], at=index)
                # Back when the API server is ready again (for etcd too: its readiness includes etcd).
                api = Api(data["server"], data["adminToken"], state_dir() / "pki" / "ca.crt")
                _wait("kube-apiserver to be ready", lambda: api.request("GET", "/readyz")[0] == 200, data, 90)


def running_cluster() -> Cluster | None:
    """The cluster `up` started, if all of its processes are still alive."""
    data = _State(state_dir()).load()
    if not data or _dead_components(data) or len(data["processes"]) < len(_components(data)):
        return None
    return _cluster_of(data)


def _components(data: dict[str, Any]) -> list[str]:
    return list(data.get("components", COMPONENTS))


def _cluster_of(data: dict[str, Any]) -> Cluster:
    root = state_dir()
    return Cluster(
        kubeconfig=root / "kubeconfig",
        server=data["server"],
        token=data["adminToken"],
        ca_file=root / "pki" / "ca.crt",
        bin_dir=build.bin_dir(),
    )


@contextlib.contextmanager
def _exclusive() -> Iterator[None]:
    """One `up` or `down` at a time per state directory (two test sessions may start together)."""
    lock_file = state_dir().with_name(state_dir().name + ".lock")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def up(audit_policy: Path | None = None) -> Cluster:
    """Start the cluster. With `audit_policy`, the API server also writes an audit log (JSON lines,
    `audit_log()`) by that policy: the benchmarks use it to count each client's requests."""
    with _exclusive():
        return _up(audit_policy)


def audit_log() -> Path:
    """Where the API server writes its audit log, when `up` was given a policy."""
    return state_dir() / "logs" / "audit.log"


def _audit_flags(audit_policy: Path | None) -> list[str]:
    if audit_policy is None:
        return []
    return [
        f"--audit-policy-file={audit_policy.resolve()}",
        f"--audit-log-path={audit_log()}",
        "--audit-log-format=json",
    ]


def _up(audit_policy: Path | None) -> Cluster:
    root = state_dir()
    state = _State(root)
    previous = state.load()
    if previous is not None:
        if not _dead_components(previous) and len(previous["processes"]) == len(_components(previous)):
            raise AlreadyRunning(f"the dev cluster is already running (kubeconfig: {root / 'kubeconfig'})")
        # A partial or dead cluster: clear it away before starting afresh.
        _down()
    elif node.slot_of(root) is not None:
        _down()  # a real node whose `up` crashed before it recorded anything
    started = time.monotonic()
    bins = build.build(verbose=False)
    shutil.rmtree(root, ignore_errors=True)  # leftovers of a crashed run, never of a live one (lock held)
    net = _real_node_slot(root, bins)  # before anything is made: a required node that cannot run leaves nothing
    root.mkdir(parents=True)
    (root / "logs").mkdir()
    pki = root / "pki"
    _make_pki(pki, (net.host_ip,) if net else ())
    if net:
        _make_node_pki(pki, net)

    ports = {
        name: free_port() for name in ("etcd", "etcdPeer", "apiserver", "controllerManager", "scheduler", "kubelet")
    }
    users = ("admin", "controller-manager", "scheduler", "kwok") + (("kubelet", "kube-proxy", "coredns") if net else ())
    tokens = {user: secrets.token_hex(16) for user in users}
    (pki / "tokens.csv").write_text(
        f'{tokens["admin"]},admin,admin,"system:masters"\n'
        f"{tokens['controller-manager']},system:kube-controller-manager,kcm\n"
        f"{tokens['scheduler']},system:kube-scheduler,scheduler\n"
        f'{tokens["kwok"]},kwok-controller,kwok,"system:masters"\n'
        + (
            f'{tokens["kubelet"]},system:node:{node.NODE_NAME},kubelet,"system:nodes"\n'
            f"{tokens['kube-proxy']},system:kube-proxy,kube-proxy\n"
            f"{tokens['coredns']},system:coredns,coredns\n"
            if net
            else ""
        )
    )
    # With a real node the API server listens on the host side of the node's veth (pods reach it
    # there through the `kubernetes` Service); without one, on loopback.
    api_ip = net.host_ip if net else "127.0.0.1"
    server = f"https://{api_ip}:{ports['apiserver']}"
    kubeconfigs = {
        user: root / ("kubeconfig" if user == "admin" else f"{user}.kubeconfig")
        for user in ("admin", "controller-manager", "scheduler", "kwok")
    }
    for user, path in kubeconfigs.items():
        write_kubeconfig(path, server, pki / "ca.crt", user, tokens[user])

    data: dict[str, Any] = {
        "server": server,
        "adminToken": tokens["admin"],
        "ports": ports,
        "components": list(COMPONENTS) + (list(node.COMPONENTS) if net else []),
        "realNode": {"slot": net.slot} if net else None,
        "processes": [],
    }
    state.save(data)
    api = Api(server, tokens["admin"], pki / "ca.crt")
    try:
        if net:
            node.setup_network(net, SERVICE_CIDR)
        _start(
            state,
            data,
            "etcd",
            [
                str(bins / "etcd"),
                "--name=devcluster",
                f"--data-dir={root / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{ports['etcd']}",
                f"--advertise-client-urls=http://127.0.0.1:{ports['etcd']}",
                f"--listen-peer-urls=http://127.0.0.1:{ports['etcdPeer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{ports['etcdPeer']}",
                f"--initial-cluster=devcluster=http://127.0.0.1:{ports['etcdPeer']}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        _wait("etcd to be healthy", lambda: _etcd_healthy(ports["etcd"]), data, 30)

        _start(
            state,
            data,
            "kube-apiserver",
            [
                str(bins / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{ports['etcd']}",
                f"--bind-address={api_ip}",
                f"--advertise-address={api_ip}",
                f"--secure-port={ports['apiserver']}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                # PodNodeSelector and PodTolerationRestriction let a namespace place all its pods on the
                # real node (the annotations of tests/e2e/real_node.py and of the demo).
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,DefaultStorageClass,ResourceQuota,"
                "PodNodeSelector,PodTolerationRestriction",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'service-account.key'}",
                f"--service-account-signing-key-file={pki / 'service-account.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # The `kubernetes` Service's endpoint is the advertised address: only a real node's pods
                # use it, and loopback cannot be an endpoint.
                f"--endpoint-reconciler-type={'lease' if net else 'none'}",
                *(
                    [
                        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                    ]
                    if net
                    else []
                ),
                f"--cert-dir={pki}",
                "--allow-privileged=true",
                "--profiling=false",
                *_audit_flags(audit_policy),
            ],
        )
        _wait("kube-apiserver to be ready", lambda: api.request("GET", "/readyz")[0] == 200, data, 90)

        common = ["--leader-elect=false", "--bind-address=127.0.0.1", "--profiling=false"]
        kcm = str(kubeconfigs["controller-manager"])
        _start(
            state,
            data,
            "kube-controller-manager",
            [
                str(bins / "kube-controller-manager"),
                f"--kubeconfig={kcm}",
                f"--authentication-kubeconfig={kcm}",
                f"--authorization-kubeconfig={kcm}",
                f"--secure-port={ports['controllerManager']}",
                *common,
                f"--service-account-private-key-file={pki / 'service-account.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=true",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # Nothing cloud- or volume-provider-shaped runs here.
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller",
                # The nodes live on this machine and never go away by themselves, while the fault tests
                # stop the API server for up to a minute: after that, KWOK renews its node leases from
                # a cache that catches up only later (conflicts, retried every 10 s), and with the
                # default 40 s grace the nodes were tainted unreachable and new pods left Pending for
                # over a minute. A grace of three minutes keeps an outage a fault of the control plane.
                "--node-monitor-grace-period=3m",
            ],
        )
        scheduler = str(kubeconfigs["scheduler"])
        _start(
            state,
            data,
            "kube-scheduler",
            [
                str(bins / "kube-scheduler"),
                f"--kubeconfig={scheduler}",
                f"--authentication-kubeconfig={scheduler}",
                f"--authorization-kubeconfig={scheduler}",
                f"--secure-port={ports['scheduler']}",
                *common,
            ],
        )
        _write_simulated_logs(root)
        _start(
            state,
            data,
            "kwok",
            [
                str(bins / "kwok"),
                f"--kubeconfig={kubeconfigs['kwok']}",
                f"--config={STAGES_FILE}",
                f"--config={root / 'logs-config.yaml'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
                "--node-lease-duration-seconds=40",
                f"--cidr={POD_CIDR}",
                # Every node's address is loopback, where KWOK's server answers for the kubelet: the API
                # server's log requests stay on this machine.
                "--node-ip=127.0.0.1",
                f"--node-port={ports['kubelet']}",
                f"--server-address=127.0.0.1:{ports['kubelet']}",
                f"--tls-cert-file={pki / 'kubelet.crt'}",
                f"--tls-private-key-file={pki / 'kubelet.key'}",
            ],
        )
        _create_nodes(api)
        if net:
            _start_real_node(state, data, api, net, root, bins, server, tokens)
        _wait("the nodes to be Ready", lambda: _nodes_ready(api), data, 60)
        if net:
            _wait_real_node(data, api, net)
        _wait(
            "the default ServiceAccount",
            lambda: api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
            data,
            60,
        )
    except BaseException:
        _down()
        raise
    data["upSeconds"] = round(time.monotonic() - started, 1)
    state.save(data)
    return _cluster_of(data)


def _real_node_slot(root: Path, bins: Path) -> node.NodeNet | None:
    """This cluster's real-node slot, or None (saying why in one line) when the host cannot have one."""
    if node.setting() == "false":
        return None
    problem = node.host_problem(bins)
    if problem is None:
        return node.claim_slot(root)
    if node.required():
        raise ClusterError(f"a real node is required (CI=true or FLOWRUN_DEVCLUSTER_REAL_NODE=true) but {problem}")
    print(f"devcluster: no real node ({problem}); the cluster runs with KWOK nodes only", flush=True)
    return None


def _start_real_node(
    state: _State,
    data: dict[str, Any],
    api: Api,
    net: node.NodeNet,
    root: Path,
    bins: Path,
    server: str,
    tokens: dict[str, str],
) -> None:
    files = node.prepare(net, root, bins, SERVICE_CIDR, server, tokens)
    pending = node.api_objects(net)

    def create_objects() -> bool:
        # kube-system appears shortly after the API server is ready: retry until every object is there.
        while pending:
            path, body = pending[0]
            status, answer = api.request("POST", path, body)
            if status not in (201, 409):
                if status == 404:
                    return False
                raise ClusterError(f"creating {body['kind']} {body['metadata']['name']} failed ({status}): {answer}")
            pending.pop(0)
        return True

    _wait("the real node's RBAC and the kube-dns Service", create_objects, data, 30)
    _start(state, data, "containerd", files.argv["containerd"])
    _wait("containerd to answer", lambda: node.containerd_ready(net), data, 30)
    node.purge_containers(net)
    node.import_images(net, files.images)
    for name in ("kubelet", "kube-proxy", "coredns"):
        _start(state, data, name, files.argv[name])


def _wait_real_node(data: dict[str, Any], api: Api, net: node.NodeNet) -> None:
    def ready() -> bool:
        status, body = api.request("GET", f"/api/v1/nodes/{node.NODE_NAME}")
        return status == 200 and node.node_ready(body)

    _wait(f"node {node.NODE_NAME} to be Ready", ready, data, 60)
    _wait("CoreDNS to be ready", lambda: node.coredns_ready(net), data, 30)
    _wait("kube-proxy to sync its rules", lambda: node.kube_proxy_healthy(net), data, 30)


def down() -> bool:
    """Stop exactly what `up` started and remove the state. Returns whether anything was running."""
    with _exclusive():
        return _down()


def _down() -> bool:
    root = state_dir()
    data = _State(root).load()
    if data is None and not root.exists():
        return False
    net = node.slot_of(root)
    held: dict[str, Any] = {}
    if data is not None and net is not None:
        alive = {record["name"] for record in data["processes"] if _is_ours(record)}
        if {"kube-apiserver", "kubelet"} <= alive:
            # The node's pods go first, while the kubelet still runs: it stops their containers and
            # the CNI plugin tears their networks down.
            api = Api(data["server"], data["adminToken"], root / "pki" / "ca.crt")
            with contextlib.suppress(OSError, urllib.error.URLError, ValueError):
                node.drain(api)
        if "containerd" in alive:
            held = node.before_stop(net)
    if data is not None:
        _stop_processes(data["processes"])
    if net is not None:
        node.cleanup(net, root, held)
    shutil.rmtree(root, ignore_errors=True)
    return data is not None


def status() -> tuple[bool, str]:
    data = _State(state_dir()).load()
    if data is None:
        return False, "the dev cluster is not running"
    dead = {record["name"] for record in _dead_components(data)}
    lines = [f"server: {data['server']}", f"kubeconfig: {state_dir() / 'kubeconfig'}"]
    for record in data["processes"]:
        state = "exited" if record["name"] in dead else "running"
        lines.append(f"{record['name']:<24} pid {record['pid']:<8} {state}")
        if record["name"] in dead:
            lines.append("  " + _log_tail(Path(record["log"]), 10).replace("\n", "\n  "))
    missing = [name for name in COMPONENTS if name not in {r["name"] for r in data["processes"]}]
    for name in missing:
        lines.append(f"{name:<24} not started")
    healthy = not dead and not missing
    return healthy, "\n".join(lines)


def component_pid(name: str) -> int | None:
    """The process id of a running component (kube-apiserver, etcd, ...), for benchmarks."""
    data = _State(state_dir()).load() or {"processes": []}
    return next((r["pid"] for r in data["processes"] if r["name"] == name and _is_ours(r)), None)


def memory_rss_mib() -> dict[str, float]:
    """Resident memory of each component (for the README's figures)."""
    data = _State(state_dir()).load() or {"processes": []}
    result = {}
    for record in data["processes"]:
        try:
            for line in Path(f"/proc/{record['pid']}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    result[record["name"]] = int(line.split()[1]) / 1024
        except OSError:
            continue
    return result
