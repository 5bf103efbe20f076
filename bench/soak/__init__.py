"""The fault soak (`python -m bench.soak`): random FlowRuns, Flows and CronFlowRuns driven through
random faults on the dev cluster, checked against invariants. The reliability counterpart of the
benchmarks.

Its pure parts: `workloads.py` draws seeded workloads (the same seed and index give the same
workload, byte for byte) and `model.py` says what each of their runs must end as, from the
documented semantics (docs/semantics.md, docs/api.md) alone, never from the engine's code.
"""
