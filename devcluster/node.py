"""The real node: kubelet, containerd (runc, CNI bridge), kube-proxy and CoreDNS, beside the KWOK nodes.

Everything of the node lives in a network namespace of its own that `up` creates (`flowrun-node-N`),
joined to the host by one veth pair whose two addresses the dev cluster assigns itself:

    host side   10.250.N.1/30   the API server binds and advertises this address
    node side   10.250.N.2/30   the node's InternalIP (kubelet)
    pod bridge  10.251.N.0/24   bridge `cni0` in the node's namespace; .1 is the gateway, where CoreDNS answers

The kubelet's and kube-proxy's iptables chains, `ip_forward` and the bridge all belong to that
namespace, so the host's own firewall and sysctls are never touched and deleting the namespace
removes them all. Pods get one route (the Service CIDR, via the gateway) and no default route; the
node's namespace has no route beyond the veth pair, and the host does not forward: nothing a pod
sends can leave the machine.

One slot N per running dev cluster (a machine-wide lock under /run), so a second cluster (the
lifecycle tests' own) gets its own namespace, addresses, cgroup root and sockets.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster import images, node_deps
from devcluster.paths import cache_root

NODE_NAME = "real-node"
LABEL = "flowrun.dev/real-node"
TAINT = {"key": LABEL, "value": "true", "effect": "NoSchedule"}
CLUSTER_DNS_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
CNI_BIN_DIR = Path("/usr/lib/cni")
MACHINE_DIR = Path("/run/flowrun-devcluster")
SLOTS = 16
# The node's processes, in start order (stopped in reverse, after the node's pods are gone).
COMPONENTS = ("containerd", "kubelet", "kube-proxy", "coredns")
# The kubelet sets these machine-wide kernel settings at start; they are restored when the last
# real node on the machine stops.
KERNEL_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
KUBELET_DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")
# Where the kubelet links container logs, whatever its configuration says.
LEGACY_CONTAINER_LOGS = Path("/var/log/containers")
CNI_CACHE = Path("/var/lib/cni")


class NodeError(RuntimeError):
    pass


@dataclass(frozen=True)
class NodeNet:
    """The names and addresses of one slot."""

    slot: int

    @property
    def netns(self) -> str:
        return f"flowrun-node-{self.slot}"

    @property
    def netns_path(self) -> Path:
        return Path("/run/netns") / self.netns

    @property
    def host_veth(self) -> str:
        return f"frnode{self.slot}h"

    @property
    def node_veth(self) -> str:
        return f"frnode{self.slot}n"

    @property
    def host_ip(self) -> str:
        return f"10.250.{self.slot}.1"

    @property
    def node_ip(self) -> str:
        return f"10.250.{self.slot}.2"

    @property
    def pod_subnet(self) -> str:
        return f"10.251.{self.slot}.0/24"

    @property
    def gateway(self) -> str:
        return f"10.251.{self.slot}.1"

    @property
    def network_name(self) -> str:
        return self.netns

    @property
    def cgroup_root(self) -> str:
        return f"/{self.netns}"

    @property
    def run_dir(self) -> Path:
        """Sockets (short paths: a unix socket path has a length limit)."""
        return MACHINE_DIR / f"node-{self.slot}"

    @property
    def image_store(self) -> Path:
        """containerd's root: kept between clusters (like the binaries) so imported images stay
        unpacked; `up` imports only what changed. Its containers are deleted at `down`."""
        return cache_root() / "node" / f"containerd-{self.slot}"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    def in_netns(self, argv: list[str]) -> list[str]:
        """Run `argv` in the node's network namespace only (same mounts, same pid)."""
        return ["nsenter", f"--net={self.netns_path}", "--", *argv]


# --- can this host have one ---------------------------------------------------------------------


def setting() -> str:
    """FLOWRUN_DEVCLUSTER_REAL_NODE: `auto` (default: when the host can), `true` (required), `false`."""
    value = os.environ.get("FLOWRUN_DEVCLUSTER_REAL_NODE", "auto").lower()
    return value if value in ("auto", "true", "false") else "auto"


def required() -> bool:
    return setting() == "true" or (node_deps.ci_requires_real_node() and setting() != "false")


def namespace_annotations() -> dict[str, str]:
    """Annotations that put every pod of a namespace on the real node (the API server's
    PodNodeSelector and PodTolerationRestriction admission), so a FlowRun written for any cluster
    runs there unchanged."""
    toleration = {"key": LABEL, "operator": "Exists", "effect": TAINT["effect"]}
    return {
        "scheduler.alpha.kubernetes.io/node-selector": f"{LABEL}=true",
        "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps([toleration]),
    }


