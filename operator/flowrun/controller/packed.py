"""A finished FlowRun as the cache keeps it: its metadata and phase at hand, the rest (spec and
status) compressed.

Thousands of finished runs are kept (until their TTL, or for ever), and what reads one of them
is rare: a TTL falling due, a deletion, a rerun, a CronFlowRun's history, a status written by
someone else. As nested dicts a run of a few tasks costs 15 to 25 KiB of memory (and as many
objects for the garbage collector to walk); packed, about 1 KiB. A reader sees a plain read-only
Mapping: the spec and status are unpacked on each access (tens of microseconds), so a reader that
reads a run many times unpacks it once (`unpacked`), and one that needs only its phase asks
`phase_of`, which never unpacks.
"""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

from flowrun.api import PENDING, RUN_FINAL

# Fast rather than small: a start with 10,000 finished runs packs them all.
LEVEL = 1


class PackedBody(Mapping[str, Any]):
    __slots__ = ("_keys", "_packed", "metadata", "phase")

    def __init__(self, body: Mapping[str, Any]) -> None:
        self.metadata: Mapping[str, Any] = body.get("metadata") or {}
        self.phase = phase_of(body)
        rest = {key: value for key, value in body.items() if key != "metadata"}
        self._keys = ("metadata", *rest)
        self._packed = zlib.compress(pickle.dumps(rest, pickle.HIGHEST_PROTOCOL), LEVEL)

    def unpack(self) -> dict[str, Any]:
        rest: dict[str, Any] = pickle.loads(zlib.decompress(self._packed))
        return {"metadata": self.metadata, **rest}

    def __getitem__(self, key: str) -> Any:
        if key == "metadata":
            return self.metadata
        return self.unpack()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def packed_if_finished(body: dict[str, Any]) -> Mapping[str, Any]:
    """`body` packed if the run is finished and not being deleted (nothing more happens to it
    but its TTL or its deletion); else as it is."""
    if phase_of(body) in RUN_FINAL and not (body.get("metadata") or {}).get("deletionTimestamp"):
        return PackedBody(body)
    return body


def unpacked(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """A plain dict of `body`, for a reader that reads much of it."""
    return body.unpack() if isinstance(body, PackedBody) else body


def phase_of(body: Mapping[str, Any]) -> str:
    """The run's phase (Pending before its first pass), without unpacking it."""
    if isinstance(body, PackedBody):
        return body.phase
    return str((body.get("status") or {}).get("phase") or PENDING)
