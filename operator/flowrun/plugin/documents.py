"""The YAML documents of `-f FILE` (`-`: stdin), read with bounded memory and time; whatever is
wrong with the file is a PluginError of one line.

- At most api.MAX_REQUEST_BYTES are read: a larger file cannot be sent (the API server refuses a
  request over 3 MiB), and this says so before anything is sent.
- UTF-8 (a byte order mark allowed), or UTF-16 with its byte order mark, as kubectl reads files.
- Before any document is built, one pass over the parser's events (no tree, constant memory but
  for the anchors) counts the nodes (at most MAX_NODES), the nesting (at most MAX_DEPTH) and the
  size each document has once its aliases are expanded, which is what would be sent as JSON. A
  document larger than the API server takes is refused; if aliases make it so, as "excessive
  aliasing", as kubectl does: a "billion laughs" bomb of 1 KB expands to gigabytes. An alias of a
  node inside itself (a recursive document) is refused too: it has no JSON form.
"""

from __future__ import annotations

import codecs
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import yaml

from flowrun import api
from flowrun.plugin.client import PluginError

# libyaml when the platform has it (ten times faster), else PyYAML's own: the same documents.
LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_NODES = 100_000  # in a file, as written: a FlowRun of 200 large tasks has a few tens of thousands
MAX_DEPTH = 100  # nested collections: a FlowRun has about 15
_LIMIT = f"{api.MAX_REQUEST_BYTES // (1024 * 1024)} MiB"
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass(frozen=True)
class Document:
    where: str  # `FILE` or `FILE#2` (the second YAML document)
    body: Any

    @property
    def title(self) -> str:
        metadata = self.body.get("metadata") if isinstance(self.body, Mapping) else None
        metadata = metadata if isinstance(metadata, Mapping) else {}
        name = metadata.get("name") or (metadata.get("generateName") and f"{metadata['generateName']}*") or "?"
        kind = self.body.get("kind") if isinstance(self.body, Mapping) else None
        return f"{self.where}: {kind or 'document'} {name}"


def load_documents(path: str, stdin: BinaryIO) -> list[Document]:
    """Every non-empty YAML document of `path` (`-`: read from `stdin`)."""
    text = _decoded(path, _read(path, stdin))
    try:
        _measure(path, text)
        bodies = [b for b in yaml.load_all(text, Loader=LOADER) if b is not None]
    except yaml.YAMLError as error:
        raise PluginError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    if not bodies:
        raise PluginError(f"{path}: no YAML document in it")
    return [Document(path if len(bodies) == 1 else f"{path}#{i + 1}", b) for i, b in enumerate(bodies)]


def too_large(size: int) -> str:
    """Why a request body of `size` bytes is not sent."""
    return f"{size} bytes as JSON: too large for the API server, which refuses a request over {_LIMIT}"


def _read(path: str, stdin: BinaryIO) -> bytes:
    """The file's bytes; one more than the limit are read at most (stdin or /dev/zero never end)."""
    try:
        if path == "-":
            data = stdin.read(api.MAX_REQUEST_BYTES + 1)
        else:
            with open(path, "rb") as file:
                data = file.read(api.MAX_REQUEST_BYTES + 1)
    except OSError as error:
        raise PluginError(f"{path}: {error.strerror or error}") from None
    if len(data) > api.MAX_REQUEST_BYTES:
        raise PluginError(f"{path}: over {_LIMIT}: too large for the API server, which refuses a request over {_LIMIT}")
    return data


def _decoded(path: str, data: bytes) -> str:
    try:
        return data.decode("utf-16" if data.startswith(_UTF16_BOMS) else "utf-8-sig")
    except UnicodeDecodeError as error:
        byte = error.object[error.start : error.start + 1].hex()
        raise PluginError(f"{path}: not UTF-8 text (byte 0x{byte} at offset {error.start})") from None


@dataclass
class _Collection:
    """A sequence or mapping being read: its size as JSON so far and its anchor."""

    size: int = 2  # [] or {}
    anchor: str | None = None


@dataclass
class _Measure:
    """The state of one pass over the events of a file (see _measure)."""

    path: str
    document: int = 0
    nodes: int = 0
    aliased: bool = False  # the document has an alias
    anchors: dict[str, int] = field(default_factory=dict)  # anchor -> the size of its node
    open: list[_Collection] = field(default_factory=list)

    def where(self) -> str:
        return self.path if self.document <= 1 else f"{self.path}#{self.document}"

    def start_document(self) -> None:
        self.document += 1
        self.aliased = False
        self.anchors.clear()  # anchors are the document's own

    def start(self, anchor: str | None) -> None:
        self._count()
        if len(self.open) >= MAX_DEPTH:
            raise PluginError(f"{self.where()}: nested more than {MAX_DEPTH} levels deep")
        self.open.append(_Collection(anchor=anchor))

    def end(self) -> None:
        done = self.open.pop()
        self.add(done.size, done.anchor)

    def scalar(self, value: str, anchor: str | None) -> None:
        self._count()
        self.add(len(value) + 2, anchor)  # quoted

    def alias(self, anchor: str) -> None:
        self.aliased = True
        if any(c.anchor == anchor for c in self.open):
            raise PluginError(f"{self.where()}: the alias *{anchor} is inside its own anchor: a recursive document")
        if anchor not in self.anchors:
            raise PluginError(f"{self.where()}: the alias *{anchor} has no anchor before it")
        self.add(self.anchors[anchor], None)

    def add(self, size: int, anchor: str | None) -> None:
        """A node of `size` is complete: it counts in the collection it is in, as often as it is
        referred to (an alias counts it again)."""
        if anchor is not None:
            self.anchors[anchor] = size
        if self.open:
            self.open[-1].size += size + 1  # a comma or a colon
            size = self.open[-1].size
        if size > api.MAX_REQUEST_BYTES:  # sizes only grow up the tree: no need to wait for the root
            if self.aliased:
                raise PluginError(
                    f"{self.where()}: excessive aliasing: its YAML aliases expand it to over {_LIMIT},"
                    f" too large for the API server, which refuses a request over {_LIMIT}"
                )
            raise PluginError(f"{self.where()}: {too_large(size)}")

    def _count(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise PluginError(f"{self.path}: more than {MAX_NODES} YAML nodes: far more than any FlowRun has")


def _measure(path: str, text: str) -> None:
    """Raise PluginError for a file too large, too deep or too aliased to build (see the module's
    docstring), before anything is built."""
    measure = _Measure(path)
    for event in yaml.parse(text, Loader=LOADER):
        if isinstance(event, yaml.DocumentStartEvent):
            measure.start_document()
        elif isinstance(event, yaml.ScalarEvent):
            measure.scalar(event.value, event.anchor)
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            measure.start(event.anchor)
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            measure.end()
        elif isinstance(event, yaml.AliasEvent):
            measure.alias(event.anchor or "")
