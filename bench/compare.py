"""Run one workload through several drivers side by side, in one session, and print the figures.

Each driver gets its own namespace, pod clock and (for a controller) its own process, started and
warmed up before any figure is taken. Rounds interleave the drivers, so that a change in the
machine's load touches all of them alike. Wall time, tasks/s, requests and CPU are the median of
the rounds; first-pod times and gaps pool the rounds' samples; peak RSS is the largest seen.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable, Sequence

from bench import drivers, harness, stats
from bench.drivers import Driver, Result
from bench.workloads import Shape

DRIVERS = ("operator", "bare", "argo", "argo-tuned")


def make_driver(kind: str, session: harness.Session, namespace: str) -> Driver:
    if kind == "operator":
        return drivers.OperatorDriver(session, namespace)
    if kind == "bare":
        return drivers.BareDriver(session, namespace)
    from bench import argo_controller

    return argo_controller.ArgoDriver(session, namespace, tuned=kind == "argo-tuned")


def add_arguments(parser: argparse.ArgumentParser, rounds: int) -> None:
    parser.add_argument("--rounds", type=int, default=rounds, help=f"rounds per driver (default {rounds})")
    parser.add_argument("--duration", default="100ms", help="how long each task's pod runs (default 100ms)")
    parser.add_argument(
        "--drivers",
        default="operator,bare",
        help=f"comma-separated, from {', '.join(DRIVERS)} (default operator,bare; argo and argo-tuned build "
        "and run Argo's workflow-controller)",
    )


def driver_kinds(text: str) -> list[str]:
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in DRIVERS]
    if unknown or not kinds:
        raise SystemExit(f"--drivers: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(DRIVERS)}")
    return kinds


def run(
    title: str,
    shape: Shape,
    count: int,
    kinds: Sequence[str],
    rounds: int,
    duration: str,
    timeout: float,
) -> dict[str, list[Result]]:
    results: dict[str, list[Result]] = {kind: [] for kind in kinds}
    print(f"== {title}: {count} run(s) x {len(shape)} task(s), tasks run {duration}, {rounds} round(s)", flush=True)
    with harness.session() as session:
        opened: dict[str, Driver] = {}
        clocks: dict[str, harness.PodClock] = {}
        try:
            for kind in kinds:
                namespace = session.namespace(f"bench-{kind}")
                clocks[kind] = harness.PodClock(session.core, namespace).start()
                opened[kind] = make_driver(kind, session, namespace)
                drivers.warm_up(session, opened[kind], clocks[kind], duration)
            for round_ in range(rounds):
                for kind in kinds:
                    names = drivers.run_names(f"r{round_}", count)
                    result = drivers.measure(session, opened[kind], clocks[kind], names, shape, duration, timeout)
                    results[kind].append(result)
                    print(f"   round {round_ + 1} {kind}: {one_line(result)}", flush=True)
        finally:
            for driver in opened.values():
                close: Callable[[], None] = getattr(driver, "close")  # noqa: B009 (every driver has one)
                close()
            for clock in clocks.values():
                clock.stop()
    print_table(results)
    for kind, rounds_of_kind in results.items():
        breakdown = request_breakdown(rounds_of_kind)
        if breakdown:
            print(f"   {kind} requests, all rounds (audit log): {stats.format_counts(breakdown)}")
        own: Counter[tuple[str, str]] = Counter()
        for result in rounds_of_kind:
            own.update(+result.own_breakdown)
        if own:
            print(f"   {kind} requests, all rounds (its own metric): {stats.format_counts(own)}")
    return results


def one_line(result: Result) -> str:
    text = f"wall {result.wall:.2f}s, {result.tasks_per_second:.1f} tasks/s"
    if result.gaps:
        text += f", gap p50 {stats.percentile(result.gaps, 50) * 1000:.0f}ms"
    if result.requests_per_task is not None:
        text += f", {result.requests_per_task:.1f} req/task"
    if result.cpu is not None:
        text += f", CPU {result.cpu:.1f}s"
    if result.throttled is not None:
        text += f", throttled {result.throttled:.2f}s"
    return text


def summary(results: list[Result]) -> dict[str, float | None]:
    def med(values: list[float | None]) -> float | None:
        present = [value for value in values if value is not None]
        return stats.median(present) if present else None

    gaps = [gap for result in results for gap in result.gaps]
    first = [value for result in results for value in result.first_pod]
    tasks = results[0].tasks
    return {
        "wall s": med([r.wall for r in results]),
        "tasks/s": med([r.tasks_per_second for r in results]),
        "first pod p50 s": stats.percentile(first, 50),
        "gap p50 ms": stats.percentile(gaps, 50) * 1000 if gaps else None,
        "gap p99 ms": stats.percentile(gaps, 99) * 1000 if gaps else None,
        "req/task (API server)": med([r.requests_per_task for r in results]),
        "req/task (own metric)": med([r.own_requests / tasks if r.own_requests is not None else None for r in results]),
        "CPU s": med([r.cpu for r in results]),
        "API server CPU s": med([r.apiserver_cpu for r in results]),
        "peak RSS MiB": max((r.peak_rss for r in results if r.peak_rss is not None), default=None),
    }


def print_table(results: dict[str, list[Result]]) -> None:
    summaries = {kind: summary(rounds) for kind, rounds in results.items() if rounds}
    if not summaries:
        return
    columns = list(next(iter(summaries.values())))
    width = max(len(column) for column in columns)
    kinds = list(summaries)
    print("   " + " " * width + "".join(f"{kind:>14}" for kind in kinds))
    for column in columns:
        cells = "".join(f"{format_value(summaries[kind][column]):>14}" for kind in kinds)
        print(f"   {column:<{width}}{cells}")
    for base_kind in ("bare", "argo", "argo-tuned"):
        for kind in kinds:
            if base_kind not in summaries or kind == base_kind or (base_kind != "bare" and kind != "operator"):
                continue
            ratios = []
            for column, name in RATIOS.items():
                ours, base = summaries[kind][column], summaries[base_kind][column]
                if ours is not None and base is not None:
                    ratios.append(f"{name} {stats.ratio(ours, base):.2f}x")
            print(f"   {kind} / {base_kind}: " + ", ".join(ratios))


RATIOS = {"wall s": "wall", "first pod p50 s": "first pod", "gap p50 ms": "gap p50", "gap p99 ms": "gap p99"}


def format_value(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}"


def request_breakdown(results: list[Result]) -> Counter[tuple[str, str]]:
    total: Counter[tuple[str, str]] = Counter()
    for result in results:
        total.update(result.requests or {})
    return total
