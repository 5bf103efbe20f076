"""The soak runs on the dev cluster of tests/conftest.py (it stops that cluster's components for a while)."""