def host_problem(bin_dir: Path) -> str | None:
    """Why the real node cannot run here, or None."""
    problem = node_deps.host_problem()
    if problem:
        return problem
    missing = node_deps.missing_packages()
    if missing:
        return f"missing Debian packages {' '.join(missing)} (run `python -m devcluster install-deps`)"
    for name in ("kubelet", "kube-proxy", "coredns"):
        if not (bin_dir / name).exists():
            return f"{name} is not built (run `python -m devcluster build`)"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup file system at /sys/fs/cgroup"
    return None


# --- machine-wide slots ---------------------------------------------------------------------------


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    # A lock on /run itself: no lock file that would have to outlive the last node.
    handle = os.open(MACHINE_DIR.parent, os.O_RDONLY)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        MACHINE_DIR.mkdir(exist_ok=True)
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        os.close(handle)


def _slot_file(slot: int) -> Path:
    return MACHINE_DIR / f"slot-{slot}.json"


def _held_slots() -> dict[int, str]:
    held = {}
    for slot in range(SLOTS):
        with contextlib.suppress(OSError, ValueError):
            held[slot] = json.loads(_slot_file(slot).read_text())["stateDir"]
    return held


def _host_uses(prefix: str) -> bool:
    """Whether any address or route on the host already lies in 10.25x.N.0/24 (never collide)."""
    output = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    output += subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
    return prefix in output


def claim_slot(state_root: Path) -> NodeNet:
    """A free slot for this cluster (recording it before anything is created, so `down` finds it)."""
    with _machine_lock():
        held = _held_slots()
        for slot, owner in held.items():
            if owner == str(state_root):
                return NodeNet(slot)
        for slot in range(SLOTS):
            if slot in held:
                continue
            net = NodeNet(slot)
            if net.netns_path.exists() or _host_uses(f"10.250.{slot}.") or _host_uses(f"10.251.{slot}."):
                continue
            if not held:
                _record_kernel_tunables()
            _slot_file(slot).write_text(json.dumps({"stateDir": str(state_root)}))
            return net
    raise NodeError(f"all {SLOTS} real-node slots on this machine are taken ({MACHINE_DIR})")


def slot_of(state_root: Path) -> NodeNet | None:
    """The slot this cluster holds, if any (found even when its state file is gone)."""
    if not MACHINE_DIR.is_dir():
        return None
    with _machine_lock():
        for slot, owner in _held_slots().items():
            if owner == str(state_root):
                return NodeNet(slot)
    return None


def _release_slot(net: NodeNet) -> None:
    with _machine_lock():
        _slot_file(net.slot).unlink(missing_ok=True)
        shutil.rmtree(net.run_dir, ignore_errors=True)
        if not _held_slots():
            _restore_kernel_tunables()
            # The kubelet's device-plugin socket has a fixed place, whatever its root directory.
            (KUBELET_DEVICE_PLUGINS / "kubelet.sock").unlink(missing_ok=True)
            _remove_if_empty(KUBELET_DEVICE_PLUGINS, KUBELET_DEVICE_PLUGINS.parent)
            with contextlib.suppress(OSError):
                MACHINE_DIR.rmdir()


def _record_kernel_tunables() -> None:
    record = MACHINE_DIR / "kernel-tunables.json"
    if not record.exists():
        values = {name: Path("/proc/sys", name).read_text().strip() for name in KERNEL_TUNABLES}
        record.write_text(json.dumps(values))


def _restore_kernel_tunables() -> None:
    record = MACHINE_DIR / "kernel-tunables.json"
    with contextlib.suppress(OSError, ValueError):
        for name, value in json.loads(record.read_text()).items():
            if Path("/proc/sys", name).read_text().strip() != value:
                Path("/proc/sys", name).write_text(value)
    record.unlink(missing_ok=True)


# --- network ----------------------------------------------------------------------------------------


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise NodeError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


