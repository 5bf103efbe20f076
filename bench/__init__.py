"""Benchmarks of flowrun-operator on the dev cluster: scripts that print figures, never timed tests.

Each scenario is a module run from the checkout's root, e.g. `.venv/bin/python -m bench.chain`; its
docstring gives the command and what it measures. docs/performance.md holds the figures.
"""
