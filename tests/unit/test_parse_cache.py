"""parse_spec keeps the specs it parsed lately: a run's passes read an unchanged spec again and
again. An equal spec gives the same FlowSpec; any change, another namespace or other placeholders
a new parse; bad specs are refused every time; the cache stays within its byte bound."""

from __future__ import annotations

import copy

import pytest

from flowrun.model import SpecError, parse, parse_spec


def spec(*names: str) -> dict[str, object]:
    return {
        "tasks": [{"name": n, "template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}} for n in names]
    }


def test_an_equal_spec_gives_the_same_parse_and_a_changed_one_a_new_one() -> None:
    first = parse_spec(spec("a", "b"), "ns")
    assert parse_spec(copy.deepcopy(spec("a", "b")), "ns") is first
    assert parse_spec(spec("a", "c"), "ns") is not first
    assert [t.name for t in parse_spec(spec("a", "c"), "ns").tasks] == ["a", "c"]
    assert parse_spec(spec("a", "b"), "other") is not first
    assert parse_spec(spec("a", "b"), "ns", placeholders=("p",)) is not first


def test_a_bad_spec_is_refused_each_time() -> None:
    bad = spec("a", "a")
    for _ in range(2):
        with pytest.raises(SpecError, match=r"spec\.tasks\[1\]"):
            parse_spec(bad, "ns")


def test_the_cache_keeps_within_its_byte_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "PARSED_CACHE_BYTES", 2000)
    for i in range(40):
        parse_spec(spec(f"t{i}", "u"), "bounded")
    assert 0 < parse._parsed_bytes <= 2000
    assert parse._parsed_bytes == sum(len(text) for text, _, _ in parse._parsed)
    # The latest is kept, the first is gone.
    assert parse_spec(spec("t39", "u"), "bounded") is parse_spec(spec("t39", "u"), "bounded")
    assert not any('"t0"' in text for text, _, _ in parse._parsed)
