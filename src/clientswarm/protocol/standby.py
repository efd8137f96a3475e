"""What a standby worker (``python -m clientswarm.worker --standby``) and the spawner that
started it say on its pipes (see :mod:`clientswarm.spawners.standby`)."""

from __future__ import annotations

EARLY_READY = b"ready\n"
"""Written by a standby worker on stdout once its assignment is built and it waits for its
start time."""

__all__ = ["EARLY_READY"]
