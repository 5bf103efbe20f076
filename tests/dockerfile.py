"""The Dockerfile read as instructions, for the tests of its properties and of its build step."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined, comments dropped), split by FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            found.append([])
        if found:
            found[-1].append(line)
    return found


def copied_sources() -> list[str]:
    """What the builder stage copies from the build context (COPY <sources...> <dest>)."""
    sources: list[str] = []
    for line in stages()[0]:
        if line.upper().startswith("COPY ") and "--from" not in line:
            sources += line.split()[1:-1]
    return sources
