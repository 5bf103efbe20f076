"""What this process wrote and its watch caches have not shown yet.

The watch caches (caches.py: FlowRuns and their children) are fed by watches, which lag this
process's own writes by a few milliseconds. A pass that runs in that window must neither create
a child again nor think one missing, nor decide from a status older than the one it wrote. Like
the ReplicaSet controller's "expectations":

- a child this process created is seen (as the create's answer returned it) until an event of it
  arrives; a child it deleted is seen as being deleted until an event of it arrives;
- a FlowRun this process patched is seen as the patch's answer returned it, until the cache holds
  that version or a newer one;
- the status this process wrote last is what its passes go on from, for as long as it knows the
  run: a status written by someone else since (a stale copy written back) is overruled, not
  believed (the pass writes its own back). A new process, or a new term of leadership, has none and
  believes the cache: the engine then weighs the status against the children.

An expectation that no event ever meets (the object was created and deleted by someone else
between two watch events the operator missed, say across a watch restart) expires after
EXPECTATION_SECONDS, after which the cache alone is believed. Plain data, used on the event loop.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flowrun.api import RUN_FINAL
from flowrun.controller.packed import PackedBody
from flowrun.observed import ChildKey, ObservedChild, child_key

EXPECTATION_SECONDS = 120.0


class Expectations:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._created: dict[str, dict[ChildKey, tuple[float, ObservedChild]]] = {}
        self._deleted: dict[str, dict[ChildKey, float]] = {}
        self._written: dict[str, Mapping[str, Any]] = {}
        # A finished run's is packed (packed.py): thousands are kept, and rarely read.
        self._own_status: dict[str, Mapping[str, Any]] = {}
        # The status a pass that failed half way was writing: its actions were taken, its write
        # may have landed or not.
        self._unconfirmed: dict[str, Mapping[str, Any]] = {}

    # --- recorded after a pass ---------------------------------------------------------------

    def created(self, uid: str, children: Iterable[ObservedChild]) -> None:
        now = self._clock()
        for child in children:
            self._created.setdefault(uid, {})[child_key(child)] = (now, child)

    def deleted(self, uid: str, keys: Iterable[ChildKey]) -> None:
        now = self._clock()
        for key in keys:
            self._deleted.setdefault(uid, {})[key] = now

    def written(self, uid: str, body: Mapping[str, Any]) -> None:
        self._written[uid] = body
        self._own_status[uid] = _kept(body.get("status") or {})
        self._unconfirmed.pop(uid, None)

    def unsure(self, uid: str, attempted: Mapping[str, Any] | None) -> None:
        """A pass failed half way. The status this process wrote last stays its own; the status the
        pass was writing (`attempted`, if it got that far) may have landed or not, and its actions
        were taken: the next pass goes on from it. Forgetting both would hand the next pass
        whatever the object shows, a stale copy written by someone else meanwhile included."""
        if attempted is not None:
            self._unconfirmed[uid] = _kept(attempted)

    # --- met by watch events -----------------------------------------------------------------

    def child_seen(self, uid: str, key: ChildKey) -> None:
        """An event of the child arrived: the cache shows what this process did to it, or later."""
        for table in (self._created, self._deleted):
            entries = table.get(uid)
            if entries is not None:
                entries.pop(key, None)
                if not entries:
                    del table[uid]

    def flowrun_seen(self, uid: str, body: Mapping[str, Any]) -> bool:
        """An event of the FlowRun arrived. True if it is the echo of this process's own last write
        (nothing in it is news to this process)."""
        own = self._own_status.get(uid)
        if own is not None and not isinstance(own, PackedBody) and own == (body.get("status") or {}):
            self._own_status[uid] = body.get("status") or {}  # the cache's copy, equal: one is kept, not two
        written = self._written.get(uid)
        if written is None:
            return False
        if not is_older(body, written):
            del self._written[uid]
        return resource_version(body) == resource_version(written)

    def forget(self, uid: str) -> None:
        self._created.pop(uid, None)
        self._deleted.pop(uid, None)
        self._written.pop(uid, None)
        self._own_status.pop(uid, None)
        self._unconfirmed.pop(uid, None)

    # --- read before a pass ------------------------------------------------------------------

    def flowrun(self, uid: str, cached: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """The newest known version of the FlowRun: the cache's, or this process's own write."""
        written = self._written.get(uid)
        if cached is None or written is None:
            return cached
        return written if is_older(cached, written) else cached

    def own_status(self, uid: str, body: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, bool]:
        """The status a pass of the run goes on from when it is not the one `body` shows (None if it
        is), and whether `body` shows one written by someone else: neither this process's last
        write nor the unconfirmed write of a pass that failed half way."""
        shown = body.get("status") or {}
        own, unconfirmed = _status(self._own_status.get(uid)), _status(self._unconfirmed.get(uid))
        if unconfirmed is not None:
            if shown == unconfirmed:  # it landed
                self._own_status[uid] = self._unconfirmed.pop(uid)
                return None, False
            return unconfirmed, own is not None and shown != own
        if own is not None and shown != own:
            return own, True
        return None, False

    def children(self, uid: str, cached: Iterable[ObservedChild]) -> list[ObservedChild]:
        """The cached children with this process's unseen creates and deletes applied."""
        now = self._clock()
        by_key = {child_key(child): child for child in cached}
        for key, since in list(self._deleted.get(uid, {}).items()):
            if now - since > EXPECTATION_SECONDS:
                self._deleted[uid].pop(key)
            elif key in by_key:
                by_key[key] = dataclasses.replace(by_key[key], deleting=True)
        for key, (since, child) in list(self._created.get(uid, {}).items()):
            if now - since > EXPECTATION_SECONDS:
                self._created[uid].pop(key)
            elif key not in by_key:
                by_key[key] = child
        return list(by_key.values())


def _status(kept: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    return kept["status"] if isinstance(kept, PackedBody) else kept


def _kept(status: Mapping[str, Any]) -> Mapping[str, Any]:
    """A status as remembered: packed if the run is finished."""
    return PackedBody({"status": status}) if status.get("phase") in RUN_FINAL else status


def resource_version(body: Mapping[str, Any]) -> str:
    return str((body.get("metadata") or {}).get("resourceVersion") or "")


def is_older(body: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
    """Whether `body` is an older version of the object than `than`. resourceVersions are opaque
    to clients in general; the API server's are etcd revisions (integers), and where either is not
    one the cache is believed (never older)."""
    mine, theirs = resource_version(body), resource_version(than)
    if not (mine.isdigit() and theirs.isdigit()):
        return False
    return int(mine) < int(theirs)
