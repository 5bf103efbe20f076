"""The soak's fixtures: the dev cluster (the soak stops its components, so no other cluster will do)."""

pytest_plugins = ["devcluster.pytest_plugin"]
