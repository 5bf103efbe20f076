"""The fault soak in the suite: one fixed seed for a short while, every invariant held
(bench/soak/runner.py says which; docs/reliability.md, "Soak", how to run it for longer).

The seed is one whose draws cover the faults that found wedges before (the API server and etcd
stopped while passes are due, the operator killed and stopped) and a huge run; a failure prints
the command that replays its workload alone."""

from __future__ import annotations

import pytest

from bench import harness
from bench.soak import faults
from bench.soak.runner import Soak
from devcluster.pytest_plugin import KubeCluster

pytestmark = pytest.mark.e2e

SEED = 6
MINUTES = 1.0  # of starting workloads; the last ones end, and are deleted, after that
# Every fault but the namespace deleted (it waits for the namespace to go: minutes in a busy suite).
FAULTS = tuple(kind for kind in faults.KINDS if kind != "namespace")


def test_a_fixed_seed_soak_holds_every_invariant(kube_cluster: KubeCluster) -> None:
    lines: list[str] = []

    def out(line: str) -> None:
        lines.append(line)
        print(line)

    with harness.session() as session:
        soak = Soak(session, SEED, MINUTES, FAULTS, None, None, out=out)
        failed = soak.run()
    assert failed == 0, "\n".join(lines[-40:])
    assert soak.passed and sum(soak.fault_counts.values()) > 0, "\n".join(lines)
