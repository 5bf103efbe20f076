"""The liveness answer: does the operator make progress? It fails when passes have been due with
none finishing, or a watch has been failing, for longer than a bound (Settings.stall_seconds, 5
minutes by default) while the API server answers. A wedge of any cause (a pass that hangs, a
queue paused behind a probe that cannot succeed, a watch that cannot resume) then costs a
restart by the kubelet, not a frozen operator. An outage of the API server does not fail it:
restarting the operator would not bring the API server back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Health:
    ok: bool
    message: str


def judge(stalled_for: float, watch_failing_for: float, bound: float, api_answers: bool | None) -> Health:
    """`stalled_for`: seconds passes have been due with none finishing; `watch_failing_for`: seconds
    the longest-failing watch has been failing; `api_answers`: whether the API server answered a
    probe just now (None: not asked, because nothing is stalled)."""
    if stalled_for <= bound and watch_failing_for <= bound:
        return Health(True, "making progress")
    what = (
        f"no pass has finished for {stalled_for:.0f}s while passes are due"
        if stalled_for > bound
        else f"a watch has been failing for {watch_failing_for:.0f}s"
    )
    if not api_answers:
        return Health(True, f"{what}: the API server does not answer, waiting for it")
    return Health(False, f"{what} and the API server answers: the operator is wedged")
