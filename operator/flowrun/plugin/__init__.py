"""The `kubectl flowrun` plugin (console script `kubectl-flowrun`): run, follow and inspect
FlowRuns from a terminal or a script. The commands: docs/cli.md.

The modules: app.py (the commands and the entry point), client.py (kubeconfig, context and
namespace as kubectl reads them; the FlowRun API calls), layout.py (where blocks and tasks are
drawn), tree.py (a run's status as a tree), watch.py (following a run live), listing.py (the
table of runs), logs.py (task logs, live or kept in status), graph.py (the DAG as text, DOT or
Mermaid), validate.py (the operator's checks offline, and a server-side dry run), objects.py (the
FlowRuns submit and rerun create), documents.py (the YAML documents of `-f FILE`), durations.py
(durations and ages as kubectl prints them).
"""
