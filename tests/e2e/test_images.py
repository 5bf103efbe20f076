"""The real node's images, built for real (or taken from the cache): each archive is a valid
docker-archive with the expected entrypoint and files, a second build is all cache hits, and a
throwaway containerd (own root, state and socket, started and stopped here) imports every archive
and runs containers from them. Needs no cluster."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devcluster import images
from devcluster.pytest_plugin import wait_for

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Archive:
    manifest: dict[str, Any]
    config: dict[str, Any]
    # Per layer, bottom first: path (without a leading "./") -> entry.
    layers: list[dict[str, tarfile.TarInfo]]

    def files(self) -> dict[str, tarfile.TarInfo]:
        merged: dict[str, tarfile.TarInfo] = {}
        for layer in self.layers:
            merged.update(layer)
        return merged


def read_archive(path: Path) -> Archive:
    with tarfile.open(path) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert len(manifest) == 1, "one image per archive"
        config = json.load(outer.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
        layers = []
        for name in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(name)) as layer:
                layers.append({member.name.removeprefix("./"): member for member in layer.getmembers()})
    return Archive(manifest[0], config, layers)


@pytest.fixture(scope="module")
def archives() -> dict[str, Path]:
    return images.build_images()


@pytest.fixture(scope="module")
def contents(archives: dict[str, Path]) -> dict[str, Archive]:
    return {ref: read_archive(path) for ref, path in archives.items()}


def test_every_image_is_built_into_the_cache_under_its_content_key(
    archives: dict[str, Path], contents: dict[str, Archive]
) -> None:
    assert set(archives) == {images.PAUSE_IMAGE, images.SHELL_IMAGE, images.DASK_IMAGE, images.OPERATOR_IMAGE}
    for ref, path in archives.items():
        assert path.parent.parent == images.images_root()
        archive = contents[ref]
        assert archive.manifest["RepoTags"] == [ref]
        assert archive.config["os"] == "linux" and archive.config["architecture"] == images.build_arch()
        key = archive.config["config"]["Labels"][images.KEY_LABEL]
        assert path.parent.name == f"{ref.rsplit('/', 1)[1].split(':')[0]}-{key}"


def test_a_second_build_is_all_cache_hits(archives: dict[str, Path]) -> None:
    started = time.monotonic()
    again = images.build_all(verbose=False)
    assert [built.cached for built in again] == [True] * 4
    assert {built.reference: built.archive for built in again} == archives
    assert time.monotonic() - started < 10


def test_pause_is_one_static_binary_as_the_entrypoint(contents: dict[str, Archive]) -> None:
    archive = contents[images.PAUSE_IMAGE]
    assert archive.config["config"]["Entrypoint"] == ["/pause"]
    files = archive.files()
    assert files["pause"].isfile() and files["pause"].mode & stat.S_IXUSR
    assert files["pause"].size < 4 * 1024 * 1024
    assert [name for name, entry in files.items() if entry.isfile()] == ["pause"]


def test_shell_has_busybox_and_its_applet_links(contents: dict[str, Archive]) -> None:
    archive = contents[images.SHELL_IMAGE]
    assert archive.config["config"]["Cmd"] == ["sh"]
    files = archive.files()
    assert files["bin/busybox"].isfile()
    for applet in ("bin/sh", "bin/echo", "bin/sleep", "bin/cat"):
        assert files[applet].issym() and files[applet].linkname == "/bin/busybox", applet
    assert files["tmp"].mode & 0o1777 == 0o1777


def test_python_dask_has_dask_pandas_pyarrow_and_no_docs_caches_or_tests(contents: dict[str, Archive]) -> None:
    archive = contents[images.DASK_IMAGE]
    assert archive.config["config"]["Cmd"] == ["python3"]
    files = archive.files()
    for path in (
        "usr/bin/python3",
        "usr/bin/python",
        "usr/bin/pip",
        "usr/bin/dask",
        "usr/lib/python3/dist-packages/distributed/__init__.py",
        "usr/lib/python3/dist-packages/pandas/__init__.py",
        "usr/local/lib/python3.11/dist-packages/pyarrow/parquet/__init__.py",
    ):
        assert path in files, path
    # Bytecode is there already: the root file system is read-only when the image runs.
    assert any(name.startswith("usr/local/lib/python3.11/dist-packages/pyarrow/__pycache__/") for name in files)
    leftovers = [
        name
        for name in files
        if name.startswith(("usr/share/doc/", "var/lib/apt/lists/", "var/cache/apt/", "dev/"))
        or "/tests/" in name
        or "flight" in name.rsplit("/", 1)[-1]
    ]
    assert not leftovers, leftovers[:10]
    assert "etc/hostname" not in files and "etc/resolv.conf" not in files, "the build machine's settings stay out"
    total = sum(entry.size for entry in files.values())
    assert total < 400 * 1024 * 1024, f"{total / 2**20:.0f} MiB"


def test_the_operator_image_is_the_dockerfile_on_the_local_python_base(contents: dict[str, Archive]) -> None:
    archive = contents[images.OPERATOR_IMAGE]
    config = archive.config["config"]
    assert config["Entrypoint"] == ["flowrun", "run"] and config["Cmd"] == ["--all-namespaces"]
    assert config["User"] == "65532:65532"
    base = contents[images.DASK_IMAGE]
    assert archive.manifest["Layers"][: len(base.manifest["Layers"])] == base.manifest["Layers"]
    added = archive.layers[-1]
    assert "opt/flowrun/bin/flowrun" in added
    assert not any(name.startswith(("src/", "wheels/")) for name in added), "the builder stage stays behind"


def test_the_pause_program_ends_on_sigterm_and_reaps_orphans(
    archives: dict[str, Path], contents: dict[str, Archive], tmp_path: Path
) -> None:
    with tarfile.open(archives[images.PAUSE_IMAGE]) as outer:
        layer_name = contents[images.PAUSE_IMAGE].manifest["Layers"][0]
        with tarfile.open(fileobj=outer.extractfile(layer_name)) as layer:
            layer.extract("pause", tmp_path, filter="data")
    pause = tmp_path / "pause"
    # pause as PID 1 of a new PID namespace, with a child it did not start (the shell's `sleep`,
    # inherited through exec): when the child exits, only pause can collect it.
    process = subprocess.Popen(["unshare", "--pid", "--fork", "sh", "-c", f"sleep 1 & exec {pause}"])
    try:
        pid1 = int(wait_for("pause to start in its namespace", lambda: _children(process.pid)[:1])[0])

        def pause_with_its_child() -> bool:
            return Path(f"/proc/{pid1}/exe").resolve() == pause.resolve() and bool(_children(pid1))

        wait_for("pause to run with the inherited child", pause_with_its_child)
        wait_for("the exited child to be reaped", lambda: not _children(pid1), timeout=10)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=0.5)
        os.kill(pid1, signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


# containerd's namespace for this test: also the name of the cgroup it makes for its containers.
NAMESPACE = "flowrun-images-test"


class Containerd:
    """A containerd of the test's own (no CRI, no node), driven with ctr."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.socket = directory / "containerd.sock"
        (directory / "config.toml").write_text(
            "version = 2\n"
            f'root = "{directory / "root"}"\n'
            f'state = "{directory / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt"]\n'
            f'[grpc]\n  address = "{self.socket}"\n'
        )
        self.log = (directory / "containerd.log").open("w")
        self.process = subprocess.Popen(
            ["containerd", "--config", str(directory / "config.toml")], stdout=self.log, stderr=subprocess.STDOUT
        )

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = ["ctr", "--address", str(self.socket), "--namespace", NAMESPACE, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def shims(self) -> list[int]:
        """Processes still holding this containerd's socket path (shims are re-parented to init)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != self.process.pid:
                try:
                    if str(self.directory).encode() in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def _mounts_under(directory: Path) -> list[str]:
    """Mount points a killed task may leave (its root file system), deepest first."""
    points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return sorted((point for point in points if point.startswith(f"{directory}/")), reverse=True)


@pytest.fixture(scope="module")
def containerd(archives: dict[str, Path]) -> Iterator[Containerd]:
    missing = [tool for tool in ("containerd", "ctr", "runc") if shutil.which(tool) is None]
    assert not missing, f"{missing} missing: the real node's Debian packages (containerd, runc) install them"
    # A short path: the socket's must fit in a sockaddr_un.
    directory = Path(tempfile.mkdtemp(prefix="fr-ctd-"))
    daemon = Containerd(directory)
    try:
        wait_for("containerd to answer", lambda: daemon.ctr("version", timeout=5).returncode == 0)
        for path in archives.values():
            imported = daemon.ctr("images", "import", str(path), timeout=300)
            assert imported.returncode == 0, imported.stderr
        yield daemon
        listed = daemon.ctr("containers", "list", "--quiet").stdout.split()
        assert not listed, f"containers left behind: {listed}"
    finally:
        daemon.stop()
        leaked = daemon.shims()
        for pid in leaked:
            os.kill(pid, signal.SIGKILL)
        for mountpoint in _mounts_under(directory):
            subprocess.run(["umount", "--lazy", mountpoint], capture_output=True, check=False)
        shutil.rmtree(directory, ignore_errors=True)
        assert not leaked, f"containerd shims outlived the test: {leaked}"
        # The namespace's cgroup, once its containers' cgroups are gone (rmdir fails otherwise).
        for cgroup in [*Path("/sys/fs/cgroup").glob(NAMESPACE), *Path("/sys/fs/cgroup").glob(f"*/{NAMESPACE}")]:
            cgroup.rmdir()


def test_containerd_imports_every_archive_under_its_reference(
    containerd: Containerd, archives: dict[str, Path]
) -> None:
    listed = containerd.ctr("images", "list", "--quiet").stdout.split()
    assert set(archives) <= set(listed)


def test_a_shell_container_echoes_and_exits_with_its_code(containerd: Containerd) -> None:
    ran = containerd.ctr("run", "--rm", images.SHELL_IMAGE, "shell-echo", "sh", "-c", "echo hello from shell; exit 3")
    assert ran.stdout.strip() == "hello from shell"
    assert ran.returncode == 3


def test_a_pause_container_runs_until_sigterm(containerd: Containerd) -> None:
    command = ["ctr", "--address", str(containerd.socket), "--namespace", NAMESPACE]
    running = subprocess.Popen([*command, "run", "--rm", images.PAUSE_IMAGE, "pause-run"])
    try:
        wait_for("the pause task to run", lambda: "RUNNING" in containerd.ctr("tasks", "list").stdout)
        with pytest.raises(subprocess.TimeoutExpired):
            running.wait(timeout=1)
        killed = containerd.ctr("tasks", "kill", "--signal", "SIGTERM", "pause-run")
        assert killed.returncode == 0, killed.stderr
        assert running.wait(timeout=20) == 0
    finally:
        if running.poll() is None:
            containerd.ctr("tasks", "kill", "--signal", "SIGKILL", "pause-run")
            running.wait(timeout=20)


def test_the_python_image_runs_dask_and_pyarrow(containerd: Containerd) -> None:
    script = "import dask.dataframe, distributed, pyarrow.parquet; print(distributed.__version__, pyarrow.__version__)"
    ran = containerd.ctr("run", "--rm", images.DASK_IMAGE, "python-dask", "python3", "-c", script)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split()[0].startswith(images.DASK_IMAGE.rsplit(":", 1)[1])


def test_the_python_image_runs_a_dask_scheduler_and_worker(containerd: Containerd) -> None:
    """`dask scheduler` and `dask worker` as processes of one container, on its own loopback (the
    container has a network namespace of its own), and a client computing on them."""
    client = (
        "from distributed import Client; client = Client('tcp://127.0.0.1:8786', timeout=60); "
        "client.wait_for_workers(1, timeout=60); print('sum', client.submit(sum, range(10)).result()); "
        "client.shutdown()"
    )
    script = (
        "dask scheduler --host 127.0.0.1 --port 8786 --no-dashboard 2>/tmp/scheduler.log & "
        "dask worker tcp://127.0.0.1:8786 --nthreads 1 --no-dashboard 2>/tmp/worker.log & "
        f'python3 -c "{client}"'
    )
    ran = containerd.ctr("run", "--rm", images.DASK_IMAGE, "dask-cluster", "sh", "-c", script)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "sum 45"


def test_the_operator_runs_as_65532_on_a_read_only_root(containerd: Containerd) -> None:
    ran = containerd.ctr(
        "run", "--rm", "--read-only", images.OPERATOR_IMAGE, "operator-help", "flowrun", "run", "--help"
    )
    assert ran.returncode == 0, ran.stderr
    assert "--metrics-port" in ran.stdout
    user = containerd.ctr("run", "--rm", "--read-only", images.OPERATOR_IMAGE, "operator-id", "id", "-u")
    assert user.stdout.strip() == "65532"
