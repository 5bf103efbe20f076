"""Lenient readers of what is read back from the API: a status may be empty or garbage (hand
edits, an older operator, someone else's write), and reading it never raises."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def as_map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def as_str(value: object) -> str:
    return value if isinstance(value, str) else ""


def opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def conditions_by_type(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The conditions of a status, by type; those that are not objects are left out."""
    conditions = status.get("conditions")
    if not isinstance(conditions, list):
        return {}
    return {as_str(c.get("type")): c for c in conditions if isinstance(c, Mapping)}
