"""Fixtures shared by every test: a real PostgreSQL server (skipped where none can start)."""

pytest_plugins = ["postgres"]
