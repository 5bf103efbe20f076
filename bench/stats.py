"""Pure helpers of the benchmarks: percentiles, Prometheus text and audit log lines."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence

from prometheus_client.parser import text_string_to_metric_families


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of values, interpolated between the closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q must be in 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def ratio(ours: float, floor: float) -> float:
    """ours / floor, with a floor of 1 ms so that a zero floor never divides by zero."""
    return ours / max(floor, 1e-3)


def counter_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of the Prometheus counter `name` (without its _total suffix or with it) in a
    /metrics text, keyed by their sorted labels."""
    family = name.removesuffix("_total")
    samples: dict[tuple[tuple[str, str], ...], float] = {}
    for metric in text_string_to_metric_families(text):
        if metric.name != family:
            continue
        for sample in metric.samples:
            if sample.name == f"{family}_total":
                samples[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def counter_total(text: str, name: str) -> float:
    return sum(counter_samples(text, name).values())


def audit_requests(lines: Iterable[str], username: str) -> Counter[tuple[str, str]]:
    """Requests of one user in API server audit log lines (JSON, one event per line), counted by
    (verb, resource[/subresource]). Lines that are not complete events are skipped (the log may
    be read while the server writes it)."""
    counts: Counter[tuple[str, str]] = Counter()
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict) or (event.get("user") or {}).get("username") != username:
            continue
        if event.get("stage") != "ResponseComplete":
            continue
        ref = event.get("objectRef") or {}
        resource = ref.get("resource") or event.get("requestURI", "?")
        if ref.get("subresource"):
            resource = f"{resource}/{ref['subresource']}"
        counts[(event.get("verb", "?"), resource)] += 1
    return counts


def format_counts(counts: Counter[tuple[str, str]], top: int = 6) -> str:
    """The largest counts, e.g. "create pods 100, patch flowruns/status 80"."""
    return ", ".join(f"{verb} {resource} {count}" for (verb, resource), count in counts.most_common(top))
