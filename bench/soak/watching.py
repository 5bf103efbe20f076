"""The soak's own view of the cluster: a watch per kind and namespace that survives API server and
etcd outages (it watches again from the last version seen, lists again on 410 Gone), and keeps
what the invariants need: every object as last seen, and every UID each name was created with."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

# (type, object) for every change, in the watch's thread
OnEvent = Callable[[str, dict[str, Any]], None]


class Recorder(threading.Thread):
    """Objects of one kind in one namespace: `latest` by UID (deleted ones removed), `uids` of
    every name ever seen, and `on_event` for each change."""

    def __init__(self, list_call: Callable[..., Any], namespace: str, on_event: OnEvent | None = None) -> None:
        super().__init__(daemon=True, name=f"soak-watch-{namespace}")
        self.list_call, self.namespace = list_call, namespace
        self.on_event: OnEvent = on_event or (lambda *_: None)
        self.latest: dict[str, dict[str, Any]] = {}
        self.uids: dict[str, set[str]] = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.stopping = threading.Event()
        self.relists = 0

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.latest.values())

    def created_twice(self) -> dict[str, set[str]]:
        """Names created with more than one UID."""
        with self.lock:
            return {name: set(uids) for name, uids in self.uids.items() if len(uids) > 1}

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        version: str | None = None
        while not self.stopping.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
            except ApiException as error:
                if error.status == 410:
                    version = None
                else:
                    self.stopping.wait(1.0)
            except Exception:  # the API server is away: try again from where it was
                self.stopping.wait(1.0)

    def _record(self, type_: str, obj: dict[str, Any]) -> None:
        metadata = obj.get("metadata") or {}
        uid, name = str(metadata.get("uid") or ""), str(metadata.get("name") or "")
        with self.lock:
            if type_ == "DELETED":
                self.latest.pop(uid, None)
            else:
                self.latest[uid] = obj
                self.uids.setdefault(name, set()).add(uid)
        self.on_event(type_, obj)

    def _list(self) -> str:
        listed = json.loads(self.list_call(self.namespace, _preload_content=False).data)
        items = listed.get("items") or []
        seen = {str((item.get("metadata") or {}).get("uid")) for item in items}
        with self.lock:
            gone = [obj for uid, obj in self.latest.items() if uid not in seen]
        for obj in gone:
            self._record("DELETED", obj)
        for item in items:
            self._record("MODIFIED", item)
        self.relists += 1
        self.synced.set()
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str | None:
        response = self.list_call(
            self.namespace,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=30,
            _preload_content=False,
            _request_timeout=(10, 60),
        )
        buffer = b""
        try:
            for chunk in response.stream(65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        return None if obj.get("code") == 410 else version
                    version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                    if event.get("type") != "BOOKMARK":
                        self._record(str(event["type"]), obj)
                if self.stopping.is_set():
                    break
        finally:
            response.release_conn()
        return version


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """Whether `check` held before `timeout` seconds passed."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
