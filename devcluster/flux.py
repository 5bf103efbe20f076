"""Flux on the dev cluster, for the e2e tests that check what it makes of the operator's objects:
its source-controller and kustomize-controller, built from their Go modules (gitops.FLUX), their
CRDs applied from the same modules, each run as a process of its own watching one namespace; and
a Git repository they fetch from, served over smart HTTP on 127.0.0.1 by `git http-backend`.

Started on demand by the test fixture that needs them and stopped by its teardown (by the
processes' own handles, never by name); every address is 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from devcluster import gitops
from devcluster.ports import free_port

SOURCE_MODULE = "github.com/fluxcd/source-controller"
KUSTOMIZE_MODULE = "github.com/fluxcd/kustomize-controller"
# How often kustomize-controller looks again at a Kustomization whose dependsOn is not Ready yet
# (the controller's default is 30s): the tests measure how soon a dependent follows a run.
REQUEUE_DEPENDENCY = "5s"


# --- the Git repository ------------------------------------------------------------------------


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _cgi_response(raw: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """Split what a CGI program printed into its status, headers and body."""
    end, gap = raw.find(b"\r\n\r\n"), 4
    if end < 0:
        end, gap = raw.find(b"\n\n"), 2
    head, body = (raw, b"") if end < 0 else (raw[:end], raw[end + gap :])
    status, headers = 200, []
    for line in head.decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.split()[0])
        elif name:
            headers.append((name, value.strip()))
    return status, headers, body


class _Backend(BaseHTTPRequestHandler):
    """Each request handed to `git http-backend` as CGI, as a web server would."""

    server: _GitHttpServer

    def do_GET(self) -> None:
        self._backend()

    def do_POST(self) -> None:
        self._backend()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _backend(self) -> None:
        url = urlsplit(self.path)
        body = self._body() if self.command == "POST" else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": url.path,
            "QUERY_STRING": url.query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "SERVER_PROTOCOL": self.request_version,
        }
        for header in ("Content-Encoding", "Git-Protocol"):
            if header in self.headers:
                env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
        done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60)
        status, headers, payload = _cgi_response(done.stdout)
        self.send_response(status if done.returncode == 0 else 500)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        with open(self.server.log, "a") as log:
            log.write(f"{self.address_string()} {format % args}\n")


class _GitHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, log: Path) -> None:
        self.root, self.log = root, log
        super().__init__(("127.0.0.1", 0), _Backend)


class GitServer:
    """A repository `name`.git served read-only at `url` (http://127.0.0.1:PORT/NAME.git, branch
    main), and a working copy next to it that `commit` writes to and pushes from."""

    def __init__(self, root: Path, name: str = "config") -> None:
        self.root = root
        self.bare = root / f"{name}.git"
        self.work = root / "work"
        _git("init", "--quiet", "--bare", "--initial-branch=main", str(self.bare), cwd=root)
        _git("init", "--quiet", "--initial-branch=main", str(self.work), cwd=root)
        for key, value in (("user.name", "flowrun tests"), ("user.email", "tests@flowrun.invalid")):
            _git("config", key, value, cwd=self.work)
        _git("remote", "add", "origin", str(self.bare), cwd=self.work)
        self._server = _GitHttpServer(root, root / "http.log")
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-http", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/{name}.git"

    def commit(self, files: Mapping[str, str | None], message: str) -> str:
        """Write (or, for None, delete) `files` (path -> text), commit and push; the commit's SHA."""
        for path, text in files.items():
            target = self.work / path
            if text is None:
                target.unlink(missing_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
        _git("add", "--all", cwd=self.work)
        _git("commit", "--quiet", "--allow-empty", "-m", message, cwd=self.work)
        _git("push", "--quiet", "origin", "HEAD:main", cwd=self.work)
        return _git("rev-parse", "HEAD", cwd=self.work)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


# --- the controllers ---------------------------------------------------------------------------


def crd_files() -> list[Path]:
    """The CRDs of both controllers, from the modules they are built from."""
    found: list[Path] = []
    for module in (SOURCE_MODULE, KUSTOMIZE_MODULE):
        found += sorted((gitops.module_dir(gitops.FLUX, module) / "config" / "crd" / "bases").glob("*.yaml"))
    return found


def crd_name(path: Path) -> str:
    """`<plural>.<group>` of the CRD in `path`, named as Flux names them: `<group>_<plural>.yaml`."""
    group, _, plural = path.name.removesuffix(".yaml").partition("_")
    return f"{plural}.{group}"


def install_crds(kubectl: Path, kubeconfig: Path) -> None:
    """Apply Flux's CRDs (server-side: they are large) and wait until the API serves them."""
    files = crd_files()
    base = [str(kubectl), f"--kubeconfig={kubeconfig}"]
    subprocess.run(
        [*base, "apply", "--server-side", "--force-conflicts", *(f"--filename={f}" for f in files)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    names = [f"crd/{crd_name(f)}" for f in files]
    subprocess.run(
        [*base, "wait", "--for=condition=Established", "--timeout=60s", *names],
        check=True,
        capture_output=True,
        timeout=90,
    )


class Controller:
    """One controller process, its log, and its health endpoint on 127.0.0.1."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log: Path, health_port: int) -> None:
        self.name, self.argv, self.env, self.log, self.health_port = name, argv, dict(env), log, health_port
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as answer:
                return int(answer.status) == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=15)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class Flux:
    """source-controller and kustomize-controller watching `namespace` only, as the kubeconfig's
    user, with their state under `workdir`."""

    def __init__(self, kubeconfig: Path, namespace: str, workdir: Path) -> None:
        storage = free_port()
        home = workdir / "home"
        (workdir / "storage").mkdir(parents=True, exist_ok=True)
        home.mkdir(parents=True, exist_ok=True)
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "KUBECONFIG": str(kubeconfig)}
        env["RUNTIME_NAMESPACE"] = namespace
        common = ["--watch-all-namespaces=false", "--log-level=info", "--log-encoding=console"]
        self.controllers: list[Controller] = []
        for name, extra in (
            (
                "source-controller",
                [
                    f"--storage-path={workdir / 'storage'}",
                    f"--storage-addr=127.0.0.1:{storage}",
                    f"--storage-adv-addr=127.0.0.1:{storage}",
                ],
            ),
            ("kustomize-controller", [f"--requeue-dependency={REQUEUE_DEPENDENCY}", "--no-remote-bases=true"]),
        ):
            health = free_port()
            argv = [
                str(gitops.binary(gitops.FLUX, name)),
                *common,
                f"--metrics-addr=127.0.0.1:{free_port()}",
                f"--health-addr=127.0.0.1:{health}",
                *extra,
            ]
            self.controllers.append(Controller(name, argv, env, workdir / f"{name}.log", health))

    def start(self, timeout: float = 60.0) -> None:
        """Start both and return once both answer ready; a controller that exits first raises."""
        for controller in self.controllers:
            controller.start()
        deadline = time.monotonic() + timeout
        for controller in self.controllers:
            while not controller.ready():
                if not controller.running():
                    raise RuntimeError(f"{controller.name} exited:\n{controller.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{controller.name} not ready after {timeout:.0f}s:\n{controller.log_tail()}")
                time.sleep(0.2)

    def stop(self) -> None:
        for controller in self.controllers:
            controller.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {c.name}\n{c.log_tail()}" for c in self.controllers)


def git_available() -> str | None:
    """Why `git http-backend` cannot serve here (None when it can)."""
    if shutil.which("git") is None:
        return "no git command"
    exec_path = _git("--exec-path", cwd=Path.cwd())
    return None if (Path(exec_path) / "git-http-backend").exists() else "git has no http-backend"
