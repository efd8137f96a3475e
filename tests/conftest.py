"""Fixtures shared by every test: real PostgreSQL and Slurm (skipped where they cannot run)."""

pytest_plugins = ["postgres", "slurm_cluster"]
