"""The kopf wiring: kopf can log in with the operator's registry (a registry of one's own gets no
default login handler, and kopf stops at start without credentials)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import aiohttp
import kopf
import kopf._cogs.clients.api as kopf_api
import pytest
from kopf._cogs.clients.auth import APIContext
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


class RefusingSession:
    """An aiohttp session whose first `failures` requests find the API server away."""

    def __init__(self, failures: int) -> None:
        self.failures, self.requests = failures, 0
        self.closed = False

    async def request(self, **_: Any) -> Any:
        self.requests += 1
        if self.requests <= self.failures:
            raise aiohttp.ClientConnectionError("connection refused")
        return SimpleNamespace(status=200)


class Context:
    def __init__(self, session: RefusingSession) -> None:
        self.server, self.session = "https://10.0.0.1:6443", session

    def add_response(self, response: Any) -> None:
        pass


def test_kopfs_own_requests_wait_for_an_api_server_away_for_longer_than_its_default_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # kopf's discovery at start failing stops the whole operator: an operator started during an
    # outage must outwait it, as its passes do. Sleeps are skipped; 30 failures are minutes of them.
    async def no_sleep(_: float) -> None:
        return None

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    settings = kopf.OperatorSettings()
    settings.networking.error_backoffs = wiring.RetryForever()
    for _ in range(2):  # each request iterates the backoffs afresh
        session = RefusingSession(failures=30)
        response = asyncio.run(
            kopf_api.request(
                "get",
                "/api",
                settings=settings,
                logger=logging.getLogger("test"),
                context=cast(APIContext, Context(session)),
            )
        )
        assert response.status == 200 and session.requests == 31
    # kopf's default gives up before: the operator would stop.
    with pytest.raises(aiohttp.ClientConnectionError):
        asyncio.run(
            kopf_api.request(
                "get",
                "/api",
                settings=kopf.OperatorSettings(),
                logger=logging.getLogger("test"),
                context=cast(APIContext, Context(RefusingSession(failures=30))),
            )
        )
