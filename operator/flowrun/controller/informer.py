"""One LIST-then-WATCH of a kind (in one namespace, or all), in a thread of its own, and the store it
keeps: the feed of every watch cache of the operator (FlowRuns and their children, Flows,
CronFlowRuns, the kinds of setup manifests).

Why not kopf's indexes: kopf makes every object of an indexed kind block its readiness until all
are indexed, and each object's worker waits on one shared condition that every other object
notifies, so a start with N objects costs N² wake-ups (minutes with 10,000 FlowRuns and their
pods). A list here is one paginated request and a loop.

The store holds each object as `transform` makes it (what its readers need of it, computed once
per event), by the object's UID, and indexes it by `index_of` (for a child: the UID of its run).
An object `transform` turns into None is not kept; one that is kept and then changes so that it
is not, or that leaves the watch's label selector (the API server then sends DELETED), is gone
from the store at once. Every change is handed to `on_event(type, entry, previous)` in this
thread: type LISTED (an object a list returned), ADDED, MODIFIED or DELETED.

A watch that ends (the server's timeout, a dropped or silent connection, an unreachable API
server) goes on from the last resourceVersion seen; only 410 Gone (that version is too old)
lists again, and the objects the new list lacks are reported DELETED. Failures are retried with a
backoff and logged at most once a minute for all the informers that share a WatchFailures (one
line for an outage, not one per watch); while the API server does not answer, one of those
informers asks it whether it is ready again and the others wait for that answer (an outage costs
a request every few seconds, not one per informer: there are nine or more per namespace). A
list refused (403, 404) is tried again later, a few seconds at first (an API server that has just
restarted refuses requests until its authorizer is warm), then once a minute; a refusal is not a
failing watch (the liveness answer does not count it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from kubernetes.client.exceptions import ApiException

from flowrun.controller.failures import Backoff, ThrottledLog, short
from flowrun.kube import ChildrenUnreadable, api_message

logger = logging.getLogger(__name__)

PAGE = 500  # objects per list request
WATCH_SECONDS = 300  # the server ends each watch request after this; the next goes on from there
# After a failed list or watch, doubling, jittered: at most a few seconds, so the caches catch up
# soon after an outage (one request per informer that often while it lasts).
RETRY_SECONDS, MAX_RETRY_SECONDS = 1.0, 5.0
REFUSED_RETRY_SECONDS = 60.0  # a list refused (403, 404) is tried again at most this much later
LOG_EVERY_SECONDS = 60.0  # the failures of the informers sharing a log are logged at most this often
WAITER_POLL_SECONDS = 1.0  # an informer waiting for another's probe sees within this that it is stopped

T = TypeVar("T")


class ListWatch(Protocol):
    """What an informer asks of the API (kube.Kube, on connections of the informer's own)."""

    def probe(self) -> None: ...

    def list_page(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        selector: str | None,
        limit: int,
        token: str | None,
        fields: str | None = None,
    ) -> dict[str, Any]: ...

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        selector: str | None,
        resource_version: str,
        timeout_seconds: int,
        fields: str | None = None,
    ) -> Iterator[dict[str, Any]]: ...


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One stored object: who it is, the key it is indexed by, and what `transform` made of it."""

    namespace: str
    name: str
    uid: str
    key: str | None
    value: T


OnEvent = Callable[[str, Entry[T], Entry[T] | None], None]


class Probe(Protocol):
    def probe(self) -> None:
        """Raises while the API server cannot be reached or is not ready."""


class WatchFailures:
    """What the informers of one operator share about their failures: one throttled log, and one
    probe of the API server while it does not answer.

    `wait_until_answering(client, stopped)` returns once the API server answers a probe: the first
    informer to call it probes (with its own connections), jittered and backing off up to
    MAX_RETRY_SECONDS; those that call it meanwhile wait for that probe's success, and go on at
    once when it has one (or when the prober stops: one of them probes then). `unanswered_at` is
    the clock time a probe last failed: the liveness answer counts a watch's failures only from
    the last moment the API server was seen not to answer."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = ThrottledLog(logger, LOG_EVERY_SECONDS)
        self.unanswered_at: float | None = None
        self._clock = clock
        self._changed = threading.Condition()
        self._probing = False
        self._probes_ended = 0  # probing turns that ended (a waiter goes on when one does)

    def wait_until_answering(self, client: Probe, stopped: threading.Event) -> None:
        with self._changed:
            if self._probing:
                turn = self._probes_ended
                while self._probes_ended == turn and not stopped.is_set():
                    self._changed.wait(WAITER_POLL_SECONDS)  # woken by the probe; polled for `stopped`
                return
            self._probing = True
        try:
            backoff = Backoff(RETRY_SECONDS, MAX_RETRY_SECONDS, jitter=True)
            while not stopped.is_set():
                try:
                    client.probe()
                    return
                except Exception as error:  # still away: the informers' failure, logged with theirs
                    self.unanswered_at = self._clock()
                    self.log.warning(f"the API server does not answer yet: {short(error)}")
                    stopped.wait(backoff.next())
        finally:
            with self._changed:
                self._probing = False
                self._probes_ended += 1
                self._changed.notify_all()


