"""What a JSON merge patch (RFC 7386) leaves stored: the operator writes every status as one,
where None removes a key. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def pruned(value: Any) -> Any:
    """`value` as a merge patch stores it: without the keys whose value is None."""
    if isinstance(value, Mapping):
        return {k: pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [pruned(v) for v in value]
    return value


def changes(patch: Mapping[str, Any], previous: Mapping[str, Any]) -> bool:
    """Whether writing `patch` as a merge patch changes `previous`: only the keys written count
    (the snapshot once stored, say, is not rewritten on every pass)."""
    return any(pruned(value) != pruned(previous.get(key)) for key, value in patch.items())
