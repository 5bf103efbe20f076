"""One LIST-then-WATCH of a kind (in one namespace, or all), in a thread of its own: the feed of the
operator's watch caches (FlowRuns, their children, setup-manifest kinds).

Why not kopf's indexes: kopf makes every object of an indexed kind block its readiness until all
are indexed, and each object's worker waits on one shared condition that every other object
notifies, so a start with N objects costs N² wake-ups (minutes with 10,000 FlowRuns and their
pods). A list here is one paginated request and a loop.

The informer keeps no objects, only what it needs to report deletions a relist reveals: it calls
`on_event(type, raw)` for every object, `type` None for one that a list returned (as kopf does),
"ADDED", "MODIFIED" or "DELETED" for watch events. `synced` is set once the first list was
delivered; `error` is set instead when listing is refused for good (403, 404).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from flowrun import metrics
from flowrun.kube import REQUEST_TIMEOUT, ChildrenUnreadable, Kube, api_message

logger = logging.getLogger(__name__)

PAGE = 500  # objects per list request
WATCH_SECONDS = 300  # the server ends each watch request after this; the next goes on from there
RETRY_SECONDS = 5.0  # after a failed list or watch
REFUSED_RETRY_SECONDS = 60.0  # after a list refused for good (403, 404), tried again this much later

OnEvent = Callable[[str | None, dict[str, Any]], None]


class Informer(threading.Thread):
    def __init__(
        self,
        kube: Kube,
        api_version: str,
        kind: str,
        namespace: str | None,
        selector: str | None,
        on_event: OnEvent,
        on_synced: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(name=f"informer-{kind}-{namespace or 'all'}", daemon=True)
        self.kube, self.api_version, self.kind = kube, api_version, kind
        self.namespace, self.selector = namespace, selector
        self.on_event, self.on_synced = on_event, on_synced
        self.synced = threading.Event()
        self.error: ChildrenUnreadable | None = None
        self._known: dict[str, dict[str, Any]] = {}  # uid -> the object's metadata as last seen
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                resource_version: str | None = self._list()
                self.error = None
                if not self.synced.is_set():
                    self.synced.set()
                    self.on_synced()
                while not self._stopped.is_set() and resource_version is not None:
                    resource_version = self._watch(resource_version)
            except ApiException as error:
                if error.status in (403, 404):
                    self.error = ChildrenUnreadable(
                        f"listing {self.kind} in {self.api_version}: {error.status} {api_message(error)}"
                    )
                    if not self.synced.is_set():
                        self.synced.set()
                        self.on_synced()
                    self._stopped.wait(REFUSED_RETRY_SECONDS)
                else:  # 410 Gone (listed again), 5xx
                    self._stopped.wait(RETRY_SECONDS)
            except Exception as error:  # a dropped connection, an unreachable API server
                logger.debug("informer of %s in %s failed: %s", self.kind, self.namespace or "all", error)
                self._stopped.wait(RETRY_SECONDS)

    def _list(self) -> str:
        """Every object, page by page; then a DELETED for each known one that is no longer there."""
        resource = self.kube.resource(self.api_version, self.kind)
        listed: dict[str, dict[str, Any]] = {}
        token: str | None = None
        while True:
            metrics.API_REQUESTS.labels(verb="list", resource=str(getattr(resource, "name", ""))).inc()
            page = json.loads(
                resource.get(
                    namespace=self.namespace,
                    label_selector=self.selector,
                    limit=PAGE,
                    _continue=token,
                    serialize=False,
                    _request_timeout=REQUEST_TIMEOUT,
                ).data
            )
            for item in page.get("items") or []:
                item.setdefault("apiVersion", self.api_version)
                item.setdefault("kind", self.kind)
                uid = str((item.get("metadata") or {}).get("uid") or "")
                listed[uid] = _identity(item["metadata"])
                self.on_event(None, item)
            token = (page.get("metadata") or {}).get("continue") or None
            if token is None:
                break
        for uid in set(self._known) - set(listed):
            self.on_event("DELETED", {"apiVersion": self.api_version, "kind": self.kind, "metadata": self._known[uid]})
        self._known = listed
        return str(page["metadata"]["resourceVersion"])

    def _watch(self, resource_version: str) -> str | None:
        """Events from `resource_version` on, until the server ends the request: the version to go
        on from, or None to list again (410 Gone)."""
        resource = self.kube.resource(self.api_version, self.kind)
        # Plain dicts (serialize=False): no object wrapping per event.
        for event in watch.Watch().stream(
            resource.get,
            namespace=self.namespace,
            label_selector=self.selector,
            resource_version=resource_version,
            timeout_seconds=WATCH_SECONDS,
            allow_watch_bookmarks=True,
            serialize=False,
        ):
            if self._stopped.is_set():
                return None
            raw: dict[str, Any] = event["object"]
            if event["type"] == "ERROR":
                return None
            resource_version = str(raw["metadata"]["resourceVersion"])
            if event["type"] == "BOOKMARK":
                continue
            raw.setdefault("apiVersion", self.api_version)
            raw.setdefault("kind", self.kind)
            uid = str(raw["metadata"].get("uid") or "")
            if event["type"] == "DELETED":
                self._known.pop(uid, None)
            else:
                self._known[uid] = _identity(raw["metadata"])
            self.on_event(event["type"], raw)
        return resource_version


def _identity(metadata: dict[str, Any]) -> dict[str, Any]:
    """What a DELETED event made up after a relist needs: who the object was."""
    return {key: metadata.get(key) for key in ("name", "namespace", "uid", "labels")}
