"""The liveness answer: it fails exactly when passes have been due with none finishing (or a watch
failing) for longer than the bound while the API server answers; and the runtime asks the API
server only then."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flowrun.controller.health import judge
from flowrun.controller.runtime import Runtime
from flowrun.controller.settings import Settings
from tests.unit.runtime_harness import NS, fake_server, kube_over, until


@pytest.mark.parametrize(
    ("stalled", "failing", "answers", "ok"),
    [
        (0, 0, None, True),
        (299, 299, None, True),
        (301, 0, True, False),
        (0, 301, True, False),
        (301, 0, False, True),  # an outage: a restart would not bring the API server back
        (0, 301, False, True),
    ],
)
def test_judge(stalled: float, failing: float, answers: bool | None, ok: bool) -> None:
    health = judge(stalled, failing, 300, answers)
    assert health.ok is ok
    if not ok:
        assert health.message.endswith("and the API server answers: the operator is wedged"), health.message


def test_the_runtime_is_unhealthy_when_its_queue_stalls_while_the_api_server_answers(tmp_path: Path) -> None:
    server = fake_server()

    async def scenario() -> None:
        runtime = Runtime(Settings(namespaces=(NS,), stall_seconds=0.2), kube_over(server, tmp_path))
        runtime.start()
        try:
            await until("the caches filled", lambda: runtime.flowruns.queue._tasks)
            assert (await runtime.health()).ok
            release = asyncio.Event()

            async def hangs(key: str) -> float | None:  # a pass that never ends
                await release.wait()
                return None

            runtime.flowruns.queue._process = hangs
            runtime.flowruns.queue.add("some-run")
            await asyncio.sleep(0.3)
            health = await runtime.health()
            assert not health.ok and health.message.startswith("no pass has finished for"), health
            assert server.requests[-1] == ("GET", "/readyz")
            release.set()
            await until("the pass finished", lambda: runtime.flowruns.queue.stalled_for() == 0.0)
            assert (await runtime.health()).ok
        finally:
            await runtime.stop()
            server.end_watches()

    asyncio.run(scenario())
