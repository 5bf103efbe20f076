"""The README's two commands do what it says. `scripts/test` is what CI runs (so it runs on every
submission); this test runs the other one, `scripts/demo`, against the session's dev cluster."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from devcluster.pytest_plugin import USE_EXISTING_CLUSTER, KubeCluster, real_node_unavailable

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(USE_EXISTING_CLUSTER, reason="the demo runs on the dev cluster"),
]

REPO = Path(__file__).resolve().parents[2]


def test_readme_names_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^(scripts/\S+)$", readme, flags=re.MULTILINE)
    assert "scripts/demo" in commands and "scripts/test" in commands
    assert (REPO / ".ci" / "run").read_text().count("scripts/test") == 1


def test_demo_runs_the_dask_example_and_shows_the_cleanup(kube_cluster: KubeCluster) -> None:
    result = subprocess.run(
        [str(REPO / "scripts" / "demo")],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "FlowRun dask-summary: Succeeded" in out
    assert "objects of the resource blocks still present: none (cleaned up)" in out
    assert "dask: CleanedUp" in out
    # Progress was shown live (by `kubectl flowrun watch`, one line per change when not on a
    # terminal): the block was seen Ready before it was seen CleanedUp.
    assert out.index("  block dask  Ready") < out.index("  block dask  CleanedUp")
    if real_node_unavailable(kube_cluster) is None:
        # On the real node the Dask cluster computed the summary, and write-csv wrote it.
        assert "real node: the flow runs real containers" in out, out
        summary = out[out.index("summary computed by the Dask cluster") :]
        assert "count,1209600.0,1209600.0" in summary, summary
        assert "/data/summary.csv as write-csv wrote it" in summary, summary
    else:
        assert "no real node (" in out and "the pods are simulated" in out, out
    assert "its finalizer was released" in out
