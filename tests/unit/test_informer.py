"""The informer against the fake API server: a paginated list, then a watch that goes on from the
last version seen after the server ends it or the connection drops (no new list), a new list only
on 410 Gone (reporting what vanished meanwhile), objects that leave the label selector gone from
the store at once, an index kept by the key of each object as stored, and failures logged once
a minute, not once per retry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3.exceptions
from kubernetes.client import ApiClient

from flowrun import api
from flowrun.controller import informer as informer_module
from flowrun.controller.informer import Entry, Informer, WatchFailures
from flowrun.kube import Kube
from flowrun.observed import ObservedChild, ObservedPod, observe, run_of
from tests.unit.fake_api_server import FakeApiServer
from tests.unit.fakes import api_error

NS = "team"
SELECTOR = f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}"


def pod(name: str, run: str = "run-1", *, managed: bool = True, phase: str = "Pending") -> dict[str, Any]:
    labels = {api.LABEL_UID: run}
    if managed:
        labels[api.LABEL_MANAGED_BY] = api.MANAGED_BY
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "labels": labels},
        "status": {"phase": phase},
    }


class Recorder:
    """The events an informer hands on: (type, name, key now, key before)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None, str | None]] = []
        self.changed = threading.Condition()

    def __call__(self, type_: str, entry: Entry[Any], previous: Entry[Any] | None) -> None:
        with self.changed:
            self.events.append((type_, entry.name, entry.key, previous.key if previous is not None else None))
            self.changed.notify_all()

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
        with self.changed:
            if not self.changed.wait_for(check, timeout=timeout):
                raise AssertionError(f"timed out waiting for {what}; events: {self.events}")


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    served = FakeApiServer(watch_seconds=0.5)
    yield served
    served.end_watches()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(informer_module, "RETRY_SECONDS", 0.01)
    monkeypatch.setattr(informer_module, "MAX_RETRY_SECONDS", 0.05)


def informer_over(
    server: FakeApiServer, tmp_path: Path, recorder: Recorder, selector: str | None = SELECTOR
) -> Informer[ObservedChild]:
    kube = Kube(ApiClient(), dynamic=server.dynamic_client(tmp_path), new_pool=lambda: server)
    pods = Informer(kube.with_own_pool(), "v1", "Pod", NS, selector, observe, index_of=run_of, on_event=recorder)
    pods.start()
    return pods


