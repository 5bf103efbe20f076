"""Container images for the dev cluster's real node, made on this machine: no registry, no Docker.

Each image is made in a private buildah storage under the cache root and exported as a
docker-archive tarball, which `ctr -n k8s.io images import` loads into containerd:

- pause: the sandbox process (``devcluster/go/pause``) alone in an empty root;
- shell: busybox-static and its applet links, for simple test pods;
- python-dask: a minimal Debian root (debootstrap) with Python 3, Dask distributed, pandas and pyarrow;
- flowrun-operator: the project's ``Dockerfile``, built on python-dask instead of the public base.

Archives are cached under ``<cache root>/images/<name>-<content key>/image.tar``. The key covers
every input of the image's recipe (files, package versions, the base image's key), so a changed
input rebuilds that image and those built on it, and nothing else. References carry a fixed,
non-``latest`` tag naming what is inside; pods use them with ``imagePullPolicy: Never`` (or
``IfNotPresent``), and the node imports the archives before they are used.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from devcluster import build
from devcluster.paths import cache_root

REPO = Path(__file__).resolve().parent.parent
RECIPES = Path(__file__).resolve().parent / "images"
REFERENCE_DOMAIN = "flowrun.local"
# The label every image carries with its content key: a base image in the buildah storage is
# reused only if it is the build of the current key.
KEY_LABEL = "dev.flowrun.image-key"
# Bump when a build step below changes what an image holds (its other inputs are hashed).
BUILD_REVISION = "4"

_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def reference(name: str, tag: str) -> str:
    """The reference of a locally made image: ``flowrun.local/<name>:<tag>``, never ``latest``
    (a ``latest`` tag makes the kubelet's default pull policy Always, and there is no registry)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"image name {name!r}: lower-case letters, digits and . _ - separators only")
    if not _TAG.fullmatch(tag) or tag == "latest":
        raise ValueError(f"image tag {tag!r}: a version (not 'latest'), at most 128 of A-Z a-z 0-9 _ . -")
    return f"{REFERENCE_DOMAIN}/{name}:{tag}"


# Tags name what is inside: the pause program's version, busybox's, Dask distributed's and the
# project's. The builds check them against the packages they find.
PAUSE_IMAGE = reference("pause", "1.0")
SHELL_IMAGE = reference("shell", "1.35.0")
DASK_IMAGE = reference("python-dask", "2022.12.1")
OPERATOR_IMAGE = reference("flowrun-operator", "0.1.0")

# What the builds run, from Debian: buildah (daemonless image builds), debootstrap (the Python
# image's root), busybox-static (the shell image's one binary).
DEBIAN_PACKAGES = ("buildah", "debootstrap", "busybox-static")
_TOOLS = {"buildah": "buildah", "debootstrap": "debootstrap", "busybox": "busybox-static", "dpkg-query": "dpkg"}
_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Built:
    reference: str
    archive: Path
    seconds: float
    cached: bool


def content_key(parts: Mapping[str, str | bytes]) -> str:
    """A short hash of labelled inputs; the order of the mapping does not matter."""
    digest = hashlib.sha256()
    for label in sorted(parts):
        value = parts[label]
        data = value.encode() if isinstance(value, str) else value
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()[:16]


def file_parts(root: Path, files: Iterable[Path]) -> dict[str, bytes]:
    """Each file's content (and whether it is executable), labelled by its path under root."""
    parts: dict[str, bytes] = {}
    for path in files:
        mode = b"x" if os.access(path, os.X_OK) else b"-"
        parts[f"file:{path.relative_to(root).as_posix()}"] = mode + path.read_bytes()
    return parts


def operator_context_files(repo: Path = REPO) -> list[Path]:
    """What the operator image is built from: the Dockerfile and the files it copies."""
    files = [repo / name for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")]
    for path in sorted((repo / "operator").rglob("*")):
        relative = path.relative_to(repo).parts
        generated = "__pycache__" in relative or any(part.endswith(".egg-info") for part in relative)
        if path.is_file() and not generated and path.suffix != ".pyc":
            files.append(path)
    return files


def archive_path(name: str, key: str) -> Path:
    return images_root() / f"{name}-{key}" / "image.tar"


def images_root() -> Path:
    return cache_root() / "images"


def upstream_version(debian_version: str) -> str:
    """``1:1.35.0-4+deb12u1`` -> ``1.35.0``; ``2022.12.1+ds.1-3`` -> ``2022.12.1``."""
    version = debian_version.split(":", 1)[-1]
    version = version.rsplit("-", 1)[0] if "-" in version else version
    return re.split(r"[+~]", version, maxsplit=1)[0]


def recipe_lines(path: Path) -> list[str]:
    """A recipe list: one entry a line, ``#`` comments."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _tag(ref: str) -> str:
    return ref.rsplit(":", 1)[1]


def _name(ref: str) -> str:
    return ref.rsplit(":", 1)[0].rsplit("/", 1)[1]


def _run(command: list[str], what: str, env: Mapping[str, str] | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-25:])
        raise ImageError(f"{what} failed (exit {done.returncode}):\n{tail}")
    return str(done.stdout).strip()


class Buildah:
    """buildah on a storage of its own under the cache root, with chroot isolation (no daemon,
    no runtime, nothing under the machine's own container storage)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = dict(os.environ, BUILDAH_ISOLATION="chroot")

    def command(self, *args: str) -> list[str]:
        storage = ["--root", str(self.root / "storage"), "--runroot", str(self.root / "run")]
        return ["buildah", *storage, "--storage-driver", "overlay", *args]

    def __call__(self, *args: str, what: str = "") -> str:
        return _run(self.command(*args), what or f"buildah {args[0]}", env=self.env)

    def attempt(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run without raising: for look-ups and clean-ups whose failure is an answer."""
        return subprocess.run(self.command(*args), capture_output=True, text=True, check=False, env=self.env)

    def label(self, ref: str) -> str | None:
        """The content key an image in the storage was built from, or None if it is not there."""
        done = self.attempt("inspect", "--type", "image", ref)
        if done.returncode != 0:
            return None
        labels = json.loads(done.stdout).get("OCIv1", {}).get("config", {}).get("Labels") or {}
        return labels.get(KEY_LABEL)

    @contextlib.contextmanager
    def scratch(self, name: str) -> Iterator[tuple[str, Path]]:
        """A working container from an empty image, mounted: (container, its root on the host)."""
        self.attempt("rm", name)  # a container left by an interrupted build
        container = self("from", "--name", name, "scratch")
        try:
            yield container, Path(self("mount", container))
        finally:
            self.attempt("rm", container)

    def commit(self, container: str, ref: str, key: str, config: list[str]) -> None:
        self("config", "--label", f"{KEY_LABEL}={key}", *config, container)
        self("commit", "--quiet", container, ref)

    def export(self, ref: str, archive: Path) -> None:
        """Write the image as a docker-archive, atomically (an interrupted export never looks done)."""
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_name(archive.name + ".partial")
        partial.unlink(missing_ok=True)
        self("push", "--quiet", ref, f"docker-archive:{partial}:{ref}")
        partial.rename(archive)


# --- The images' inputs (what their content keys cover) ---


def _installed_version(package: str) -> str:
    version = _run(["dpkg-query", "-W", "-f", "${Version}", package], f"dpkg-query {package}")
    if not version:
        raise ImageError(f"Debian package {package} is not installed: run `python -m devcluster images --install-deps`")
    return version


def _candidate_versions(packages: list[str]) -> dict[str, str]:
    """What apt would install for each package (the Python image's debootstrap uses the same suite)."""
    text = _run(["apt-cache", "policy", *packages], "apt-cache policy")
    versions: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        if not line.startswith(" "):
            current = line.rstrip(":")
        elif line.strip().startswith("Candidate:"):
            versions[current] = line.split(":", 1)[1].strip()
    missing = [p for p in packages if versions.get(p, "(none)") == "(none)"]
    if missing:
        raise ImageError(f"no Debian package {', '.join(missing)} on this machine's apt sources (run apt-get update?)")
    return versions


def _pause_module() -> build.GoModule:
    return next(module for module in build.MODULES if module.directory == "pause")


def _go_version() -> str:
    return _run(["go", "env", "GOVERSION"], "go env GOVERSION")


def pause_inputs() -> dict[str, str | bytes]:
    return {"revision": BUILD_REVISION, "ref": PAUSE_IMAGE, "go": build.module_key(_pause_module(), _go_version())}


def shell_inputs() -> dict[str, str | bytes]:
    version = _installed_version("busybox-static")
    if upstream_version(version) != _tag(SHELL_IMAGE):
        raise ImageError(
            f"busybox-static is {version}: set SHELL_IMAGE's tag in devcluster/images.py to {upstream_version(version)}"
        )
    return {"revision": BUILD_REVISION, "ref": SHELL_IMAGE, "busybox-static": version}


def _suite() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip('"')
    raise ImageError("/etc/os-release names no VERSION_CODENAME: the Python image is debootstrapped from that suite")


def dask_inputs() -> dict[str, str | bytes]:
    packages = recipe_lines(RECIPES / "dask-packages.txt")
    versions = _candidate_versions(packages)
    distributed = upstream_version(versions["python3-distributed"])
    if distributed != _tag(DASK_IMAGE):
        raise ImageError(f"Debian's python3-distributed is {distributed}: set DASK_IMAGE's tag in devcluster/images.py")
    recipe = [RECIPES / name for name in ("dask-packages.txt", "dask-requirements.txt", "check-dask")]
    return {
        "revision": BUILD_REVISION,
        "ref": DASK_IMAGE,
        "suite": _suite(),
        "machine": platform.machine(),
        "versions": json.dumps(versions, sort_keys=True),
        **file_parts(RECIPES, recipe),
    }


def operator_inputs(base_key: str) -> dict[str, str | bytes]:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    if version != _tag(OPERATOR_IMAGE):
        raise ImageError(f"the project's version is {version}: set OPERATOR_IMAGE's tag in devcluster/images.py")
    return {
        "revision": BUILD_REVISION,
        "ref": OPERATOR_IMAGE,
        "base": f"{DASK_IMAGE}@{base_key}",
        **file_parts(REPO, operator_context_files()),
    }


# --- The builds ---


def _fill_pause(root: Path) -> None:
    module = _pause_module()
    target = build.module_bin_dir(module, _go_version())
    if not target.is_dir():
        # This module only: the images need not wait for the cluster's binaries.
        build._build_module(module, target)
    shutil.copy2(target / "pause", root / "pause")


def _fill_shell(root: Path) -> None:
    files = _run(["dpkg-query", "-L", "busybox-static"], "dpkg-query -L busybox-static").splitlines()
    busybox = next(Path(f) for f in files if f.endswith("/bin/busybox"))
    for directory in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "root", "var"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(busybox, root / "bin" / "busybox")
    # What `busybox --install -s` does, without running busybox inside a root that has no /proc.
    for applet in _run([str(busybox), "--list-full"], "busybox --list-full").splitlines():
        link = root / applet
        if applet != "bin/busybox" and not link.exists():
            link.symlink_to("/bin/busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")


def debian_mirror(suite: str) -> str:
    """The machine's configured Debian mirror for the suite, as apt reads its sources."""
    listed = _run(
        ["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE) $(COMPONENT)", "Identifier: Packages"],
        "apt-get indextargets",
    )
    return mirror_for(listed, suite)


def mirror_for(listed: str, suite: str) -> str:
    """The repository of ``suite``'s main component in ``apt-get indextargets`` lines (URI, release, component)."""
    for line in listed.splitlines():
        uri, release, component = line.split()
        if release == suite and component == "main":
            return uri
    raise ImageError(f"no apt source for Debian {suite} main on this machine (see /etc/apt/sources.list*)")


# Nothing the image runs needs these: documentation, package caches, logs, device nodes (the
# runtime makes /dev), and the build machine's host name and DNS settings (the runtime mounts its own).
_TRIM = (
    "etc/hostname",
    "etc/resolv.conf",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "var/cache/apt",
    "var/cache/debconf",
    "var/lib/apt/lists",
    "var/log",
    "dev",
    "debootstrap",
)


# pyarrow's optional parts this image leaves out (a third of the wheel): Arrow Flight (RPC),
# Substrait plans and the Plasma store. Their modules go too, so importing one fails plainly.
_PYARROW_LEFT_OUT = ("flight", "substrait", "plasma")


def _trim_python(site: Path) -> None:
    """Remove the packages' test suites, pyarrow's build-time files (C++ headers and sources,
    Cython sources) and its optional parts."""
    for tests in sorted(site.rglob("tests"), reverse=True):
        if tests.is_dir():
            shutil.rmtree(tests)
    pyarrow = site / "pyarrow"
    if pyarrow.is_dir():
        for build_time in ("include", "includes", "src"):
            shutil.rmtree(pyarrow / build_time, ignore_errors=True)
        for pattern in ("*.pyx", "*.pxd", "*.pxi", *(f"*{part}*" for part in _PYARROW_LEFT_OUT)):
            for path in pyarrow.glob(pattern):
                path.unlink()


def _fill_dask(root: Path) -> None:
    packages = recipe_lines(RECIPES / "dask-packages.txt")
    suite = _suite()
    debs = images_root() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "debootstrap", "--variant=minbase", f"--include={','.join(packages)}", f"--cache-dir={debs}",
            "--components=main", suite, str(root), debian_mirror(suite),
        ],
        "debootstrap of the Python image",
    )  # fmt: skip
    python = os.readlink(root / "usr" / "bin" / "python3")  # python3.11
    version = python.removeprefix("python")
    site = root / "usr" / "local" / "lib" / python / "dist-packages"
    # pip on this machine (its own configuration) fetches wheels for the image's Python and
    # platform; numpy, their only dependency, is Debian's.
    _run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--only-binary=:all:", "--no-compile",
            "--implementation", "cp", "--python-version", version, "--abi", f"cp{version.replace('.', '')}",
            "--platform", f"manylinux2014_{platform.machine()}", "--target", str(site),
            "--requirement", str(RECIPES / "dask-requirements.txt"),
        ],
        "pip install of the Python image's wheels",
    )  # fmt: skip
    for trimmed in (root / path for path in _TRIM):
        if trimmed.is_dir() and not trimmed.is_symlink():
            shutil.rmtree(trimmed)
        else:
            trimmed.unlink(missing_ok=True)
    _trim_python(root / "usr" / "lib" / "python3" / "dist-packages")
    _trim_python(site)
    (root / "dev").mkdir()
    (root / "var" / "log").mkdir()
    # Bytecode now, by the image's own Python: the root file system is read-only at run time.
    _run(["chroot", str(root), "python3", "-m", "compileall", "-q", f"/usr/local/lib/{python}"], "compileall")


def _build_rootfs(
    buildah: Buildah, ref: str, key: str, fill: Callable[[Path], None], config: list[str], archive: Path
) -> None:
    with buildah.scratch(f"flowrun-{_name(ref)}-{key}") as (container, root):
        fill(root)
        buildah.commit(container, ref, key, config)
    buildah.export(ref, archive)


def _check_dask(buildah: Buildah, key: str) -> str:
    """Run the image's own check (Dask's scheduler and worker, a Parquet round trip) in it."""
    name = f"flowrun-check-{key}"
    container = buildah("from", "--pull=never", "--name", name, DASK_IMAGE)
    try:
        return buildah(
            "run", "-v", f"{RECIPES / 'check-dask'}:/check-dask:ro", container, "--", "python3", "/check-dask",
            what="the Python image's check (devcluster/images/check-dask)",
        )  # fmt: skip
    finally:
        buildah("rm", container)


def pip_settings(listed: str) -> dict[str, dict[str, str]]:
    """pip's effective settings from ``pip config list`` output, by pip.conf section. Environment
    settings (``:env:``) apply to every command and win over files, as they do for pip itself."""
    settings: dict[str, dict[str, str]] = {}
    for line in sorted(listed.splitlines(), key=lambda entry: entry.startswith(":env:")):
        name, _, raw = line.partition("=")
        section, _, option = name.rpartition(".")
        settings.setdefault("global" if section == ":env:" else section, {})[option] = str(ast.literal_eval(raw))
    return settings


def pip_mounts(settings: Mapping[str, Mapping[str, str]], pip_conf: Path) -> list[str]:
    """``-v`` options: the pip.conf, and the local paths the settings name (a CA bundle, a wheel
    directory) at the same place, read-only."""
    mounts = [f"{pip_conf}:/etc/pip.conf:ro"]
    for options in settings.values():
        for value in options.values():
            for word in value.split():
                if word.startswith("/") and Path(word).exists():
                    mounts.append(f"{word}:{word}:ro")
    return [option for mount in dict.fromkeys(mounts) for option in ("-v", mount)]


def pip_passthrough(work: Path) -> list[str]:
    """What gives the build's pip this machine's pip configuration (how it reaches the package
    index), without naming any of it in the Dockerfile."""
    settings = pip_settings(_run([sys.executable, "-m", "pip", "config", "list"], "pip config list"))
    config = configparser.ConfigParser(interpolation=None)
    config.read_dict(settings)
    pip_conf = work / "pip.conf"
    with pip_conf.open("w") as handle:
        config.write(handle)
    return pip_mounts(settings, pip_conf)


def _build_operator(buildah: Buildah, key: str, base_key: str, base_archive: Path, work: Path, archive: Path) -> None:
    if buildah.label(DASK_IMAGE) != base_key:
        buildah("pull", "--quiet", f"docker-archive:{base_archive}", what=f"loading {DASK_IMAGE}")
    context = work / "context"
    shutil.rmtree(context, ignore_errors=True)
    for path in operator_context_files():
        target = context / path.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    buildah(
        "build", "--isolation", "chroot", "--pull=never", "--quiet",
        "--build-arg", f"PYTHON_IMAGE={DASK_IMAGE}", "--label", f"{KEY_LABEL}={key}",
        *pip_passthrough(work), "--tag", OPERATOR_IMAGE, "--file", str(context / "Dockerfile"), str(context),
        what="buildah build of the operator image (Dockerfile)",
    )  # fmt: skip
    buildah.export(OPERATOR_IMAGE, archive)


def _missing_tools() -> list[str]:
    return sorted({package for tool, package in _TOOLS.items() if shutil.which(tool) is None})


def install_deps() -> None:
    """Install the Debian packages the builds use (idempotent: nothing happens if all are there)."""
    missing = [
        package
        for package in DEBIAN_PACKAGES
        if subprocess.run(["dpkg-query", "-W", "-f", "${Status}", package], capture_output=True, text=True).stdout
        != "install ok installed"
    ]
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], check=True, env=env)


