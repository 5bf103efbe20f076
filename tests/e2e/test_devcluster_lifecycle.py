"""The dev cluster's commands, on a private cluster of their own (its own state directory and
ports), so the shared session cluster is never disturbed."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from devcluster import build, images
from devcluster import node as devcluster_node
from devcluster.pytest_plugin import USE_EXISTING_CLUSTER, RealNode, wait_for

REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(USE_EXISTING_CLUSTER, reason="manages dev clusters of its own; needs the dev cluster build"),
]


def listening_ports() -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class PrivateCluster:
    def __init__(self, state: Path, real_node: str = "false") -> None:
        self.state = state
        # The control plane's lifecycle tests run without a real node (faster); the real node's has one.
        self.real_node = real_node

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, FLOWRUN_DEVCLUSTER_STATE=str(self.state), FLOWRUN_DEVCLUSTER_REAL_NODE=self.real_node)
        return subprocess.run(
            [sys.executable, "-m", "devcluster", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
        )

    def recorded(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads((self.state / "state.json").read_text())
        return state


@pytest.fixture
def private_cluster(tmp_path: Path) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(tmp_path / "cluster")
    try:
        yield cluster
    finally:
        cluster.run("down")


def test_up_down_up_leaves_nothing_behind(private_cluster: PrivateCluster) -> None:
    started = private_cluster.run("up")
    assert started.returncode == 0, started.stderr
    recorded = private_cluster.recorded()
    pids = [p["pid"] for p in recorded["processes"]]
    ports = set(recorded["ports"].values())
    assert [p["name"] for p in recorded["processes"]] == [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ]
    assert all(alive(pid) for pid in pids)
    assert private_cluster.run("status").returncode == 0

    again = private_cluster.run("up")
    assert again.returncode == 0 and "already running" in again.stdout
    assert [p["pid"] for p in private_cluster.recorded()["processes"]] == pids

    stopped = private_cluster.run("down")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not any(alive(pid) for pid in pids)
    assert not ports & listening_ports()
    assert not private_cluster.state.exists()
    assert private_cluster.run("status").returncode == 1

    idempotent = private_cluster.run("down")
    assert idempotent.returncode == 0 and "was not running" in idempotent.stdout

    restarted = private_cluster.run("up")
    assert restarted.returncode == 0, restarted.stderr
    kubeconfig = private_cluster.run("kubeconfig").stdout.strip()
    nodes = subprocess.run(
        [
            str(Path(private_cluster.run("env").stdout.split('PATH="')[1].split(":")[0]) / "kubectl"),
            f"--kubeconfig={kubeconfig}",
            "get",
            "nodes",
            "-o",
            "name",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nodes.stdout.split() == ["node/kwok-node-0", "node/kwok-node-1"]


def test_busy_well_known_ports_do_not_stop_up(private_cluster: PrivateCluster) -> None:
    squatters = []
    for port in (2379, 2380, 6443):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
            squatters.append(sock)
        except OSError:
            sock.close()  # already taken by something else: busy either way
    try:
        started = private_cluster.run("up")
        assert started.returncode == 0, started.stderr
        assert not {2379, 2380, 6443} & set(private_cluster.recorded()["ports"].values())
    finally:
        for sock in squatters:
            sock.close()


def test_status_names_a_component_that_died_with_its_log_tail(private_cluster: PrivateCluster) -> None:
    assert private_cluster.run("up").returncode == 0
    scheduler = next(p for p in private_cluster.recorded()["processes"] if p["name"] == "kube-scheduler")
    os.kill(scheduler["pid"], signal.SIGKILL)
    wait_for("the scheduler to exit", lambda: not alive(scheduler["pid"]))
    status = private_cluster.run("status")
    assert status.returncode == 1
    line = next(line for line in status.stdout.splitlines() if line.startswith("kube-scheduler"))
    assert "exited" in line
    # The log tail follows the component's line.
    assert status.stdout.split(line, 1)[1].strip()


def test_a_failed_build_names_the_module_and_shows_the_compiler_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from devcluster import build

    broken = tmp_path / "modules" / "broken"
    broken.mkdir(parents=True)
    (broken / "go.mod").write_text("module example.test/broken\n\ngo 1.22\n")
    (broken / "main.go").write_text("package main\n\nfunc main() { undefinedThing() }\n")
    monkeypatch.setattr(build, "GO_MODULES_DIR", tmp_path / "modules")
    with pytest.raises(build.BuildError) as failed:
        build._build_module(build.GoModule(directory="broken", binaries={"broken": "."}), tmp_path / "out")
    assert "devcluster/go/broken" in str(failed.value)
    assert "undefined: undefinedThing" in str(failed.value)
    assert not (tmp_path / "out").exists()  # nothing that looks like a finished build


def test_up_names_a_component_that_dies_and_stops_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from devcluster import cluster

    broken_stages = tmp_path / "stages.yaml"
    broken_stages.write_text("apiVersion: kwok.x-k8s.io/v1alpha1\nkind: Stage\nspec: [this is not a stage]\n")
    monkeypatch.setenv("FLOWRUN_DEVCLUSTER_STATE", str(tmp_path / "cluster"))
    monkeypatch.setenv("FLOWRUN_DEVCLUSTER_REAL_NODE", "false")
    monkeypatch.setattr(cluster, "STAGES_FILE", broken_stages)
    before = listening_ports()
    with pytest.raises(cluster.ClusterError) as failed:
        cluster.up()
    message = str(failed.value)
    assert message.startswith("kwok exited"), message
    assert "last lines of" in message and len(message.splitlines()) > 1
    assert not (tmp_path / "cluster").exists()  # `up` cleaned up after itself
    assert not listening_ports() - before  # and no process of it is left listening


def host_network_state() -> dict[str, object]:
    """What of the host's network a real node must leave exactly as it was."""
    rules = {}
    for save in ("iptables-save", "ip6tables-save"):
        output = subprocess.run([save], capture_output=True, text=True).stdout
        # Comments carry timestamps; counters change with traffic.
        rules[save] = [re.sub(r"\[\d+:\d+\]", "", line) for line in output.splitlines() if not line.startswith("#")]
    netns = Path("/run/netns")
    return {
        "rules": rules,
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
        "links": sorted(os.listdir("/sys/class/net")),
        "netns": sorted(os.listdir(netns)) if netns.is_dir() else [],
        "routes": subprocess.run(["ip", "route"], capture_output=True, text=True).stdout,
        "kernel": {name: Path("/proc/sys", name).read_text() for name in devcluster_node.KERNEL_TUNABLES},
    }