def setup_network(net: NodeNet, service_cidr: str) -> None:
    """The node's namespace, the veth pair to the host and the pod bridge (before the API server
    starts: it binds the host side's address)."""
    ns = net.netns
    _ip("netns", "add", ns)
    _ip("link", "add", net.host_veth, "type", "veth", "peer", "name", net.node_veth, "netns", ns)
    _ip("addr", "add", f"{net.host_ip}/30", "dev", net.host_veth)
    _ip("link", "set", net.host_veth, "up")
    _ip("-n", ns, "link", "set", "lo", "up")
    _ip("-n", ns, "addr", "add", f"{net.node_ip}/30", "dev", net.node_veth)
    _ip("-n", ns, "link", "set", net.node_veth, "up")
    # The pod bridge exists before any pod, so CoreDNS can bind the gateway address at once; the CNI
    # bridge plugin adopts it.
    _ip("-n", ns, "link", "add", "cni0", "type", "bridge")
    _ip("-n", ns, "addr", "add", f"{net.gateway}/24", "dev", "cni0")
    _ip("-n", ns, "link", "set", "cni0", "up")
    # Local traffic to a ClusterIP needs a route before kube-proxy's DNAT rewrites it.
    _ip("-n", ns, "route", "add", service_cidr, "via", net.host_ip, "dev", net.node_veth)
    # The host answers pods (the API server's replies) through the node's namespace.
    _ip("route", "add", net.pod_subnet, "via", net.node_ip, "dev", net.host_veth)
    # Inside the node's namespace only: pod -> Service -> host API server, pod -> Service -> pod.
    subprocess.run(net.in_netns(["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]), check=True)


def _delete_network(net: NodeNet) -> None:
    # Deleting the namespace removes the veth pair (both ends), the bridge, the route and every
    # iptables rule and chain the kubelet and kube-proxy made there.
    if net.netns_path.exists():
        subprocess.run(["ip", "netns", "delete", net.netns], capture_output=True)
    if Path(f"/sys/class/net/{net.host_veth}").exists():
        subprocess.run(["ip", "link", "delete", net.host_veth], capture_output=True)


# --- configuration files ------------------------------------------------------------------------


def _containerd_config(net: NodeNet, node_dir: Path, pause_image: str) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{net.image_store}"
state = "{node_dir / "containerd" / "state"}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{net.containerd_socket}"

[ttrpc]
  address = "{net.run_dir / "containerd.ttrpc.sock"}"

[metrics]
  address = ""

[{cri}]
  sandbox_image = "{pause_image}"
  # Root on some VMs lacks CAP_SYS_RESOURCE: never ask runc for a lower oom_score_adj than ours.
  restrict_oom_score_adj = true
  enable_selinux = false
  # The streaming server (exec, attach) listens on the node namespace's own loopback.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{net.run_dir / "runc"}"

[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{node_dir / "cni" / "net.d"}"
"""


def _cni_config(net: NodeNet, node_dir: Path, service_cidr: str) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": net.network_name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": net.pod_subnet, "gateway": net.gateway}]],
                    # Services, and the API server's own address (so it can reach pods: the
                    # service proxy, webhooks); no default route.
                    "routes": [
                        {"dst": service_cidr, "gw": net.gateway},
                        {"dst": f"{net.host_ip}/32", "gw": net.gateway},
                    ],
                    "dataDir": str(node_dir / "cni" / "ipam"),
                },
            }
        ],
    }


def _kubelet_config(net: NodeNet, node_dir: Path, pki: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(pki / "real-node.crt"),
        "tlsPrivateKeyFile": str(pki / "real-node.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": net.cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{net.containerd_socket}",
        "clusterDNS": [CLUSTER_DNS_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        # No host resolver settings leak into pods.
        "resolvConf": "",
        "podLogsDir": str(node_dir / "pod-logs"),
        # Imported images cannot be pulled again: never collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # A busy developer disk must not evict test pods.
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "registerWithTaints": [TAINT],
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
    }


def _kube_proxy_config(net: NodeNet, kubeconfig: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "hostnameOverride": NODE_NAME,
        "bindAddress": net.node_ip,
        # Fixed ports on the node namespace's own loopback (port 0 is refused).
        # Health on the node's veth address, where `up` polls it; metrics on the namespace's loopback.
        "healthzBindAddress": f"{net.node_ip}:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "clusterCIDR": net.pod_subnet,
        # NodePorts only on the pod bridge, never anywhere else.
        "nodePortAddresses": [net.pod_subnet],
        # The conntrack table's size is machine-wide: leave it and the timeouts as they are.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }


def _corefile(net: NodeNet, kubeconfig: Path) -> str:
    # Cluster names only; anything else is refused (no forward plugin: no query leaves the machine).
    return f"""{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{
    bind {net.gateway}
    ready {net.gateway}:8181
    errors
    cache 5
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} flowrun-dev
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
"""


# --- start -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeFiles:
    """What `prepare` wrote: the argv of each component, ready to start."""

    argv: dict[str, list[str]]
    images: dict[str, Path]


def cgroup_hierarchies() -> list[Path]:
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # cgroup v2 only
        return [root]
    return [path for path in sorted(root.iterdir()) if path.is_dir() and not path.is_symlink()]


def _make_cgroup_root(net: NodeNet) -> None:
    """The kubelet's cgroup root in every hierarchy (the kubelet wants it to exist)."""
    for hierarchy in cgroup_hierarchies():
        path = hierarchy / net.cgroup_root.lstrip("/")
        path.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":
            for name in ("cpuset.cpus", "cpuset.mems"):
                (path / name).write_text((hierarchy / name).read_text())


def _remove_cgroups(net: NodeNet) -> None:
    for hierarchy in cgroup_hierarchies():
        top = hierarchy / net.cgroup_root.lstrip("/")
        if not top.is_dir():
            continue
        # Children first; a cgroup directory goes with rmdir once it has no tasks and no children.
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def local_images() -> tuple[dict[str, Path], str]:
    """The images to import (built, or reused, by the dev cluster's image builder) and the pause
    image's reference."""
    try:
        built = images.build_images()
    except Exception as error:  # the builder's own errors: name them in `up`'s one-line failure
        raise NodeError(f"building the real node's images failed: {error}") from error
    return built, images.PAUSE_IMAGE


def prepare(
    net: NodeNet, root: Path, bins: Path, service_cidr: str, api_server: str, tokens: dict[str, str]
) -> NodeFiles:
    """Write every file of the node (configs, kubeconfigs) and return the argv of its components."""
    from devcluster.cluster import write_kubeconfig  # here: cluster imports this module

    node_dir = root / "node"
    pki = root / "pki"
    for sub in ("cni/net.d", "cni/ipam", "pod-logs", "containerd"):
        (node_dir / sub).mkdir(parents=True, exist_ok=True)
    net.run_dir.mkdir(parents=True, exist_ok=True)
    archives, pause_image = local_images()
    (node_dir / "containerd.toml").write_text(_containerd_config(net, node_dir, pause_image))
    (node_dir / "cni" / "net.d" / "10-flowrun.conflist").write_text(
        json.dumps(_cni_config(net, node_dir, service_cidr), indent=2)
    )
    kubeconfigs = {}
    for user in ("kubelet", "kube-proxy", "coredns"):
        kubeconfigs[user] = node_dir / f"{user}.kubeconfig"
        write_kubeconfig(kubeconfigs[user], api_server, pki / "ca.crt", user, tokens[user])
    (node_dir / "kubelet.yaml").write_text(json.dumps(_kubelet_config(net, node_dir, pki), indent=2))
    (node_dir / "kube-proxy.yaml").write_text(json.dumps(_kube_proxy_config(net, kubeconfigs["kube-proxy"]), indent=2))
    (node_dir / "Corefile").write_text(_corefile(net, kubeconfigs["coredns"]))
    argv = {
        "containerd": net.in_netns(["containerd", f"--config={node_dir / 'containerd.toml'}", "--log-level=warn"]),
        "kubelet": net.in_netns(
            [
                str(bins / "kubelet"),
                f"--config={node_dir / 'kubelet.yaml'}",
                f"--kubeconfig={kubeconfigs['kubelet']}",
                # Under the short run dir: the kubelet makes unix sockets in it (pod-resources,
                # plugins), and a socket path longer than 107 bytes cannot be bound.
                f"--root-dir={net.run_dir / 'kubelet'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={net.node_ip}",
                f"--node-labels={LABEL}=true",
                "--v=1",
            ]
        ),
        "kube-proxy": net.in_netns([str(bins / "kube-proxy"), f"--config={node_dir / 'kube-proxy.yaml'}", "--v=1"]),
        "coredns": net.in_netns([str(bins / "coredns"), "-conf", str(node_dir / "Corefile")]),
    }
    _make_cgroup_root(net)
    return NodeFiles(argv=argv, images=archives)


def ctr(net: NodeNet, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", f"--address={net.containerd_socket}", "--namespace=k8s.io", "--connect-timeout=5s", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def containerd_ready(net: NodeNet) -> bool:
    return net.containerd_socket.exists() and ctr(net, "version", timeout=10).returncode == 0


def import_images(net: NodeNet, archives: dict[str, Path]) -> None:
    """Import each archive unless the image store already holds that very archive's image (the
    builder's archive paths change with their content)."""
    record = net.image_store / "flowrun-imported.json"
    try:
        imported: dict[str, str] = json.loads(record.read_text())
    except (OSError, ValueError):
        imported = {}
    present = set(ctr(net, "images", "list", "--quiet", timeout=30).stdout.split())
    for reference, archive in archives.items():
        if imported.get(reference) == str(archive) and reference in present:
            continue
        result = ctr(net, "images", "import", str(archive))
        if result.returncode != 0:
            raise NodeError(f"importing {reference} from {archive} failed: {result.stderr.strip()}")
        imported[reference] = str(archive)
        record.write_text(json.dumps(imported, indent=2))


def purge_containers(net: NodeNet) -> None:
    """Delete every container (and its task and snapshot) from the kept image store: at `up` the
    leftovers of a crashed run, at `down` what the kubelet had not collected yet."""
    for container in _containers(net):
        ctr(net, "tasks", "kill", "--signal=SIGKILL", container, timeout=20)
        ctr(net, "tasks", "delete", "--force", container, timeout=20)
        ctr(net, "containers", "delete", container, timeout=20)


def api_objects(net: NodeNet) -> list[tuple[str, dict[str, Any]]]:
    """RBAC for the node's components, and the cluster DNS Service (POST path, body)."""

    def binding(name: str, role: str, kind: str, subject: str) -> tuple[str, dict[str, Any]]:
        return (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": subject}],
            },
        )

    coredns_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "flowrun-devcluster:coredns"},
        "rules": [
            {"apiGroups": [""], "resources": ["services", "namespaces"], "verbs": ["list", "watch"]},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
        ],
    }
    dns_ports = [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]
    return [
        # No Node authorizer here: the kubelet's group gets the role that authorizer would grant.
        binding("flowrun-devcluster:nodes", "system:node", "Group", "system:nodes"),
        binding("flowrun-devcluster:kube-proxy", "system:node-proxier", "User", "system:kube-proxy"),
        ("/apis/rbac.authorization.k8s.io/v1/clusterroles", coredns_role),
        binding("flowrun-devcluster:coredns", "flowrun-devcluster:coredns", "User", "system:coredns"),
        # `kube-dns` as on any cluster, at the kubelet's clusterDNS address; without a selector, its
        # one endpoint is CoreDNS on the pod bridge's gateway.
        (
            "/api/v1/namespaces/kube-system/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
                "spec": {"clusterIP": CLUSTER_DNS_IP, "ports": [dict(p, targetPort=53) for p in dns_ports]},
            },
        ),
        (
            "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices",
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "kube-dns-devcluster",
                    "namespace": "kube-system",
                    "labels": {
                        "kubernetes.io/service-name": "kube-dns",
                        "endpointslice.kubernetes.io/managed-by": "devcluster.flowrun.dev",
                    },
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [net.gateway], "conditions": {"ready": True}}],
                "ports": dns_ports,
            },
        ),
    ]


