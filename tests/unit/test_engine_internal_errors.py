"""The engine on its own bugs: decide() never raises and never acts on a half-made decision;
it reports the error on the run and asks to be called again a minute later."""

import pytest

from flowrun.engine import RunInput, decide
from flowrun.engine.context import PassContext
from flowrun.engine.state import RunState
from tests.unit.builders import NS, RUN, UID, FakeCluster, at, creates, flow, task


def test_the_engine_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowrun.engine import one_pass

    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(one_pass, "decide", broken)
    outcome = decide(
        RunInput(RUN, NS, UID, flow(task("a")), status={"phase": "Running"}), FakeCluster().observed(), at(0)
    )
    message = "internal error in the flowrun engine: RuntimeError: bug"
    assert outcome.status == {"phase": "Running", "message": message} and outcome.actions == ()
    assert outcome.events == (("Warning", "InternalError", message),)
    assert outcome.requeue_after == 60


def test_a_pass_that_never_settles_stops_at_the_bound_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowrun.engine import one_pass

    real_step = one_pass.step
    steps: list[int] = []

    def restless(ctx: PassContext, state: RunState) -> RunState:
        # A step that never settles: the bug the bound guards against.
        after = real_step(ctx, state)
        after.tasks["a"].message = f"step {len(steps)}"
        steps.append(1)
        return after

    monkeypatch.setattr(one_pass, "step", restless)
    spec = flow(task("a"), task("b", "a"))
    outcome = decide(RunInput(RUN, NS, UID, spec, status={"phase": "Running"}), FakeCluster().observed(), at(0))
    bound = 4 * 2 + 8  # 4 per task and block, plus 8
    message = (
        "internal error in the flowrun engine: FixpointNotReached: "
        f"run {NS}/{RUN}: no fixpoint within {bound} steps of one pass"
    )
    assert len(steps) == bound
    assert outcome.status == {"phase": "Running", "message": message}
    assert outcome.actions == ()  # nothing decided by an unsettled pass is applied (no pod created)
    assert outcome.events == (("Warning", "InternalError", message),)
    assert outcome.requeue_after == 60 and not outcome.done and not outcome.finalizer_releasable


def test_a_real_pass_settles_well_within_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowrun.engine import one_pass

    real_step = one_pass.step
    steps: list[int] = []

    def counted(ctx: PassContext, state: RunState) -> RunState:
        steps.append(1)
        return real_step(ctx, state)

    monkeypatch.setattr(one_pass, "step", counted)
    chain = flow(*(task(f"t{i}", *([f"t{i - 1}"] if i else [])) for i in range(30)))
    outcome = decide(RunInput(RUN, NS, UID, chain), FakeCluster().observed(), at(0))
    assert creates(outcome) == ["Pod/demo-t0-1"]
    assert len(steps) == 2  # one step decides, the next finds nothing left to change