def test_down_leaves_nothing_of_the_real_node(tmp_path: Path) -> None:
    problem = devcluster_node.host_problem(build.bin_dir())
    if problem and os.environ.get("CI", "").lower() != "true":
        pytest.skip(f"no real node on this host: {problem}")
    cluster = PrivateCluster(tmp_path / "cluster", real_node="true")
    before = host_network_state()
    kubelet_dir_before = devcluster_node.KUBELET_DEVICE_PLUGINS.exists()
    try:
        started = cluster.run("up")
        assert started.returncode == 0, started.stderr
        recorded = cluster.recorded()
        names = [p["name"] for p in recorded["processes"]]
        assert names[-4:] == ["containerd", "kubelet", "kube-proxy", "coredns"]
        net = devcluster_node.NodeNet(recorded["realNode"]["slot"])
        state = cluster.state

        # A running pod: a shim, a sandbox network namespace, overlay and tmpfs mounts, iptables rules.
        api = config.new_client_from_config(str(state / "kubeconfig"))
        core = client.CoreV1Api(api)
        pod = RealNode(devcluster_node.NODE_NAME, images.SHELL_IMAGE, images.DASK_IMAGE, images.OPERATOR_IMAGE).pod(
            "sleeper", ["sleep", "3600"], restart_policy="Always"
        )
        core.create_namespaced_pod("default", pod)
        wait_for(
            "the pod to run",
            lambda: core.read_namespaced_pod("sleeper", "default").status.phase == "Running",
            timeout=60,
        )
        assert devcluster_node._shim_pids(net)
        assert devcluster_node.mounts_under([state])
        node_rules = subprocess.run(net.in_netns(["iptables-save"]), capture_output=True, text=True).stdout
        assert "KUBE-SERVICES" in node_rules and "KUBE-FIREWALL" in node_rules  # the node's own, not the host's
        assert Path(f"/sys/fs/cgroup/memory{net.cgroup_root}/kubepods").is_dir()
        during = host_network_state()
        assert len(during["netns"]) > len(before["netns"])  # type: ignore[arg-type]
        pids = [p["pid"] for p in recorded["processes"]]
    finally:
        stopped = cluster.run("down")
    assert stopped.returncode == 0, stopped.stderr
    assert not any(alive(pid) for pid in pids)
    assert devcluster_node.leftovers(net, state) == []
    assert not list((devcluster_node.CNI_CACHE / "results").glob(f"{net.network_name}-*"))
    assert host_network_state() == before
    assert not state.exists()
    if not devcluster_node._held_slots():  # the last real node on the machine: its fixed places go too
        assert devcluster_node.KUBELET_DEVICE_PLUGINS.exists() == kubelet_dir_before
        assert not devcluster_node.MACHINE_DIR.exists()


def test_a_host_without_a_real_node_says_why_and_runs_kwok_nodes_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from devcluster import cluster

    monkeypatch.setenv("FLOWRUN_DEVCLUSTER_STATE", str(tmp_path / "cluster"))
    monkeypatch.setenv("FLOWRUN_DEVCLUSTER_REAL_NODE", "auto")
    monkeypatch.delenv("CI", raising=False)
    # As on a host without the packages (whatever this one has).
    monkeypatch.setattr(devcluster_node, "host_problem", lambda bin_dir: "missing Debian packages containerd")
    try:
        running = cluster.up()
        said = capsys.readouterr().out.splitlines()
        assert said == [
            "devcluster: no real node (missing Debian packages containerd); the cluster runs with KWOK nodes only"
        ]
        core = client.CoreV1Api(config.new_client_from_config(str(running.kubeconfig)))
        assert sorted(n.metadata.name for n in core.list_node().items) == ["kwok-node-0", "kwok-node-1"]
        assert running.server.startswith("https://127.0.0.1:")
        assert devcluster_node.slot_of(tmp_path / "cluster") is None
    finally:
        cluster.down()


def test_ci_fails_up_loudly_where_the_real_node_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from devcluster import cluster

    monkeypatch.setenv("FLOWRUN_DEVCLUSTER_STATE", str(tmp_path / "cluster"))
    monkeypatch.delenv("FLOWRUN_DEVCLUSTER_REAL_NODE", raising=False)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(devcluster_node, "host_problem", lambda bin_dir: "the real node needs root")
    with pytest.raises(cluster.ClusterError) as failed:
        cluster.up()
    assert "a real node is required" in str(failed.value) and "the real node needs root" in str(failed.value)
    assert not (tmp_path / "cluster").exists()