# Archives kept per image: the most recently used builds (two checkouts at different sources
# reuse theirs); older ones are removed, as an operator image is rebuilt on every source change.
KEEP_ARCHIVES = 2


def _prune_archives(name: str) -> None:
    builds = [path for path in images_root().glob(f"{name}-*") if re.fullmatch(rf"{name}-[0-9a-f]{{16}}", path.name)]
    for stale in sorted(builds, key=lambda path: path.stat().st_mtime, reverse=True)[KEEP_ARCHIVES:]:
        shutil.rmtree(stale)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One build at a time on this machine (two would share the storage and the archives)."""
    images_root().mkdir(parents=True, exist_ok=True)
    with (images_root() / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build_all(verbose: bool = True) -> list[Built]:
    """Build every image that is not cached; each one's reference, archive, time and whether it was cached."""
    missing = _missing_tools()
    if missing:
        raise ImageError(
            f"missing Debian packages {', '.join(missing)}: run `python -m devcluster images --install-deps`"
        )
    results: list[Built] = []

    def step(ref: str, key: str, make: Callable[[Path, Path], None]) -> Path:
        archive = archive_path(_name(ref), key)
        started = time.monotonic()
        if archive.exists():
            os.utime(archive.parent)  # in use: pruning keeps the most recently used builds
            results.append(Built(ref, archive, time.monotonic() - started, cached=True))
        else:
            if verbose:
                print(f"devcluster: building image {ref}", flush=True)
            work = images_root() / "work" / f"{_name(ref)}-{key}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            try:
                make(work, archive)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            results.append(Built(ref, archive, time.monotonic() - started, cached=False))
            _prune_archives(_name(ref))
        if verbose:
            done = results[-1]
            state = "cached" if done.cached else f"built in {done.seconds:.1f}s"
            print(f"devcluster: image {ref} {state} ({archive})", flush=True)
        return archive

    with _locked():
        buildah = Buildah(images_root() / "buildah")
        scratch_config = ["--os", "linux", "--arch", build_arch()]
        pause_key = content_key(pause_inputs())
        step(
            PAUSE_IMAGE,
            pause_key,
            lambda work, archive: _build_rootfs(
                buildah, PAUSE_IMAGE, pause_key, _fill_pause, [*scratch_config, "--entrypoint", '["/pause"]'], archive
            ),
        )
        shell_key = content_key(shell_inputs())
        step(
            SHELL_IMAGE,
            shell_key,
            lambda work, archive: _build_rootfs(
                buildah,
                SHELL_IMAGE,
                shell_key,
                _fill_shell,
                [*scratch_config, "--env", _PATH_ENV, "--cmd", '["sh"]'],
                archive,
            ),
        )
        dask_key = content_key(dask_inputs())

        def make_dask(work: Path, archive: Path) -> None:
            config = [*scratch_config, "--env", _PATH_ENV, "--env", "LANG=C.UTF-8", "--cmd", '["python3"]']
            with buildah.scratch(f"flowrun-python-dask-{dask_key}") as (container, root):
                _fill_dask(root)
                buildah.commit(container, DASK_IMAGE, dask_key, config)
            checked = _check_dask(buildah, dask_key)
            if verbose:
                print(f"devcluster: image {DASK_IMAGE} checked: {checked}", flush=True)
            buildah.export(DASK_IMAGE, archive)

        dask_archive = step(DASK_IMAGE, dask_key, make_dask)
        operator_key = content_key(operator_inputs(dask_key))
        step(
            OPERATOR_IMAGE,
            operator_key,
            lambda work, archive: _build_operator(buildah, operator_key, dask_key, dask_archive, work, archive),
        )
        # Older builds under the same references are left untagged in the storage: drop them.
        buildah("rmi", "--prune", what="buildah rmi --prune")
    return results


def build_arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def build_images() -> dict[str, Path]:
    """Build whatever is missing; image reference -> docker-archive file (for `ctr images import`)."""
    return {built.reference: built.archive for built in build_all(verbose=False)}


def main(install: bool = False) -> int:
    try:
        if install:
            install_deps()
        build_all(verbose=True)
    except (ImageError, build.BuildError, subprocess.CalledProcessError) as error:
        print(f"devcluster: images: {error}", file=sys.stderr)
        return 1
    return 0
