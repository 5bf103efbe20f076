"""flowrun-operator: runs FlowRuns (DAGs of task pods with temporary resources) on Kubernetes."""

from importlib.metadata import version

# The one place the version is written is pyproject.toml; the installed package's metadata has it.
__version__ = version("flowrun-operator")
