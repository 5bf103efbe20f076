"""Where the dev cluster keeps its binaries and its running state (never inside the repository)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Built binaries, keyed by content; shared by every checkout on this machine."""
    override = os.environ.get("FLOWRUN_DEVCLUSTER_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flowrun-devcluster"


def state_dir() -> Path:
    """The running cluster: certificates, kubeconfigs, etcd data, logs, process ids."""
    override = os.environ.get("FLOWRUN_DEVCLUSTER_STATE")
    return Path(override) if override else cache_root() / "cluster"