def node_ready(node: dict[str, Any]) -> bool:
    conditions = node.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def coredns_ready(net: NodeNet) -> bool:
    with urllib.request.urlopen(f"http://{net.gateway}:8181/ready", timeout=2) as response:
        return bool(response.status == 200)


def kube_proxy_healthy(net: NodeNet) -> bool:
    with urllib.request.urlopen(f"http://{net.node_ip}:10256/healthz", timeout=2) as response:
        return bool(response.status == 200)


# --- stop -------------------------------------------------------------------------------------------


def pods_on_node(api: Any) -> list[dict[str, Any]]:
    status, body = api.request("GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{NODE_NAME}")
    return body["items"] if status == 200 else []


def drain(api: Any, timeout: float = 60.0) -> None:
    """Delete every pod on the node while the kubelet still runs, so it stops their containers and
    the CNI plugin tears their networks down; controllers cannot put new ones there (cordoned)."""
    status, _ = api.request("GET", f"/api/v1/nodes/{NODE_NAME}")
    if status != 200:
        return
    api.request(
        "PATCH",
        f"/api/v1/nodes/{NODE_NAME}",
        {"spec": {"unschedulable": True}},
        content_type="application/strategic-merge-patch+json",
    )
    for pod in pods_on_node(api):
        meta = pod["metadata"]
        api.request(
            "DELETE",
            f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
            {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 1},
        )
    deadline = time.monotonic() + timeout
    while pods_on_node(api) and time.monotonic() < deadline:
        time.sleep(0.2)


