"""The liveness answer: does the operator make progress? It fails when, for longer than a bound
(Settings.stall_seconds, 5 minutes by default) while the API server answers, passes have been due
with none finishing, or a watch has been failing, or (with leader election) the election loop has
finished no round or failed to read and write its Lease. A wedge of any cause (a pass that hangs,
a queue paused behind a probe that cannot succeed, a watch that cannot resume, a stuck election)
then costs a restart by the kubelet, not a frozen operator, and a standby is held to it as the
leader is (its caches and its election must work for it to take over). An outage of the API
server does not fail it: restarting the operator would not bring the API server back; and time
without progress counts only from the last moment the API server was seen not to answer, so the
moment it answers again (its watches and passes not yet resumed) is not taken for a wedge."""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields, replace


@dataclass(frozen=True)
class Health:
    ok: bool
    message: str


@dataclass(frozen=True)
class Progress:
    """Seconds each part has gone without progress (0: it makes progress, or has nothing to do)."""

    passes_stalled_for: float = 0.0  # passes have been due with none finishing (the leader's)
    watch_failing_for: float = 0.0  # the longest-failing watch has been failing
    election_stalled_for: float = 0.0  # the election loop has finished no round
    lease_failing_for: float = 0.0  # every read or write of the Lease has failed


WHAT = (
    "no pass has finished for {:.0f}s while passes are due",
    "a watch has been failing for {:.0f}s",
    "the leader election has finished no round for {:.0f}s",
    "the Lease could not be read or written for {:.0f}s",
)


def since_answering(progress: Progress, answering_for: float | None) -> Progress:
    """`progress` with each time capped at `answering_for`, the seconds since the API server was
    last seen not to answer (None: never seen so)."""
    if answering_for is None:
        return progress
    capped = {f.name: min(getattr(progress, f.name), max(answering_for, 0.0)) for f in fields(progress)}
    return replace(progress, **capped)


def judge(progress: Progress, bound: float, api_answers: bool | None) -> Health:
    """`api_answers`: whether the API server answered a probe just now (None: not asked, because
    nothing is stalled)."""
    stalled = [what.format(seconds) for what, seconds in zip(WHAT, astuple(progress), strict=True) if seconds > bound]
    if not stalled:
        return Health(True, "making progress")
    if not api_answers:
        return Health(True, f"{stalled[0]}: the API server does not answer, waiting for it")
    return Health(False, f"{stalled[0]} and the API server answers: the operator is wedged")


def stalled(progress: Progress, bound: float) -> bool:
    return any(seconds > bound for seconds in astuple(progress))
