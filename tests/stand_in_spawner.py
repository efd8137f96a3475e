"""A stand-in ``local`` spawner for tests where the test itself plays the workers.

It starts no process: :meth:`StandInSpawner.submit` keeps each launch (with the cluster's
token, so the test can speak for a worker) and answers a handle that follows nothing, so the
service never polls, stops or releases anything of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clientswarm.protocol.spawning import ClusterLaunch, SpawnerHandle, WorkerExit


class NothingStarted(SpawnerHandle):
    """The handle of a launch that started no process."""

    @property
    def following(self) -> bool:
        return False


class StandInSpawner:
    """Keeps launches, starts nothing (see the module docstring)."""

    kind = "local"

    def __init__(self) -> None:
        self.launches: list[ClusterLaunch] = []

    def render(self, launch: ClusterLaunch) -> str:
        return ""

    async def submit(self, launch: ClusterLaunch) -> NothingStarted:
        self.launches.append(launch)
        return NothingStarted()

    def restore(self, stored: Mapping[str, Any]) -> NothingStarted:
        return NothingStarted.from_json(stored)

    async def poll(self, cluster_id: str, handle: NothingStarted) -> list[WorkerExit]:
        return []

    async def stop(self, cluster_id: str, handle: NothingStarted, grace_s: float) -> None:
        return None

    async def release(self, cluster_id: str, handle: NothingStarted) -> None:
        return None