def _containers(net: NodeNet) -> list[str]:
    if not net.containerd_socket.exists():
        return []
    result = ctr(net, "containers", "list", "--quiet", timeout=20)
    return result.stdout.split() if result.returncode == 0 else []


def _netns_of(net: NodeNet, container: str) -> str | None:
    result = ctr(net, "containers", "info", container, timeout=20)
    with contextlib.suppress(ValueError, KeyError, TypeError):
        for namespace in json.loads(result.stdout)["Spec"]["linux"]["namespaces"]:
            if namespace["type"] == "network" and namespace.get("path"):
                return str(namespace["path"])
    return None


def before_stop(net: NodeNet) -> dict[str, Any]:
    """While containerd still runs: what its containers hold outside the state directory; then
    delete them (the image store outlives the cluster, its containers must not)."""
    containers = _containers(net)
    netns = {path for c in containers if (path := _netns_of(net, c))}
    purge_containers(net)
    return {"containers": containers, "netns": sorted(netns)}


def _shim_pids(net: NodeNet) -> list[int]:
    """containerd-shim processes of this node's containerd (re-parented to init once it stops),
    told apart from any other containerd's by the socket address on their command line."""
    pids = []
    marker = str(net.containerd_socket).encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and marker in argv:
            pids.append(int(proc.name))
    return pids


