"""The kopf wiring: kopf can log in with the operator's registry (a registry of one's own gets no
default login handler, and kopf stops at start without credentials)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import kopf
import pytest
from kubernetes.config import kube_config

from flowrun.controller import wiring

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://10.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: secret-token}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


def test_kopf_logs_in_with_the_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    # The client library reads $KUBECONFIG once, when imported: point its default there instead.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    # kopf keeps its activity handlers internally; the login ones are what kopf starts with.
    handlers = wiring.REGISTRY._activities.get_all_handlers()
    logins = [h.fn for h in handlers if h.activity is not None and h.activity.name == "AUTHENTICATION"]
    assert len(logins) == 1
    login: Any = logins[0]
    info = login(logger=logging.getLogger("test"), settings=kopf.OperatorSettings())
    assert isinstance(info, kopf.ConnectionInfo)
    assert (info.server, info.token) == ("https://10.0.0.1:6443", "secret-token")
