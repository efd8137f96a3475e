"""Fixtures shared by every test: real PostgreSQL and Slurm (skipped where they cannot run), and
the fake Kubernetes API server (no real one can run here)."""

pytest_plugins = ["postgres", "slurm_cluster", "slurm_multinode", "fake_kubernetes_api"]
