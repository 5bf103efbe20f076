"""The items of a forEach task: its `forEach` text, resolved, as a JSON list; and the item fields its
template reads. Pure. The users' contract: docs/semantics.md, "Fan-out: forEach"."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from flowrun.api import MAX_ITEMS
from flowrun.model.spec import pod_template_strings
from flowrun.references import Reference, RefKind, find_references, item_value

QUOTE_LIMIT = 80  # characters of a bad list quoted in a message


class ItemsError(ValueError):
    """The resolved text is not a JSON list of at most MAX_ITEMS items, or an item lacks a field
    that a reference reads. The message says which, and quotes the start of the text."""


def _quoted(text: str) -> str:
    return repr(text if len(text) <= QUOTE_LIMIT else text[:QUOTE_LIMIT] + "...")


def parse_items(text: str) -> list[Any]:
    """The items `text` lists; raises ItemsError."""
    try:
        items = json.loads(text)
    except ValueError as err:
        raise ItemsError(f"resolves to {_quoted(text)}, not a JSON list ({err})") from None
    if not isinstance(items, list):
        raise ItemsError(f"resolves to {_quoted(text)}, not a JSON list")
    if len(items) > MAX_ITEMS:
        raise ItemsError(f"resolves to a list of {len(items)} items: at most {MAX_ITEMS}")
    return items


def item_references(template: Mapping[str, Any]) -> Iterator[tuple[str, Reference]]:
    """(path inside the template, reference) of every $(item...) reference of a pod template."""
    for path, text in pod_template_strings(template):
        for ref in find_references(text):
            if ref.kind is RefKind.ITEM:
                yield path, ref


def missing_field(items: list[Any], template: Mapping[str, Any]) -> tuple[str, str] | None:
    """(path inside the template, why) for the first item that lacks a field a reference of the
    template reads; None if every item has them all."""
    refs = [(path, ref) for path, ref in item_references(template) if ref.path]
    for index, item in enumerate(items):
        for path, ref in refs:
            try:
                item_value(item, ref.path)
            except KeyError:
                shown = json.dumps(item, separators=(",", ":"), ensure_ascii=False)
                return path, f"{ref.text}: item {index} ({_quoted(shown)}) has no {'.'.join(ref.path)}"
    return None