def _stop_shims(net: NodeNet) -> None:
    pids = _shim_pids(net)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def mounts_under(paths: list[Path]) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == str(p) or point.startswith(str(p) + "/") for p in paths):
            points.append(point)
    return points


def _unmount_all(paths: list[Path]) -> None:
    for _ in range(5):  # stacked mounts (the kubelet bind-mounts its root onto itself) need rounds
        points = mounts_under(paths)
        if not points:
            return
        for point in sorted(points, key=lambda p: p.count("/"), reverse=True):
            subprocess.run(["umount", "--lazy", point], capture_output=True)


def _shim_socket(net: NodeNet, container: str) -> Path:
    # containerd 1.6 names a shim's socket by a hash of its own address, namespace and task id.
    digest = hashlib.sha256(f"{net.containerd_socket}/k8s.io/{container}".encode()).hexdigest()
    return Path("/run/containerd/s") / digest


def cleanup(net: NodeNet, root: Path, held: dict[str, Any]) -> None:
    """After the node's processes stopped: everything they left outside their processes."""
    _stop_shims(net)
    for container in held.get("containers", []):
        _shim_socket(net, container).unlink(missing_ok=True)
    _remove_if_empty(Path("/run/containerd/s"), Path("/run/containerd"))
    _unmount_all([root, net.run_dir, net.image_store])
    for path in held.get("netns", []):
        subprocess.run(["umount", "--lazy", path], capture_output=True)
        Path(path).unlink(missing_ok=True)
    _delete_network(net)
    for link in LEGACY_CONTAINER_LOGS.glob("*.log") if LEGACY_CONTAINER_LOGS.is_dir() else []:
        with contextlib.suppress(OSError):
            if os.readlink(link).startswith(str(root) + "/"):
                link.unlink()
    for cached in (CNI_CACHE / "results").glob(f"{net.network_name}-*"):
        cached.unlink(missing_ok=True)
    _remove_if_empty(CNI_CACHE / "results", CNI_CACHE, LEGACY_CONTAINER_LOGS)
    _remove_cgroups(net)
    _release_slot(net)


def _remove_if_empty(*directories: Path) -> None:
    """Directories the node's programs create at fixed places: removed only when nothing else
    (another node, another program) has files there."""
    for directory in directories:
        with contextlib.suppress(OSError):
            directory.rmdir()


def leftovers(net: NodeNet, root: Path) -> list[str]:
    """What of the node is still on the machine (for `down`'s own check and for tests)."""
    found = []
    found += [f"process {pid} (containerd-shim)" for pid in _shim_pids(net)]
    found += [f"mount {point}" for point in mounts_under([root, net.run_dir, net.image_store])]
    if net.netns_path.exists():
        found.append(f"network namespace {net.netns}")
    if Path(f"/sys/class/net/{net.host_veth}").exists():
        found.append(f"interface {net.host_veth}")
    for hierarchy in cgroup_hierarchies():
        if (hierarchy / net.cgroup_root.lstrip("/")).exists():
            found.append(f"cgroup {hierarchy / net.cgroup_root.lstrip('/')}")
    if _slot_file(net.slot).exists():
        found.append(f"slot file {_slot_file(net.slot)}")
    return found
