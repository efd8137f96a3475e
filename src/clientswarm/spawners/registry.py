"""The spawners by ``kind`` (one explicit dict), and rendering what one would submit."""

from __future__ import annotations

import importlib
import sys
from typing import Any

from clientswarm.config.models import ClusterConfig
from clientswarm.protocol.spawning import ClusterLaunch, Spawner, WorkerExit

SPAWNERS: dict[str, str] = {
    "local": "clientswarm.spawners.local:LocalSpawner",
    "slurm": "clientswarm.spawners.slurm:SlurmSpawner",
    "kubernetes": "clientswarm.spawners.kubernetes:KubernetesSpawner",
}
"""Every spawner class, by the ``spawner.kind`` that selects it (imported when first used:
the Kubernetes client library alone takes a tenth of a second to load)."""


def spawner_class(kind: str) -> type[Spawner]:
    """The spawner class of ``kind`` (a key of :data:`SPAWNERS`)."""
    module, name = SPAWNERS[kind].split(":")
    cls: type[Spawner] = getattr(importlib.import_module(module), name)
    return cls


class LazySpawner:
    """A spawner of ``kind`` that is built, and its module imported, on first use."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._spawner: Spawner | None = None

    @property
    def spawner(self) -> Spawner:
        """The real spawner."""
        if self._spawner is None:
            self._spawner = spawner_class(self.kind)()
        return self._spawner

    def render(self, launch: ClusterLaunch) -> str:
        """See :class:`Spawner`."""
        return self.spawner.render(launch)

    async def submit(self, launch: ClusterLaunch) -> dict[str, Any]:
        """See :class:`Spawner`."""
        return await self.spawner.submit(launch)

    async def poll(self, cluster_id: str, state: dict[str, Any]) -> list[WorkerExit]:
        """See :class:`Spawner`."""
        return await self.spawner.poll(cluster_id, state)

    async def stop(self, cluster_id: str, state: dict[str, Any], grace_s: float) -> None:
        """See :class:`Spawner`."""
        await self.spawner.stop(cluster_id, state, grace_s)

    async def release(self, cluster_id: str, state: dict[str, Any]) -> None:
        """See :class:`Spawner`."""
        await self.spawner.release(cluster_id, state)


def default_spawners() -> dict[str, Spawner]:
    """One spawner of every kind, for a service (each imported when first used)."""
    return {kind: LazySpawner(kind) for kind in SPAWNERS}


def render_submission(
    config: ClusterConfig,
    *,
    service_url: str,
    cluster_id: str = "<cluster-id>",
    log_dir: str = "<data-dir>/logs/<cluster-id>",
    python: str | None = None,
) -> str:
    """Exactly what the spawner of ``config`` would submit, with placeholders and no secrets."""
    launch = ClusterLaunch(
        cluster_id=cluster_id,
        workers=config.spawner.workers,
        service_url=service_url,
        token="<redacted>",
        log_dir=log_dir,
        python=python or sys.executable,
        options=config.spawner.model_dump(),
    )
    return spawner_class(config.spawner.kind)().render(launch)