class Gone(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


class Informer(threading.Thread, Generic[T]):
    def __init__(
        self,
        client: ListWatch,
        api_version: str,
        kind: str,
        namespace: str | None,
        selector: str | None,
        transform: Callable[[dict[str, Any]], T | None],
        *,
        index_of: Callable[[dict[str, Any]], str | None] = lambda _: None,
        on_event: OnEvent[T] | None = None,
        on_synced: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        fields: str | None = None,
        failures: WatchFailures | None = None,
    ) -> None:
        super().__init__(name=f"informer-{kind}-{namespace or 'all'}", daemon=True)
        self.client, self.api_version, self.kind = client, api_version, kind
        self.namespace, self.selector, self.fields = namespace, selector, fields
        self.transform, self.index_of = transform, index_of
        self.on_event: OnEvent[T] = on_event or (lambda *_: None)
        self.on_synced = on_synced
        self.synced = threading.Event()
        self.error: ChildrenUnreadable | None = None  # listing is refused for good (403, 404)
        self.resource_version: str | None = None  # the last one seen
        self.lists = 0  # LISTs done (the first, then one per 410 Gone)
        self.failing_since: float | None = None  # clock time of the first of the failures going on now
        self._clock = clock
        self._lock = threading.Lock()
        self._store: dict[str, Entry[T]] = {}  # object UID -> entry
        self._index: dict[str | None, dict[str, Entry[T]]] = {}  # key -> object UID -> entry
        self._stopped = threading.Event()
        self._backoff = Backoff(RETRY_SECONDS, MAX_RETRY_SECONDS, jitter=True)
        self._refused_backoff = Backoff(RETRY_SECONDS, REFUSED_RETRY_SECONDS, jitter=True)
        self._failures = failures or WatchFailures()

    # --- reading the store (any thread) --------------------------------------------------------

    def get(self, uid: str) -> Entry[T] | None:
        with self._lock:
            return self._store.get(uid)

    def entries(self) -> list[Entry[T]]:
        with self._lock:
            return list(self._store.values())

    def indexed(self, key: str) -> list[Entry[T]]:
        with self._lock:
            return list(self._index.get(key, {}).values())

    def keys(self) -> list[str]:
        """The index keys that have entries."""
        with self._lock:
            return [key for key in self._index if key is not None]

    # --- the thread ----------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        while not self._stopped.is_set():
            try:
                if self.resource_version is None:
                    self.resource_version = self._list()
                    self._succeeded()
                    self._mark_synced()
                self._watch(self.resource_version)
            except Gone:
                self.resource_version = None  # listed again at once
            except ApiException as error:
                if error.status == 410 or (error.status in (403, 404) and self.resource_version is not None):
                    # Too old a version, or the kind is gone or refused now (its CRD deleted, a right
                    # taken away): listed again, which says which (and reports what vanished).
                    self.resource_version = None
                elif error.status in (403, 404) and self.resource_version is None:
                    self.error = ChildrenUnreadable(
                        f"listing {self.kind} in {self.api_version}: {error.status} {api_message(error)}"
                    )
                    # Refused: reported where it matters (the runs that need the kind), and not a
                    # wedge that a restart would cure.
                    self._failed(error, wedging=False)
                    self._mark_synced()
                    self._stopped.wait(self._refused_backoff.next())
                else:
                    self._retry_after(error)
            except Exception as error:  # a dropped or silent connection, an unreachable API server
                self._retry_after(error)

    def _retry_after(self, error: BaseException) -> None:
        """Wait this informer's backoff, then until the API server answers (a probe shared with
        the other informers: an outage costs one request every few seconds, not one per watch)."""
        self._failed(error)
        self._stopped.wait(self._backoff.next())
        self._failures.wait_until_answering(self.client, self._stopped)

    def _succeeded(self) -> None:
        self._backoff.reset()
        self.failing_since = None
        if self.error is None:
            self._refused_backoff.reset()

    def _mark_synced(self) -> None:
        if not self.synced.is_set():
            self.synced.set()
            self.on_synced()

    def _failed(self, error: BaseException, *, wedging: bool = True) -> None:
        """Log it (throttled); note when the failures began (the liveness answer reads it), or,
        for a refusal (the API server answers), that this informer is not failing."""
        if not wedging:
            self.failing_since = None
        elif self.failing_since is None:
            self.failing_since = self._clock()
        self._failures.log.warning(
            f"watch of {self.kind} in {self.namespace or 'all namespaces'} failed, trying again: {short(error)}"
        )

    def _list(self) -> str:
        """Every object, page by page; then DELETED for each stored object the list lacks."""
        self.lists += 1
        listed: set[str] = set()
        token: str | None = None
        while True:
            page = self.client.list_page(
                self.api_version, self.kind, self.namespace, self.selector, PAGE, token, fields=self.fields
            )
            for item in page.get("items") or []:
                uid = self._apply("LISTED", item)
                if uid:
                    listed.add(uid)
            token = (page.get("metadata") or {}).get("continue") or None
            if token is None:
                break
        with self._lock:
            vanished = [entry for uid, entry in self._store.items() if uid not in listed]
        for entry in vanished:
            self._remove(entry)
        self.error = None
        return str((page.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, resource_version: str) -> None:
        """Events from `resource_version` on, until the server ends the request."""
        events = self.client.watch(
            self.api_version,
            self.kind,
            self.namespace,
            self.selector,
            resource_version,
            WATCH_SECONDS,
            fields=self.fields,
        )
        self._succeeded()  # the watch is open
        for event in events:
            if self._stopped.is_set():
                return
            type_, raw = event.get("type"), event.get("object") or {}
            if type_ == "ERROR":
                if raw.get("code") == 410:
                    raise Gone(raw.get("message"))
                error = ApiException(status=raw.get("code"), reason=raw.get("reason"))
                error.body = raw.get("message")
                raise error
            version = (raw.get("metadata") or {}).get("resourceVersion")
            if version:
                self.resource_version = str(version)
            if type_ in ("ADDED", "MODIFIED", "DELETED"):
                self._apply(str(type_), raw)
            self._succeeded()

    # --- the store -----------------------------------------------------------------------------

    def _apply(self, type_: str, raw: dict[str, Any]) -> str:
        """Store (or remove) one object as an event or a list shows it; returns its UID if kept."""
        metadata: Mapping[str, Any] = raw.get("metadata") or {}
        uid = str(metadata.get("uid") or "")
        if not uid:
            return ""
        with self._lock:
            previous = self._store.get(uid)
        value = None if type_ == "DELETED" else self.transform(raw)
        if value is None:
            if previous is not None:
                self._remove(previous)
            return ""
        entry = Entry(
            str(metadata.get("namespace") or ""), str(metadata.get("name") or ""), uid, self.index_of(raw), value
        )
        with self._lock:
            self._store[uid] = entry
            if previous is not None and previous.key != entry.key:
                self._unindex(previous)
            self._index.setdefault(entry.key, {})[uid] = entry
        kind = type_ if type_ == "LISTED" else ("ADDED" if previous is None else "MODIFIED")
        self.on_event(kind, entry, previous)
        return uid

    def _remove(self, entry: Entry[T]) -> None:
        with self._lock:
            if self._store.pop(entry.uid, None) is None:
                return
            self._unindex(entry)
        self.on_event("DELETED", entry, entry)

    def _unindex(self, entry: Entry[T]) -> None:
        indexed = self._index.get(entry.key)
        if indexed is not None:
            indexed.pop(entry.uid, None)
            if not indexed:
                del self._index[entry.key]