def test_a_list_in_pages_fills_the_store_and_its_index_then_the_watch_brings_changes(
    server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(informer_module, "PAGE", 2)
    for i in range(5):
        server.add(pod(f"p{i}", run="run-1" if i < 3 else "run-2"))
    server.add(pod("theirs", managed=False))
    recorder = Recorder()
    pods = informer_over(server, tmp_path, recorder)
    assert pods.synced.wait(10)
    assert sorted(e.name for e in pods.entries()) == [f"p{i}" for i in range(5)]
    assert sorted(e.name for e in pods.indexed("run-2")) == ["p3", "p4"]
    assert [type_ for type_, *_ in recorder.events] == ["LISTED"] * 5
    assert pods.lists == 1

    server.modify(pod("p0", phase="Running"))
    server.add(pod("p5", run="run-2"))
    recorder.wait("the watch's events", lambda: len(recorder.events) == 7)
    assert recorder.events[5:] == [("MODIFIED", "p0", "run-1", "run-1"), ("ADDED", "p5", "run-2", None)]
    entry = pods.get("uid-p0")
    assert entry is not None and isinstance(entry.value, ObservedPod) and entry.value.phase == "Running"
    pods.stop()


def test_a_watch_the_server_ends_or_that_drops_goes_on_from_the_last_version_without_a_new_list(
    server: FakeApiServer, tmp_path: Path
) -> None:
    recorder = Recorder()
    pods = informer_over(server, tmp_path, recorder)
    assert pods.synced.wait(10)
    server.add(pod("a"))
    recorder.wait("a", lambda: len(recorder.events) == 1)
    server.end_watches()  # the server's timeout
    server.fail(urllib3.exceptions.ProtocolError("connection reset"), ConnectionError("refused"))
    server.add(pod("b"))
    server.delete(pod("a"))
    recorder.wait("b added and a deleted", lambda: len(recorder.events) == 3)
    assert recorder.events[1:] == [("ADDED", "b", "run-1", None), ("DELETED", "a", "run-1", "run-1")]
    assert pods.lists == 1  # watched again from the last version: no new list
    pods.stop()


def test_410_gone_lists_again_and_reports_what_vanished_meanwhile(server: FakeApiServer, tmp_path: Path) -> None:
    server.add(pod("stays"))
    server.add(pod("goes"))
    recorder = Recorder()
    pods = informer_over(server, tmp_path, recorder)
    assert pods.synced.wait(10)
    server.end_watches()
    server.fail(ConnectionError("refused"))  # the next watch cannot start...
    with server.changed:  # ...and meanwhile an object goes and the history is compacted
        server.objects = {k: v for k, v in server.objects.items() if k[2] != "goes"}
        server.version += 1
    server.compact()
    recorder.wait("the vanished object", lambda: ("DELETED", "goes", "run-1", "run-1") in recorder.events)
    assert pods.lists == 2
    assert [e.name for e in pods.entries()] == ["stays"]
    pods.stop()


def test_an_object_that_leaves_the_selector_is_gone_from_the_store_at_once_under_the_key_it_had(
    server: FakeApiServer, tmp_path: Path
) -> None:
    recorder = Recorder()
    pods = informer_over(server, tmp_path, recorder)
    assert pods.synced.wait(10)
    server.add(pod("p"))
    relabelled = pod("p", run="run-1", managed=False)
    server.modify(relabelled)
    recorder.wait("p gone", lambda: len(recorder.events) == 2)
    assert recorder.events[1] == ("DELETED", "p", "run-1", "run-1")
    assert pods.get("uid-p") is None and pods.indexed("run-1") == []
    server.modify(pod("p"))  # back in the selector
    recorder.wait("p back", lambda: len(recorder.events) == 3)
    assert recorder.events[2] == ("ADDED", "p", "run-1", None)
    pods.stop()


def test_a_changed_index_key_moves_the_entry_and_a_transform_to_none_removes_it(
    server: FakeApiServer, tmp_path: Path
) -> None:
    recorder = Recorder()
    kube = Kube(ApiClient(), dynamic=server.dynamic_client(tmp_path), new_pool=lambda: server)
    running_only = Informer(
        kube.with_own_pool(),
        "v1",
        "Pod",
        NS,
        None,
        lambda raw: observe(raw) if (raw.get("status") or {}).get("phase") == "Running" else None,
        index_of=run_of,
        on_event=recorder,
    )
    running_only.start()
    assert running_only.synced.wait(10)
    server.add(pod("p", phase="Running"))
    server.modify(pod("p", run="run-2", phase="Running"))
    server.modify(pod("p", run="run-2", phase="Succeeded"))
    recorder.wait("three events", lambda: len(recorder.events) == 3)
    assert recorder.events == [
        ("ADDED", "p", "run-1", None),
        ("MODIFIED", "p", "run-2", "run-1"),
        ("DELETED", "p", "run-2", "run-2"),
    ]
    assert running_only.indexed("run-1") == [] and running_only.indexed("run-2") == []
    running_only.stop()


def test_a_list_refused_for_good_marks_the_informer_synced_with_the_error(
    server: FakeApiServer, tmp_path: Path
) -> None:
    server.fail(api_error(403, "Forbidden", 'pods is forbidden: User "op" cannot list resource "pods"'))
    pods = informer_over(server, tmp_path, Recorder())
    assert pods.synced.wait(10)
    assert pods.error is not None and str(pods.error) == (
        'listing Pod in v1: 403 pods is forbidden: User "op" cannot list resource "pods"'
    )
    pods.stop()


def test_failures_are_logged_at_most_once_a_minute_saying_how_many_were_not(
    server: FakeApiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    pods = informer_over(server, tmp_path, recorder)
    assert pods.synced.wait(10)
    caplog.set_level(logging.WARNING, logger=informer_module.__name__)
    server.fail(*[ConnectionError("refused")] * 20)
    server.end_watches()
    server.add(pod("after"))
    recorder.wait("the watch back", lambda: len(recorder.events) == 1, timeout=20)
    assert not server.failures
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    assert warnings[0] == "watch of Pod in team failed, trying again: refused"
    pods.stop()


def refused(informer: Informer[Any]) -> bool:
    return informer.error is not None


def test_a_refusal_just_after_the_api_server_returns_is_retried_within_seconds_and_is_no_wedge(
    server: FakeApiServer, tmp_path: Path
) -> None:
    # An API server that has just restarted refuses requests (403) until its authorizer has warmed
    # up: the informer lists again within seconds, not a minute later, and its refusal does not
    # count as failing (the watch was failing through the outage before it).
    recorder = Recorder()
    pods = informer_over(server, tmp_path, recorder)
    assert pods.synced.wait(10)
    forbidden = api_error(403, "Forbidden", 'pods is forbidden: User "op" cannot list resource "pods"')
    # What the informer says of itself at each request it sends: the one after the refusal is the
    # list that retries it (quick_retries makes "seconds" milliseconds here).
    states: list[tuple[bool, float | None]] = []
    # The outage refuses connections; once the API server is ready again (its /readyz answers),
    # it refuses the watch and the list.
    failures: list[BaseException] = [ConnectionError("refused"), ConnectionError("refused"), forbidden, forbidden]

    def serve(method: str, path: str) -> None:
        states.append((refused(pods), pods.failing_since))
        if failures and (path != "/readyz" or isinstance(failures[0], ConnectionError)):
            raise failures.pop(0)

    server.intercept = serve
    server.end_watches()
    server.add(pod("after"))
    recorder.wait("the watch back", lambda: len(recorder.events) == 1, timeout=10)
    after_refusal = [failing for was_refused, failing in states if was_refused]
    assert after_refusal and all(failing is None for failing in after_refusal), states
    assert not refused(pods) and pods.failing_since is None
    pods.stop()


def sharing_failures(server: FakeApiServer, tmp_path: Path, recorder: Recorder, count: int) -> list[Informer[Any]]:
    failures = WatchFailures()
    kube = Kube(ApiClient(), dynamic=server.dynamic_client(tmp_path), new_pool=lambda: server)
    return [
        Informer(kube.with_own_pool(), "v1", "Pod", NS, SELECTOR, observe, on_event=recorder, failures=failures)
        for _ in range(count)
    ]


def test_watches_that_share_a_log_write_one_warning_for_an_outage_of_them_all(
    server: FakeApiServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    informers = sharing_failures(server, tmp_path, recorder, 4)
    for informer in informers:
        informer.start()
    assert all(informer.synced.wait(10) for informer in informers)
    caplog.set_level(logging.WARNING, logger=informer_module.__name__)
    server.fail(*[ConnectionError("refused")] * 20)
    server.end_watches()
    server.add(pod("after"))
    recorder.wait("every watch back", lambda: len(recorder.events) == 4, timeout=20)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["watch of Pod in team failed, trying again: refused"]
    for informer in informers:
        informer.stop()


def test_while_the_api_server_is_away_one_informer_probes_it_and_the_others_wait_for_its_answer(
    server: FakeApiServer, tmp_path: Path
) -> None:
    # The soak counted 259 requests in a 32-second outage, one retry every few seconds from each
    # of the operator's informers. Shared, the outage costs each informer its one failed watch,
    # then probes one at a time; all the watches resume when a probe is answered.
    recorder = Recorder()
    informers = sharing_failures(server, tmp_path, recorder, 8)
    for informer in informers:
        informer.start()
    assert all(informer.synced.wait(10) for informer in informers)
    away = threading.Event()
    during: list[str] = []

    def unreachable(method: str, path: str) -> None:
        if away.is_set():
            during.append(path)
            raise urllib3.exceptions.NewConnectionError(None, "connection refused")  # type: ignore[arg-type]

    server.intercept = unreachable
    away.set()
    server.end_watches()
    deadline = threading.Event()
    for _ in range(200):  # until the outage has cost 20 requests (a few seconds' worth of retries)
        if len(during) >= 20 or deadline.wait(0.05):
            break
    away.clear()
    watches = [path for path in during if path != "/readyz"]
    assert len(during) >= 20 and len(watches) == len(informers), during
    server.add(pod("after"))
    recorder.wait("every watch back", lambda: len(recorder.events) == len(informers), timeout=20)
    for informer in informers:
        informer.stop()


def test_informers_waiting_for_a_probe_stop_when_told(
    server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(informer_module, "WAITER_POLL_SECONDS", 0.05)
    informers = sharing_failures(server, tmp_path, Recorder(), 3)
    for informer in informers:
        informer.start()
    assert all(informer.synced.wait(10) for informer in informers)
    probes = threading.Semaphore(0)

    def unreachable(method: str, path: str) -> None:
        if path == "/readyz":
            probes.release()
        raise ConnectionRefusedError("connection refused")

    server.intercept = unreachable
    server.end_watches()
    assert probes.acquire(timeout=10)  # one of them probes, the others wait for it
    for informer in informers:
        informer.stop()
    for informer in informers:
        informer.join(10)
    assert not any(informer.is_alive() for informer in informers)
