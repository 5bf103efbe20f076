"""Shared fixtures: the cluster (dev cluster or an existing one) and a namespace per test."""

pytest_plugins = ["devcluster.pytest_plugin"]
