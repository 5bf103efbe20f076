"""Kube's discovery of API resources, over the Kubernetes client's real DynamicClient talking to a
fake API server: an unknown kind is refused as UnknownKind (no other error), without fetching the
discovery again on every pass, and a kind served later is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from flowrun.kube import UNKNOWN_KIND_RECHECK_SECONDS, ClusterScopedKind, Kube, UnknownKind
from tests.unit.fake_api_server import FakeApiServer, ServedKind
from tests.unit.fakes import FakeKube, api_error, pod_task

WIDGET = ServedKind("example.com", "v1", "Widget", "widgets")
MANIFEST = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w", "namespace": "team"}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def kube_over(server: FakeApiServer, tmp_path: Path, clock: Clock) -> Kube:
    return Kube(ApiClient(), dynamic=server.dynamic_client(tmp_path), clock=clock)


def test_an_unknown_kind_is_unknown_kind_and_discovery_is_not_fetched_again_on_every_pass(tmp_path: Path) -> None:
    server, clock = FakeApiServer(), Clock()
    kube = kube_over(server, tmp_path, clock)
    with pytest.raises(UnknownKind, match=r"^the API server serves no Widget in example.com/v1$"):
        kube.resource("example.com/v1", "Widget")
    fetches = server.discovery_fetches()
    assert fetches >= 1
    requests = len(server.requests)

    clock.now += UNKNOWN_KIND_RECHECK_SECONDS - 1
    for _ in range(5):  # later passes: the list of children, the dry run
        with pytest.raises(UnknownKind):
            kube.resource("example.com/v1", "Widget")
        with pytest.raises(UnknownKind):
            kube.dry_run_create(MANIFEST)
    assert len(server.requests) == requests, server.requests[requests:]


def test_an_unknown_kind_is_looked_up_again_after_a_while_and_found_once_served(tmp_path: Path) -> None:
    server, clock = FakeApiServer(), Clock()
    kube = kube_over(server, tmp_path, clock)
    with pytest.raises(UnknownKind):
        kube.resource("example.com/v1", "Widget")
    fetches = server.discovery_fetches()

    server.kinds.append(WIDGET)  # its CRD is installed
    clock.now += UNKNOWN_KIND_RECHECK_SECONDS
    assert kube.resource("example.com/v1", "Widget").kind == "Widget"
    assert server.discovery_fetches() == fetches + 1
    kube.dry_run_create(MANIFEST)
    assert server.requests[-1] == ("POST", "/apis/example.com/v1/namespaces/team/widgets")


def test_a_kind_served_after_start_up_is_found_on_its_first_lookup(tmp_path: Path) -> None:
    server, clock = FakeApiServer(), Clock()
    kube = kube_over(server, tmp_path, clock)
    assert kube.resource("apps/v1", "Deployment").kind == "Deployment"
    server.kinds.append(WIDGET)
    assert kube.resource("example.com/v1", "Widget").kind == "Widget"


def test_known_kinds_are_looked_up_once(tmp_path: Path) -> None:
    server, clock = FakeApiServer(), Clock()
    kube = kube_over(server, tmp_path, clock)
    for _ in range(3):
        assert kube.resource("v1", "Pod").kind == "Pod"
        assert kube.resource("batch/v1", "Job").kind == "Job"
    requests = len(server.requests)
    kube.resource("v1", "Pod")
    assert len(server.requests) == requests
    assert server.discovery_fetches() == 1


def test_a_run_naming_an_unknown_kind_fails_with_spec_valid_false_naming_the_manifest(tmp_path: Path) -> None:
    """The passes's path for it: the dry run meets UnknownKind and the pass becomes a spec error."""
    server, clock = FakeApiServer(), Clock()
    kube = FakeKube(
        {
            "resources": [{"name": "store", "setup": {"manifests": [dict(MANIFEST, metadata={"name": "w"})]}}],
            "tasks": [pod_task("a", resources=["store"])],
        },
        {},
    )
    real = kube_over(server, tmp_path, clock)
    kube.dry_run_create = real.dry_run_create  # type: ignore[method-assign]
    passes = kube.passes()
    result = kube.run(passes)
    fetches = server.discovery_fetches()  # the client's first look and its refresh on the miss
    for _ in range(3):
        result = kube.run(passes)
    assert server.discovery_fetches() == fetches
    assert result.phase == "Failed" and result.done
    conditions = {c["type"]: c for c in kube.body["status"]["conditions"]}
    assert conditions["SpecValid"]["status"] == "False"
    assert conditions["SpecValid"]["message"] == (
        "the API server rejected a child: spec.resources[0].setup.manifests[0]:"
        " the API server serves no Widget in example.com/v1"
    )
    assert kube.create_calls == []
    assert [reason for _, reason, _ in kube.events] == ["InvalidSpec"]  # once, not once per pass


@pytest.mark.parametrize("create", ["dry_run_create", "create"])
def test_a_cluster_scoped_kind_is_refused_before_any_request_is_sent(tmp_path: Path, create: str) -> None:
    # The dynamic client drops the namespace of a cluster-scoped kind: sent, it would make a
    # cluster object. Discovery says the kind is not namespaced; nothing is posted.
    server = FakeApiServer(kinds=[ServedKind("", "v1", "Namespace", "namespaces", namespaced=False)])
    kube = kube_over(server, tmp_path, Clock())
    manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "theirs", "namespace": "team"}}
    with pytest.raises(ClusterScopedKind, match=r"^Namespace in v1 is cluster-scoped: children must be namespaced$"):
        getattr(kube, create)(manifest, *(["uid-1"] if create == "create" else []))
    assert [r for r in server.requests if r[0] == "POST"] == []


def test_the_api_server_probe_succeeds_on_its_text_answer(tmp_path: Path) -> None:
    """GET /readyz answers the text `ok`, not JSON: reading it as JSON made the probe fail for
    ever, so that passes paused by an outage never resumed."""
    server = FakeApiServer()
    kube = Kube(server, dynamic=server.dynamic_client(tmp_path))
    kube.probe()
    assert server.requests[-1] == ("GET", "/readyz")


def test_the_log_of_a_pod_never_scheduled_is_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API server answers the log of a pod without a node with no body, which the client returns
    as None: the pass that captured it (a task whose pod never started) failed on it."""
    server = FakeApiServer()
    kube = Kube(server, dynamic=server.dynamic_client(tmp_path))
    monkeypatch.setattr(kube.core, "read_namespaced_pod_log", lambda *args, **kwargs: None)
    assert kube.pod_log_tail("team", "never-scheduled", "main", 100) == ""


def test_a_namespace_is_known_to_be_going_when_a_dry_run_create_there_is_refused_so(tmp_path: Path) -> None:
    server = FakeApiServer(kinds=[ServedKind("", "v1", "ConfigMap", "configmaps")])
    kube = kube_over(server, tmp_path, Clock())
    assert kube.namespace_terminating("team") is False
    terminating = api_error(403, "Forbidden", "unable to create new content in namespace team: being terminated")
    terminating.body = json.dumps({"details": {"causes": [{"reason": "NamespaceTerminating"}]}})
    server.fail(terminating)
    assert kube.namespace_terminating("team") is True
    server.fail(api_error(403, "Forbidden", "configmaps is forbidden: denied by policy"))
    assert kube.namespace_terminating("team") is False
    assert [r for r in server.requests if r[0] == "POST"] == [("POST", "/api/v1/namespaces/team/configmaps")] * 3
